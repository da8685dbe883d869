"""The data dir: one watui process at a time, and files only their owner can read.

Two processes running sessions from one data dir would both write the event log and both
drive the same WhatsApp sessions. :class:`DataDirLock` takes an OS lock on
``<data-dir>/watui.lock`` before the store is opened, and writes the holder's pid (and, once
it listens, its URL) into the file, so a second process can say who holds it
(:func:`read_holder`) without taking it. The kernel drops the lock when the holder exits,
even on ``kill -9``, so a stale file never locks anyone out.

The data dir holds webhook secrets, message text, API key hashes and WhatsApp credentials:
directories are 0700 and files 0600 (:func:`make_private`), and :func:`private_umask` makes
files created later (SQLite's ``-wal``/``-shm``, auth databases) private too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_FILE = "watui.lock"
DIR_MODE = 0o700
FILE_MODE = 0o600
ADMIN_KEY_FILE = "admin.key"
"""The first admin key, written by ``watui serve`` on its first start; read by ``watui attach``."""
OWN_FILES = frozenset({ADMIN_KEY_FILE, "webhook.secret"})
"""Files of watui's at the top of a data dir besides ``watui*`` (the database, log, lock)."""


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a data dir: its pid and, if it serves HTTP, its URL."""

    pid: int | None
    url: str | None = None

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid else "an unknown pid"
        return f"{who}, serving {self.url}" if self.url else who


class DataDirLocked(RuntimeError):
    """Another process holds the data dir."""

    def __init__(self, data_dir: Path, holder: LockHolder) -> None:
        super().__init__(
            f"the data dir {data_dir} is in use by another watui process ({holder.describe()})"
        )
        self.data_dir = data_dir
        self.holder = holder

    @property
    def pid(self) -> int | None:
        return self.holder.pid

    @property
    def url(self) -> str | None:
        return self.holder.url


class DataDirUnusable(RuntimeError):
    """The data dir cannot be created, locked or written (read-only, wrong owner, ...)."""


def _parse(text: str) -> LockHolder:
    try:
        data: Any = json.loads(text) if text.strip() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid = data.get("pid")
    url = data.get("url")
    return LockHolder(pid=pid if isinstance(pid, int) else None, url=url if isinstance(url, str) else None)


def read_holder(data_dir: Path) -> LockHolder | None:
    """The process holding ``data_dir``, or ``None`` if nobody does. Never takes the lock
    for longer than the probe, and never writes."""
    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class DataDirLock:
    """An exclusive lock on a data dir for this process's lifetime (or until :meth:`release`)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None
        self.url: str | None = None

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Take the lock or raise :class:`DataDirLocked` naming the holder (or
        :class:`DataDirUnusable` if the lock file cannot be created)."""
        lock = cls(data_dir)
        try:
            fd = os.open(lock.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise DataDirUnusable(f"cannot use the data dir {lock.data_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            raise DataDirLocked(lock.data_dir, _parse(text)) from None
        lock._fd = fd
        try:
            os.fchmod(fd, FILE_MODE)
            lock._write()
        except OSError as exc:
            lock.release()
            raise DataDirUnusable(f"cannot write to the data dir {lock.data_dir}: {exc.strerror}") from None
        return lock

    def _write(self) -> None:
        assert self._fd is not None
        record: dict[str, Any] = {"pid": os.getpid()}
        if self.url:
            record["url"] = self.url
        data = (json.dumps(record) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def announce(self, url: str) -> None:
        """Record the URL this process serves on, for :func:`read_holder`."""
        self.url = url
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self._write()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let the lock go. The file stays (removing it would race with a new holder)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------- permissions


def private_umask() -> None:
    """Make every file this process creates from now on private to its owner (0600/0700).

    Called by the ``watui`` command for the whole process, so files that others create in it
    (SQLite's ``-wal``/``-shm``, the Go engine's auth databases, engine host processes,
    which inherit the umask) are private too.
    """
    os.umask(0o077)


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` and its ``auth`` dir if needed (0700) and make them and watui's
    files in them private: this fixes data dirs made by an older watui (0755/0644 become
    0700/0600).

    Only watui's own files are touched (``watui*``, :data:`OWN_FILES`, everything under
    ``auth/``), so a data dir pointed at a shared directory does not rewrite its neighbours.
    """
    data_dir = Path(data_dir)
    auth = data_dir / "auth"
    for directory in (data_dir, auth):
        directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        _chmod(directory)
    for path in data_dir.iterdir():
        if path.name.startswith("watui") or path.name in OWN_FILES:
            _chmod(path)
    for root, dirs, files in os.walk(auth):
        for name in (*dirs, *files):
            _chmod(Path(root) / name)


def private_database_files(db_path: Path) -> None:
    """Create the database file empty with mode 0600 unless it exists, and make it and its
    ``-wal``/``-shm`` files private: SQLite gives the ``-wal`` and ``-shm`` files it creates
    later the database file's mode."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
        finally:
            os.close(fd)
    for suffix in ("", "-wal", "-shm"):
        _chmod(Path(f"{db_path}{suffix}"))


def _chmod(path: Path) -> None:
    """Take group and other permissions away; the owner's stay as they are (a data dir made
    read-only on purpose stays read-only). Symlinks are left alone."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        return
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        with contextlib.suppress(PermissionError):
            os.chmod(path, mode & 0o700)
