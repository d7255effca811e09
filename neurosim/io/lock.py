"""One writer at a time, and output paths checked before any work starts.

:func:`output_lock` holds an exclusive lock on a result file's path for the whole of a run
(an ``flock`` on ``.<name>.lock`` beside it). The operating system releases the lock when the
process ends, however it ends (a crash, SIGKILL), so a lock is never left stale; a second run
on the same path is refused at once with a message naming the path and the process that holds
it. While it holds the lock, a run removes the temporary files that a killed writer left
beside the path (:func:`neurosim.io.atomic.remove_stale_temporaries`).

:func:`check_writable` says before a long run whether its result can be written at all (the
folder exists and takes a new file, the path is not a folder), so a run's work is never lost
to a typo in ``-o``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from neurosim.errors import NeurosimError, ValidationError

__all__ = ["OutputLockedError", "output_lock", "check_writable", "lock_path"]


class OutputLockedError(NeurosimError, BlockingIOError):
    """Another neurosim process is writing the same result file."""


def lock_path(path) -> Path:
    target = Path(path)
    return target.with_name(f".{target.name}.lock")


def check_writable(path, owner: str, flag: str = "output") -> None:
    """Raise a ValidationError now unless a file can be written at ``path``.

    Checks that ``path`` is not a folder and that its folder exists and accepts a new file
    (by creating and removing an empty temporary file there: permissions, a read-only file
    system and pseudo file systems such as /proc all answer truthfully to that).
    """
    target = Path(os.fspath(path))
    if target.is_dir():
        raise ValidationError(f"The '{flag}' of {owner} is {str(target)!r}, which is a folder; "
                              "give a file name.")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ValidationError(f"The '{flag}' of {owner} is {str(target)!r}, but the folder "
                              f"{str(folder)!r} does not exist.")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe.", dir=folder)
    except OSError as exc:
        raise ValidationError(f"The '{flag}' of {owner} is {str(target)!r}, but its folder "
                              f"{str(folder)!r} does not take new files ({exc.strerror or exc})."
                              ) from None
    os.close(fd)
    os.unlink(probe)  # (an existing read-only file is replaced by a rename, which the folder allows)


@contextlib.contextmanager
def output_lock(path, owner: str = "this run") -> Iterator[None]:
    """Hold the exclusive lock on ``path`` for the block, or refuse at once.

    Raises
    ------
    OutputLockedError
        If another process holds it (the message names the path and that process).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before
        yield
        return
    from neurosim.io.atomic import remove_stale_temporaries

    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise OutputLockedError(
                f"{owner}: another neurosim process (pid {holder}) is writing "
                f"{os.fspath(path)!r}; wait for it to finish, or choose another output file."
            ) from None
        # The lock file may have been removed (and a new one made) by its last holder between
        # our open and our lock: then we hold a lock nobody else sees; start again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        remove_stale_temporaries(path)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)  # releases the lock
