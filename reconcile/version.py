"""The tool's version, written once.

pyproject.toml reads it from here (hatch), so the tool needs no ``importlib.metadata`` look-up at
start-up (~50 ms, bench/startup.py). Modules take it from here, never from the package face
(``reconcile/__init__.py`` loads the whole API on first use).
"""

__version__ = "0.1.0"
