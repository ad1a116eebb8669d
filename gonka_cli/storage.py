"""Durable local state, one way: SQLite connections and transactions, atomic file writes.

Every module that keeps state on disk goes through here, so that the pragmas, the rollback
rules and the fsync order are written once.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir", "is_busy", "open_sqlite", "transaction"]


def open_sqlite(path: Path | str, *, durable: bool = True, wal: bool = True) -> sqlite3.Connection:
    """Open `path` in autocommit mode, usable from several threads (callers hold a lock).

    Transactions are opened explicitly with `transaction()`. `durable=True` syncs the WAL on
    every commit (`synchronous=FULL`), so what was committed survives a power cut; `False`
    (`NORMAL`) survives a crash of the process only. Raises `sqlite3.Error`; callers turn it
    into their own area's error, naming the file and what to do.
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """`BEGIN IMMEDIATE ... COMMIT`, rolled back on any exception (and on a failed COMMIT).

    A failed COMMIT (disk full, I/O error) can leave the transaction open, and the connection
    would then read back what is not on disk. After some errors SQLite has rolled back already,
    and a second ROLLBACK would hide the real error: hence the `in_transaction` checks.
    """
    db.execute(begin)
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether `exc` says that another connection holds the database."""
    text = str(exc)
    return "locked" in text or "busy" in text


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable (a no-op where not supported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes | str, *, mode: int | None = None, overwrite: bool = True
) -> None:
    """Replace `path` with `data` so that a reader sees the old file or the new one, whole.

    Temporary file in the same directory (`.tmp-<name>.<random>.partial`, 0600), fsync,
    rename, fsync of the directory. `mode` sets the new file's permissions before any byte is
    written (0o600 for secrets). `overwrite=False` links the temporary file into place instead
    of renaming it, so an existing `path` is never replaced: `FileExistsError` then, even when
    another process created it a moment before. Raises `OSError`; the temporary file never
    outlives a failure (only a killed process leaves one).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".tmp-{path.name}.", suffix=".partial")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and fails where `path` exists
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)
