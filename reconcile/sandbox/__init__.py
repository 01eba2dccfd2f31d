"""A local emulator of the correction endpoints, for rehearsals and the project's own tests."""

from reconcile.sandbox.app import create_app
from reconcile.sandbox.server import SandboxServer, serve_forever
from reconcile.sandbox.state import Faults, SandboxState, load_seed

__all__ = ["Faults", "SandboxServer", "SandboxState", "create_app", "load_seed", "serve_forever"]
