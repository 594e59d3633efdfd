"""Writing files so that no reader ever sees half of one under its real name, all with one mode.

Every file the tool writes goes to a temporary name in its own folder (a rename across file systems would
be a copy, which a full disk can leave half done) and is renamed over the real name only once it is whole.
Its mode is what a plain open() gives, 0o666 less the umask, like every other file of a run folder
(mkstemp's 0o600 is for secrets; these are results, shared with a group through the umask).
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else by the
    set-and-restore that is the only portable way."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """with atomic_write(path) as f: ... -> ``path`` appears whole (written, flushed to disk, renamed) or
    not at all: any failure (ENOSPC midway, an exception, Ctrl-C) removes the temporary file and leaves
    what was under ``path`` before as it was."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"  # hidden: never taken for a result
    try:
        with open(tmp, mode) as f:  # open(): 0o666 less the umask
            yield f
            f.flush()
            os.fsync(f.fileno())  # whole on disk before the rename makes it the real one
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
