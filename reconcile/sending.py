"""The sending phase of a run: one pooled client, dispatch, signals and cancel.

Ctrl-C / SIGTERM (or a ``cancel`` event set from another thread) stops new requests; in-flight
ones get ``interrupt_grace_seconds``; a second signal stops waiting. Every outcome is flushed to
the ledger before this returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping

import anyio
import anyio.abc
import structlog

from reconcile.client import make_client
from reconcile.credentials import Credentials
from reconcile.dispatch import Dispatcher, OnAnswer, PlannedRequest, SendEvent
from reconcile.job import Job
from reconcile.operations import Operation
from reconcile.outcome import RequestOutcome, Status
from reconcile.progress import ProgressReporter
from reconcile.recorder import LedgerRecorder

log = structlog.get_logger("reconcile")


#: uvloop: a cheaper event loop, for CPU per request (bench/README.md).
EVENT_LOOP = {"use_uvloop": True}


async def send_requests(
    operation: Operation,
    job: Job,
    requests: list[PlannedRequest],
    credentials: Mapping[str, Credentials],
    *,
    recorder: LedgerRecorder | None = None,
    force: bool,
    quiet: bool,
    handle_signals: bool,
    on_progress: Callable[[str, Status], None] | None = None,
    cancel: threading.Event | None = None,
    on_answer: OnAnswer | None = None,
) -> tuple[list[RequestOutcome], int | None, list[SendEvent]]:
    """Send ``requests`` (dispatch.Dispatcher) over one pooled client: per request its outcome,
    the signal that stopped the run (if any), and the HTTP exchanges for the report;
    ``on_answer`` sees each answer (:class:`reconcile.echoes.Echoes`)."""
    stop = anyio.Event()
    received: list[int] = []
    max_connections = (
        sum(job.communities[c].concurrency for c in {r.community for r in requests}) or 1
    )
    totals: dict[str, int] = {}
    for request in requests:
        totals[request.community] = totals.get(request.community, 0) + 1
    async with make_client(
        timeout_seconds=job.timeout_seconds, max_connections=max_connections
    ) as client:
        with ProgressReporter(totals, quiet=quiet) as reporter:

            def progress(community: str, status: Status) -> None:
                reporter(community, status)
                if on_progress is not None:
                    on_progress(community, status)

            dispatcher = Dispatcher(
                operation=operation,
                job=job,
                client=client,
                stop=stop,
                recorder=recorder,
                progress=progress,
                force=force,
                on_answer=on_answer,
            )
            async with anyio.create_task_group() as group:
                work = anyio.CancelScope()
                interrupts = _Interrupts(stop, work, group, job.interrupt_grace_seconds, received)
                if handle_signals:
                    group.start_soon(interrupts.watch_signals)
                if cancel is not None:
                    group.start_soon(interrupts.watch_cancel, cancel)
                if recorder is not None:
                    group.start_soon(recorder.write_forever)
                with work:
                    await dispatcher.run(requests, credentials)
                outcomes = [dispatcher.outcomes[r.request_id] for r in requests]
                if recorder is not None:
                    with anyio.CancelScope(shield=True):
                        await recorder.flush()  # the last outcomes, before anything else
                group.cancel_scope.cancel()
    return outcomes, (received[0] if received else None), dispatcher.events


CANCEL_POLL_SECONDS = 0.05


class _Interrupts:
    """Ctrl-C, SIGTERM or a thread's cancel: the first stops new requests and gives in-flight
    ones ``grace`` seconds; a second stops waiting for them."""

    def __init__(
        self,
        stop: anyio.Event,
        work: anyio.CancelScope,
        group: anyio.abc.TaskGroup,
        grace: float,
        received: list[int],
    ) -> None:
        self.stop, self.work, self.group, self.grace = stop, work, group, grace
        self.received = received

    def interrupt(self, signum: int) -> None:
        if self.received:
            self.work.cancel()  # a second signal: stop waiting for in-flight
            return
        self.received.append(signum)
        log.warning("run.interrupted", signal=signal.Signals(signum).name)
        self.stop.set()
        self.group.start_soon(_cancel_after, self.work, self.grace)

    async def watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.interrupt(signum)

    async def watch_cancel(self, event: threading.Event) -> None:
        while not event.is_set():  # a thread's request to stop, as Ctrl-C
            await anyio.sleep(CANCEL_POLL_SECONDS)
        self.interrupt(signal.SIGINT)


async def _cancel_after(scope: anyio.CancelScope, seconds: float) -> None:
    await anyio.sleep(seconds)
    scope.cancel()
