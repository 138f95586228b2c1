"""Diagnostics (source ``asmopt``): assembler errors of assembly buffers (checked in a thread,
debounced, per buffer version) and the failed tests of a function's last run, as
Information on the function's name."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.server.documents import Language

if TYPE_CHECKING:
    from asmopt.server.documents import Buffer
    from asmopt.server.server import AsmoptLanguageServer

SOURCE = "asmopt"
CHECK_DELAY = 0.4  # seconds of quiet before an assembly buffer is assembled
_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "note": types.DiagnosticSeverity.Information,
}


def _assembler_diagnostics(
    buffer: Buffer, text: str, settings_compiler: str
) -> list[types.Diagnostic]:
    """Assemble ``text`` (blocking) and locate its messages in the buffer."""
    from asmopt.executor.toolchain import check_assembly

    name = PurePosixPath(buffer.uri).name or "buffer.s"
    safe = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from the client
    found = check_assembly(safe, filename=name, assembler=settings_compiler, timeout=20)
    out = []
    for diag in found:
        if diag.file not in (None, name) and not str(diag.file).endswith("/" + name):
            continue
        severity = _SEVERITY.get(str(getattr(diag.severity, "value", diag.severity)).lower())
        if severity is None:
            severity = types.DiagnosticSeverity.Information
        line = max((diag.line or 1) - 1, 0)
        if diag.line is None and severity is not types.DiagnosticSeverity.Error:
            continue
        text_line = buffer.line(line)
        start = (
            max((diag.column or 1) - 1, 0)
            if diag.column
            else len(text_line) - len(text_line.lstrip())
        )
        out.append(
            types.Diagnostic(
                range=types.Range(
                    types.Position(line, start), types.Position(line, len(text_line))
                ),
                message=diag.message,
                severity=severity,
                source=SOURCE,
            )
        )
    return out


async def _test_diagnostics(server: AsmoptLanguageServer, buffer: Buffer) -> list[types.Diagnostic]:
    source = server.source_of(buffer.uri)
    if source is None:
        return []
    results = server.results.for_source(source)
    if not any(r.failed and not r.faster for r in results.values()):
        return []
    out = []
    for fn in await server.functions(buffer):
        result = results.get(fn.name)
        if result is None or result.faster or not result.failed:
            continue
        names = ", ".join(f"{t.name} ({t.status})" for t in result.failed[:5])
        more = f" and {len(result.failed) - 5} more" if len(result.failed) > 5 else ""
        out.append(
            types.Diagnostic(
                range=fn.name_range,
                message=(
                    f"best candidate ({result.policy or 'asmopt'}) failed "
                    f"{result.tests_total - result.tests_passed}/{result.tests_total} tests "
                    f"in the last run: {names}{more}"
                ),
                severity=types.DiagnosticSeverity.Information,
                source=SOURCE,
            )
        )
    return out


async def publish(server: AsmoptLanguageServer, uri: str) -> None:
    buffer = server.documents.get(uri)
    if buffer is None:
        return
    diagnostics: list[types.Diagnostic] = []
    if buffer.language is Language.ASM and not buffer.too_large:
        version = buffer.version
        cached = server.assembler_checks.get(uri)
        if cached is None or cached[0] != version:
            text = buffer.text
            compiler = server.options.settings.compiler
            found = await server.in_thread(_assembler_diagnostics, buffer, text, compiler)
            if server.documents.get(uri) is not buffer or buffer.text is not text:
                return  # changed meanwhile: the next check publishes
            cached = (version, found)
            server.assembler_checks[uri] = cached
        diagnostics.extend(cached[1])
    diagnostics.extend(await _test_diagnostics(server, buffer))
    if server.documents.get(uri) is buffer:
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=buffer.version)
        )


def schedule_diagnostics(
    server: AsmoptLanguageServer, uri: str, delay: float = CHECK_DELAY
) -> None:
    async def run() -> None:
        await publish(server, uri)

    server.debounce(uri, "diagnostics", delay, run)


def clear_diagnostics(server: AsmoptLanguageServer, uri: str) -> None:
    server.assembler_checks.pop(uri, None)
    server.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
    )


def register(server: AsmoptLanguageServer) -> None:
    def on_done(job: Any, result: Any) -> None:
        for buffer in server.buffers_of_source(str(job.source)):
            schedule_diagnostics(server, buffer.uri, delay=0.0)

    server.done_listeners.append(on_done)
