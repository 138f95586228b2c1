"""Applying a verified candidate: ``asmopt.applyCandidate`` sends ``workspace/applyEdit``, and
the ``asmopt/candidate`` request gives the client both sides for a diff first.

An assembly buffer gets one edit replacing the function's region with the candidate's version
of the function (or the whole buffer, for a whole-file result). A C buffer is left alone: the
edit creates (if missing) and fills ``PROG.opt.s`` beside it with the whole candidate. The
server never writes a user's file itself; the client applies the edit, undoably.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path

from asmopt.server.documents import Buffer, Language

# At run time, not only for type checkers: pygls reads command handlers' annotations.
from asmopt.server.server import AsmoptLanguageServer

if TYPE_CHECKING:
    from asmopt.model.search.outcome import RunRecord


@dataclass(frozen=True)
class PlannedEdit:
    """What applying a candidate would do: the text it replaces, the text it writes, and the
    edit itself."""

    original: str
    candidate: str
    target_uri: str
    edit: types.WorkspaceEdit


def _function_text(asm: str, name: str) -> str:
    from asmopt.executor.asmfile import function_text

    return function_text(asm, name)


def _opt_path(source: Path) -> Path:
    return source.with_name(f"{source.stem}.opt.s")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


async def plan_edit(
    server: AsmoptLanguageServer, uri: str, function: str | None
) -> PlannedEdit | str:
    """The edit that applies the best verified candidate, or a message saying why not."""
    source = server.source_of(uri)
    buffer = server.documents.get(uri)
    what = f"`{function}`" if function else "this file"
    if source is None or buffer is None:
        return f"open the file to apply a candidate for {what}"
    result = server.results.get(source, function)
    if result is None or not result.faster or result.asm is None:
        return f"no verified faster candidate for {what} yet: run Optimize first"
    if buffer.language is Language.ASM:
        return await _plan_asm(server, buffer, function, result)
    return await _plan_c(server, Path(source), function, result)


async def _plan_asm(
    server: AsmoptLanguageServer, buffer: Buffer, function: str | None, result: RunRecord
) -> PlannedEdit | str:
    assert result.asm is not None
    text, version = buffer.text, buffer.version
    if function is None:
        new, original = result.asm, text
        edit_range = types.Range(types.Position(0, 0), buffer.end_position())
    else:
        functions = await server.in_thread(buffer.asm_functions, text)
        fn = next((f for f in functions if f.name == function), None)
        if fn is None:
            name = buffer.uri.rsplit("/", 1)[-1]
            return f"`{function}` is no longer in {name} (renamed or deleted): nothing to replace"
        try:
            new = await server.in_thread(_function_text, result.asm, function)
        except Exception as err:
            return f"the stored candidate has no function `{function}` ({err})"
        start = buffer.offset_at(fn.range.start)
        end = buffer.offset_at(fn.range.end)
        original = text[start:end]
        edit_range = types.Range(fn.range.start, buffer.position_at(end))
    if buffer.text is not text:
        return "the buffer changed while the edit was prepared; try again"
    edit = types.WorkspaceEdit(
        document_changes=[
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(
                    uri=buffer.uri, version=version
                ),
                edits=[types.TextEdit(range=edit_range, new_text=new)],
            )
        ]
    )
    return PlannedEdit(original=original, candidate=new, target_uri=buffer.uri, edit=edit)


async def _plan_c(
    server: AsmoptLanguageServer, source: Path, function: str | None, result: RunRecord
) -> PlannedEdit | str:
    assert result.asm is not None
    target = _opt_path(source)
    target_uri = from_fs_path(str(target)) or target.as_uri()
    open_buffer = server.documents.get(target_uri)
    existing = (
        open_buffer.text if open_buffer is not None else await server.in_thread(_read, target)
    )
    changes: list[Any] = []
    version = open_buffer.version if open_buffer is not None else None
    if existing is None:
        changes.append(
            types.CreateFile(uri=target_uri, options=types.CreateFileOptions(ignore_if_exists=True))
        )
        end = types.Position(0, 0)
    else:
        if open_buffer is None:
            open_buffer = Buffer(target_uri, Language.ASM, existing, None, server.position_encoding)
        end = open_buffer.end_position()
    changes.append(
        types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(
                uri=target_uri, version=version
            ),
            edits=[
                types.TextEdit(range=types.Range(types.Position(0, 0), end), new_text=result.asm)
            ],
        )
    )
    # The diff shows what the candidate changes in gcc -O3's output: the assembly it was
    # measured against.
    return PlannedEdit(
        original=result.baseline_asm,
        candidate=result.asm,
        target_uri=target_uri,
        edit=types.WorkspaceEdit(document_changes=changes),
    )


def _param(params: Any, name: str) -> Any:
    if isinstance(params, dict):
        return params.get(name)
    return getattr(params, name, None)


def register(server: AsmoptLanguageServer) -> None:
    @server.command("asmopt.applyCandidate")
    async def apply_candidate(ls: AsmoptLanguageServer, *args: Any) -> Any:
        if not args or not isinstance(args[0], str):
            ls.show(
                "asmopt.applyCandidate needs [uri, functionName or null]", types.MessageType.Error
            )
            return {"applied": False}
        uri = args[0]
        function = args[1] if len(args) > 1 and isinstance(args[1], str) else None
        planned = await plan_edit(ls, uri, function)
        if isinstance(planned, str):
            ls.show(planned, types.MessageType.Warning)
            return {"applied": False, "reason": planned}
        result = ls.results.get(ls.source_of(uri) or "", function)
        label = f"asmopt: apply optimized {f'`{function}`' if function else 'file'}"
        if result is not None:
            label += f" ({result.median:.2f}×)"
        try:
            response = await ls.workspace_apply_edit_async(
                types.ApplyWorkspaceEditParams(edit=planned.edit, label=label)
            )
        except Exception as err:
            ls.show(f"the editor could not apply the edit: {err}", types.MessageType.Error)
            return {"applied": False, "reason": str(err)}
        if not response.applied:
            reason = response.failure_reason or "the editor refused it"
            ls.show(f"the edit was not applied: {reason}", types.MessageType.Warning)
            return {"applied": False, "reason": reason}
        return {"applied": True}

    @server.feature("asmopt/candidate")
    async def candidate(ls: AsmoptLanguageServer, params: Any) -> Any:
        uri = _param(params, "uri")
        function = _param(params, "function")
        if not isinstance(uri, str):
            return None
        function = function if isinstance(function, str) else None
        planned = await plan_edit(ls, uri, function)
        if isinstance(planned, str):
            return None
        result = ls.results.get(ls.source_of(uri) or "", function)
        assert result is not None
        s = result.speedup
        return {
            "original": planned.original,
            "candidate": planned.candidate,
            "targetUri": planned.target_uri,
            "function": function,
            "speedup": {
                "median": s.median,
                "ciLow": s.ci_low,
                "ciHigh": s.ci_high,
                "runs": s.runs,
            }
            if s
            else None,
            "testsPassed": result.tests_passed,
            "testsTotal": result.tests_total,
            "policy": result.policy,
            "label": result.label,
        }
