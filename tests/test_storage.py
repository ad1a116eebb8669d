"""Atomic file writes (`storage.atomic_write`), on the real file system."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gonka_cli.storage import atomic_write


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_replaces_a_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")

    atomic_write(target, "new ✓")

    assert target.read_text(encoding="utf-8") == "new ✓"
    assert _names(tmp_path) == ["result.json"]


def test_mode_is_set(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    atomic_write(target, b"\x00\x01", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"\x00\x01"


def test_without_overwrite_an_existing_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "main.json"

    atomic_write(target, "first", mode=0o600, overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, "second", mode=0o600, overwrite=False)

    assert target.read_text() == "first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _names(tmp_path) == ["main.json"]  # no temporary file left behind


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    with pytest.raises(OSError):
        atomic_write(target, "x")  # a file cannot replace a directory
    assert _names(tmp_path) == ["a-directory"]
