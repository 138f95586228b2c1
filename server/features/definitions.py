"""Where the functions of a file's program are defined: in the file itself, then in the
other sources of its target (the locations ``asmopt.hottestFunctions`` answers with, so that
a client can open a function of another file). Open files count as the editor has them,
others as they are on disk, read and parsed outside the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from asmopt.server.results import source_key

if TYPE_CHECKING:
    from asmopt.server.functions import FunctionInfo
    from asmopt.server.server import AsmoptLanguageServer

# The files asmopt profiles and finds functions in.
SUFFIXES = (".c", ".s", ".S", ".asm")


async def definitions(
    server: AsmoptLanguageServer, uri: str, path: Path
) -> dict[str, tuple[str, int]]:
    """Where each function of ``path``'s program is defined, as (uri, zero-based line): in
    the file asked about first, then in the other sources of its target, in their order
    (the first definition of a name wins). An open file counts as the editor has it, any
    other as it is on disk: read and parsed in the server's parse process (tree-sitter's C
    parser is not to be shared with the event loop's, nor the loop held up by a parse)."""
    where: dict[str, tuple[str, int]] = {}

    def add(at: str, functions: list[FunctionInfo]) -> None:
        for fn in functions:
            where.setdefault(fn.name, (at, fn.range.start.line))

    asked = server.documents.get(uri)
    if asked is not None and not asked.too_large:
        add(uri, await server.functions(asked))
    try:
        files = await server.in_thread(_target_files, server, path)
    except OSError:
        return where
    on_disk: list[tuple[str, str]] = []
    for file, source in files:
        if asked is not None and server.source_of(uri) == source:
            continue
        buffers = server.buffers_of_source(source)
        if buffers:
            if not buffers[0].too_large:
                add(buffers[0].uri, await server.functions(buffers[0]))
        elif file.suffix in SUFFIXES:
            on_disk.append((str(file), file.as_uri()))
    if not on_disk:
        return where
    loop = asyncio.get_running_loop()
    try:
        found = await loop.run_in_executor(server.parse_pool(), definitions_on_disk, on_disk)
    except Exception as err:  # the pool broke or is shutting down: fewer locations
        server.log(f"asmopt: cannot read the target's other sources: {err!r}")
        return where
    for file_uri, names in found:
        for name, line in names:
            where.setdefault(name, (file_uri, line))
    return where


def _target_files(server: AsmoptLanguageServer, path: Path) -> list[tuple[Path, str]]:
    """(path, source key) of the sources of ``path``'s target, ``path`` first (blocking)."""
    _config, target, _problem = server.target_for(path)
    files = [path, *(target.sources if target is not None else ())]
    found: dict[str, Path] = {}
    for file in files:
        found.setdefault(source_key(file), file)
    return [(file, source) for source, file in found.items()]


def definitions_on_disk(files: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, int]]]]:
    """For each (path, uri) of a C or assembly file on disk, (uri, [(function, line)]): the
    functions the editor would find in it (zero-based line of each start). Unreadable and
    too large files are left out. Blocking: it runs in the server's parse process."""
    from asmopt.server.documents import MAX_ANALYSED_CHARS, Buffer, Language

    found = []
    for name, uri in files:
        file = Path(name)
        try:
            if file.stat().st_size > MAX_ANALYSED_CHARS:
                continue
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        buffer = Buffer(uri, Language.C if file.suffix == ".c" else Language.ASM, text)
        functions = buffer.functions() if buffer.language is Language.C else buffer.asm_functions()
        found.append((uri, [(fn.name, fn.range.start.line) for fn in functions]))
    return found
