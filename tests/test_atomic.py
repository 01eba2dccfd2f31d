"""reconcile.atomic: a file is replaced whole or left as it was, and no temporary file stays."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconcile import atomic


def leftovers(folder: Path) -> list[str]:
    """Whatever besides the targets a writer left in ``folder`` (hidden files and folders)."""
    return sorted(p.name for p in folder.rglob(".*"))


class Boom(Exception):
    """The writer's failure, raised inside the block."""


class TestWholeValues:
    def test_text_and_bytes_replace_the_file(self, tmp_path: Path) -> None:
        """write_text writes UTF-8 over an existing file; write_bytes the bytes as given."""
        path = tmp_path / "sub" / "a.txt"
        atomic.write_text(path, "old")
        atomic.write_text(path, "né")
        assert path.read_bytes() == "né".encode()
        atomic.write_bytes(path, b"\x00\x01")
        assert path.read_bytes() == b"\x00\x01"
        assert leftovers(tmp_path) == []

    def test_permissions_less_the_umask(self, tmp_path: Path) -> None:
        """A secret written with permissions 0o600 is readable by its owner only."""
        path = tmp_path / "secret"
        atomic.write_text(path, "s", permissions=0o600)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


class TestOpened:
    def test_text_mode_with_encoding_and_newline(self, tmp_path: Path) -> None:
        """Text mode writes with the given encoding and newline translation."""
        path = tmp_path / "a.csv"
        with atomic.opened(path, "w", encoding="utf-8-sig", newline="") as handle:
            handle.write("a\r\n")
        assert path.read_bytes() == b"\xef\xbb\xbfa\r\n"

    def test_a_failing_writer_leaves_the_old_file(self, tmp_path: Path) -> None:
        """A writer failing half-way leaves the target as it was and no temporary file."""
        path = tmp_path / "a.csv"
        path.write_bytes(b"old")
        with pytest.raises(Boom), atomic.opened(path) as handle:
            handle.write(b"half")
            raise Boom
        assert path.read_bytes() == b"old"
        assert leftovers(tmp_path) == []


class TestReplacing:
    def test_the_temporary_path_is_renamed_onto_the_target(self, tmp_path: Path) -> None:
        """The block writes the temporary path (beside the target); the target then holds it."""
        path = tmp_path / "a.xlsx"
        with atomic.replacing(path) as tmp:
            assert tmp.parent == tmp_path and tmp.exists() and tmp != path
            tmp.write_bytes(b"new")
        assert path.read_bytes() == b"new"
        assert leftovers(tmp_path) == []

    def test_several_are_renamed_only_when_all_are_written(self, tmp_path: Path) -> None:
        """Held together, no target is replaced when one writer fails."""
        first, second = tmp_path / "a.csv", tmp_path / "b.csv"
        first.write_bytes(b"old")
        with pytest.raises(Boom), atomic.replacing(first) as one, atomic.replacing(second):
            one.write_bytes(b"new")
            raise Boom
        assert first.read_bytes() == b"old" and not second.exists()
        assert leftovers(tmp_path) == []

    def test_alone_removes_what_a_late_writer_left(self, tmp_path: Path) -> None:
        """With ``alone``, the temporary file's own folder goes, with any file put in it."""
        path = tmp_path / "a.csv"
        with pytest.raises(Boom), atomic.replacing(path, alone=True) as tmp:
            assert tmp.name == "a.csv" and tmp.parent.parent == tmp_path
            (tmp.parent / "late").write_bytes(b"x")
            raise Boom
        assert os.listdir(tmp_path) == []

    def test_alone_renames_and_removes_its_folder(self, tmp_path: Path) -> None:
        """With ``alone``, a block that ends well leaves only the target."""
        path = tmp_path / "a.csv"
        with atomic.replacing(path, alone=True) as tmp:
            tmp.write_bytes(b"new")
        assert os.listdir(tmp_path) == ["a.csv"] and path.read_bytes() == b"new"
