"""Files written whole or not at all: a temporary file beside the target, synced, then renamed
onto it; on any failure (a full disk, a signal, a bug) the temporary file is removed and the
target is left as it was. Every file a run or the console writes goes through here or through
the CSV writers of :mod:`reconcile.results` and :mod:`reconcile.buckets`, which do the same."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def replacing(path: Path, *, suffix: str = "") -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for the block to write; renamed onto ``path`` when
    the block ends well, removed whatever else happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{suffix}.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def opened(path: Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """``path`` opened for writing through :func:`replacing` (synced before the rename)."""
    with replacing(path) as tmp, tmp.open(mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes(path: Path, data: bytes) -> None:
    with opened(path) as handle:
        handle.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
