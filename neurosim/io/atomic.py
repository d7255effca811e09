"""Atomic file writes: write to a temporary file beside the target, then rename.

The temporary file is named ``.<name>.<pid>.<random><suffix>``: a writer that is killed
(SIGKILL, a power cut) cannot remove its own, so every later write to the same path removes
the ones whose process is gone (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: "str | os.PathLike", legacy: bool = True) -> list:
    """Remove the temporary files that killed writers left beside ``path``; return them.

    A temporary file of this neurosim names its writer's process and is removed once that
    process is gone. ``legacy`` also removes the unnamed ones neurosim 0.2 wrote
    (``.<name>.<8 random characters><suffix>``): only safe while holding the path's lock
    (:func:`neurosim.io.lock.output_lock`), which every run-file writer holds.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    named = re.compile(re.escape(f".{target.name}.") + r"(\d+)\.[A-Za-z0-9_]{8}(\.[^/]*)?\Z")
    old = re.compile(re.escape(f".{target.name}.") + r"[A-Za-z0-9_]{8}(\.h5|\.npz|\.tmp)\Z")
    removed = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(f".{target.name}.")]
    except OSError:
        return removed
    for candidate in candidates:
        match = named.match(candidate.name)
        stale = (match is not None and not _alive(int(match.group(1)))) or (
            legacy and match is None and old.match(candidate.name) is not None)
        if stale and candidate.is_file():
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: "str | os.PathLike", suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left as it was, so a reader never sees a half-written file.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        from neurosim.errors import NeurosimFileNotFoundError

        raise NeurosimFileNotFoundError(
            f"Cannot write {str(target)!r}: the folder {str(folder)!r} does not exist."
        )
    remove_stale_temporaries(target, legacy=False)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=suffix or ".tmp", dir=folder
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
