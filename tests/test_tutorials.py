"""Every tutorial in tutorials/ runs to the end, and its run is the record its docs page shows.

Each tutorial is executed through ``docs/hooks/run_tutorial.py``, the runner the docs build
uses, so this one execution also stores the record (``.cache/docs-tutorials/``) from which
``mkdocs build`` renders the tutorial's page without running it again.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).parents[1]
TUTORIALS = sorted((REPO / "tutorials").glob("*.py"))


def _runner() -> ModuleType:
    if "run_tutorial" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "run_tutorial", REPO / "docs" / "hooks" / "run_tutorial.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["run_tutorial"] = module
        spec.loader.exec_module(module)
    return sys.modules["run_tutorial"]


def test_tutorials_exist() -> None:
    assert TUTORIALS, "tutorials/ holds no scripts"


@pytest.mark.parametrize("script", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_has_docstring_and_cells(script: Path) -> None:
    docstring, cells = _runner().split_cells(script.read_text(encoding="utf-8"))
    assert docstring.startswith("Tutorial "), "the page's title is the docstring's first line"
    assert len(cells) >= 2, "cells are separated by '# %%' lines"
    for cell in cells:  # every cell compiles on its own, at its own line numbers
        compile("\n" * (cell.first_line - 1) + cell.source, str(script), "exec")


def test_runner_records_output_and_figures(tmp_path: Path) -> None:
    script = tmp_path / "tutorials" / "99_tiny.py"
    script.parent.mkdir()
    script.write_text(
        '"""Tutorial 99: a tiny one.\n\nBody.\n"""\n\nimport sys\nfrom pathlib import Path\n\n'
        "out = Path(sys.argv[1])\nout.mkdir(exist_ok=True)\n\n# %%\n# 1. Print.\nprint(6 * 7)\n\n"
        "# %%\n# 2. Draw and save.\n(out / 'a.png').write_bytes(b'png')\n(out / 'b.json')"
        ".write_text('{}')\n",
        encoding="utf-8",
    )
    runner = _runner()
    record = runner.run_tutorial(script, cache=tmp_path / "cache", work=tmp_path / "work")
    assert [cell.output for cell in record.cells] == ["", "42\n", ""]
    assert record.cells[2].files == ["a.png"] and record.cells[2].other_files == ["b.json"]
    folder = runner.record_folder(script, tmp_path / "cache")
    assert (folder / "a.png").read_bytes() == b"png"
    assert json.loads((folder / "record.json").read_text())["docstring"].startswith("Tutorial 99")
    loaded, status = runner.load_record(script, tmp_path / "cache")
    assert status == "current" and loaded == record
    script.write_text(script.read_text() + "print('changed')\n", encoding="utf-8")
    assert runner.load_record(script, tmp_path / "cache") == (None, "stale")


def test_runner_stores_nothing_when_a_cell_fails(tmp_path: Path) -> None:
    script = tmp_path / "01_broken.py"
    script.write_text('"""Tutorial 1: broken."""\n\nprint("a")\n\n# %%\nraise ValueError("x")\n')
    with pytest.raises(ValueError, match="x"):
        _runner().run_tutorial(script, cache=tmp_path / "cache")
    assert _runner().load_record(script, tmp_path / "cache") == (None, "missing")


@pytest.mark.real_model
@pytest.mark.parametrize("script", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_runs(script: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = _runner()
    record = runner.run_tutorial(script, work=tmp_path)
    assert capsys.readouterr().out.strip(), "the tutorial printed nothing"
    assert record.cells[-1].seconds >= 0 and any(cell.output.strip() for cell in record.cells)
    written = [name for cell in record.cells for name in cell.files]
    assert all((runner.record_folder(script) / name).is_file() for name in written)
