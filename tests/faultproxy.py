"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for tests: the network faults toxiproxy makes.

It sits between reconcile and the sandbox. Every request it reads is counted; a request whose
raw bytes (path, query or body) contain a target ID with a fault assigned gets that fault the
first ``times`` times it is seen, and then passes through: deterministic per target ID, whatever
the order the requests arrive in. Each forwarded request goes to the sandbox on a fresh
connection and its whole answer is read before the fault decides what the client gets.

Faults:

- ``reset_before``: the request is read, never forwarded, and the connection is reset (RST);
- ``reset_after``: forwarded (the sandbox applies it), then the connection is reset;
- ``stall``: forwarded, then nothing comes back until the client gives up;
- ``truncate``: forwarded, then half of the answer and the connection is closed;
- ``garbage``: forwarded, then bytes that are not HTTP and the connection is closed;
- ``drip``: forwarded, then the answer one byte every ``drip_seconds``.

Loopback only; every loop is bounded (a stall waits at most ``hold_seconds``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import struct
import threading
from types import TracebackType

FAULTS = ("reset_before", "reset_after", "stall", "truncate", "garbage", "drip")
GARBAGE = b"SSH-2.0-OpenSSH_9.2p1\r\n\x00\xff\xfe not an HTTP answer\r\n\r\n"


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 message with a Content-Length body (all the sandbox and the tool send)."""
    head = await reader.readuntil(b"\r\n\r\n")
    return head + await reader.readexactly(_content_length(head))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """``with FaultProxy(upstream_port, {"ORD1": "drip"}) as proxy: proxy.url``; IDs in ``watch``
    are counted in ``seen`` without a fault."""

    def __init__(
        self,
        upstream_port: int,
        faults: dict[str, str],
        *,
        watch: tuple[str, ...] = (),
        times: int = 1,
        drip_seconds: float = 0.1,
        hold_seconds: float = 20.0,
    ) -> None:
        unknown = set(faults.values()) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        self.upstream_port = upstream_port
        self.faults = dict(faults)
        self.watched = (*faults, *watch)
        self.times = times
        self.drip_seconds = drip_seconds
        self.hold_seconds = hold_seconds
        self.seen: collections.Counter[str] = collections.Counter()
        """Requests read per target ID (or "" for requests naming none)."""
        self.fired: list[tuple[str, str]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy")
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _target(self, raw: bytes) -> str:
        found = [t for t in self.watched if t.encode() in raw]
        return max(found, key=len) if found else ""

    def _fault_for(self, target: str) -> str | None:
        self.seen[target] += 1
        if target in self.faults and self.seen[target] <= self.times:
            self.fired.append((target, self.faults[target]))
            return self.faults[target]
        return None

    async def _forward(self, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            writer.write(request)
            await writer.drain()
            return await _read_message(reader)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another on this connection
                try:
                    request = await _read_message(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                fault = self._fault_for(self._target(request))
                if fault == "reset_before":
                    return _reset(writer)
                answer = await self._forward(request)
                if fault is None:
                    writer.write(answer)
                    await writer.drain()
                    continue
                await self._misbehave(fault, answer, reader, writer)
                return
        except (ConnectionError, OSError):
            return
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _misbehave(
        self,
        fault: str,
        answer: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if fault == "reset_after":
            _reset(writer)
        elif fault == "stall":
            # Until the client hangs up (read returns b""), at most hold_seconds.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1), self.hold_seconds)
        elif fault == "truncate":
            writer.write(answer[: len(answer) // 2])
            await writer.drain()
        elif fault == "garbage":
            writer.write(GARBAGE)
            await writer.drain()
        elif fault == "drip":
            for index in range(len(answer)):  # bounded by the answer's length
                writer.write(answer[index : index + 1])
                await writer.drain()
                await asyncio.sleep(self.drip_seconds)

    def start(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BacklogGate:
    """A port that takes no connection for ``closed_seconds``, then passes them to upstream.

    A connect timeout, as a real one happens: the listening socket's accept queue is full (a
    backlog of 0, filled by one idle connection), so the kernel drops every SYN and a client's
    connect hangs until its timeout: not one byte of its request leaves it. After
    ``closed_seconds`` the gate accepts and copies each connection to ``upstream_port``.
    """

    def __init__(self, upstream_port: int, closed_seconds: float) -> None:
        self.upstream_port = upstream_port
        self.closed_seconds = closed_seconds
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _accept(self) -> None:
        if self._stop.wait(self.closed_seconds):
            return
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if client.getpeername() == self._filler.getsockname():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pipe, args=(source, sink), daemon=True)
                thread.start()
                self._threads.append(thread)

    def __enter__(self) -> BacklogGate:
        thread = threading.Thread(target=self._accept, name="backlog-gate", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._listener.close()
        self._filler.close()
        for thread in self._threads:
            thread.join(timeout=5)
