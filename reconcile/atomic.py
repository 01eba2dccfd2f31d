"""Files written whole or not at all: a temporary file beside the target, synced, then renamed
onto it; on any failure (a full disk, a signal, a bug) the temporary file is removed and the
target is left as it was. Every file a run or the console writes goes through here or through
the CSV writers of :mod:`reconcile.results` and :mod:`reconcile.buckets`, which do the same."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def replacing(path: Path, *, mode: int = 0o666) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for the block to write (created with ``mode``
    less the umask, as ``open`` would); renamed onto ``path`` when the block ends well, removed
    whatever else happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def opened(
    path: Path, mode: str = "wb", *, permissions: int = 0o666, **kwargs: Any
) -> Iterator[IO[Any]]:
    """``path`` opened for writing through :func:`replacing` (synced before the rename)."""
    with replacing(path, mode=permissions) as tmp, tmp.open(mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes(path: Path, data: bytes, *, permissions: int = 0o666) -> None:
    with opened(path, permissions=permissions) as handle:
        handle.write(data)


def write_text(path: Path, text: str, *, permissions: int = 0o666) -> None:
    write_bytes(path, text.encode("utf-8"), permissions=permissions)
