"""Bounded reads of the files builder is given: regular files only, with a byte cap.

One place for the rule every reader follows: a directory, device, FIFO or socket is refused by
name before anything is read (a FIFO or ``/dev/zero`` would be read without end), and no more
than ``limit`` + 1 bytes are ever read, whatever the file claims its size is. The error class is
the caller's, so that a config reads as a ``ConfigError`` and a run's files as a ``RunError``.
No builder imports beyond ``builder.errors``: ``builder.config`` and ``builder.runs`` both use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.errors import BuilderError

# What each kind of file that is not a regular file is called in messages.
FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),  # seen only through os.lstat
)


def file_kind(mode: int) -> str | None:
    """``None`` for a regular file; otherwise what the file is, for a message ("a directory")."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in FILE_KINDS if test(mode)), "another kind")


def size_text(limit: int) -> str:
    """A byte limit as messages name it: ``16 MiB (16,777,216 bytes)``."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if limit >= 1 << shift and limit % (1 << shift) == 0:
            return f"{limit >> shift} {unit} ({limit:,} bytes)"
    return f"{limit:,} bytes"


def short(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut to ``limit`` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def not_found(
    path: Path, err: OSError | ValueError, *, what: str, error: type[BuilderError]
) -> BuilderError:
    """The error for a path that ``os.stat`` or ``os.open`` refused: missing, holding a NUL byte
    (``ValueError``), or unreadable (permission denied, an I/O error)."""
    if isinstance(err, FileNotFoundError):
        return error(f"{what} {path} does not exist.")
    if isinstance(err, ValueError):
        return error(f"{what} path must not contain a NUL byte. Received: {short(str(path))}")
    return error(f"{what} {short(str(path))} cannot be read: {err.strerror or err}")


def check_regular(path: str | Path, *, what: str, error: type[BuilderError]) -> os.stat_result:
    """``os.stat`` of an existing regular file (symlinks followed), for readers that open it
    themselves (Keras, numpy).

    Raises:
        error: the path is missing, or is a directory, device, FIFO or socket.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except (OSError, ValueError) as err:
        raise not_found(path, err, what=what, error=error) from None
    kind = file_kind(info.st_mode)
    if kind is not None:
        raise error(f"{what} {path} must be a file (regular files only). Received: {kind}")
    return info


def read_bytes(path: str | Path, *, limit: int, what: str, error: type[BuilderError]) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    The file is opened without blocking, so a FIFO swapped in after a check cannot hang the
    read, and its kind is checked on the open descriptor.

    Args:
        path: the file.
        limit: the most bytes it may hold.
        what: what it is, for messages (``"config file"``, ``"run file"``).
        error: the exception class raised.

    Raises:
        error: the file is missing, not a regular file, larger than ``limit`` or unreadable.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError) as err:
        if not isinstance(err, ValueError) and os.path.isdir(path):  # Windows cannot open one
            raise error(
                f"{what} {path} must be a file (regular files only). Received: a directory"
            ) from None
        raise not_found(path, err, what=what, error=error) from None
    try:
        info = os.fstat(fd)
        kind = file_kind(info.st_mode)
        if kind is not None:
            raise error(f"{what} {path} must be a file (regular files only). Received: {kind}")
        if info.st_size > limit:
            raise error(
                f"{what} {path} must be at most {size_text(limit)}. "
                f"Received: {info.st_size:,} bytes"
            )
        chunks: list[bytes] = []
        left = limit + 1  # a file that grows, or lies about its size, stops here
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    except OSError as err:
        raise error(f"{what} {path} cannot be read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise error(f"{what} {path} must be at most {size_text(limit)}. Received: more than that")
    return raw


def read_text(path: str | Path, *, limit: int, what: str, error: type[BuilderError]) -> str:
    """``read_bytes``, decoded as UTF-8 (a byte-order mark is dropped).

    Raises:
        error: as ``read_bytes``, or the bytes are not UTF-8.
    """
    raw = read_bytes(path, limit=limit, what=what, error=error)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(
            f"{path} must be UTF-8 text. Received: byte 0x{raw[err.start]:02x} "
            f"at offset {err.start}"
        ) from None
