"""Files a sandboxed program could have written, read back on the host.

A program under test (or a tool run on hostile input) may leave, where the host expects its
output, a link to a host file or to /dev/zero (which never ends), a FIFO (whose open waits
for a writer forever) or a device. :func:`open_left` opens only a regular file, never
through a link, and never blocks; the callers cap how much they read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotRegularFile(OSError):
    """What a program left at a path the host reads is not a regular file."""


def open_left(path: Path) -> BinaryIO:
    """``path`` opened for reading, when it is a regular file. ``OSError`` when it is missing
    or a link (``ELOOP``), :class:`NotRegularFile` when it is anything else."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise NotRegularFile(f"{path.name} is not a regular file")
    return os.fdopen(fd, "rb")
