"""Every public function, class and method has each parameter documented, on a rendered page.

Public means: listed in ``circuitlab.__all__`` or in the ``__all__`` of a module that
docs/reference/api.md documents with a ``:::`` entry. Docstrings are read by griffe with the
Google parser, the same reading mkdocstrings renders, so a parameter counts as documented only
when the API page shows it: in ``Args:`` (or ``Other Parameters:``), and for a class in its own
``Args:``/``Attributes:`` or its ``__init__``'s ``Args:``. Parameters whose names start with an
underscore are private and skipped. Names re-exported from another library are listed in
``EXTERNAL`` (documented by that library), so nothing is left out silently.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from pathlib import Path

import griffe
import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocstrings import Inventory

REPO = Path(__file__).parents[1]
API_PAGE = REPO / "docs" / "reference" / "api.md"
EXTERNAL = {"circuitlab.hf_compat.no_init_weights": "transformers.initialization.no_init_weights"}
PARAMETER_SECTIONS = {
    griffe.DocstringSectionKind.parameters,
    griffe.DocstringSectionKind.other_parameters,
}
CLASS_SECTIONS = PARAMETER_SECTIONS | {griffe.DocstringSectionKind.attributes}


def _documented_modules() -> list[str]:
    """The modules that api.md documents: the importable part of each ``:::`` identifier."""
    modules = {"circuitlab"}
    for identifier in re.findall(r"^::: ([\w.]+)", API_PAGE.read_text(encoding="utf-8"), re.M):
        parts = identifier.split(".")
        for end in range(len(parts), 0, -1):
            try:
                importlib.import_module(".".join(parts[:end]))
            except ImportError:
                continue
            modules.add(".".join(parts[:end]))
            break
    return sorted(modules)


MODULES = _documented_modules()


@functools.cache
def _package() -> griffe.Module:
    logging.getLogger("griffe").setLevel(logging.ERROR)  # the parser's style warnings
    return griffe.load(
        "circuitlab", search_paths=[str(REPO)], docstring_parser="google", resolve_aliases=False
    )


def _public_objects(module: str) -> dict[str, griffe.Object | str]:
    """``{public path: griffe object}`` of a module's ``__all__``; external names map to str."""
    objects: dict[str, griffe.Object | str] = {}
    for name in importlib.import_module(module).__all__:
        path = f"{module}.{name}"
        found = _package()[path.removeprefix("circuitlab.")]
        try:
            objects[path] = found.final_target if found.is_alias else found
        except griffe.AliasResolutionError:
            objects[path] = found.target_path
    return objects


def _documented(obj: griffe.Object | None, sections: set) -> set[str]:
    if obj is None or obj.docstring is None:
        return set()
    return {
        item.name.lstrip("*")
        for section in obj.docstring.parse("google")
        if section.kind in sections
        for item in section.value
    }


def _parameters(function: griffe.Function) -> list[str]:
    return [
        parameter.name
        for parameter in function.parameters
        if parameter.name not in ("self", "cls") and not parameter.name.startswith("_")
    ]


def _undocumented(obj: griffe.Object) -> dict[str, list[str]]:
    """``{path: undocumented parameters}`` of a function, or of a class and its methods."""
    missing: dict[str, list[str]] = {}
    if obj.is_function:
        lacking = [p for p in _parameters(obj) if p not in _documented(obj, PARAMETER_SECTIONS)]
        if lacking:
            missing[obj.path] = lacking
    elif obj.is_class:
        init = obj.all_members.get("__init__")
        init = init.final_target if init is not None and init.is_alias else init
        known = _documented(obj, CLASS_SECTIONS) | _documented(init, PARAMETER_SECTIONS)
        lacking = [
            p.name
            for p in obj.parameters
            if p.name not in ("self", "cls") and not p.name.startswith("_") and p.name not in known
        ]
        if lacking:
            missing[obj.path] = lacking
        for name, member in obj.members.items():
            if name.startswith("_") or member.is_alias or not member.is_function:
                continue
            if "property" in member.labels:
                continue
            missing.update(_undocumented(member))
    return missing


def _methods(obj: griffe.Object) -> list[str]:
    return [
        name
        for name, member in obj.members.items()
        if not name.startswith("_")
        and not member.is_alias
        and member.is_function
        and "property" not in member.labels
    ]


def test_api_page_documents_modules() -> None:
    assert len(MODULES) > 50, MODULES


def test_external_names_are_still_external() -> None:
    for module in {path.rsplit(".", 1)[0] for path in EXTERNAL}:
        external = {p: o for p, o in _public_objects(module).items() if isinstance(o, str)}
        assert external == {p: EXTERNAL[p] for p in external}


@pytest.mark.parametrize("module", MODULES)
def test_parameters_are_documented(module: str) -> None:
    missing: dict[str, list[str]] = {}
    for path, obj in _public_objects(module).items():
        if isinstance(obj, str):
            assert EXTERNAL.get(path) == obj, f"{path} re-exports {obj}: add it to EXTERNAL"
            continue
        missing.update(_undocumented(obj))
    report = "\n".join(f"  {path}: {', '.join(names)}" for path, names in sorted(missing.items()))
    assert not missing, f"parameters without a description in the docstring's Args:\n{report}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every Python identifier the built docs render (mkdocstrings' objects.inv).

    The build leaves out the tutorial hook (it may execute the tutorials); pages that link to
    tutorial pages then only warn, so the build is not strict here. ``mkdocs build --strict``
    in CI checks the whole site.
    """
    site = tmp_path_factory.mktemp("site")
    config = load_config(
        str(REPO / "mkdocs.yml"),
        site_dir=str(site),
        strict=False,
        hooks=[str(REPO / "docs" / "hooks" / "cli_reference.py")],
    )
    logging.getLogger("mkdocs").setLevel(logging.ERROR)
    build(config)
    with (site / "objects.inv").open("rb") as inventory:
        return {item.name for item in Inventory.parse_sphinx(inventory).values()}


@pytest.mark.parametrize("module", MODULES)
def test_public_names_are_rendered(module: str, rendered: set[str]) -> None:
    absent = []
    for path, obj in _public_objects(module).items():
        if isinstance(obj, str):
            continue
        if path not in rendered and obj.path not in rendered:
            absent.append(path)
            continue
        if obj.is_class:
            shown = {path, obj.path} & rendered
            absent += [
                f"{obj.path}.{name}"
                for name in _methods(obj)
                if not any(f"{base}.{name}" in rendered for base in shown)
            ]
    assert not absent, "not rendered on any docs page (add a ::: entry to api.md):\n  " + (
        "\n  ".join(absent)
    )


def test_counts_public_callables() -> None:
    """The check covers the whole public surface (guards against a walk that finds nothing)."""
    seen: dict[str, griffe.Object] = {}
    for module in MODULES:
        for obj in _public_objects(module).values():
            if not isinstance(obj, str) and (obj.is_function or obj.is_class):
                seen[obj.path] = obj
    methods = sum(len(_methods(obj)) for obj in seen.values() if obj.is_class)
    assert len(seen) + methods > 500, (len(seen), methods)
