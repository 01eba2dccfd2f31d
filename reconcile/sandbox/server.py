"""Serving the sandbox: in the foreground (``reconcile sandbox``) or in a background thread on a
free loopback port (``reconcile run --sandbox`` and the tests)."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import uvicorn

from reconcile.sandbox.app import DroppedConnection, create_app
from reconcile.sandbox.state import SandboxState

LOOPBACK = "127.0.0.1"


class _QuietDrops(logging.Filter):
    """A dropped connection is an injected fault, not a server error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def _config(state: SandboxState, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(state),
        host=LOOPBACK,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
    )


def serve_forever(state: SandboxState, port: int) -> None:
    uvicorn.Server(_config(state, port)).run()


class SandboxServer:
    """``with SandboxServer(state) as sandbox: sandbox.url`` serves until the block ends."""

    def __init__(self, state: SandboxState, port: int = 0) -> None:
        self.state = state
        self._server = uvicorn.Server(_config(state, port))
        # Signal handlers are left alone: uvicorn installs none outside the main thread.
        self._thread = threading.Thread(target=self._server.run, name="sandbox", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
