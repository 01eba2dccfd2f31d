"""Serving the sandbox: in the foreground (``reconcile sandbox``) or in a background thread on a
free loopback port (``reconcile run --sandbox`` and the tests)."""

from __future__ import annotations

import logging

import uvicorn

from reconcile.sandbox.app import DroppedConnection, create_app
from reconcile.sandbox.state import SandboxState
from reconcile.serving import LOOPBACK, ThreadServer, loopback_config

__all__ = ["LOOPBACK", "SandboxServer", "serve_forever"]


class _QuietDrops(logging.Filter):
    """A dropped connection is an injected fault, not a server error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def serve_forever(state: SandboxState, port: int) -> None:
    uvicorn.Server(loopback_config(create_app(state), port)).run()


class SandboxServer(ThreadServer):
    """``with SandboxServer(state) as sandbox: sandbox.url`` serves until the block ends."""

    def __init__(self, state: SandboxState, port: int = 0) -> None:
        super().__init__(create_app(state), port)
        self.state = state

    def __enter__(self) -> SandboxServer:
        self.start()
        return self
