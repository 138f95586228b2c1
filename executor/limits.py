"""What a sandboxed run may use, where it sees things, and how the sandbox fails.

The names every sandbox module shares (``sandbox.py``, ``session.py``, ``bwrap.py``,
``runner.py``, ``seccomp.py``); other layers import them from ``sandbox.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

NOBODY = 65534
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# Where a program sees the one writable directory a caller may lend it (``output_dir``).
SANDBOX_OUTPUT_DIR = "/sandbox/out"
# Where a tool run by ``run_tool`` (assembler, linker) sees its working directory.
SANDBOX_WORK_DIR = "/sandbox/work"
# Where the runs of a session made with ``files=`` see that folder, read-only (command tests
# see the target's files there; it is their working directory).
SANDBOX_FILES_DIR = "/sandbox/files"
# In the arguments of a session with a launcher, the path of the session's binary.
PROGRAM_PLACEHOLDER = "{bin}"


class SandboxError(RuntimeError):
    """The sandbox itself could not run (not the program under test)."""


class SandboxUnavailable(SandboxError):
    """bubblewrap is missing or unusable here; the message says how to fix it."""


class Cancelled(Exception):
    """The caller cancelled the run; every process of it has been killed."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one run of a program under test."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 * GiB  # address space (RLIMIT_AS)
    max_processes: int = 64  # RLIMIT_NPROC for the sandbox user
    file_size_bytes: int = 16 * MiB  # RLIMIT_FSIZE
    open_files: int = 64
    # stdout and stderr together: room for a FASTA-like generator's output
    output_bytes: int = 64 * MiB
    tmp_bytes: int = 32 * MiB  # size of the private /tmp


def run_memory_bytes(limits: SandboxLimits) -> int:
    """What one run may hold in all, where a cgroup can bound it: the program's memory, its
    ``/tmp`` and ``/dev/shm``, and the runner's buffer of its output (``memory_bytes`` alone
    is a per-process limit, which N processes would multiply)."""
    return limits.memory_bytes + 2 * limits.tmp_bytes + limits.output_bytes + 32 * MiB


def runner_limit_args(limits: SandboxLimits) -> list[str]:
    """The runner's limit arguments (runner.c's one-shot mode), in its order."""
    return [
        str(limits.cpu_seconds),
        str(limits.memory_bytes),
        str(limits.max_processes),
        str(limits.file_size_bytes),
        str(limits.open_files),
    ]
