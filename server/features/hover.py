"""Hover. On a function name: the measured result (speed-up with CI, tests, policy) and
llvm-mca estimates, labelled as estimates, of the baseline and the candidate, then the
function's share of its program's instructions once the program has been profiled. On
another line of a C buffer: the instructions ``gcc -O3`` generated for that line, read from
a ``-g`` build of the buffer (made in a thread, once per buffer version) with
:func:`asmopt.executor.elf.instructions_for_line`."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from lsprotocol import types

from asmopt.server.documents import Language
from asmopt.server.profiles import hover_text as profile_hover

if TYPE_CHECKING:
    from asmopt.model.search.outcome import RunRecord
    from asmopt.server.documents import Buffer, FunctionInfo
    from asmopt.server.server import AsmoptLanguageServer

WAIT = 0.5  # seconds a hover waits for a build or an estimate before saying "computing"
BUILD_DELAY = 1.0  # seconds of quiet before a changed C buffer is rebuilt with -g
MAX_LINE_INSTRUCTIONS = 40


@dataclass(frozen=True)
class DebugBuild:
    """A ``-g`` build of one buffer version: its assembly and object, or why it failed."""

    asm: str | None
    obj: Path | None
    folder: Path | None
    error: str | None = None


def _debug_build(
    text: str,
    name: str,
    include: Path | None,
    compiler: str,
    cflags: tuple[str, ...],
    scratch: Path | None = None,
) -> DebugBuild:
    from asmopt.executor.toolchain import compile_to_asm, find_tool

    folder = Path(tempfile.mkdtemp(prefix="asmopt-hover-", dir=scratch))
    source = folder / name
    source.write_bytes(text.encode("utf-8", "replace"))
    asm_path = folder / (source.stem + ".s")
    flags = [*cflags, "-g"] + ([f"-I{include}"] if include else [])
    built = compile_to_asm(source, asm_path, compiler=compiler, flags=flags, timeout=60)
    if not built.ok:
        errors = [d.message for d in built.diagnostics if str(d.severity.value) == "error"]
        return DebugBuild(None, None, folder, errors[0] if errors else "gcc failed")
    asm = asm_path.read_text(errors="replace")
    obj = folder / (source.stem + ".o")
    tool = find_tool(compiler) or compiler
    try:
        done = subprocess.run(
            [tool, "-c", str(asm_path), "-o", str(obj)],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return DebugBuild(asm, None, folder, f"assembling failed: {err}")
    if done.returncode != 0:
        return DebugBuild(asm, None, folder, "assembling failed")
    return DebugBuild(asm, obj, folder)


def _line_instructions(build: DebugBuild, name: str, line: int) -> list[str]:
    from asmopt.executor.elf import instructions_for_line

    assert build.obj is not None
    return [i.text for i in instructions_for_line(build.obj, name, line)]


def schedule_debug_build(
    server: AsmoptLanguageServer, buffer: Buffer, delay: float = BUILD_DELAY
) -> None:
    """Rebuild a C buffer with ``-g`` once it has been quiet for ``delay`` seconds."""
    if buffer.language is not Language.C or buffer.too_large:
        return

    async def build() -> None:
        debug_build(server, buffer)

    server.debounce(buffer.uri, "debug-build", delay, build)


def debug_build(server: AsmoptLanguageServer, buffer: Buffer) -> asyncio.Future[DebugBuild]:
    """The (possibly running) ``-g`` build of the buffer's current version."""
    cached = server.debug_builds.get(buffer.uri)
    if cached is not None and cached[0] == buffer.version and cached[2] is buffer.text:
        return cached[1]
    if cached is not None:
        _discard(server, cached[1])
    path = server.path_of(buffer.uri)
    name = PurePosixPath(buffer.uri).name
    if not name.endswith(".c"):
        name += ".c"
    settings = server.options.settings
    future = asyncio.ensure_future(
        server.in_thread(
            _debug_build,
            buffer.text,
            name,
            path.parent if path else None,
            settings.compiler,
            tuple(settings.cflags),
            server.scratch(),
        )
    )
    server.debug_builds[buffer.uri] = (buffer.version, future, buffer.text)
    return future


def forget_build(server: AsmoptLanguageServer, uri: str) -> None:
    """Drop a closed buffer's build (and its temporary folder)."""
    cached = server.debug_builds.pop(uri, None)
    if cached is not None:
        _discard(server, cached[1])


def _discard(server: AsmoptLanguageServer, future: asyncio.Future[DebugBuild]) -> None:
    def remove(done: asyncio.Future[DebugBuild]) -> None:
        if not done.cancelled() and done.exception() is None and done.result().folder:
            server.spawn(server.in_thread(shutil.rmtree, done.result().folder, True))

    future.add_done_callback(remove)


async def _estimate(server: AsmoptLanguageServer, asm: str, name: str) -> str:
    key = (hashlib.sha1(asm.encode("utf-8", "replace")).hexdigest(), name)
    task = server.estimates.get(key)
    if task is None:
        task = asyncio.ensure_future(server.in_thread(_estimate_text, asm, name))
        server.estimates[key] = task
        if len(server.estimates) > 256:
            server.estimates.pop(next(iter(server.estimates)))
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout=WAIT)
    except TimeoutError:
        return "computing… (hover again)"


@functools.lru_cache(maxsize=4)
def _regions(asm: str) -> dict[str, str]:
    """Each function's region of ``asm``: parsed once per text, since a hover asks for one
    function at a time and a big file's assembly takes a while to parse."""
    from asmopt.executor.asmfile import parse_functions

    lines = asm.splitlines()
    return {
        fn.name: "".join(line + "\n" for line in lines[fn.start_line : fn.end_line])
        for fn in parse_functions(asm)
    }


def _estimate_text(asm: str, name: str) -> str:
    from asmopt.executor.asmfile import function_body
    from asmopt.executor.estimate import estimate

    try:
        region = _regions(asm).get(name)
        if region is None:
            return "unavailable (no code of its own at -O3: inlined?)"
        found = estimate(function_body(region, name))
    except Exception as err:
        return f"unavailable ({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})"
    return f"{found.cycles_per_iteration:.1f} cycles/iteration ({found.cpu})"


async def _function_hover(server: AsmoptLanguageServer, buffer: Buffer, fn: FunctionInfo) -> str:
    source = server.source_of(buffer.uri)
    result: RunRecord | None = None
    if source is not None:
        result = server.results.get(source, fn.name)
        whole = server.results.get(source, None)
        if (result is None or not result.faster) and whole is not None and whole.faster:
            result = whole
    parts = [f"**asmopt** · `{fn.name}`"]
    baseline: str | None = result.baseline_asm if result and result.baseline_asm else None
    if baseline is None:
        if buffer.language is Language.ASM:
            # The function's own lines: parsing a whole big file per hover would stall.
            lines = buffer.lines[fn.range.start.line : fn.range.end.line]
            baseline = "".join(lines)
        else:
            try:
                build = await asyncio.wait_for(asyncio.shield(debug_build(server, buffer)), WAIT)
                baseline = build.asm
            except TimeoutError:
                baseline = None
    if result is None:
        parts.append("Not optimized yet: use *Optimize function* (code lens or code action).")
    elif result.faster:
        s = result.speedup
        assert s is not None  # a faster result has one
        parts.append(
            f"**Measured:** {s.median:.2f}× faster than gcc -O3 (95% CI "
            f"{s.ci_low:.2f}–{s.ci_high:.2f}, {s.runs} rounds) · "
            f"{result.tests_passed}/{result.tests_total} tests passed · policy `{result.policy}`"
            + (f" ({result.label})" if result.label else "")
        )
    else:
        parts.append(
            f"**Last run:** {result.lens_title()}"
            + (f" · policy `{result.policy}`" if result.policy else "")
        )
    estimates = []
    if baseline:
        estimates.append(f"gcc -O3 {await _estimate(server, baseline, fn.name)}")
    if result is not None and result.faster and result.asm:
        estimates.append(f"candidate {await _estimate(server, result.asm, fn.name)}")
    if estimates:
        parts.append("*Estimate* (llvm-mca model, not a measurement): " + " · ".join(estimates))
    profiled = server.profiles.get(source)
    if profiled is not None:
        parts.append(profile_hover(profiled, fn.name))
    return "\n\n".join(parts)


async def _line_hover(server: AsmoptLanguageServer, buffer: Buffer, line: int) -> str | None:
    if not buffer.line(line).strip():
        return None
    try:
        build = await asyncio.wait_for(asyncio.shield(debug_build(server, buffer)), WAIT)
    except TimeoutError:
        return "**gcc -O3**: building… (hover again)"
    if build.obj is None:
        return f"**gcc -O3**: the buffer does not build ({build.error})"
    name = PurePosixPath(buffer.uri).name
    if not name.endswith(".c"):
        name += ".c"
    try:
        found = await server.in_thread(_line_instructions, build, name, line + 1)
    except Exception as err:
        return f"**gcc -O3**: cannot read the build's line table ({err})"
    if not found:
        return None
    shown = found[:MAX_LINE_INSTRUCTIONS]
    more = f"\n… {len(found) - len(shown)} more" if len(found) > len(shown) else ""
    body = "\n".join(shown)
    return (
        f"**gcc -O3** for line {line + 1} ({len(found)} instructions):\n```asm\n{body}\n```{more}"
    )


MAX_BATCH = 2000  # distinct instructions asked of llvm-mca at once


async def _instruction_hover(server: AsmoptLanguageServer, buffer: Buffer, line: int) -> str | None:
    """Latency, reciprocal throughput and micro-ops of the instruction on ``line``; on a
    cache miss the whole function around it is asked for in one llvm-mca run."""
    from asmopt.server import instruction_info as info

    text = info.instruction_text(buffer.line(line))
    if text is None:
        return None
    cpu = await server.in_thread(info.default_cpu)
    known, cost = info.cached(text, cpu)
    if not known:
        fn = next(
            (f for f in buffer.stale_functions() if f.range.start.line <= line < f.range.end.line),
            None,
        )
        lo, hi = (fn.range.start.line, fn.range.end.line) if fn else (line, line + 1)
        batch = [text]
        for number in range(lo, min(hi, buffer.line_count())):
            other = info.instruction_text(buffer.line(number))
            if other is not None:
                batch.append(other)
        intel = any(".intel_syntax" in buffer.line(n) for n in range(0, min(lo + 1, 50)))
        task = asyncio.ensure_future(server.in_thread(info.costs, batch[:MAX_BATCH], cpu, intel))
        try:
            cost = (await asyncio.wait_for(asyncio.shield(task), WAIT)).get(text)
        except TimeoutError:
            return f"`{text}`: computing its cost with llvm-mca… (hover again)"
    if cost is None:
        return f"`{text}`: llvm-mca has no model of this instruction for `{cpu}`"
    return info.describe(text, cost)


def register(server: AsmoptLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: AsmoptLanguageServer, params: types.HoverParams) -> types.Hover | None:
        buffer = ls.documents.get(params.text_document.uri)
        if buffer is None or buffer.too_large:
            return None
        position = params.position
        for fn in await ls.functions(buffer):
            r = fn.name_range
            if (
                r.start.line == position.line
                and r.start.character <= position.character <= r.end.character
            ):
                text = await _function_hover(ls, buffer, fn)
                return types.Hover(
                    contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                    range=r,
                )
        if buffer.language is Language.ASM:
            found = await _instruction_hover(ls, buffer, position.line)
            if found is None:
                return None
            return types.Hover(
                contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=found)
            )
        line_text = await _line_hover(ls, buffer, position.line)
        if line_text is None:
            return None
        text = line_text
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))
