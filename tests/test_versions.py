"""The declared dependency ranges and the lower-bound constraints file agree."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints" / "lowest.txt"


def _runtime_requirements() -> list[Requirement]:
    requirements = [Requirement(text) for text in importlib.metadata.requires("circuitlab") or []]
    return [r for r in requirements if r.marker is None or "extra" not in str(r.marker)]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_runtime_dependency_has_a_lower_bound_pinned_in_the_constraints_file() -> None:
    requirements = _runtime_requirements()
    pins = _pins()
    assert {canonicalize_name(r.name) for r in requirements} == set(pins)
    for requirement in requirements:
        lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{requirement} declares no single lower bound"
        pinned = pins[canonicalize_name(requirement.name)]
        assert pinned.release[: len(lower[0].release)] == lower[0].release, (
            f"constraints/lowest.txt pins {requirement.name}=={pinned}, "
            f"but pyproject.toml declares {requirement}"
        )
        assert requirement.specifier.contains(pinned)
