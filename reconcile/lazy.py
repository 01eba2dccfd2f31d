"""Modules imported on first use, so that quick commands start quickly.

``reconcile --help``, ``--version``, ``operations`` and ``runs`` need none of polars, pandera,
structlog or the HTTP stack, which take most of a cold start (bench/startup.py). A module that
needs one writes::

    if TYPE_CHECKING:
        import polars as pl
    else:
        pl = lazy("polars")

mypy sees the real module; at run time ``pl`` imports polars the first time an attribute of it
is read, and then is that module's namespace.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING


class _LazyModule(types.ModuleType):
    def __getattr__(self, attribute: str) -> object:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attribute)


def lazy(name: str) -> types.ModuleType:
    """A stand-in for the module ``name`` that imports it on first attribute access (bound in
    the ``else`` of ``if TYPE_CHECKING``, so mypy types the name as the real module)."""
    return _LazyModule(name)


# The two libraries most modules use, shared: ``from reconcile.lazy import pl, pa``.
if TYPE_CHECKING:
    import pandera.polars as pa
    import polars as pl
else:
    pl = lazy("polars")
    pa = lazy("pandera.polars")

__all__ = ["lazy", "pa", "pl"]
