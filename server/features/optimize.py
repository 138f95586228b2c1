"""Running the optimizer: ``asmopt.optimizeFunction``, ``asmopt.optimizeFile`` and
``asmopt.cancel``, with server-initiated work-done progress (stages baseline, generate,
verify, benchmark) that the user can cancel, and ``asmopt/status`` notifications.

Jobs run in worker processes (:mod:`asmopt.server.jobs`): one at a time, later ones queued;
a second run of a function already queued or running is refused with a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.model.search.stages import Stage
from asmopt.server.messages import ErrorMessage, JobEnd

# At run time, not only for type checkers: pygls reads command handlers' annotations.
from asmopt.server.server import AsmoptLanguageServer

if TYPE_CHECKING:
    from asmopt.server.jobs import Job

STAGE_PERCENT = {
    Stage.QUEUED: 0,
    Stage.BASELINE: 10,
    Stage.GENERATE: 30,
    Stage.VERIFY: 55,
    Stage.BENCHMARK: 80,
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


def _arguments(args: tuple[Any, ...], need_function: bool) -> tuple[str, str | None] | str:
    """(uri, function) from a command's arguments, or a message saying what is wrong."""
    if not args or not isinstance(args[0], str):
        return "the command needs the document's URI as its first argument"
    function = args[1] if len(args) > 1 else None
    if function is not None and not isinstance(function, str):
        return "the function name must be a string"
    if need_function and not function:
        return "the command needs a function name as its second argument"
    return args[0], function


async def start_run(server: AsmoptLanguageServer, uri: str, function: str | None) -> Job | None:
    """Check the request, queue the job and begin its progress; None (after a message) when
    it cannot run."""
    path = server.path_of(uri)
    name = uri.rsplit("/", 1)[-1]
    if path is None:
        server.show(
            f"save {name} to a file first: asmopt builds and tests files on disk",
            types.MessageType.Warning,
        )
        return None
    if path.suffix not in (".c", ".s", ".S", ".asm"):
        server.show(
            f"{name}: asmopt optimizes C (.c) and assembly (.s) files", types.MessageType.Warning
        )
        return None
    buffer = server.documents.get(uri)
    on_disk = await server.in_thread(_read, path)
    if on_disk is None:
        server.show(f"{path} cannot be read; save it first", types.MessageType.Warning)
        return None
    if buffer is not None:
        if buffer.text != on_disk:
            server.show(
                f"save {name} first: asmopt optimizes the file as saved", types.MessageType.Warning
            )
            return None
        if function is not None and function not in {
            f.name for f in await server.functions(buffer, exact=True)
        }:
            server.show(f"no function `{function}` in {name}", types.MessageType.Warning)
            return None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.settings_ready.wait(), timeout=10)
    _config, target, problem = await server.in_thread(server.target_for, path)
    if problem:
        server.show(f"{problem}; using the defaults", types.MessageType.Warning)
    settings = server.options.for_workspace(_config)
    submitted = server.jobs.submit(
        scratch=server.scratch(),
        uri=uri,
        source=path.resolve(),
        function=function,
        target=target.name if target is not None else path.stem,
        workspace=server.workspace_root(path),
        settings=settings.to_dict(),
    )
    if isinstance(submitted, str):
        server.show(submitted, types.MessageType.Warning)
        return None
    job = submitted
    await _begin_progress(server, job)
    server.send_status()
    server.refresh_views()
    return job


async def _begin_progress(server: AsmoptLanguageServer, job: Job) -> None:
    window = server.client_capabilities.window
    if not (window and window.work_done_progress):
        return
    token = f"asmopt-{job.id}-{uuid.uuid4().hex[:8]}"
    try:
        await server.work_done_progress.create_async(token)
    except Exception as err:
        server.log(f"asmopt: no progress for this run ({err})")
        return
    if job.state == "done":  # finished (or was cancelled) while the client answered
        return
    job.token = token
    server.work_done_progress.begin(
        token,
        types.WorkDoneProgressBegin(
            title=f"asmopt: optimizing {job.what}",
            cancellable=True,
            message=job.stage,
            percentage=STAGE_PERCENT.get(job.stage, 0),
        ),
    )


def _summary(job: Job, result: JobEnd) -> str:
    if isinstance(result, ErrorMessage):
        return f"{job.what}: {result.message}"
    if result.cancelled:
        return f"{job.what}: cancelled"
    if result.record is None:
        return f"{job.what}: no result"
    outcome = result.record
    if outcome.faster:
        return f"{job.what}: {outcome.lens_title()}"
    return f"{job.what}: {outcome.lens_title()}" + (
        f" ({result.message})" if result.message else ""
    )


def _report_progress(server: AsmoptLanguageServer, job: Job) -> None:
    """A job moved on: its progress report (stage, message, percentage) and the status."""
    if job.token is not None:
        server.work_done_progress.report(
            job.token,
            types.WorkDoneProgressReport(
                message=f"{job.stage}: {job.message}" if job.message else job.stage,
                percentage=STAGE_PERCENT.get(job.stage),
                cancellable=job.stage != "cancelling",
            ),
        )
    server.send_status()


def _job_done(server: AsmoptLanguageServer, job: Job, result: JobEnd) -> None:
    """A job ended: end its progress, keep its record, and say what the user must know."""
    summary = _summary(job, result)
    failed = isinstance(result, ErrorMessage)
    if job.token is not None:
        # The summary ends the progress; an error is said once, as an error message.
        end_message = None if failed else summary
        server.work_done_progress.end(job.token, types.WorkDoneProgressEnd(message=end_message))
        server.work_done_progress.tokens.pop(job.token, None)
    if isinstance(result, ErrorMessage):
        server.send_status()
        server.show(summary, types.MessageType.Error)
        return
    if result.record is not None and not result.cancelled:
        server.results.put(result.record)
    server.send_status()
    if result.cancelled:
        return
    buffers = server.buffers_of_source(str(job.source))
    if not buffers:
        server.show(f"{summary} (in {job.source.name}, which was closed; reopen it to apply)")
        return
    if job.function is not None:
        names = {f.name for f in buffers[0].stale_functions()}
        if job.function not in names:
            server.show(
                f"{summary}; `{job.function}` is no longer in {job.source.name} (renamed or "
                "deleted), so the candidate cannot be applied there",
                types.MessageType.Warning,
            )


def _parsed_or_said(
    ls: AsmoptLanguageServer, command: str, args: Any, *, need_function: bool
) -> tuple[str, str | None] | None:
    """The command's (uri, function), or None once the user was told what is wrong."""
    parsed = _arguments(args, need_function=need_function)
    if isinstance(parsed, str):
        ls.show(f"{command}: {parsed}", types.MessageType.Error)
        return None
    return parsed


def register(server: AsmoptLanguageServer) -> None:
    server.job_listeners.append(functools.partial(_report_progress, server))
    server.done_listeners.append(functools.partial(_job_done, server))

    @server.command("asmopt.optimizeFunction")
    async def optimize_function(ls: AsmoptLanguageServer, *args: Any) -> Any:
        parsed = _parsed_or_said(ls, "asmopt.optimizeFunction", args, need_function=True)
        if parsed is None:
            return None
        job = await start_run(ls, *parsed)
        return {"job": job.id} if job else None

    @server.command("asmopt.optimizeFile")
    async def optimize_file(ls: AsmoptLanguageServer, *args: Any) -> Any:
        parsed = _parsed_or_said(ls, "asmopt.optimizeFile", args[:1], need_function=False)
        if parsed is None:
            return None
        job = await start_run(ls, parsed[0], None)
        return {"job": job.id} if job else None

    @server.command("asmopt.cancel")
    async def cancel(ls: AsmoptLanguageServer, *args: Any) -> Any:
        parsed = _parsed_or_said(ls, "asmopt.cancel", args, need_function=False)
        if parsed is None:
            return None
        uri, function = parsed
        source = ls.source_of(uri)
        job = ls.jobs.find(source, function) if source else None
        if job is None:
            return {"cancelled": False}
        await ls.jobs.cancel(job)
        return {"cancelled": True}

    @server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    async def progress_cancelled(
        ls: AsmoptLanguageServer, params: types.WorkDoneProgressCancelParams
    ) -> None:
        job = ls.jobs.by_token(params.token)
        if job is not None:
            await ls.jobs.cancel(job)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: AsmoptLanguageServer, *args: Any) -> None:
        ls.cleanup()

    @server.feature(types.EXIT)
    def on_exit(ls: AsmoptLanguageServer, *args: Any) -> None:
        ls.cleanup()
