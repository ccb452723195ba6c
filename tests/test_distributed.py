"""Data-parallel passes: two processes launched with torchrun give the single-process results.

This file is also the worker: ``python -m torch.distributed.run --nproc_per_node 2
tests/test_distributed.py MODEL_FOLDER OUT`` runs `passes` on every rank (each `collect` takes
its share of the batches and merges every rank's readers); every rank saves what it got with
safetensors, and rank 0 alone writes the result-protocol files. The test runs the same
`passes` in its own process and compares: row-keeping readers exactly, sums to 1e-6.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torchrun import torchrun

import circuitlab
from circuitlab import distributed, sites
from circuitlab.collector import CapturedBatch, collect
from circuitlab.errors import InputError
from circuitlab.json_files import write_json_atomic
from circuitlab.model import ModelHandle
from circuitlab.patching import PromptPair, activation_patching
from circuitlab.probes import LinearProbes
from circuitlab.readers import (
    Cosine,
    GroupMean,
    Keep,
    Logits,
    Mean,
    Moments,
    PaddedActivations,
    Reader,
    TokenCount,
)
from circuitlab.statistics import CosineStatistics, MomentStatistics
from circuitlab.testing import tiny_model

UNEVEN = [  # 5 prompts, batch_size 2: 3 batches over 2 ranks
    "the cat sat on the mat . the dog sat on the cat",
    "paris is the capital city of france",
    "no",
    "this movie was really good , a great film",
    "the dog",
]
FEW = ["the cat sat on the mat", "a dog", "is the sky blue"]  # batch_size 8: one batch
PAIRS = [
    PromptPair("the cat sat on the", "the dog sat on the", "mat", "rug"),
    PromptPair("a cat sat on a", "a dog sat on a", "mat", "rug"),
    PromptPair("the dog sat on the", "the cat sat on the", "rug", "mat"),
]
EXACT = ("keep", "logits", "dla", "patching", "lengths", "count")
"""Names of results kept per row (or counted): equal bit for bit, not to a tolerance."""


def _first_position(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return logits[:, 0]


class SeenBy(Reader):
    """The rank that ran each batch (state: a list), to show the batches were shared out."""

    def __init__(self) -> None:
        self.ranks: list[int] = []

    def update(self, batch: CapturedBatch) -> None:
        self.ranks.append(distributed.rank())

    def merge(self, other: SeenBy) -> None:
        self.ranks.extend(other.ranks)

    def result(self) -> list[int]:
        return self.ranks


def _tensors(key: str, value: object) -> dict[str, torch.Tensor]:
    """A reader's result as named tensors."""
    if isinstance(value, MomentStatistics):
        return {
            f"{key} variance": torch.tensor(value.variance, dtype=torch.float64),
            f"{key} sparsity": torch.tensor(value.sparsity, dtype=torch.float64),
        }
    if isinstance(value, CosineStatistics):
        return {f"{key} influence": torch.tensor(value.block_influence, dtype=torch.float64)}
    if isinstance(value, PaddedActivations):
        return {f"{key} values": value.values, f"{key} lengths": value.lengths}
    return {key: torch.as_tensor(value)}


def passes(model: ModelHandle) -> dict[str, torch.Tensor]:
    """Every dataset-scale pass of the test, flattened into named tensors."""
    out: dict[str, torch.Tensor] = {}
    for case, texts, batch_size in (("uneven", UNEVEN, 2), ("few", FEW, 2)):
        groups = [index % 2 for index in range(len(texts))]
        last = collect(
            model,
            texts,
            {
                "keep z": Keep(sites.z(0)),
                "keep resid": Keep(sites.resid_post(1)),
                "logits": Logits(columns=[3, 5, 7]),
                "mean": Mean(sites.resid_post(0)),
                "moments": Moments(sites.resid_post(1), 0.05),
                "group mean": GroupMean(sites.resid_post(1), groups),
                "count": TokenCount(),
            },
            batch_size=batch_size,
        )
        every = collect(
            model,
            texts,
            {
                "keep": Keep(sites.resid_pre(1)),
                "logits": Logits(transform=lambda logits, rows: logits[:, 0]),
                "logits named": Logits(transform=_first_position),
                "mean": Mean(sites.resid_post(1)),
                "moments": Moments(sites.mlp_out(0), 0.05),
                "group mean": GroupMean(sites.resid_post(0), groups),
                "cosine": Cosine(sites.resid_pre(1), sites.resid_post(1)),
                "count": TokenCount(),
            },
            positions="all",
            batch_size=batch_size,
        )
        for read, values in (("last", last), ("all", every)):
            for name, value in values.items():
                out.update(_tensors(f"{case} {read} {name}", value))
        dla = circuitlab.direct_logit_attribution(
            model, texts, ["the", "cat"], batch_size=batch_size, progress=False
        )
        out[f"{case} dla values"], out[f"{case} dla logits"] = dla.values, dla.logits
        scores = circuitlab.score_layers(
            model, texts, ["avss", "block_influence"], batch_size=batch_size, progress=False
        )
        for method, result in scores.items():
            out[f"{case} layer scores {method}"] = torch.tensor(result.values)
    features = collect(model, UNEVEN + FEW, {"z": Keep(sites.z(1))}, batch_size=3)["z"]
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    probes = LinearProbes(C=1.0).fit(features.transpose(0, 1), labels)
    out["probe features keep"] = features
    out["probe coef"] = probes.coef_
    sweep = activation_patching(model, PAIRS, "logit_diff", batch_size=4, progress=False)
    out["patching values"], out["patching clean"] = sweep.values, sweep.clean
    return {key: value.detach().cpu().contiguous() for key, value in out.items()}


def main(folder: str, target: str) -> None:
    """The torchrun worker: run `passes`, save every rank's results, rank 0 the result files."""
    model = circuitlab.load(folder)
    results = passes(model)
    for name, texts in (("uneven", UNEVEN), ("few", FEW)):
        seen = collect(model, texts, {"seen": SeenBy()}, batch_size=2 if name == "uneven" else 8)
        results[f"seen {name}"] = torch.tensor(seen["seen"])
    out = Path(target)
    assert distributed.is_active() and distributed.world_size() == 2
    save_file(results, str(out / f"rank{distributed.rank()}.safetensors"))
    # every rank asks to write; only rank 0's files may land
    write_json_atomic({"rank": distributed.rank()}, out / "writer.json")
    circuitlab.direct_logit_attribution(model, FEW, "the", progress=False).save(out / "dla.st")


def _single_thread_passes(model: ModelHandle) -> dict[str, torch.Tensor]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's workers: the same kernels, so rows match exactly
    try:
        return passes(model)
    finally:
        torch.set_num_threads(threads)


def test_two_torchrun_processes_equal_one(tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    command = torchrun(2, __file__, str(tiny_folder), str(out))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CIRCUITLAB_PROGRESS": "0"}
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"two processes: {seconds:.1f} s")

    ranks = [load_file(str(out / f"rank{index}.safetensors")) for index in range(2)]
    for index, got in enumerate(ranks):  # rank 0 ran batches 0 and 2, rank 1 batch 1
        assert got.pop("seen uneven").tolist() == [0, 0, 1]
        assert got.pop("seen few").tolist() == [index]  # one batch: every rank runs it
    single = _single_thread_passes(circuitlab.load(tiny_folder))
    assert set(ranks[0]) == set(single) == set(ranks[1])
    for name, expected in single.items():
        for got in ranks:
            if any(word in name for word in EXACT):
                assert torch.equal(got[name], expected), name
            else:
                torch.testing.assert_close(got[name], expected, rtol=1e-6, atol=1e-9, msg=name)
    # rank 0 wrote the files, once; no scratch file was left next to them
    assert circuitlab.json_files.read_json(out / "writer.json", "writer") == {"rank": 0}
    saved = circuitlab.Attribution.load(out / "dla.st")
    assert torch.equal(saved.values, single_dla(tiny_folder).values)
    assert sorted(path.name for path in out.iterdir()) == [
        "dla.st",
        "rank0.safetensors",
        "rank1.safetensors",
        "writer.json",
    ]


def single_dla(folder: Path) -> circuitlab.Attribution:
    return circuitlab.direct_logit_attribution(circuitlab.load(folder), FEW, "the", progress=False)


# ------------------------------------------------------------- without a process group
def test_no_group_runs_every_batch() -> None:
    model = tiny_model("llama")
    assert not distributed.is_active() and distributed.world_size() == 1
    assert distributed.rank() == 0 and distributed.is_writer()
    assert distributed.rank_share(5) == range(5)
    assert distributed.all_gather_objects("x") == ["x"]
    readers = {"keep": Keep(sites.resid_post(0)), "mean": Mean(sites.resid_post(0))}
    auto = collect(model, UNEVEN, readers, batch_size=2)
    whole = collect(
        model,
        UNEVEN,
        {"keep": Keep(sites.resid_post(0)), "mean": Mean(sites.resid_post(0))},
        batch_size=2,
        distributed=False,
    )
    assert torch.equal(auto["keep"], whole["keep"]) and auto["keep"].shape[0] == len(UNEVEN)
    assert torch.equal(auto["mean"], whole["mean"])
    with pytest.raises(InputError, match=r"needs a torch\.distributed process group"):
        collect(model, UNEVEN, {"mean": Mean(sites.resid_post(0))}, distributed=True)
    with pytest.raises(InputError, match="cannot be combined with shard"):
        collect(model, UNEVEN, {"m": Mean(sites.resid_post(0))}, shard=(0, 2), distributed=True)


def _shard_payloads(model: ModelHandle, count: int) -> list[dict[str, object]]:
    """What `merge_across_ranks` would gather from ``count`` processes (run here, in turn)."""
    payloads = []
    for index in range(count):
        readers = {"keep": Keep(sites.resid_post(1)), "moments": Moments(sites.z(0), 0.1)}
        batches = len(range(index, 3, count))  # 5 prompts in batches of 2: 3 batches
        if batches:  # (collect with an empty shard returns no result: nothing was read)
            collect(model, UNEVEN, readers, batch_size=2, shard=(index, count))
        states = (
            {name: distributed._pack(name, r) for name, r in readers.items()} if batches else {}
        )
        kinds = {name: type(reader).__qualname__ for name, reader in readers.items()}
        payloads.append({"batches": batches, "check": "pass", "kinds": kinds, "states": states})
    return payloads


@pytest.mark.parametrize(("me", "count"), [(0, 2), (1, 2), (3, 4)])
def test_merge_across_ranks_in_rank_order(
    monkeypatch: pytest.MonkeyPatch, me: int, count: int
) -> None:
    """Every rank, also one without a batch (rank 3 of 4), ends with the single-process
    result; the merge is simulated by handing it the payloads the ranks would send."""
    model = tiny_model("llama")
    whole = collect(
        model,
        UNEVEN,
        {"keep": Keep(sites.resid_post(1)), "moments": Moments(sites.z(0), 0.1)},
        batch_size=2,
    )
    payloads = _shard_payloads(model, count)
    monkeypatch.setattr(distributed, "all_gather_objects", lambda value: payloads)
    monkeypatch.setattr(distributed, "rank", lambda: me)
    readers = {"keep": Keep(sites.resid_post(1)), "moments": Moments(sites.z(0), 0.1)}
    if payloads[me]["batches"]:
        collect(model, UNEVEN, readers, batch_size=2, shard=(me, count))
    distributed.merge_across_ranks(
        readers, batches=payloads[me]["batches"], device=model.device, check="pass"
    )
    assert torch.equal(readers["keep"].result(), whole["keep"])
    merged, expected = readers["moments"].result(), whole["moments"]
    assert merged.count == expected.count and merged.near_zero == expected.near_zero
    assert math.isclose(merged.variance, expected.variance, rel_tol=1e-12)
    with pytest.raises(InputError, match="Rank 0 ran a different pass"):
        distributed.merge_across_ranks(readers, batches=1, device=model.device, check="other")


def test_launch_environment_without_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun's variables alone give the rank and the writer (files need no group)."""
    for name, value in {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29999",
    }.items():
        monkeypatch.setenv(name, value)
    assert distributed.launched() and distributed.in_process_group()
    assert distributed.rank() == 1 and distributed.world_size() == 2
    assert not distributed.is_writer()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not distributed.launched() and distributed.is_writer()


def test_other_ranks_do_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    for name, value in {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", "29999")
    write_json_atomic({"a": 1}, tmp_path / "a.json")
    scores = circuitlab.LayerScores(method="random", values=(1.0, 2.0))
    scores.save(tmp_path / "scores.json")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    write_json_atomic({"a": 1}, tmp_path / "a.json")
    scores.save(tmp_path / "scores.json")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.json", "scores.json"]


# ------------------------------------------------------------------------- device_map
def test_device_map_cpu_gives_the_same_logits(tiny_folder: Path) -> None:
    plain = circuitlab.load(tiny_folder)
    expected = plain.logits(UNEVEN[:2])
    for device_map in ("cpu", {"": "cpu"}, "auto"):
        placed = circuitlab.load(tiny_folder, device_map=device_map)
        assert placed.device == torch.device("cpu")
        torch.testing.assert_close(placed.logits(UNEVEN[:2]), expected, rtol=0, atol=0)


def test_device_map_with_a_layer_offloaded_to_disk(tiny_folder: Path) -> None:
    """Two placements on a CPU-only machine: layer 1 lives on disk, loaded per forward pass."""
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    plain = circuitlab.load(tiny_folder)
    placed = circuitlab.load(tiny_folder, device_map=device_map)
    assert placed.device_map is not None and placed.device_map["model.layers.1"] == "disk"
    assert plain.device_map is None
    torch.testing.assert_close(placed.logits(UNEVEN), plain.logits(UNEVEN), rtol=0, atol=0)
    readers = {"keep": Keep(sites.z(1)), "mean": Mean(sites.resid_post(1))}
    got = collect(placed, UNEVEN, dict(readers), positions="all", batch_size=2)
    expected = collect(
        plain,
        UNEVEN,
        {"keep": Keep(sites.z(1)), "mean": Mean(sites.resid_post(1))},
        positions="all",
        batch_size=2,
    )
    assert torch.equal(got["keep"].values, expected["keep"].values)
    torch.testing.assert_close(got["mean"], expected["mean"], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("device_map", "message"),
    [
        ("gpu", "Unknown device_map 'gpu'"),
        ({"model.layers.0": "meta"}, "'meta' holds no weights"),
        ({"model.layer.0": "cpu"}, "device_map names no module 'model.layer.0'"),
        ({}, "non-empty dict"),
        (3, "must be a strategy"),
        ({"": "cuda:7"}, "CUDA is not available"),
    ],
)
def test_bad_device_map(tiny_folder: Path, device_map: object, message: str) -> None:
    with pytest.raises(circuitlab.CircuitlabError, match=message):
        circuitlab.load(tiny_folder, device_map=device_map)  # type: ignore[arg-type]


def test_device_and_device_map_together(tiny_folder: Path) -> None:
    with pytest.raises(InputError, match="not both"):
        circuitlab.load(tiny_folder, device="cpu", device_map="auto")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
