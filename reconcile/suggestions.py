""" "Did you mean ...?" for a name someone typed: a sheet, a community."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


def folded(name: str) -> str:
    """A name without case, outer spaces or repeated inner spaces: ``'Acme '`` -> ``acme``."""
    return " ".join(name.split()).casefold()


def closest(typed: str, choices: Iterable[str], fold: Callable[[str], str] = folded) -> str | None:
    """The choice ``typed`` most probably meant: the one equal to it once folded, else the
    closest by difflib (ratio 0.6 or more, compared folded); None when none is close."""
    by_fold = {fold(c): c for c in sorted(choices)}
    key = fold(typed)
    if key in by_fold:
        return by_fold[key]
    near = difflib.get_close_matches(key, list(by_fold), n=1, cutoff=0.6)
    return by_fold[near[0]] if near else None


def did_you_mean(typed: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'Data'?`` for the closest choice, or ``""``."""
    found = closest(typed, choices)
    return f" Did you mean {found!r}?" if found is not None and found != typed else ""
