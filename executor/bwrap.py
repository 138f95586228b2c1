"""The bubblewrap command line of every sandbox, and the processes it starts.

:class:`Bubblewrap` builds the command: every namespace unshared, uid ``nobody``, a
read-only root made of ``/usr`` and the library links only, a small private ``/tmp``, no
capabilities, an empty environment, ``--die-with-parent`` and ``--new-session``; the runner
and the programs copied in from open files; what a run may write bound at a fixed path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asmopt.executor.limits import (
    NOBODY,
    SANDBOX_FILES_DIR,
    SANDBOX_OUTPUT_DIR,
    SANDBOX_WORK_DIR,
    SandboxError,
    SandboxUnavailable,
)

# Where the runner sits inside every sandbox.
RUNNER_PATH = "/sandbox/runner"


def bubblewrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            "bubblewrap not found: apt-get install bubblewrap, or pass --no-sandbox to run "
            "unsandboxed (generated code then runs with your permissions)"
        )
    return path


class Command(list[str]):
    """A bubblewrap command line and the descriptors of the files it copies in
    (``--ro-bind-data``), which the spawn passes and then closes."""

    def __init__(self, args: Sequence[str] = ()) -> None:
        super().__init__(args)
        self.fds: list[int] = []

    def add_data(self, host_path: Path, inside: str) -> None:
        fd = os.open(host_path, os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(fd)
        self += ["--perms", "0555", "--ro-bind-data", str(fd), inside]


@dataclass(frozen=True)
class Bubblewrap:
    """Builds the command lines of one sandbox: ``executable`` is bubblewrap, ``runner`` the
    runner binary copied into every sandbox, ``empty_dir`` what covers a hidden folder."""

    executable: str
    runner: Path
    empty_dir: Path

    def command(
        self,
        tmp_bytes: int,
        programs: Sequence[tuple[Path, str]],
        bpf_fd: int | None,
        runner_argv: Sequence[str],
        output_dir: Path | None = None,
        *,
        work_dir: Path | None = None,
        files: tuple[Path, Sequence[tuple[str, bool]]] | None = None,
    ) -> Command:
        """bubblewrap with every isolation flag, ``programs`` (host path, sandbox path) bound
        read-only, running ``/sandbox/runner runner_argv``."""
        # The runner and the programs are copied in from open files rather than bound from
        # the session folder: /proc/self/mountinfo would show a bound file's host path.
        cmd = Command(self._isolation(tmp_bytes))
        cmd.add_data(self.runner, RUNNER_PATH)
        for host_path, inside in programs:
            cmd.add_data(host_path, inside)
        if work_dir is not None:
            # A tool's run (see run_tool): its files, writable, as its working directory.
            cmd += ["--bind", str(work_dir), SANDBOX_WORK_DIR, "--chdir", SANDBOX_WORK_DIR]
            cmd += ["--setenv", "LC_ALL", "C"]  # English messages, which toolchain.py parses
        elif files is not None:
            # A session's files (see session(files=...)), read-only; what must stay unseen is
            # covered by an empty folder or file.
            folder, hidden = files
            cmd += ["--ro-bind", str(folder), SANDBOX_FILES_DIR]
            for rel, is_dir in hidden:
                cover = self.empty_dir if is_dir else Path("/dev/null")
                cmd += ["--ro-bind", str(cover), f"{SANDBOX_FILES_DIR}/{rel}"]
            cmd += ["--chdir", SANDBOX_FILES_DIR]
        else:
            cmd += ["--chdir", "/tmp"]
        cmd += ["--setenv", "PATH", "/usr/bin:/bin"]
        if output_dir is not None:
            # The only host path a program can write: a directory made for this purpose.
            cmd += ["--bind", str(output_dir), SANDBOX_OUTPUT_DIR]
        # The root (a tmpfs bubblewrap made, owned by the sandbox user) read-only: only /tmp,
        # /dev and output_dir stay writable, which a session can wipe between runs.
        cmd += ["--remount-ro", "/", "--remount-ro", "/dev"]
        if bpf_fd is not None:
            cmd += ["--seccomp", str(bpf_fd)]
        cmd += [RUNNER_PATH, *runner_argv]
        return cmd

    def _isolation(self, tmp_bytes: int) -> list[str]:
        """Every namespace unshared, nobody, no capabilities, no environment; ``/usr`` and
        the library links read-only; ``/proc``, ``/dev``, and ``/tmp`` of ``tmp_bytes``."""
        return [
            self.executable,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--uid",
            str(NOBODY),
            "--gid",
            str(NOBODY),
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--ro-bind-try",
            "/etc/ld.so.cache",
            "/etc/ld.so.cache",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # bubblewrap's /dev is a tmpfs without a size: /dev/shm gets /tmp's, and /dev
            # itself is made read-only below.
            "--size",
            str(tmp_bytes),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(tmp_bytes),
            "--tmpfs",
            "/tmp",
        ]


def check_reachable_by_nobody(folder: Path) -> None:
    """Run as root, bubblewrap runs as nobody: it can bind only a folder nobody can reach."""
    for part in (*reversed(folder.parents), folder):
        mode = part.stat().st_mode
        if not mode & 0o001 or (part == folder and not mode & 0o004):
            raise SandboxError(
                f"the sandbox runs as nobody (asmopt runs as root here) and cannot read {folder}: "
                f"{part} is not open to other users; chmod o+rx {part}, or run asmopt as an "
                "ordinary user"
            )


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill a sandbox with every process in it."""
    # bubblewrap runs in its own process group; killing it takes down the PID namespace
    # (--die-with-parent), and with it every process the program started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
