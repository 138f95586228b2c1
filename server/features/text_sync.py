"""Keep buffers in step with the editor, and start the per-buffer background work: the
functions of assembly buffers, stored results, assembler diagnostics, the ``-g`` build that
C-line hovers read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from asmopt.server.documents import Language
from asmopt.server.results import load_results

if TYPE_CHECKING:
    from asmopt.server.documents import Buffer
    from asmopt.server.server import AsmoptLanguageServer

ANALYSE_DELAY = 0.15  # seconds of quiet before an assembly buffer is re-parsed


async def load_stored_results(server: AsmoptLanguageServer, uri: str) -> None:
    """Show what earlier runs found for this file without running anything."""
    path = server.path_of(uri)
    if path is None:
        return
    config, target, problem = await server.in_thread(server.target_for, path)
    if problem:
        server.warn_once(f"config:{problem}", f"{problem}; using the defaults")
    if target is None:
        return
    source = server.source_of(uri)
    # The workspace's store (beside the nearest asmopt.toml), where the worker and the CLI
    # keep their records.
    found = await server.in_thread(load_results, config.root, target.name, source)
    if found and server.results.merge(found):
        server.refresh_views()
        from asmopt.server.features.diagnostics import schedule_diagnostics

        schedule_diagnostics(server, uri, delay=0.0)


def analyse_later(server: AsmoptLanguageServer, buffer: Buffer) -> None:
    if buffer.language is not Language.ASM or buffer.too_large:
        return

    async def analyse() -> None:
        shown = buffer.stale_functions() if buffer.asm_parsed_once else None
        found = await server.functions(buffer, exact=True)
        if shown is not None and found != shown:
            server.refresh_views()  # the edits changed more than line numbers

    server.debounce(buffer.uri, "functions", ANALYSE_DELAY, analyse)


def register(server: AsmoptLanguageServer) -> None:
    from asmopt.server.features import profile
    from asmopt.server.features.diagnostics import clear_diagnostics, schedule_diagnostics
    from asmopt.server.features.hover import forget_build, schedule_debug_build

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: AsmoptLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        try:
            buffer = ls.documents.open(
                doc.uri, doc.language_id, doc.text, doc.version, ls.position_encoding
            )
        except Exception as err:  # a buffer asmopt cannot read is one it ignores
            ls.log(f"asmopt: cannot read {doc.uri}: {err}")
            return
        if buffer is None:
            return
        if buffer.too_large:
            ls.show(
                f"{doc.uri.rsplit('/', 1)[-1]} is too large ({len(doc.text) // 1000} kB) for "
                "asmopt's editor features; optimize it with `asmopt optimize` on the command line",
                types.MessageType.Warning,
            )
            return
        analyse_later(ls, buffer)
        ls.spawn(load_stored_results(ls, doc.uri))
        schedule_diagnostics(ls, doc.uri, delay=0.0)
        schedule_debug_build(ls, buffer, delay=0.3)
        profile.on_open(ls, doc.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: AsmoptLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        buffer = ls.documents.get(params.text_document.uri)
        if buffer is None:
            return
        try:
            buffer.apply_changes(params.content_changes, params.text_document.version)
        except Exception as err:
            # A change that does not fit the buffer: say so; the next full sync (reopening
            # the file) puts it right. Never let it stop the server.
            ls.log(f"asmopt: ignored a change to {buffer.uri} that does not apply ({err})")
            buffer.version = params.text_document.version
        if buffer.too_large:
            return
        analyse_later(ls, buffer)
        schedule_diagnostics(ls, buffer.uri)
        schedule_debug_build(ls, buffer)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: AsmoptLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        buffer = ls.documents.get(params.text_document.uri)
        if buffer is not None and not buffer.too_large:
            schedule_diagnostics(ls, buffer.uri, delay=0.0)
        profile.on_save(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: AsmoptLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        if ls.documents.close(uri) is not None:
            ls.forget(uri)
            forget_build(ls, uri)
            clear_diagnostics(ls, uri)
