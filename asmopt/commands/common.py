"""What every command shares: exit statuses, consoles, error and warning messages, option
decorators, the sandbox, and the workspace's result store."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import NoReturn

import click

EXIT_OK = 0
EXIT_NO = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a program killed by it
# The exit statuses of every command, for `asmopt --help` and the README (a test compares).
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done: a faster candidate, all tests passed, all checks ready"),
    (EXIT_NO, "no: no faster candidate, a test failed, a check missing, bench incomplete"),
    (EXIT_BAD_INPUT, "bad input, or the job could not run (the message says what to fix)"),
    (EXIT_INTERNAL, "internal error, a bug in asmopt (traceback in a log file, or --debug)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    (EXIT_PIPE_CLOSED, "the output's reader went away (asmopt ... | head)"),
)


def _console(stderr: bool = False):  # -> rich.console.Console
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@functools.cache
def _stderr_console():  # -> rich.console.Console
    """One console for warnings and progress, so a warning from a worker thread is printed
    above a running progress line instead of through it."""
    return _console(stderr=True)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    from rich.markup import escape

    # Messages quote things like "pip install 'asmopt[ray]'": never rich markup.
    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _warn(message: str) -> None:
    from rich.markup import escape

    _stderr_console().print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def comparator_option(f):
    f = click.option(
        "--compare",
        type=click.Choice(["tokens", "exact", "floats"]),
        default="tokens",
        show_default=True,
        help="How outputs are compared (tokens: whitespace-insensitive, as CodeNet judges).",
    )(f)
    f = click.option(
        "--tolerance",
        type=float,
        default=1e-6,
        show_default=True,
        help="Relative tolerance for --compare floats.",
    )(f)
    return f


# Shared by verify and bench: how precise a speed-up must be before timing stops (the
# setting ci_target's default, which says why ±3%).
ci_option = click.option(
    "--ci",
    "target_ci",
    type=float,
    default=0.03,
    show_default=True,
    help="Stop timing when the 95% CI half-width is within this fraction.",
)


def sandbox_options(f):
    f = click.option(
        "--no-sandbox",
        is_flag=True,
        help="Run generated code WITHOUT bubblewrap (prints a warning).",
    )(f)
    f = click.option(
        "--timeout",
        type=float,
        default=10.0,
        show_default=True,
        help="Wall-clock seconds a test may run at most.",
    )(f)
    return f


def _make_sandbox(limits, no_sandbox: bool):
    from asmopt.executor.sandbox import Sandbox, SandboxUnavailable

    try:
        return Sandbox(limits, enabled=not no_sandbox)
    except SandboxUnavailable as err:
        _fail(str(err))


def workspace_of(anchor: Path, *, strict: bool = True):  # -> model.settings.Workspace
    """The workspace of ``anchor``, found as the editor finds it (``model.settings.Workspace``):
    the nearest ``asmopt.toml`` upwards, read once, and the result store beside it. A broken
    ``asmopt.toml`` stops the command (exit 2) unless ``strict`` is off (then it is ignored)."""
    from asmopt.model.settings import SettingsError, Workspace

    try:
        return Workspace.of(anchor, strict=strict)
    except SettingsError as err:
        _fail(str(err))


def open_store(workspace):  # -> executor.store.ResultStore
    """The workspace's result store, best effort: one that cannot be used (corrupt and moved
    aside, a read-only workspace, a symbolic link) costs a warning, never the result."""
    return workspace.open_store(warn=_warn)


def tests_target(source: Path, tests_dir: Path):  # -> asmopt.model.settings.Target
    """A target of its own for SOURCE, tested by the NAME.in/NAME.out cases in TESTS_DIR
    (what --tests asks for instead of asmopt.toml's targets)."""
    from asmopt.model.settings import Target

    if not tests_dir.is_dir():
        _fail(f"test directory {tests_dir} does not exist")
    return Target(name=source.stem, sources=(source.resolve(),), tests=tests_dir.resolve())
