"""Group commit from dispatch into the ledger: in-flight records and outcomes, in batches."""

from __future__ import annotations

import anyio
import anyio.to_thread

from reconcile.dispatch import PlannedRequest
from reconcile.ledger import FinishedRecord, Ledger, RequestRecord
from reconcile.outcome import RequestOutcome, Status

#: Group commit: how long the ledger writer gathers in-flight records before committing (0: one
#: pass of the event loop, so every send that became ready meanwhile joins the commit), and how
#: long an outcome may wait for a commit (a crash in that window re-sends, never loses).
GATHER_SECONDS = 0.0


OUTCOME_DELAY_SECONDS = 0.1
#: How often the loop looks at the write-ahead log's size.
CHECKPOINT_POLL_SECONDS = 0.25


class LedgerRecorder:
    """Dispatch -> ledger, with group commit: the in-flight records of requests about to go out
    and the outcomes that came back are written together in one transaction, in a worker thread;
    a request leaves only after the transaction holding its in-flight record has committed."""

    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self.ledger, self.run_id = ledger, run_id
        self._requests: dict[int, PlannedRequest] = {}
        self._in_flight: list[RequestRecord] = []
        self._finished: list[FinishedRecord] = []
        self._batch_committed = anyio.Event()
        self._wake = anyio.Event()
        self._checkpointing = False

    async def sending(self, request: PlannedRequest) -> None:
        self._requests[request.request_id] = request
        self._in_flight.append(self._record(request))
        committed = self._batch_committed  # everyone in this batch waits on the same commit
        self._wake.set()
        await committed.wait()

    def finished(self, outcome: RequestOutcome) -> None:
        request = self._requests.get(outcome.request_id)
        if request is None:
            return  # never sent (skipped, or failed before sending): nothing to remember
        self._finished.append(
            FinishedRecord(
                self._record(request),
                state=Status.UNKNOWN.value if outcome.maybe_applied else outcome.status.value,
                http_status=outcome.http_status,
                error=outcome.error,
                attempts=outcome.attempts,
            )
        )

    def _record(self, request: PlannedRequest) -> RequestRecord:
        return RequestRecord(
            self.run_id,
            request.fingerprint,
            request.community,
            request.method,
            request.path,
            request.target,
        )

    async def write_forever(self) -> None:
        """The group-commit loop; cancel it after ``flush``. A request about to be sent wakes
        it; outcomes ride along with the next commit, or wait at most ``OUTCOME_DELAY``. When
        the write-ahead log passes its bound, a worker thread checkpoints it meanwhile."""
        async with anyio.create_task_group() as group:
            checking = anyio.current_time()
            while True:
                with anyio.move_on_after(OUTCOME_DELAY_SECONDS):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await anyio.sleep(GATHER_SECONDS)  # the other sends of this moment join
                await self.flush()
                if anyio.current_time() - checking > CHECKPOINT_POLL_SECONDS:
                    checking = anyio.current_time()
                    if not self._checkpointing and self.ledger.db.checkpoint_due():
                        self._checkpointing = True
                        group.start_soon(self._checkpoint)

    async def _checkpoint(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.ledger.db.checkpoint)
        finally:
            self._checkpointing = False

    async def flush(self) -> None:
        in_flight, finished = self._in_flight, self._finished
        self._in_flight, self._finished = [], []
        committed, self._batch_committed = self._batch_committed, anyio.Event()
        if in_flight or finished:
            self.ledger.commit(in_flight, finished)  # WAL, synchronous=NORMAL: no fsync
        committed.set()
