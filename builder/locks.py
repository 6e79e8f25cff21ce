"""An exclusive lock on a run directory while a process trains it.

``train`` holds the lock on its new run from the moment the directory exists, and
``train --resume RUN`` before it reads anything, until the run's files are written: a second
resume of the same run (or a resume of a run still training) is refused at once, naming the
process that holds it, instead of two processes writing the same files.

The lock is ``fcntl.flock`` on ``RUN/.lock``, which holds ``<pid> <command>`` for that message.
The kernel releases a flock when its process dies, however it dies, so a file left behind by a
SIGKILL locks nothing: the next process takes the lock and writes its own pid. The holder removes
the file when it is done, so a finished run's directory keeps only its documented files.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from builder.errors import RunError

LOCK_FILE = ".lock"


def holder(run_dir: str | Path) -> tuple[int | None, str]:
    """The pid and command recorded in a run's lock file: ``(None, "")`` when there is none.

    A recorded pid is the lock's holder only while the lock is held (see ``run_lock``).
    """
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, ""
    pid, _, command = text.strip().partition(" ")
    return (int(pid), command) if pid.isdigit() else (None, "")


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: Sequence[str] | None = None) -> Iterator[Path]:
    """Hold the run's lock inside the ``with`` block, or fail at once if another process does.

    Args:
        run_dir: the run directory (it must exist).
        command: the command line of this process, for the other process's message; its first
            two words are shown (``builder train``).

    Yields:
        The lock file's path.

    Raises:
        RunError: another process holds the run (``run RUN is in use by process 12345
            (builder train); wait for it or stop it.``), or the directory cannot be written.
    """
    import fcntl

    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    label = " ".join(list(command or ["python"])[:2])
    fd = _acquire(run_dir, path, fcntl)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {label}\n".encode())
        yield path
    finally:
        # Unlinked while still held: a process that opens the name now gets a new file, and
        # _acquire sees that the file it locked is no longer the one at the name.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _acquire(run_dir: Path, path: Path, fcntl) -> int:
    """Open and flock the lock file; its descriptor. Retries when the holder removed the file
    between this process's open and its lock (it would otherwise lock a file no one sees)."""
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as err:
            raise RunError(
                f"run {run_dir} must be a writable run directory to be trained. Received: "
                f"{err.strerror or err}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunError(
                    f"run {run_dir} could not be locked. Received: {err.strerror or err}"
                ) from None
            pid, command = holder(run_dir)
            who = f"process {pid} ({command})" if pid is not None else "another process"
            raise RunError(f"run {run_dir} is in use by {who}; wait for it or stop it.") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            locked, named = os.fstat(fd), os.stat(path)
            same = (locked.st_dev, locked.st_ino) == (named.st_dev, named.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise RunError(f"run {run_dir} could not be locked: its lock file keeps changing.")
