"""CodeLens above each function (docs/protocol.md): ``Optimize`` before any run,
``running… (stage)`` while one runs, then the result; refreshed whenever results change.
Beside it, once the file's program has been profiled, the function's share of the
instructions (:mod:`asmopt.server.features.profile`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.server.features.profile import profile_lenses
from asmopt.server.protocol import EncodedResult, encoded

if TYPE_CHECKING:
    from asmopt.server.documents import FunctionInfo
    from asmopt.server.server import AsmoptLanguageServer


def lens_for(
    server: AsmoptLanguageServer, uri: str, source: str | None, fn: FunctionInfo
) -> types.CodeLens:
    """The lens of one function."""
    at = types.Range(fn.range.start, fn.range.start)
    job = None
    if source is not None:
        job = server.jobs.find(source, fn.name) or server.jobs.find(source, None)
    if job is not None:
        return types.CodeLens(
            range=at,
            command=types.Command(
                title=f"running… ({job.stage}" + (f" · {job.so_far})" if job.so_far else ")"),
                command="asmopt.cancel",
                arguments=[uri, job.function],
            ),
        )
    result = server.results.get(source, fn.name) if source is not None else None
    if result is None:
        return types.CodeLens(
            range=at,
            command=types.Command(
                title="Optimize", command="asmopt.optimizeFunction", arguments=[uri, fn.name]
            ),
        )
    if result.faster:
        command = types.Command(
            title=result.lens_title(), command="asmopt.applyCandidate", arguments=[uri, fn.name]
        )
    else:
        command = types.Command(
            title=result.lens_title(), command="asmopt.optimizeFunction", arguments=[uri, fn.name]
        )
    return types.CodeLens(range=at, command=command)


def register(server: AsmoptLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_LENS)
    async def code_lens(
        ls: AsmoptLanguageServer, params: types.CodeLensParams
    ) -> list[types.CodeLens] | EncodedResult:  # encoded once, then served from a cache
        buffer = ls.documents.get(params.text_document.uri)
        if buffer is None or buffer.too_large:
            return []
        source = ls.source_of(buffer.uri)
        functions = await ls.functions(buffer)
        # Big files have hundreds of lenses: keep them, already in wire form, until the
        # buffer or any job or result changes.
        key = (
            buffer.version,
            functions,
            ls.results.generation,
            state["generation"],
            ls.profiles.generation,
        )
        cached = cache.get(buffer.uri)
        if (
            cached is not None
            and cached[0][0] == key[0]
            and cached[0][1] is functions
            and cached[0][2:] == key[2:]
        ):
            return cached[1]
        lenses = [lens_for(ls, buffer.uri, source, fn) for fn in functions]
        lenses += profile_lenses(ls, buffer.uri, source, functions)
        wire = encoded(ls.protocol._converter.unstructure(lenses))
        cache[buffer.uri] = (key, wire)
        if len(cache) > 64:
            cache.pop(next(iter(cache)))
        return wire

    cache: dict[str, tuple[Any, Any]] = {}
    state = {"generation": 0}

    def changed(job: Any, *_: Any) -> None:
        state["generation"] += 1
        server.refresh_views()

    server.job_listeners.append(changed)
    server.done_listeners.append(changed)
