"""Exit statuses: every command maps what escapes it in one place, and 1 ("no faster
candidate") never stands for a crash."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from asmopt import cli
from asmopt.executor.store import ResultStoreError, StoreProblem

REPO = Path(__file__).resolve().parents[1]
STORE_ERROR = ResultStoreError(
    "cannot create /w/.asmopt: Read-only file system", StoreProblem.NOT_WRITABLE, Path("/w")
)


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(_leaf_commands(cli.main))


def _crash_log(output: str) -> Path:
    match = re.search(r"the traceback is in (\S+asmopt-crash-\S+\.log)", output)
    assert match, output
    return Path(match.group(1))


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"optimize", "verify", "bench", "dataset build", "dataset show", "train", "doctor",
            "serve"} <= names  # fmt: skip


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_an_unexpected_exception_in_any_command_exits_3_with_one_line(
    monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], command: click.Command
) -> None:
    def boom(**_: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(command, "callback", boom)
    monkeypatch.setattr(command, "params", [])  # no arguments needed to reach the callback
    result = CliRunner().invoke(cli.main, list(path))
    assert result.exit_code == cli.EXIT_INTERNAL, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: internal error: RuntimeError: boom. This is a bug")
    log = _crash_log(lines[0])
    try:
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    finally:
        log.unlink()


def test_an_exception_while_reading_options_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: click.Context, param: click.Parameter, value: object) -> None:
        raise LookupError("an option's own code failed")

    option = click.Option(["--broken"], callback=broken, expose_value=False)
    monkeypatch.setattr(cli.doctor, "params", [*cli.doctor.params, option])
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == cli.EXIT_INTERNAL, result.output
    assert "internal error: LookupError: an option's own code failed" in result.stderr
    _crash_log(result.stderr).unlink()


def test_debug_prints_the_traceback_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(**_: object) -> None:
        raise ValueError("bad state")

    monkeypatch.setattr(cli.doctor, "callback", boom)
    result = CliRunner().invoke(cli.main, ["--debug", "doctor"])
    assert result.exit_code == cli.EXIT_INTERNAL
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("This is a bug in asmopt; the traceback is above")


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (KeyboardInterrupt(), cli.EXIT_INTERRUPTED, "error: interrupted"),
        (click.Abort(), cli.EXIT_INTERRUPTED, "error: interrupted"),
        (STORE_ERROR, cli.EXIT_BAD_INPUT, f"error: {STORE_ERROR}"),
        (
            OSError(errno.EROFS, "Read-only file system", "/w/prog.opt.s"),
            cli.EXIT_BAD_INPUT,
            "error: /w/prog.opt.s: Read-only file system: check the folder's permissions",
        ),
        (OSError(errno.EBADF, "Bad file descriptor"), cli.EXIT_INTERNAL, "internal error"),
        (click.ClickException("no such file"), cli.EXIT_BAD_INPUT, "Error: no such file"),
        (click.UsageError("wrong option"), cli.EXIT_BAD_INPUT, "Error: wrong option"),
        (SystemExit(cli.EXIT_NO), cli.EXIT_NO, ""),  # a command's own answer stands
    ],
)
def test_each_kind_of_exit_has_its_own_status(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, code: int, message: str
) -> None:
    def fail(**_: object) -> None:
        raise raised

    monkeypatch.setattr(cli.doctor, "callback", fail)
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    if code == cli.EXIT_INTERNAL:
        _crash_log(result.stderr).unlink()


def test_an_optimize_job_that_crashes_exits_3_not_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The job runs in a thread; its exception used to vanish and `optimize` then failed on
    a missing outcome with status 1, which means "no faster candidate"."""
    import asmopt.model.search.optimizer

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("the job fell over")

    monkeypatch.setattr(asmopt.model.search.optimizer, "optimize", crash)
    (tmp_path / "prog.c").write_text("int main(void) { return 0; }\n")
    result = CliRunner().invoke(cli.main, ["optimize", str(tmp_path / "prog.c"), "--json"])
    assert result.exit_code == cli.EXIT_INTERNAL, result.output
    assert "internal error: RuntimeError: the job fell over" in result.stderr
    _crash_log(result.stderr).unlink()


def test_help_and_readme_list_the_same_exit_statuses() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    help_rows = re.findall(r"^\s+(\d+)\s+(.+)$", result.stdout.split("Exit status")[1], re.M)
    readme = (REPO / "README.md").read_text()
    readme_rows = re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.M)
    expected = [(str(code), meaning) for code, meaning in cli.EXIT_CODES]
    assert help_rows == expected
    unescape = [
        (code, meaning.replace("`", "").replace("\\|", "|")) for code, meaning in readme_rows
    ]
    assert [(c, m.replace("`", "")) for c, m in expected] == unescape
