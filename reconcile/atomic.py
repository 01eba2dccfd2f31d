"""Files written whole or not at all, the one way the package writes a file in place.

A temporary file in the target's folder takes the writing; when the writer is done it is
synced, renamed onto the target (``os.replace``, atomic within one file system) and the folder
synced, so that the rename too survives a power cut. On any failure (a full disk, a signal, a
bug) the temporary file is removed and the target is left as it was: a reader sees the old file
or the new one, never half of one.

- :func:`write_bytes`, :func:`write_text`: a whole value at once;
- :func:`opened`: a file object for a writer that streams into one (CSV windows, an export);
- :func:`replacing`: a temporary path for a writer that opens the file itself (xlsxwriter,
  polars' sinks); several can be held at once to rename files only when all are written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, overload


@contextlib.contextmanager
def replacing(path: Path, *, permissions: int = 0o666, alone: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for the block to write (created empty with
    ``permissions`` less the umask, as ``open`` would); synced and renamed onto ``path`` when
    the block ends well, removed whatever else happens.

    ``alone``: the temporary file sits in a hidden folder of its own, removed with whatever is
    in it, for a writer that may still create its file after the block has failed (polars'
    concurrent sinks, when one of them fails, may open another's file after raising)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) if alone else None
    try:
        tmp = _created(folder / path.name if folder else None, path, permissions)
        try:
            yield tmp
            _sync(tmp)
            os.replace(tmp, path)
            _sync_folder(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        if folder is not None:
            _remove_folder(folder)


def _created(fixed: Path | None, path: Path, permissions: int) -> Path:
    """``fixed``, or a hidden name beside ``path`` no other file has, created empty."""
    while True:
        tmp = fixed or path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, permissions))
        except FileExistsError:
            continue
        return tmp


def _sync(path: Path) -> None:
    """The file's data on the disk (whichever descriptor wrote it: fsync syncs the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """The folder's entries (the rename) on the disk, where the file system can sync a folder."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a file system that cannot sync folders (some network ones)
            raise
    finally:
        os.close(fd)


def _remove_folder(folder: Path) -> None:
    """``folder`` and what is in it, again while a writer still finishing re-fills it."""
    for _ in range(100):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.01)


@overload
def opened(
    path: Path, mode: Literal["wb"] = "wb", *, permissions: int = 0o666
) -> contextlib.AbstractContextManager[IO[bytes]]: ...
@overload
def opened(
    path: Path,
    mode: Literal["w"],
    *,
    permissions: int = 0o666,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> contextlib.AbstractContextManager[IO[str]]: ...
def opened(
    path: Path,
    mode: Literal["w", "wb"] = "wb",
    *,
    permissions: int = 0o666,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> contextlib.AbstractContextManager[IO[str]] | contextlib.AbstractContextManager[IO[bytes]]:
    """``path`` opened for writing (``"wb"``, or ``"w"`` with ``encoding`` and ``newline``)
    through :func:`replacing`: renamed into place when the block ends well."""
    if mode == "w":
        return _opened_text(path, permissions, encoding, newline)
    return _opened_bytes(path, permissions)


@contextlib.contextmanager
def _opened_text(
    path: Path, permissions: int, encoding: str, newline: str | None
) -> Iterator[IO[str]]:
    with (
        replacing(path, permissions=permissions) as tmp,
        tmp.open("w", encoding=encoding, newline=newline) as handle,
    ):
        yield handle


@contextlib.contextmanager
def _opened_bytes(path: Path, permissions: int) -> Iterator[IO[bytes]]:
    with replacing(path, permissions=permissions) as tmp, tmp.open("wb") as handle:
        yield handle


def write_bytes(path: Path, data: bytes, *, permissions: int = 0o666) -> None:
    """``data`` as the whole of ``path``."""
    with opened(path, permissions=permissions) as handle:
        handle.write(data)


def write_text(path: Path, text: str, *, permissions: int = 0o666) -> None:
    """``text`` (UTF-8) as the whole of ``path``."""
    write_bytes(path, text.encode("utf-8"), permissions=permissions)
