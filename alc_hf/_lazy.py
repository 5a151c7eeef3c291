"""Package faces that import their parts on first use: ``import alc_hf.core.metrics`` must not load torch just because
``alc_hf`` also offers losses, and ``from alc_hf import ALCLoss`` still works."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` serving each name from its module (``{module: names}``), and the ``__all__`` list.

    A served name must not be a submodule's name too: importing the submodule would bind that name to it."""
    where = {name: module for module, names in modules.items() for name in names}
    clashes = sorted(name for name in where if f"{package}.{name}" in modules)
    if clashes:
        raise ValueError(f"{package} cannot serve {clashes}: they name submodules")

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__, sorted(where)
