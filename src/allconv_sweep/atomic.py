"""Files written whole or not at all: to a hidden temporary name in their own folder (across file systems a
rename is a copy), renamed over the real name once whole. Mode 0o666 less the umask, as open() gives
(mkstemp's 0o600 is for secrets; results are shared with a group through the umask)."""

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``path`` appears whole (written, on disk, renamed) or not at all, what it was left as it was."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"  # hidden: never taken for a result
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # whole on disk before the rename makes it the real one
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
