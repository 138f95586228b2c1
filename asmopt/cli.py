"""The one command line: the ``asmopt`` group, its global options, and where an exception
becomes an exit status. The commands themselves live in :mod:`asmopt.commands`, one module
each; the statuses are defined in :mod:`asmopt.commands.common` (every command needs them)
and exported here too.

Heavy modules are imported inside each command so that ``asmopt serve`` and ``--help`` start
fast. Every command runs through :class:`_Commands`, the one place where an exception becomes
an exit status (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from typing import Any, NoReturn

import click

from asmopt import __version__
from asmopt.commands.bench import bench
from asmopt.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_OK,
    EXIT_PIPE_CLOSED,
    _fail,
)
from asmopt.commands.dataset import dataset
from asmopt.commands.doctor import doctor
from asmopt.commands.optimize import optimize
from asmopt.commands.profile import profile
from asmopt.commands.serve import serve
from asmopt.commands.serve_model import serve_model
from asmopt.commands.train import train
from asmopt.commands.verify import verify

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NO",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "main",
]


def _internal_error(error: BaseException, *, debug: bool) -> NoReturn:
    """Exit with EXIT_INTERNAL and one line; the traceback goes to a log file (or to
    stderr with --debug, or when no log file can be written)."""
    import traceback

    text = "".join(traceback.format_exception(error))
    where = "the traceback is above"
    if not debug:
        try:
            fd, name = tempfile.mkstemp(prefix="asmopt-crash-", suffix=".log")
            with os.fdopen(fd, "w") as log:
                log.write(f"asmopt {__version__}: {' '.join(sys.argv)}\n\n{text}")
            where = f"the traceback is in {name} (--debug prints it)"
        except OSError:
            debug = True
    if debug:
        sys.stderr.write(text)
    summary = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    _fail(f"internal error: {summary}. This is a bug in asmopt; {where}", EXIT_INTERNAL)


# File-system refusals (a read-only workspace, a full disk): the job could not run here,
# which is no bug in asmopt.
_REFUSED_BY_THE_MACHINE = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}
)


class _Commands(click.Group):
    """The command group; every command (and sub-group) runs through :meth:`invoke`, which
    maps whatever escapes a command to one exit status of :data:`EXIT_CODES`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            if err.exit_code == EXIT_NO:  # click's default; 1 means "no" here
                err.exit_code = EXIT_BAD_INPUT  # type: ignore[misc]
            raise
        except (click.exceptions.Exit, SystemExit):  # a command's own status
            raise
        except (KeyboardInterrupt, click.Abort):
            _fail("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            # Nothing more can be said to the reader; stop Python's complaint at exit too.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_PIPE_CLOSED)
        except OSError as err:
            if err.errno not in _REFUSED_BY_THE_MACHINE:
                _internal_error(err, debug=bool(ctx.find_root().params.get("debug")))
            where = f"{err.filename}: " if err.filename else ""
            _fail(f"{where}{err.strerror}: check the folder's permissions and free space")
        except Exception as err:
            from asmopt.executor.store import ResultStoreError

            if isinstance(err, ResultStoreError):  # a store opened strictly (bench --out)
                _fail(str(err))
            _internal_error(err, debug=bool(ctx.find_root().params.get("debug")))


def _exit_codes_help() -> str:
    lines = [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES]
    return "\b\nExit status (every command):\n" + "\n".join(lines)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_exit_codes_help(),
)
@click.version_option(__version__, prog_name="asmopt")
@click.option(
    "--debug",
    is_flag=True,
    envvar="ASMOPT_DEBUG",
    help="On an internal error, print the traceback (otherwise it goes to a log file).",
)
def main(debug: bool) -> None:
    """Make x86-64 code faster than gcc -O3, and prove it."""


for command in (verify, optimize, profile, bench, dataset, train, doctor, serve, serve_model):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
