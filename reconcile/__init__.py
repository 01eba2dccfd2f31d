"""reconcile: validate a file of order corrections against an API's rules and apply it."""

from importlib.metadata import version as _version

__version__ = _version("reconcile")
__all__ = ["__version__"]
