"""The sandbox's seccomp filter: the calls it kills a program for, and those it refuses.

Built with libseccomp (via pyseccomp) once per process; bubblewrap loads it (``--seccomp``)
before the runner starts, so the runner and every program of the run live under it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import signal
import tempfile
from typing import Any

from asmopt.executor.limits import SandboxUnavailable

# Calls a benchmark program never needs and an escape attempt often does. The process is
# killed (SIGSYS) so the verdict can say "blocked by the sandbox" instead of guessing from
# an error code.
BLOCKED_SYSCALLS = tuple(
    """
    socket socketpair connect bind listen accept accept4 ptrace process_vm_readv
    process_vm_writev mount umount2 pivot_root chroot move_mount open_tree fsopen fsmount
    fspick mount_setattr kexec_load kexec_file_load reboot init_module finit_module
    delete_module bpf perf_event_open userfaultfd keyctl add_key request_key unshare setns
    swapon swapoff acct syslog settimeofday clock_settime clock_adjtime adjtimex iopl ioperm
    open_by_handle_at name_to_handle_at quotactl fanotify_init lookup_dcookie mknod mknodat
    personality io_uring_setup io_uring_enter io_uring_register vmsplice readahead cachestat
    """.split()
)
# io_uring runs system calls (a socket, say) where seccomp never sees them; vmsplice moves the
# copy of a program's output into the runner, whose CPU time is not the program's; readahead
# and cachestat set and read the host's page cache, a memory shared by every sandbox.


@functools.lru_cache(maxsize=2)
def seccomp_program(*, refuse_sigchld: bool = True) -> bytes:
    """The BPF program of the sandbox's seccomp filter (built with libseccomp via pyseccomp).

    ``refuse_sigchld=False`` leaves SIGCHLD's disposition alone (tests use it to show that
    cgroup accounting alone charges auto-reaped children)."""
    try:
        import pyseccomp
    except (ImportError, OSError) as err:  # OSError: libseccomp.so.2 missing
        raise SandboxUnavailable(
            f"seccomp is unavailable ({err}): apt-get install libseccomp2 and pip install pyseccomp"
        ) from err
    flt = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in BLOCKED_SYSCALLS:
        with contextlib.suppress(Exception):  # a call this kernel/libseccomp doesn't know
            flt.add_rule(pyseccomp.KILL_PROCESS, name)
    # glibc falls back from clone3 to clone on ENOSYS; clone3's flags live in memory where
    # seccomp cannot see them, so refuse it outright (namespaces stay blocked by unshare).
    with contextlib.suppress(Exception):
        flt.add_rule(pyseccomp.ERRNO(38), "clone3")
    # SIGCHLD set to SIG_IGN (or SA_NOCLDWAIT) makes the kernel reap children unseen, and
    # their CPU time never reaches any rusage. Refuse to change SIGCHLD's disposition at all
    # (the action lives in memory seccomp cannot read); reading it stays allowed.
    # The kernel reads the signal number as an int: compare the low 32 bits only, or high
    # bits in the register slip past the rule.
    if refuse_sigchld:
        flt.add_rule(
            pyseccomp.ERRNO(errno.EPERM),
            "rt_sigaction",
            pyseccomp.Arg(0, pyseccomp.MASKED_EQ, 0xFFFFFFFF, signal.SIGCHLD),
            pyseccomp.Arg(1, pyseccomp.NE, 0),
        )
    for name, rules in _REFUSED_ARGUMENTS.items():
        for args in rules:
            refused = [_arg(pyseccomp, a) for a in args]
            flt.add_rule(pyseccomp.ERRNO(errno.EPERM), name, *refused)
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


# Calls refused (EPERM) when their arguments say so: each rule is (argument, test, value...),
# all tests of a rule must hold. A program may change itself but nothing else (the runner's
# limits, nice value, CPUs or I/O priority would otherwise carry over to the runs after it),
# and may not probe or evict the host's page cache (RWF_NOWAIT reads, POSIX_FADV_DONTNEED).
# "gt0": anything but exactly 0 (the comparison is unsigned and 64-bit, so high bits and
# negative numbers are refused too).
_REFUSED_ARGUMENTS: dict[str, tuple[tuple[tuple[Any, ...], ...], ...]] = {
    "prlimit64": (((0, "gt0"),),),
    "setpriority": (((0, "gt0"),), ((1, "gt0"),)),  # only PRIO_PROCESS of itself
    "sched_setaffinity": (((0, "gt0"),),),
    "sched_setscheduler": (((0, "gt0"),),),
    "sched_setparam": (((0, "gt0"),),),
    "sched_setattr": (((0, "gt0"),),),
    "ioprio_set": (((0, "ne", 1),), ((1, "gt0"),)),  # only IOPRIO_WHO_PROCESS of itself
    "preadv2": (((5, "bits", 0x8),),),  # RWF_NOWAIT
    "pwritev2": (((5, "bits", 0x8),),),
    "fadvise64": (((3, "low32", 4),),),  # POSIX_FADV_DONTNEED
}


def _arg(pyseccomp: Any, spec: tuple[Any, ...]) -> Any:
    index, test, *values = spec
    if test == "gt0":
        return pyseccomp.Arg(index, pyseccomp.GT, 0)
    if test == "ne":
        return pyseccomp.Arg(index, pyseccomp.NE, values[0])
    if test == "bits":
        return pyseccomp.Arg(index, pyseccomp.MASKED_EQ, values[0], values[0])
    if test == "low32":
        return pyseccomp.Arg(index, pyseccomp.MASKED_EQ, 0xFFFFFFFF, values[0])
    raise ValueError(f"unknown argument test {test}")
