"""An exclusive lock on a file, released by the OS when the process dies (even by kill -9)."""

from __future__ import annotations

import os
from pathlib import Path


class LockFile:
    """`acquire()` takes the lock or returns False when another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock. Raises OSError when the file cannot be opened."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; the user keeps to one process
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
