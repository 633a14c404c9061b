"""Shared by the derivation perturbation tests: load a topic module, list the rows that failed."""

from __future__ import annotations

import importlib
from types import ModuleType


def load(name: str) -> ModuleType:
    """The check module ``minivae.derivations.<name>`` (e.g. ``d05_kl_gaussians``)."""
    return importlib.import_module(f"minivae.derivations.{name}")


def failed_rows(table) -> list[str]:
    """The equation names of the rows that did not pass."""
    return [row.equation for row in table.failures()]
