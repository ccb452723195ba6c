"""Installed versions of the packages circuitlab's results and errors depend on."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence

__all__ = ["KEY_PACKAGES", "installed_versions"]

KEY_PACKAGES = ("circuitlab", "torch", "transformers", "transformer-lens", "peft")
"""Packages whose versions a result file records and a version error names."""


def installed_versions(packages: Sequence[str] = KEY_PACKAGES) -> dict[str, str]:
    """Each package's installed version (``"not installed"`` when missing)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
