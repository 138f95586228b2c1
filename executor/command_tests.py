"""Tests and benchmarks that are commands: ``{bin} --check``, ``./run_tests.sh {bin}``.

A project's tests are often a command that runs the built program (a test runner that exits
0 when every check passes, a benchmark that prints its results). :func:`command_tests` turns
such commands into ordinary :class:`TestCase` values plus the launcher their sandbox session
runs (``Sandbox.session(launcher=..., files=...)``), so that the judge runs them exactly as
it runs file tests: in a one-binary session, test runs and timed runs alike, charged for
every process of the run, output checked on every run.

A command that is the program and plain arguments (``{bin} 1000``, or the list
``["{bin}", "1000"]``) runs the program directly. Anything else (pipes, several programs,
redirections, other tools) runs in ``/bin/sh -c``; then every command of the target does, each
simple one as ``exec {bin} ...`` so that the shell adds one ``exec`` and nothing else. The
program sees the target's folder read-only as its working directory.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from asmopt.executor.sandbox import PROGRAM_PLACEHOLDER
from asmopt.executor.testcases import TestCase

# Characters that make a command line more than "a program and its arguments".
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`\\*?\[\]#~\n'\"{}=!]")
# The shell command tests run in; /usr/bin/sh on merged-/usr systems, where the sandbox's
# /bin is a link into /usr.
SHELL = "/usr/bin/sh" if os.path.exists("/usr/bin/sh") else "/bin/sh"


class CommandTestError(ValueError):
    """A command cannot serve as a test; the message says what to change."""


@dataclass(frozen=True)
class CommandSpec:
    """One command of a target: its test name, the command (a shell string or an argv), and
    what its output must be: ``expected`` bytes, None for the baseline's output, or nothing
    at all with ``ignore_output`` (then only the exit status counts)."""

    name: str
    command: str | tuple[str, ...]
    expected: bytes | None = None
    ignore_output: bool = False


@dataclass(frozen=True)
class CommandTests:
    """The tests to run and the launcher of their session (None: the program itself)."""

    tests: tuple[TestCase, ...]
    launcher: str | None


def command_tests(specs: Sequence[CommandSpec], plain: Sequence[TestCase] = ()) -> CommandTests:
    """Tests for ``specs`` (see the module docstring), after the ``plain`` tests (stdin and
    arguments of the program, from a test folder), which the shell, when one is needed,
    hands to the program unchanged. Raises :class:`CommandTestError` for a command that
    never names the program (``{bin}``)."""
    direct: list[list[str] | None] = []
    for spec in specs:
        text = spec.command if isinstance(spec.command, str) else " ".join(spec.command)
        if PROGRAM_PLACEHOLDER not in text:
            raise CommandTestError(
                f"{spec.name} {text!r} never runs the program asmopt builds: write {{bin}} "
                f'where its path goes, e.g. "{{bin}} --check" (a program of your own build '
                "folder would test the unoptimized code)"
            )
        direct.append(None if spec.ignore_output else _direct_argv(spec.command))
    if all(argv is not None for argv in direct):
        tests = list(plain) + [
            TestCase(spec.name, b"", spec.expected, tuple(argv[1:]))
            for spec, argv in zip(specs, direct, strict=True)
            if argv is not None
        ]
        return CommandTests(tuple(tests), None)
    tests = [
        TestCase(t.name, t.stdin, t.expected, ("-c", "exec " + shlex.join(["{bin}", *t.args])))
        for t in plain
    ]
    for spec, argv in zip(specs, direct, strict=True):
        if argv is not None:
            script = "exec " + shlex.join(argv)
        elif isinstance(spec.command, str):
            script = spec.command
        else:
            script = shlex.join(spec.command)
        if spec.ignore_output:
            script = "exec >/dev/null\n" + script
        tests.append(TestCase(spec.name, b"", spec.expected, ("-c", script)))
    return CommandTests(tuple(tests), SHELL)


def _direct_argv(command: str | tuple[str, ...]) -> list[str] | None:
    """The argv of a command that is just the program and plain arguments, else None."""
    if isinstance(command, str):
        if _SHELL_SYNTAX.search(command.replace(PROGRAM_PLACEHOLDER, "")):
            return None
        argv = command.split()
    else:
        argv = list(command)
    if not argv or argv[0] != PROGRAM_PLACEHOLDER:
        return None
    if any(PROGRAM_PLACEHOLDER in arg for arg in argv[1:]):
        return None
    return argv
