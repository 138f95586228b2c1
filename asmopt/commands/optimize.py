"""`asmopt optimize`: find a faster verified version of a source file than gcc -O3."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from asmopt.commands.common import (
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_OK,
    _console,
    _fail,
    _stderr_console,
    open_store,
    sandbox_options,
    tests_target,
    workspace_of,
)


@click.command()
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
@click.option(
    "--budget",
    type=float,
    default=None,
    help="Seconds of benchmarking per measurement (screening a candidate takes half).",
)
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
    from asmopt.model.settings import SettingsError

    if not source.exists():
        _fail(f"{source} does not exist")
    workspace = workspace_of(source)
    config = workspace.config
    try:
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
    target = _named_target(config, target_name, source) if target_name is not None else None
    if tests_dir is not None:
        target = tests_target(source, tests_dir)
    out_path = source.with_name(source.stem + ".opt.s")
    if write and out_path.exists() and not force:
        _fail(f"{out_path} exists: pass --force to replace it, or move it away")
    _check_model_path(model, settings)

    request = OptimizeRequest(
        source, function, settings, target=target, workspace=workspace.root, config=config
    )
    outcome = _run_with_progress(run_optimize, request, open_store(workspace), quiet=as_json)
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


def _named_target(config, name: str, source: Path):  # -> asmopt.model.settings.Target
    """The asmopt.toml target called ``name``, which must list ``source``."""
    from asmopt.model.settings import SettingsError

    try:
        target = config.target_named(name)
    except SettingsError as err:
        _fail(str(err))
    if not target.owns(source):
        _fail(f"target {name!r} does not list {source}: add it to its sources")
    return target


def _check_model_path(model: str | None, settings) -> None:
    """Refuse a --model path that does not exist where a local file is needed."""
    # Only the transformers back-end needs a local file; vllm takes hub ids, openai names.
    local_only = "transformers" in settings.effective_policies()
    if model is not None and not Path(model).expanduser().exists() and local_only:
        _fail(
            f"model path {model} does not exist: the transformers policy loads a local "
            "checkpoint directory or .gguf; for a Hugging Face id use --policy vllm, or serve it "
            "(vllm serve, asmopt serve-model) and use --policy openai --endpoint URL"
        )


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
    """The job's run record (``RunRecord``), the one the editor shows and the store keeps."""
    return outcome.record().to_dict()


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
