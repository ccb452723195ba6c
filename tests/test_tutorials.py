"""Every tutorial in tutorials/ runs to the end."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


def test_tutorials_exist() -> None:
    assert TUTORIALS, "tutorials/ holds no scripts"


@pytest.mark.real_model
@pytest.mark.parametrize("script", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_runs(
    script: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.argv", [str(script), str(tmp_path)])
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.strip()
