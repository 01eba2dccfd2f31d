"""The sandbox's world: communities and their keys, records per endpoint, faults, request log.

All of it lives in memory behind one lock; ``snapshot`` dumps it for tests to assert on.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NotRequired, TypedDict, TypeVar, cast, overload

from reconcile.json_types import JSON, JSONObject
from reconcile.sandbox.records import COMMUNITIES, Grant, RecordTable, RequestEntry, Seed

R = TypeVar("R", bound=Mapping[str, object])


@dataclasses.dataclass(slots=True)
class FaultRule:
    """One kind of trouble: applies to a share of matching requests, or to the first ``times``.

    kind: ``error_before`` (answer ``status`` without writing), ``error_after`` (write, then
    answer ``status``: the ambiguous case), ``error_mid_write`` (fail between the writes of one
    transaction: nothing may be committed), ``drop`` (cut the connection mid-answer, nothing
    written) or ``latency`` (wait ``seconds`` first).
    """

    kind: str
    status: int = 502
    share: float = 1.0
    match: str = ""
    after: int = 0
    """Let this many matching requests through before the rule starts."""
    times: int | None = None
    seconds: float = 0.0
    retry_after: int | None = None
    """A ``Retry-After`` header (seconds) on the error answer (a 429 with a quota's wait)."""

    def __post_init__(self) -> None:
        if self.kind not in {"error_before", "error_after", "error_mid_write", "drop", "latency"}:
            raise ValueError(f"unknown fault kind {self.kind!r}")


class FaultRuleSpec(TypedDict):
    """A fault rule as a faults file (``reconcile sandbox --faults``) writes it."""

    kind: str
    status: NotRequired[int]
    share: NotRequired[float]
    match: NotRequired[str]
    after: NotRequired[int]
    times: NotRequired[int | None]
    seconds: NotRequired[float]
    retry_after: NotRequired[int | None]


class FaultsSpec(TypedDict, total=False):
    """A faults file: its rules, the random seed, the rate limit, the read lag."""

    rules: list[FaultRuleSpec]
    seed: int
    rate_per_second: float | None
    burst: float
    read_lag: float


@dataclasses.dataclass(slots=True)
class Faults:
    rules: list[FaultRule] = dataclasses.field(default_factory=list)
    seed: int = 0
    #: Requests per second per key, and the bucket size; None = no limit.
    rate_per_second: float | None = None
    burst: float = 1.0
    #: Seconds before a write's effect shows in the reads (Voucherify's asynchronous phase).
    read_lag: float = 0.0

    @classmethod
    def from_dict(cls, raw: FaultsSpec) -> Faults:
        rules = [FaultRule(**r) for r in raw.get("rules", [])]
        return cls(
            rules=rules,
            seed=raw.get("seed", 0),
            rate_per_second=raw.get("rate_per_second"),
            burst=raw.get("burst", 1.0),
            read_lag=raw.get("read_lag", 0.0),
        )


class TokenBucket:
    """Per-key rate limit: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class SandboxState:
    """Seed data plus everything that happened since; thread-safe."""

    def __init__(self, seed: Seed, faults: Faults | None = None) -> None:
        self.lock = threading.RLock()
        self.data = copy.deepcopy(seed)
        self.data.setdefault("communities", [])
        self.faults = faults or Faults()
        self.random = random.Random(self.faults.seed)
        self.requests: list[RequestEntry] = []
        #: Endpoint modules keep their look-up tables here (records are updated in place).
        self.indexes: dict[str, object] = {}
        self.log_path: Path | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._fault_hits: dict[int, int] = {}
        self._fault_seen: dict[int, int] = {}
        #: id(record) -> [(write time, the record before that write, None if it was new)].
        self._history: dict[int, list[tuple[float, Mapping[str, object] | None]]] = {}
        communities = self.table(COMMUNITIES)
        self._apps: dict[tuple[str, str], Grant] = {
            (a["app_id"], a["app_token"]): (c, frozenset(a.get("permissions", [])))
            for c in communities
            for a in c.get("apps", [])
        }
        # Capillary's HTTP Basic users share the look-up, under "basic:<username>".
        self._apps.update(
            {
                (f"basic:{u['username']}", u["password"]): (c, frozenset(u.get("permissions", [])))
                for c in communities
                for u in c.get("users", [])
            }
        )
        self._keys: dict[str, Grant] = {
            k["key"]: (c, frozenset(k.get("permissions", [])))
            for c in communities
            for k in c.get("keys", [])
        }

    # --- auth and limits -------------------------------------------------------------------
    def community_for(self, key: str) -> Grant | None:
        return self._keys.get(key)

    def app_for(self, app_id: str, app_token: str) -> Grant | None:
        return self._apps.get((app_id, app_token))

    def credentials(self) -> dict[str, dict[str, str]]:
        """Community name -> the credentials a client uses (first key, first app), for
        ``--sandbox``; each operation takes the ones it needs."""
        found: dict[str, dict[str, str]] = {}
        for community in self.table(COMMUNITIES):
            mine = found.setdefault(community["name"], {})
            if community.get("keys"):
                mine["api_key"] = community["keys"][0]["key"]
            if community.get("apps"):
                mine["app_id"] = community["apps"][0]["app_id"]
                mine["app_token"] = community["apps"][0]["app_token"]
            if community.get("users"):
                mine["username"] = community["users"][0]["username"]
                mine["password"] = community["users"][0]["password"]
        return found

    def revoke(self, key: str) -> None:
        """Tests: a key stops working, as when an admin rotates it."""
        with self.lock:
            self._keys.pop(key, None)

    def retry_after(self, key: str) -> float:
        """0 when the key may go on, else the seconds it must wait."""
        if self.faults.rate_per_second is None:
            return 0.0
        with self.lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(
                    self.faults.rate_per_second, self.faults.burst
                )
            return bucket.take()

    def pick_faults(self, path: str) -> list[FaultRule]:
        """The fault rules that fire for this request (decided under the lock, reproducibly)."""
        fired = []
        with self.lock:
            for index, rule in enumerate(self.faults.rules):
                if rule.match and rule.match not in path:
                    continue
                seen = self._fault_seen[index] = self._fault_seen.get(index, 0) + 1
                if seen <= rule.after:
                    continue
                if rule.times is not None and self._fault_hits.get(index, 0) >= rule.times:
                    continue
                if rule.share < 1.0 and self.random.random() >= rule.share:
                    continue
                self._fault_hits[index] = self._fault_hits.get(index, 0) + 1
                fired.append(rule)
        return fired

    # --- records ---------------------------------------------------------------------------
    def record(self, entry: RequestEntry) -> None:
        with self.lock:
            self.requests.append(entry)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def snapshot(self) -> Seed:
        with self.lock:
            return copy.deepcopy(self.data)

    @overload
    def table(self, which: str) -> list[JSONObject]: ...
    @overload
    def table(self, which: RecordTable[R]) -> list[R]: ...
    def table(self, which: str | RecordTable[R]) -> list[JSONObject] | list[R]:
        """One of the records tables (an endpoint module names its own; absent = empty): by
        name, its records as JSON; by a ``RecordTable``, as that table's records."""
        if isinstance(which, str):
            return self.data.setdefault(which, [])
        return which.of(self.data)

    @overload
    def find(self, table: str, **where: JSON) -> list[JSONObject]: ...
    @overload
    def find(self, table: RecordTable[R], **where: JSON) -> list[R]: ...
    def find(self, table: str | RecordTable[R], **where: JSON) -> list[JSONObject] | list[R]:
        """The table's records whose fields equal ``where``'s."""
        if isinstance(table, str):
            rows: RecordTable[JSONObject] = RecordTable(table)
            return self.find(rows, **where)
        return [r for r in self.table(table) if all(r.get(k) == v for k, v in where.items())]

    # --- read lag and other writers -------------------------------------------------------
    def before_write(self, record: Mapping[str, object], *, new: bool = False) -> None:
        """A write endpoint is about to change ``record`` in place (or has just created it):
        with a read lag, reads go on seeing the old record until the lag has passed."""
        if self.faults.read_lag > 0:
            before = None if new else copy.deepcopy(record)
            self._history.setdefault(id(record), []).append((time.time(), before))

    def visible(self, record: R) -> R | None:
        """``record`` as a read sees it now: as it was before the first write younger than the
        read lag (None: created too recently to be seen)."""
        cutoff = time.time() - self.faults.read_lag
        for stamp, before in self._history.get(id(record), []):
            if stamp > cutoff:
                # Each copy is filed under the record it was taken from: it is of its type.
                return cast("R | None", before)
        return record

    def other_writer(
        self, table: str, where: JSONObject, **changes: JSON | Callable[[JSON], JSON]
    ) -> int:
        """Tests: another system changes records behind the tool's back (no request is
        logged); ``changes`` replace top-level fields, a callable value gets the old one.
        Returns how many records changed."""
        with self.lock:
            found = self.find(table, **where)
            for record in found:
                for key, value in changes.items():
                    record[key] = value(record.get(key)) if callable(value) else value
            return len(found)


def load_seed(path: Path) -> Seed:
    seed: Seed = json.loads(path.read_text(encoding="utf-8"))
    return seed


#: The sample seed ships inside the package, so an installed ``reconcile`` finds it too.
DEFAULT_SEED = Path(__file__).resolve().parent / "seed.json"
