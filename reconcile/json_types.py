"""JSON as the wire carries it: one recursive type for vendor answers and the bodies sent, and
the narrowing a reader needs where it expects an object or a list (nothing here imports the
package, so any module may use it)."""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, JSON]


def as_object(value: JSON) -> JSONObject:
    """``value`` when it is an object, else an empty one (a missing or odd member reads as none)."""
    return value if isinstance(value, dict) else {}


def as_list(value: JSON) -> list[JSON]:
    """``value`` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []
