"""The shapes the sandbox holds: its seed, the record each emulated vendor keeps, the request log.

The seed is JSON (``seed.json`` or a test's own): table name -> records. A ``RecordTable`` names
one table together with the type of its records, so an endpoint reads typed records where the store
itself only knows JSON. Records stay plain dicts (TypedDicts), as the vendors answer them: the
state's dump, the request log and the answers are those dicts serialised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Generic, NotRequired, TypeAlias, TypedDict, TypeVar, cast

from reconcile.json_types import JSON, JSONObject

Seed: TypeAlias = dict[str, list[JSONObject]]
"""Table name -> its records, as the seed file holds them."""

R = TypeVar("R", bound=Mapping[str, object])


@dataclasses.dataclass(frozen=True, slots=True)
class RecordTable(Generic[R]):
    """One table of the seed, by name, and what its records are."""

    name: str

    def of(self, seed: Seed) -> list[R]:
        """The table's records in ``seed`` (absent = a new, empty table), typed.

        The seed is JSON read from a file: nothing checks each record against ``R``; the
        sandbox's own seed and the records its endpoints write are of that shape.
        """
        return cast("list[R]", seed.setdefault(self.name, []))


# --- communities and their credentials ------------------------------------------------------
class ApiKey(TypedDict):
    """A Returning.AI key (``Authorization: Bearer``)."""

    key: str
    permissions: NotRequired[list[str]]


class App(TypedDict):
    """A Voucherify application (``X-App-Id`` + ``X-App-Token``)."""

    app_id: str
    app_token: str
    permissions: NotRequired[list[str]]


class ApiUser(TypedDict):
    """A Capillary API user (HTTP Basic)."""

    username: str
    password: str
    permissions: NotRequired[list[str]]


class CapillaryFields(TypedDict, total=False):
    """The custom and extended fields a Capillary organisation has configured."""

    extendedFields: list[str]
    customFields: list[str]


class Community(TypedDict):
    """A tenant: a Returning.AI community, a Voucherify project, a Capillary organisation."""

    id: str
    name: str
    keys: NotRequired[list[ApiKey]]
    apps: NotRequired[list[App]]
    users: NotRequired[list[ApiUser]]
    capillary: NotRequired[CapillaryFields]


Grant: TypeAlias = tuple[Community, frozenset[str]]
"""What a credential names: its community, and the permissions it carries."""


# --- Returning.AI ---------------------------------------------------------------------------
class ProductSnapshot(TypedDict, total=False):
    """The product as a purchase history recorded it."""

    _id: str
    name: str
    redemptionInstructions: str


class PurchaseHistoryRecord(TypedDict):
    _id: str
    communityID: str
    purchaseID: NotRequired[str]
    userID: NotRequired[str]
    voucherID: NotRequired[str]
    voucherCode: NotRequired[str]
    voucherExpiryDate: NotRequired[str]
    product: NotRequired[ProductSnapshot | None]
    createdAt: NotRequired[str]
    updatedAt: NotRequired[str]


class VoucherRecord(TypedDict):
    _id: str
    communityID: str
    productID: str
    code: str
    status: str
    expiryDate: str
    updatedAt: NotRequired[str]


class RedemptionStatusRecord(TypedDict):
    _id: str
    communityID: str
    name: str
    category: str
    color: str


class RedemptionTransactionRecord(TypedDict):
    transactionId: str
    communityID: str
    statusId: str
    coins: NotRequired[int]
    refunded: NotRequired[bool]
    statusHistory: NotRequired[list[str | None]]
    """The statuses it had before, oldest first."""
    refunds: NotRequired[int]
    """How many refunds were made (tests prove none happened twice)."""
    coinsRefunded: NotRequired[int]


# --- Voucherify ------------------------------------------------------------------------------
VoucherifyOrderRecord: TypeAlias = JSONObject
"""An order as last written (``id``, ``project`` and what the client sent): Voucherify replaces
an order's members with a body's, so an order holds whatever the spec lets a body carry."""


class VoucherifyRedemptionRecord(TypedDict):
    id: str
    project: str
    result: NotRequired[str]
    amount: NotRequired[int]
    date: NotRequired[str]
    metadata: NotRequired[JSONObject]
    rolled_back: NotRequired[bool]
    rollbacks: NotRequired[int]
    """How many rollbacks succeeded (tests prove none was sent twice)."""
    rollback_failure: NotRequired[list[str]]
    """Seeded: [failure_code, failure_message] every rollback of it answers."""


class RollbackAnswer(TypedDict):
    """``POST /v1/redemptions/{id}/rollback``'s ``redemption_rollback`` object."""

    id: str
    object: str
    date: str
    redemption: str
    reason: str | None
    tracking_id: str | None
    metadata: JSON
    customer: JSON
    order: JSON
    amount: int
    result: str
    status: str


class VoucherifyRollbackRecord(RollbackAnswer):
    """A rollback kept for ``GET /v1/redemptions/{id}``."""

    project: str


# --- Capillary -------------------------------------------------------------------------------
class LineItem(TypedDict):
    id: int
    itemCode: str
    outlierStatus: NotRequired[JSON]
    extendedFields: NotRequired[JSONObject]


class CapillaryTransactionRecord(TypedDict):
    id: int
    number: str
    org: str
    """The organisation's (community's) id."""
    type: str
    customer: NotRequired[JSONObject]
    """The customer's identifiers (``mobile``, ``email``, ...)."""
    deliveryStatus: NotRequired[str]
    lineItems: NotRequired[list[LineItem]]
    extendedFields: NotRequired[JSONObject]
    customFields: NotRequired[JSONObject]
    amount: NotRequired[int | float]
    modified: NotRequired[str]
    updates: NotRequired[int]
    """How many updates were committed."""


COMMUNITIES: RecordTable[Community] = RecordTable("communities")
PURCHASE_HISTORIES: RecordTable[PurchaseHistoryRecord] = RecordTable("purchaseHistories")
VOUCHERS: RecordTable[VoucherRecord] = RecordTable("vouchers")
REDEMPTION_STATUSES: RecordTable[RedemptionStatusRecord] = RecordTable("redemptionStatuses")
REDEMPTION_TRANSACTIONS: RecordTable[RedemptionTransactionRecord] = RecordTable(
    "redemptionTransactions"
)
VOUCHERIFY_ORDERS: RecordTable[VoucherifyOrderRecord] = RecordTable("voucherifyOrders")
VOUCHERIFY_REDEMPTIONS: RecordTable[VoucherifyRedemptionRecord] = RecordTable(
    "voucherifyRedemptions"
)
VOUCHERIFY_ROLLBACKS: RecordTable[VoucherifyRollbackRecord] = RecordTable("voucherifyRollbacks")
CAPILLARY_TRANSACTIONS: RecordTable[CapillaryTransactionRecord] = RecordTable(
    "capillaryTransactions"
)


class RequestEntry(TypedDict):
    """One line of the request log (``/_sandbox/requests``, ``--request-log``)."""

    time: float
    method: str
    path: str
    """Percent-decoded."""
    raw_path: str
    query: str
    endpoint: str
    headers: dict[str, str]
    """A few headers worth asserting on; never the credentials."""
    community: NotRequired[str]
    body: NotRequired[str]
    faults: NotRequired[list[str]]
    """The kinds of the fault rules that fired."""
    committed: NotRequired[bool]
    status: NotRequired[int]
