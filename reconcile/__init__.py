"""reconcile: validate a file of order corrections against an API's rules and apply it."""

#: The one place the version is written: pyproject.toml reads it from here (hatch), so the tool
#: needs no importlib.metadata look-up at start-up (~50 ms, measured by bench/startup.py).
__version__ = "0.1.0"
__all__ = ["__version__"]
