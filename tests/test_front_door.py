"""The front door stays light: ``import circuitlab`` and the CLI's help import no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import circuitlab

HEAVY = ("torch", "transformers", "transformer_lens", "peft", "matplotlib", "pandas")


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    finished = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(finished.stdout.split())


def test_import_circuitlab_loads_no_heavy_dependency() -> None:
    loaded = _imported_after("import circuitlab")
    assert not loaded & set(HEAVY)


def test_help_and_argument_errors_load_no_heavy_dependency() -> None:
    code = (
        "import contextlib, io\n"
        "from circuitlab.cli.main import main\n"
        "sink = io.StringIO()\n"
        "with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):\n"
        "    for argv in (['--help'], ['decompose'], ['prune-study', '--help']):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
    )
    assert not _imported_after(code) & set(HEAVY)


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in circuitlab.__all__:
        assert getattr(circuitlab, name) is not None
    assert set(circuitlab.__all__) <= set(dir(circuitlab))
    assert circuitlab.ModelHandle is circuitlab.model.ModelHandle


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        circuitlab.lod  # noqa: B018


def test_the_top_level_keeps_the_core_and_points_to_moved_helpers() -> None:
    assert len(circuitlab.__all__) <= 60  # the core names, not every helper
    assert circuitlab.reweighting.split_pool_test is not None  # submodules are attributes
    assert circuitlab.collect is circuitlab.collector.collect
    for name, module in circuitlab._MOVED.items():
        assert name not in circuitlab.__all__
        with pytest.raises(AttributeError, match=rf"use {module}\.{name}"):
            getattr(circuitlab, name)
        assert getattr(__import__(module, fromlist=[name]), name) is not None
