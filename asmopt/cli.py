"""The one command line: thin wrappers over the executor and the model.

Heavy modules are imported inside each command so that ``asmopt serve`` and ``--help`` start
fast. Every command runs through :class:`_Commands`, the one place where an exception becomes
an exit status (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from asmopt import __version__

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


# -- verify ---------------------------------------------------------------------------------


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


# Shared by verify and bench: how precise a speed-up must be before timing stops.
ci_option = click.option(
    "--ci",
    "target_ci",
    type=float,
    default=0.02,
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


@main.command()
@click.argument("candidate", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--baseline",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The program's C source (built with gcc -O3) or its baseline .s.",
)
@click.option(
    "--tests",
    "tests_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory of NAME.in / NAME.out test cases.",
)
@click.option("--cflags", default="-O3", show_default=True, help="Flags for the baseline build.")
@click.option("--compiler", default="gcc", show_default=True)
@click.option("--no-measure", is_flag=True, help="Only run the tests; skip the benchmark.")
@ci_option
@click.option(
    "--budget", type=float, default=60.0, show_default=True, help="Seconds of benchmarking at most."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--instructions",
    is_flag=True,
    help="Also count executed instructions with callgrind (deterministic; not time).",
)
@comparator_option
@sandbox_options
def verify(
    candidate: Path,
    baseline: Path,
    tests_dir: Path,
    cflags: str,
    compiler: str,
    no_measure: bool,
    target_ci: float,
    budget: float,
    as_json: bool,
    instructions: bool,
    compare: str,
    tolerance: float,
    no_sandbox: bool,
    timeout: float,
) -> None:
    """Run CANDIDATE.s against the tests and benchmark it against the baseline."""
    from asmopt.executor.benchmark import BenchmarkOptions
    from asmopt.executor.judge import Judge
    from asmopt.executor.sandbox import SandboxError, SandboxLimits
    from asmopt.executor.testcases import Comparator, TestSetError, load_tests
    from asmopt.executor.verify import BaselineError, VerifyOptions

    if not candidate.exists():
        _fail(f"{candidate} does not exist")
    try:
        tests = load_tests(tests_dir)
    except TestSetError as err:
        _fail(str(err))
    options = VerifyOptions(
        comparator=Comparator(mode=compare, rel_tol=tolerance),  # type: ignore[arg-type]
        limits=SandboxLimits(wall_seconds=timeout, cpu_seconds=int(timeout) + 1),
        bench=BenchmarkOptions(target_rel_ci=target_ci, budget_seconds=budget),
        measure=not no_measure,
    )
    sandbox = _make_sandbox(options.limits, no_sandbox)
    store = _workspace_store(candidate)
    err_console = _console(stderr=True)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="asmopt-verify-") as tmp,
            err_console.status("building the baseline") as status,
        ):
            judge = Judge.prepare(
                baseline,
                tests,
                Path(tmp),
                sandbox,
                options,
                store=store,
                compiler=compiler,
                cflags=cflags.split(),
                progress=lambda m: status.update(m),
            )
            result = judge.judge(
                candidate.read_text(errors="replace"),
                meta={"target": baseline.stem, "policy": "user", "source": str(candidate)},
                progress=lambda m: status.update(f"candidate: {m}"),
            )
            counts = None
            if instructions and result.all_passed:
                from asmopt.executor.callgrind import CallgrindError

                status.update("counting instructions (callgrind)")
                try:
                    counts = judge.instruction_counts(candidate.read_text(errors="replace"))
                except CallgrindError as err:
                    counts = {"error": str(err)}
    except (BaselineError, SandboxError) as err:
        _fail(str(err))
    finally:
        sandbox.close()
    if as_json:
        data = result.to_dict()
        if counts is not None:
            data["instructions"] = counts
        click.echo(json.dumps(data, indent=2))
    else:
        from asmopt.render import print_instructions, print_verification

        print_verification(_console(), result, candidate.name)
        if counts is not None:
            print_instructions(_console(), counts)
    sys.exit(0 if result.all_passed else 1)


def _make_sandbox(limits, no_sandbox: bool):
    from asmopt.executor.sandbox import Sandbox, SandboxUnavailable

    try:
        return Sandbox(limits, enabled=not no_sandbox)
    except SandboxUnavailable as err:
        _fail(str(err))


def _workspace_store(anchor: Path):
    """The result store of the workspace that holds ``anchor``: the nearest folder upwards
    with an ``asmopt.toml``, else with a ``compile_commands.json`` or ``.git``, else the
    file's own folder."""
    return _open_store(workspace_root(anchor))


def _open_store(root: Path):
    """The result store under ``root``, best effort: a store that cannot be used (corrupt
    and moved aside, a read-only workspace, a symbolic link) costs a warning, never the
    result."""
    from asmopt.executor.store import ResultStore

    return ResultStore(root, best_effort=True, warn=_warn)


def workspace_root(anchor: Path) -> Path:
    from asmopt.model.settings import config_root

    return config_root(anchor)


# -- optimize -------------------------------------------------------------------------------


@main.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--function",
    "-f",
    "function",
    default=None,
    help="Optimize only this function (default: the whole file).",
)
@click.option(
    "--tests",
    "tests_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of NAME.in / NAME.out tests (default: from asmopt.toml or tests/ "
    "beside the source).",
)
@click.option(
    "--target",
    "target_name",
    default=None,
    help="The asmopt.toml target that builds and tests SOURCE (default: the first one).",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(["compiler", "transformers", "openai", "vllm"]),
    help="Policies to run (repeatable). Default: compiler, plus a configured LLM.",
)
@click.option(
    "--model",
    default=None,
    help="transformers: checkpoint directory or .gguf; vllm: that or a Hugging Face model id; "
    "openai: the served model's name.",
)
@click.option("--endpoint", default=None, help="OpenAI-compatible server URL (vllm serve, ...).")
@click.option(
    "--api-key",
    envvar="ASMOPT_API_KEY",
    default=None,
    show_envvar=True,
    help="openai: bearer token for the endpoint (else $OPENAI_API_KEY).",
)
@click.option("-n", "--samples", type=int, default=None, help="Samples per LLM policy.")
@click.option("--temperature", type=float, default=None)
@click.option("--max-new-tokens", type=int, default=None, help="Tokens per answer at most.")
@click.option(
    "--refine",
    "refine_rounds",
    type=int,
    default=None,
    help="Revisions per sample: the verifier's findings go back to the model this many times "
    "(default 1; 0: plain sampling).",
)
@click.option("--tensor-parallel-size", type=int, default=None, help="vllm: GPUs per model.")
@click.option("--max-model-len", type=int, default=None, help="vllm: prompt + answer tokens.")
@click.option(
    "--show-answers", is_flag=True, help="Print every raw answer of the model after the report."
)
@click.option(
    "--allow-native",
    is_flag=True,
    help="Allow -march=native candidates (non-portable; labelled as such).",
)
@click.option(
    "--march-level",
    type=click.Choice(["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]),
    default=None,
    help="The CPU level the code will run on; above x86-64, candidates built for it are "
    "tried too (labelled with what they require). Default: x86-64 (portable).",
)
@click.option("--budget", type=float, default=None, help="Seconds of benchmarking per candidate.")
@click.option("--workers", type=int, default=None, help="Verifications at once (default: cores).")
@click.option(
    "--go-on",
    is_flag=True,
    help="Optimize even when the program's run is mostly start-up and libc.",
)
@click.option(
    "--no-racing",
    is_flag=True,
    help="Time every candidate to its CI target, even those that surely cannot win.",
)
@click.option("--write", "write", is_flag=True, help="Write the winner to PROG.opt.s.")
@click.option("--force", is_flag=True, help="With --write: replace an existing PROG.opt.s.")
@click.option("--json", "as_json", is_flag=True, help="Print the winner as one JSON object.")
@sandbox_options
def optimize(source: Path, function: str | None, tests_dir: Path | None,
             target_name: str | None, policies: tuple[str, ...], model: str | None,
             endpoint: str | None, api_key: str | None, samples: int | None,
             temperature: float | None, max_new_tokens: int | None, refine_rounds: int | None,
             tensor_parallel_size: int | None, max_model_len: int | None, show_answers: bool,
             allow_native: bool, march_level: str | None, budget: float | None,
             workers: int | None, go_on: bool, no_racing: bool, write: bool, force: bool,
             as_json: bool, no_sandbox: bool, timeout: float) -> None:  # fmt: skip
    """Find a faster verified version of SOURCE (.c or .s) than gcc -O3.

    Each verified speed-up is printed as soon as it is known; Ctrl-C stops and keeps what
    was verified. Exit status: 0 a faster candidate was found, 1 none was, 2 the job could
    not run, 130 stopped before anything faster was verified.
    """
    from asmopt.model.search.optimizer import OptimizeError, OptimizeRequest
    from asmopt.model.search.optimizer import optimize as run_optimize
    from asmopt.model.settings import SettingsError, Target, load_config

    if not source.exists():
        _fail(f"{source} does not exist")
    root = workspace_root(source)
    try:
        config = load_config(root)
        settings = config.settings.replace(
            policies=list(policies) or None, model=model, endpoint=endpoint, samples=samples,
            temperature=temperature, allow_native=allow_native or None, bench_budget=budget,
            workers=workers, sandbox=False if no_sandbox else None, test_timeout=timeout,
            max_new_tokens=max_new_tokens, refine_rounds=refine_rounds,
            tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len,
            api_key=api_key,
            march_level=march_level, go_on=go_on or None, racing=False if no_racing else None,
        )  # fmt: skip
    except SettingsError as err:
        _fail(str(err))
    target = None
    if target_name is not None:
        try:
            target = config.target_named(target_name)
        except SettingsError as err:
            _fail(str(err))
        if not target.owns(source):
            _fail(f"target {target_name!r} does not list {source}: add it to its sources")
    if tests_dir is not None:
        if not tests_dir.is_dir():
            _fail(f"test directory {tests_dir} does not exist")
        target = Target(name=source.stem, sources=(source.resolve(),), tests=tests_dir.resolve())
    out_path = source.with_name(source.stem + ".opt.s")
    if write and out_path.exists() and not force:
        _fail(f"{out_path} exists: pass --force to replace it, or move it away")
    # Only the transformers back-end needs a local file; vllm takes hub ids, openai names.
    local_only = "transformers" in settings.effective_policies()
    if model is not None and not Path(model).expanduser().exists() and local_only:
        _fail(
            f"model path {model} does not exist: the transformers policy loads a local "
            "checkpoint directory or .gguf; for a Hugging Face id use --policy vllm, or serve it "
            "(vllm serve, asmopt serve-model) and use --policy openai --endpoint URL"
        )

    request = OptimizeRequest(source, function, settings, target=target, workspace=root)
    outcome = _run_with_progress(run_optimize, request, _open_store(root), quiet=as_json)
    if isinstance(outcome, OptimizeError):
        _fail(str(outcome))
    if outcome is None:
        _fail("cancelled", code=EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(_outcome_json(outcome), indent=2))
    elif outcome.startup_bound:
        from rich.markup import escape

        _console().print(f"[yellow]not optimized:[/] {escape(outcome.message)}")
    else:
        from asmopt.render import print_outcome

        print_outcome(_console(), outcome)
        if show_answers:
            _print_answers(outcome)
    if write and outcome.winner is not None:
        out_path.write_text(outcome.winner.candidate.asm)
        if not as_json:
            _console().print(f"wrote {out_path}")
    if outcome.winner is None and outcome.cancelled:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK if outcome.winner is not None else EXIT_NO)


def _run_with_progress(run, request, store, quiet: bool):
    """Run the job in a thread while a progress line shows its stage, and print each verified
    speed-up as soon as it is known. Ctrl-C stops the job; what was verified is kept (a
    second Ctrl-C leaves at once).
    An exception of the job is raised here, in the command, for :class:`_Commands`."""
    import threading

    from rich.markup import escape

    from asmopt.model.search.optimizer import OptimizeError

    cancel = threading.Event()
    box: dict[str, object] = {}
    stage_text = {"text": "starting"}
    started = time.monotonic()
    console = _stderr_console()

    def progress(stage: str, message: str) -> None:
        stage_text["text"] = f"{stage}: {message}"

    def on_update(update) -> None:  # portfolio.SoFar
        # Printed with --json too: on stderr, while stdout keeps the one JSON object.
        after = f"{time.monotonic() - started:.0f} s"
        if update.final:
            console.print(
                f"[green]faster:[/] {escape(update.label)} — {update.median:.2f}x "
                f"[{update.ci_low:.2f}–{update.ci_high:.2f}] ({after})",
                highlight=False,
            )
        else:
            console.print(
                f"[green]so far:[/] {escape(update.label)} — {escape(update.text)} "
                f"(95% CI [{update.ci_low:.2f}–{update.ci_high:.2f}] after {update.rounds} "
                f"rounds; {after})",
                highlight=False,
            )

    def work() -> None:
        try:
            box["outcome"] = run(
                request, store=store, progress=progress, cancel=cancel, on_update=on_update
            )
        except OptimizeError as err:
            box["outcome"] = err
        except BaseException as err:  # raised again in the main thread, below
            box["error"] = err
        finally:
            done.set()

    # An Event, not Thread.join: a join that Ctrl-C interrupts leaves the thread's lock
    # released (CPython 3.11), so that a second join returns at once.
    done = threading.Event()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()

    def wait() -> None:
        if quiet or not console.is_terminal:
            last = ""
            while not done.wait(0.2):
                if not quiet and stage_text["text"] != last:
                    last = stage_text["text"]
                    console.print(f"[dim]{escape(last)}[/]")
        else:
            with console.status("starting") as status:
                while not done.wait(0.1):
                    status.update(escape(stage_text["text"]))

    try:
        wait()
    except KeyboardInterrupt:
        cancel.set()
        console.print("[yellow]stopping: keeping what was verified (Ctrl-C again to quit)[/]")
        try:
            done.wait(30)
        except KeyboardInterrupt:
            _fail("cancelled", code=EXIT_INTERRUPTED)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("outcome")


def _outcome_json(outcome) -> dict:
    """The winner in `asmopt verify --json`'s schema plus its policy; `not-faster` without."""
    if outcome.winner is not None:
        data = outcome.winner.result.to_dict()
        data.update(policy=outcome.winner.candidate.policy, label=outcome.winner.candidate.label)
    else:
        passing = [c for c in outcome.candidates if c.result.all_passed]
        best = passing[0] if passing else (outcome.candidates[0] if outcome.candidates else None)
        data = (
            best.result.to_dict()
            if best
            else {"tests": {"passed": 0, "total": 0, "verdicts": []}, "speedup": None}
        )
        data.update(
            policy=best.candidate.policy if best else None,
            label=best.candidate.label if best else None,
        )
        data["verdict"] = "not-faster"
    data["message"] = outcome.message
    data["unusable"] = list(outcome.unusable)
    data["notes"] = list(outcome.notes)
    data["answers"] = [a.to_dict() for a in outcome.answers]
    data["target"] = outcome.target
    data["target_notes"] = list(outcome.target_notes)
    if outcome.startup_bound:
        data["startup_bound"] = outcome.startup_bound
        data["profile"] = outcome.profile
    data["candidates"] = [
        {
            "policy": c.candidate.policy,
            "label": c.candidate.label,
            "kind": c.kind,
            "verdict": c.result.verdict.value,
            "tests_passed": c.result.tests_passed,
            "tests_total": len(c.result.tests),
            "speedup": c.result.speedup.to_dict() if c.result.speedup else None,
        }
        for c in outcome.candidates
    ]
    return data


def _print_answers(outcome) -> None:
    """Every raw answer of the model, by sample and round, with why an unusable one was."""
    from rich.markup import escape

    console = _console()
    if not outcome.answers:
        console.print("no model answers (no LLM policy ran)")
    for a in outcome.answers:
        state = "usable" if a.usable else f"unusable: {a.reason}"
        console.print(f"[bold]── {escape(a.label)} (round {a.round}, {escape(state)})[/]")
        console.print(escape(a.text) if a.text.strip() else "[dim](empty answer)[/]")


# -- profile --------------------------------------------------------------------------------


@main.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--tests",
    "tests_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of NAME.in tests (default: from asmopt.toml or tests/ beside the source).",
)
@click.option(
    "--budget",
    type=float,
    default=8.0,
    show_default=True,
    help="Seconds of valgrind at most: the quickest tests that fit are profiled.",
)
@click.option("--all-tests", is_flag=True, help="Profile every test, however long it takes.")
@click.option("--top", type=int, default=10, show_default=True, help="Functions to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as one JSON object.")
@sandbox_options
def profile(source: Path, tests_dir: Path | None, budget: float, all_tests: bool, top: int,
            as_json: bool, no_sandbox: bool, timeout: float) -> None:  # fmt: skip
    """Where SOURCE's work goes: its hottest functions by instructions executed on its tests
    (callgrind in the sandbox; instructions, not time)."""
    from rich.markup import escape
    from rich.table import Table

    from asmopt.model.search.optimizer import OptimizeError, OptimizeRequest, profile_program
    from asmopt.model.settings import SettingsError, Target, load_config

    if not source.exists():
        _fail(f"{source} does not exist")
    root = workspace_root(source)
    try:
        settings = load_config(root).settings.replace(
            sandbox=False if no_sandbox else None, test_timeout=timeout
        )
    except SettingsError as err:
        _fail(str(err))
    target = None
    if tests_dir is not None:
        if not tests_dir.is_dir():
            _fail(f"test directory {tests_dir} does not exist")
        target = Target(name=source.stem, sources=(source.resolve(),), tests=tests_dir.resolve())
    request = OptimizeRequest(source, None, settings, target=target, workspace=root)
    try:
        with _console(stderr=True).status("profiling (valgrind --tool=callgrind)"):
            name, prof = profile_program(request, budget=budget, every_test=all_tests)
    except OptimizeError as err:
        _fail(str(err))
    if as_json:
        click.echo(json.dumps({"target": name, **prof.to_dict()}, indent=2))
        return
    console = _console()
    table = Table(title=f"{name}: instructions executed per function (callgrind; not time)")
    table.add_column("function")
    table.add_column("instructions", justify="right")
    table.add_column("share", justify="right")
    for f in prof.functions[:top]:
        table.add_row(escape(f.name), f"{f.instructions:,}", f"{f.share:.1%}")
    console.print(table)
    skipped = ""
    if prof.skipped:
        skipped = f"; {', '.join(prof.skipped)} left out to stay within {budget:g} s"
    console.print(
        f"its own code: {prof.own_share:.1%} of {prof.total:,} instructions (the rest: "
        f"start-up, loader, libc); tests profiled: {', '.join(prof.tests)}{skipped}; "
        f"{prof.seconds:.1f} s"
    )
    bound = prof.startup_bound()
    if bound:
        console.print(f"[yellow]start-up bound:[/] {escape(bound)}")


# -- bench ----------------------------------------------------------------------------------


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--policy",
    "policies",
    multiple=True,
    default=("compiler",),
    show_default=True,
    help="compiler, transformers, openai, vllm, or baseline (a copy: calibrates the harness). "
    "Repeat to pool several.",
)
@click.option("--model", default=None, help="Checkpoint directory, .gguf or model id/name.")
@click.option("--endpoint", default=None, help="OpenAI-compatible base URL (openai policy).")
@click.option("-n", "--samples", type=int, default=1, show_default=True, help="Samples per row.")
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="Verification processes (0: one per core; 1: all in this process).",
)
@click.option(
    "--ray",
    "ray_address",
    default=None,
    help="Run verification on Ray: host:port, ray://host:10001, auto, or local.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Results, resume state and report (default: asmopt-bench/<data>-<policy>).",
)
@click.option(
    "--max-tests", type=int, default=10, show_default=True, help="First N tests of each row."
)
@click.option(
    "--budget",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds of benchmarking per candidate at most.",
)
@ci_option
@click.option(
    "--compare",
    type=click.Choice(["exact", "tokens", "floats"]),
    default="exact",
    show_default=True,
    help="Output comparison (exact: the paper's rule).",
)
@click.option(
    "--skip-invalid", is_flag=True, help="Leave out malformed rows (listed) instead of stopping."
)
@click.option("--limit", type=int, default=None, help="Only the first N rows.")
@click.option(
    "--temperature", type=float, default=0.5, show_default=True, help="LLM sampling temperature."
)
@sandbox_options
def bench(
    data: Path,
    policies: tuple[str, ...],
    model: str | None,
    endpoint: str | None,
    samples: int,
    workers: int,
    ray_address: str | None,
    out_dir: Path | None,
    max_tests: int,
    budget: float,
    target_ci: float,
    compare: str,
    skip_invalid: bool,
    limit: int | None,
    temperature: float,
    no_sandbox: bool,
    timeout: float,
) -> None:
    """Generate, verify and benchmark every row of DATA (parquet, JSONL or a directory of
    targets); write report.json, report.md and plots under --out. Resumable: run the same
    command again after an interruption."""
    from asmopt.executor.benchmark import BenchmarkOptions
    from asmopt.executor.sandbox import SandboxLimits
    from asmopt.executor.testcases import Comparator
    from asmopt.executor.verify import VerifyOptions
    from asmopt.model.evaluation.dataset import DataSet, DatasetError, read_dataset
    from asmopt.model.evaluation.evaluate import (
        BenchError,
        BenchInterrupted,
        BenchOptions,
        PolicySpec,
        describe,
        options_summary,
        run_bench,
    )
    from asmopt.model.evaluation.report import build_report, remove_report, write_report

    if samples < 1:
        _fail("-n/--samples must be at least 1")
    try:
        dataset = read_dataset(data, max_tests=max_tests, skip_invalid=skip_invalid)
    except DatasetError as err:
        _fail(str(err))
    err_console = _console(stderr=True)
    for reason in dataset.skipped:
        err_console.print(f"[yellow]skipped:[/] {reason}")
    if limit is not None:
        dataset = DataSet(dataset.origin, dataset.problems[:limit], dataset.skipped)
    spec = PolicySpec(
        names=tuple(policies), model=model, endpoint=endpoint, temperature=temperature
    )
    out_dir = out_dir or Path("asmopt-bench") / f"{Path(data).stem}-{spec.label}"
    options = BenchOptions(
        samples=samples,
        workers=workers,
        ray_address=ray_address,
        sandbox=not no_sandbox,
        generation_workers=4 if endpoint else 1,  # a served model takes parallel requests
        verify=VerifyOptions(
            comparator=Comparator(mode=compare),  # type: ignore[arg-type]
            limits=SandboxLimits(wall_seconds=timeout, cpu_seconds=int(timeout) + 1),
            bench=BenchmarkOptions(target_rel_ci=target_ci, budget_seconds=budget),
        ),
    )
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    remove_report(out_dir)
    progress = Progress(
        TextColumn("[bold]bench[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    try:
        with progress:
            task = progress.add_task("rows", total=len(dataset.problems), last="")

            def on_row(row, done: int, total: int) -> None:
                mark = " (stored)" if row.cached else ""
                progress.update(task, completed=done, last=f"{row.name}: {row.status}{mark}")

            result = run_bench(dataset, spec, out_dir, options, on_row=on_row)
    except BenchInterrupted as err:
        err_console.print(f"[yellow]{err}[/] (no report written)")
        sys.exit(EXIT_INTERRUPTED)
    except BenchError as err:
        _fail(str(err))
    report = build_report(result, data=str(data), options=options_summary(options))
    write_report(report, out_dir)
    p, h = report["paper"], report["honest"]

    def x(v):
        return "—" if v is None else f"{v:.2f}x"

    console = _console()
    console.print(describe(result))
    console.print(
        f"paper:  compile {p['compile_rate']:.1f}%  pass {p['pass_rate']:.1f}%  "
        f"mean {x(p['mean_speedup'])}  geomean {x(p['geomean_speedup'])}  "
        f"p25/50/75 {x(p['p25'])}/{x(p['p50'])}/{x(p['p75'])}"
    )
    console.print(
        f"honest: pass {h['pass_rate']:.1f}% (no copies)  geomean {x(h['geomean_speedup'])} "
        f"[{x(h['ci_low'])}–{x(h['ci_high'])}]  significantly faster "
        f"{100 * h['faster_share']:.1f}%  slower {100 * h['slower_share']:.1f}%"
    )
    console.print(f"report: {out_dir / 'report.md'} ({report['status']})")
    sys.exit(0 if report["complete"] else 1)


# -- dataset --------------------------------------------------------------------------------


@main.group()
def dataset() -> None:
    """Build and inspect data sets in the paper's verl parquet format."""


@dataset.command("build")
@click.argument("src_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--min-speedup",
    type=float,
    default=None,
    help="Keep programs whose -O0 build is at least this many times slower than -O3 "
    "(the paper: 3).",
)
@click.option("--val", "val_fraction", type=float, default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tokenizer", default=None, help="tokenizer.json or a tokenizer directory.")
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help="Drop rows whose question + answer exceed this many tokens (the paper: 4000).",
)
@click.option("--max-tests", type=int, default=10, show_default=True)
@click.option(
    "--compare",
    type=click.Choice(["exact", "tokens", "floats"]),
    default="tokens",
    show_default=True,
    help="How given .out files are checked against the gcc -O3 build.",
)
@click.option("--jsonl", is_flag=True, help="Also write the rows as JSON lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@sandbox_options
def dataset_build(
    src_dir: Path,
    out_dir: Path,
    min_speedup: float | None,
    val_fraction: float,
    seed: int,
    tokenizer: str | None,
    max_tokens: int | None,
    max_tests: int,
    compare: str,
    jsonl: bool,
    as_json: bool,
    no_sandbox: bool,
    timeout: float,
) -> None:
    """Build train/val parquet from SRC_DIR (C programs with tests, or an asmopt.toml)."""
    from asmopt.model.evaluation.dataset import (
        BuildOptions,
        DatasetError,
        build_dataset,
        load_tokenizer,
    )

    if max_tokens is not None and tokenizer is None:
        _fail("--max-tokens needs --tokenizer PATH")
    try:
        counter = load_tokenizer(tokenizer) if tokenizer else None
        options = BuildOptions(
            min_speedup=min_speedup,
            val_fraction=val_fraction,
            seed=seed,
            tokenizer=counter,
            max_tokens=max_tokens,
            max_tests=max_tests,
            compare=compare,
            timeout=timeout,
            sandbox=not no_sandbox,
            jsonl=jsonl,
        )
        with _console(stderr=True).status("building") as status:
            summary = build_dataset(
                src_dir,
                out_dir,
                options,
                progress=lambda name, i, n: status.update(f"{i}/{n} {name}"),
            )
    except DatasetError as err:
        _fail(str(err))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        console = _console()
        console.print(
            f"{summary.train} train, {summary.val} val, {len(summary.dropped)} dropped -> {out_dir}"
        )
        for d in summary.dropped:
            console.print(f"  dropped {d.name}: {d.reason} ({d.detail})")
    sys.exit(0)


@dataset.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def dataset_show(file: Path, as_json: bool) -> None:
    """Summarize a data set: rows, splits, tests per row, assembly size."""
    from asmopt.model.evaluation.dataset import DatasetError, read_dataset, summarize

    try:
        data = read_dataset(file, max_tests=None, skip_invalid=True)
    except DatasetError as err:
        _fail(str(err))
    summary = summarize(data)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console = _console()
    console.print(f"[bold]{summary['origin']}[/]: {summary['rows']} rows")
    console.print(f"  splits: {summary['splits']}")
    t, a = summary["tests_per_row"], summary["asm_lines"]
    console.print(f"  tests per row: {t['min']}–{t['max']} (mean {t['mean']:.1f})")
    console.print(f"  baseline assembly lines: {a['min']}–{a['max']} (mean {a['mean']:.0f})")
    console.print(
        f"  with C source: {summary['with_c_source']}, with precompiled baseline: "
        f"{summary['with_baseline_binary']}"
    )
    if summary["prompt_matches_template"] is not None:
        console.print(
            f"  prompts equal to the paper's template: "
            f"{100 * summary['prompt_matches_template']:.0f}%"
        )
    for reason in summary["skipped"]:
        console.print(f"  [yellow]invalid:[/] {reason}")


# -- train ----------------------------------------------------------------------------------


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["local", "verl"]),
    default="local",
    show_default=True,
    help="local: the compact PPO trainer (CPU or one GPU); verl: verl on Ray + vLLM.",
)
@click.option("--model", required=True, help="Checkpoint directory or .gguf to start from.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory: checkpoint, metrics.jsonl, metrics.png (resumed if present).",
)
@click.option("--steps", type=int, default=None, help="Stop after N steps (default: 1 epoch).")
@click.option(
    "--reward",
    type=click.Choice(["asmopt", "design1", "design2"]),
    default="asmopt",
    show_default=True,
    help="asmopt's reward, or the paper's design 1 / design 2.",
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", "actor_lr", type=float, default=1e-6, show_default=True)
@click.option("--critic-lr", type=float, default=1e-5, show_default=True)
@click.option("--temperature", type=float, default=0.5, show_default=True)
@click.option("--max-new-tokens", type=int, default=2000, show_default=True)
@click.option("--max-prompt-tokens", type=int, default=2000, show_default=True)
@click.option(
    "--kl-coef",
    type=float,
    default=0.0,
    show_default=True,
    help="KL penalty to the starting model (local; the paper uses none).",
)
@click.option(
    "--micro-batch-size",
    type=int,
    default=1,
    show_default=True,
    help="Samples per forward/backward (local): gradient accumulation.",
)
@click.option(
    "--save-every",
    type=int,
    default=1,
    show_default=True,
    help="Steps between checkpoints (verl: trainer.save_freq).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="local: random seed.")
@click.option("--device", default="auto", show_default=True, help="local: auto, cpu, cuda, cuda:N.")
@click.option(
    "--dtype",
    type=click.Choice(["auto", "float32", "bf16-mixed", "bfloat16"]),
    default="auto",
    show_default=True,
    help="local: auto is bf16-mixed on CUDA (float32 master weights, bf16 autocast), float32 "
    "on the CPU; bfloat16 weights lose most updates at lr 1e-6. verl always trains mixed.",
)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    default=None,
    help="Recompute activations in the backward pass (default: off locally, on with verl, "
    "as in the paper). Needed for 7B models at 4k tokens.",
)
@click.option("--workers", type=int, default=None, help="Reward worker processes.")
@click.option(
    "--bench-budget",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds of benchmarking per correct candidate.",
)
@click.option(
    "--metric",
    type=click.Choice(["time", "instructions"]),
    default="time",
    show_default=True,
    help="asmopt reward's speed metric (instructions: callgrind).",
)
@click.option(
    "--extraction",
    type=click.Choice(["asmopt", "paper"]),
    default="asmopt",
    show_default=True,
    help="How the answer is read: the last ```assembly block (asmopt), or the paper's "
    "whole response with the fences stripped (use with --reward design1/design2).",
)
@click.option(
    "--val",
    type=click.Path(path_type=Path),
    default=None,
    help="verl: validation data (default: hold out 2.5% of DATA).",
)
@click.option("--gpus", type=int, default=4, show_default=True, help="verl: GPUs per node.")
@click.option("--nnodes", type=int, default=1, show_default=True, help="verl: nodes.")
@click.option("--dry-run", is_flag=True, help="verl: write the data and print the command only.")
@click.option("--no-sandbox", is_flag=True, help="Run generated code WITHOUT bubblewrap.")
@click.pass_context
def train(ctx: click.Context, data: Path, engine: str, model: str, out_dir: Path,
          steps: int | None, reward: str, batch_size: int, actor_lr: float, critic_lr: float,
          temperature: float, max_new_tokens: int, max_prompt_tokens: int, kl_coef: float,
          micro_batch_size: int, save_every: int, seed: int, device: str, dtype: str,
          gradient_checkpointing: bool | None, workers: int | None, bench_budget: float,
          metric: str, extraction: str, val: Path | None, gpus: int, nnodes: int,
          dry_run: bool, no_sandbox: bool) -> None:  # fmt: skip
    """Train a model with PPO on DATA (the paper's parquet/JSON lines, or a directory of
    targets), rewards from the sandboxed executor. Running it again resumes from --out."""
    from click.core import ParameterSource

    from asmopt.model.training.ppo import PPOConfig, TrainError
    from asmopt.model.training.reward import RewardSettings
    from asmopt.model.training.train import launch_verl, train_local

    def given(*names: str) -> list[str]:
        return [
            "--" + n.replace("_", "-")
            for n in names
            if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)
        ]

    if not data.exists():
        _fail(f"{data} does not exist: pass a .parquet, .jsonl or a directory of targets")
    # No option is silently ignored: each engine refuses the other's.
    if engine == "verl":
        ignored = given("seed", "device")
        if dtype not in ("auto", "bf16-mixed"):
            ignored.append(f"--dtype {dtype}")
        if ignored:
            _fail(
                f"{', '.join(ignored)} only apply to --engine local: verl seeds and places its "
                "workers itself and always trains float32 master weights with bf16 compute; "
                "drop them"
            )
    else:
        ignored = given("val", "gpus", "nnodes", "dry_run")
        if ignored:
            _fail(f"{', '.join(ignored)} only apply to --engine verl; drop them")
    try:
        settings = RewardSettings(bench_budget=bench_budget, sandbox=not no_sandbox,
                                  metric=metric, extraction=extraction)  # fmt: skip
        if engine == "verl":
            code = launch_verl(
                data, model, out_dir, val=val, dry_run=dry_run, reward=reward,
                reward_settings=settings, batch_size=batch_size, actor_lr=actor_lr,
                critic_lr=critic_lr, temperature=temperature,
                max_response_length=max_new_tokens, max_prompt_length=max_prompt_tokens,
                steps=steps, n_gpus_per_node=gpus, nnodes=nnodes, kl_coef=kl_coef,
                save_freq=save_every, micro_batch_size_per_gpu=micro_batch_size,
                gradient_checkpointing=True if gradient_checkpointing is None
                else gradient_checkpointing,
                **({"reward_workers": workers} if workers else {}),
                log=lambda m: _console(stderr=True).print(m, soft_wrap=True),
            )  # fmt: skip
            sys.exit(code)
        config = PPOConfig(
            batch_size=batch_size, actor_lr=actor_lr, critic_lr=critic_lr,
            temperature=temperature, max_new_tokens=max_new_tokens,
            max_prompt_tokens=max_prompt_tokens, kl_coef=kl_coef,
            mini_batch_size=batch_size, micro_batch_size=min(micro_batch_size, batch_size),
            steps=steps, save_every=save_every, seed=seed, device=device, dtype=dtype,
            gradient_checkpointing=bool(gradient_checkpointing),
        )  # fmt: skip
        _train_with_progress(train_local, data, model, out_dir, config, reward, settings, workers)
    except (TrainError, ValueError) as err:  # ValueError: a bad combination of options
        _fail(str(err))


def _train_with_progress(train_local, data, model, out_dir, config, reward, settings, workers):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = _console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:  # fmt: skip
        task = bar.add_task("loading the model", total=None)

        def progress(step: int, total: int, m: dict) -> None:
            bar.update(task, completed=step, total=total,
                       description=f"reward {m['reward_mean']:+.2f}  pass {m['pass_rate']:.0%}"
                       f"  speed-up {m['speedup_mean']:.2f}x")  # fmt: skip
            bar.console.print(
                f"step {step}/{total}: reward {m['reward_mean']:+.3f}, pass "
                f"{m['pass_rate']:.0%}, speed-up {m['speedup_mean']:.3f}, kl {m['kl']:.4f}, "
                f"policy loss {m['policy_loss']:+.4f}, value loss {m['value_loss']:.4f}, "
                f"entropy {m['entropy']:.3f}"
            )

        train_local(data, model, out_dir, config, reward=reward, reward_settings=settings,
                    workers=workers, progress=progress,
                    log=lambda m: bar.console.print(m))  # fmt: skip
    console.print(f"checkpoint: {out_dir / 'checkpoint'}; metrics: {out_dir / 'metrics.jsonl'}, "
                  f"{out_dir / 'metrics.png'}")  # fmt: skip


# -- doctor ---------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check the toolchain, sandbox, llvm-mca, valgrind and optional back-ends."""
    from asmopt.doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="asmopt doctor")
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail / fix")
        for c in checks:
            mark = {
                "ok": "[green]ok[/]",
                "missing": "[red]missing[/]",
                "optional": "[yellow]optional[/]",
            }[c.status]
            detail = c.detail if c.status == "ok" else c.fix or c.detail
            table.add_row(escape(c.name), mark, escape(detail))
        _console().print(table)
    sys.exit(1 if any(c.status == "missing" for c in checks) else 0)


# -- serve ----------------------------------------------------------------------------------


@main.command()
@click.option(
    "--stdio", "stdio", is_flag=True, default=True, help="Speak LSP on stdin/stdout (default)."
)
@click.option(
    "--tcp", "tcp", metavar="HOST:PORT", default=None, help="Listen on TCP instead (debugging)."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="What the server logs to stderr (the editor's output panel).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Check these options and that the server can be loaded, then exit (editors use it "
    "to report a bad configuration before starting the server).",
)
def serve(stdio: bool, tcp: str | None, log_level: str, check: bool) -> None:
    """Run the language server (docs/protocol.md)."""
    address = None
    if tcp is not None:
        host, _, port = tcp.rpartition(":")
        if not port.isdigit():
            _fail(f"--tcp wants HOST:PORT, got {tcp!r}")
        address = (host or "127.0.0.1", int(port))
    from asmopt.server.server import main as serve_main  # pygls only when serving

    if check:
        click.echo("asmopt serve: ok")
        return
    serve_main(address, log_level=log_level.lower())


# -- serve-model ----------------------------------------------------------------------------


@main.command("serve-model")
@click.option("--model", required=True, help="Checkpoint directory or .gguf (vllm: or an id).")
@click.option(
    "--backend",
    type=click.Choice(["transformers", "vllm"]),
    default="transformers",
    show_default=True,
    help="How to run the model.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8000, show_default=True, help="0 picks a free port.")
@click.option("--device", default="auto", show_default=True, help="transformers: auto, cpu, cuda.")
@click.option("--dtype", default="auto", show_default=True, help="bfloat16, float32, ...")
@click.option("--tensor-parallel-size", type=int, default=1, show_default=True, help="vllm.")
@click.option("--max-model-len", type=int, default=8192, show_default=True, help="vllm.")
@click.option("--served-model-name", default=None, help="The id /v1/models lists.")
def serve_model(model: str, backend: str, host: str, port: int, device: str, dtype: str,
                tensor_parallel_size: int, max_model_len: int,
                served_model_name: str | None) -> None:  # fmt: skip
    """Serve a model over an OpenAI-compatible HTTP API (for --policy openai --endpoint URL).

    It has no authentication: it binds 127.0.0.1 unless --host says otherwise.
    """
    from asmopt.model.search.openai_server import main as serve_main

    argv = ["--model", model, "--backend", backend, "--host", host, "--port", str(port),
            "--device", device, "--dtype", dtype,
            "--tensor-parallel-size", str(tensor_parallel_size),
            "--max-model-len", str(max_model_len)]  # fmt: skip
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    sys.exit(serve_main(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
