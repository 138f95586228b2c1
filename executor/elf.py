"""Look inside built binaries: function symbols, disassembly, and the DWARF line table.

Used to show which instructions a C line became (hover, inlay hints) and to disassemble a
function of a baseline or candidate binary. Works on executables, shared objects and
relocatable objects (.o) of x86-64; disassembly is in AT&T syntax, as gcc writes assembly.
"""

from __future__ import annotations

import bisect
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import capstone
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

__all__ = [
    "ElfInspectionError",
    "FunctionSymbol",
    "Instruction",
    "LineEntry",
    "disassemble",
    "functions",
    "image_digest",
    "instructions_for_line",
    "line_map",
]


class ElfInspectionError(ValueError):
    """The file is not a usable ELF binary, or lacks what was asked (a symbol, debug info)."""


@dataclass(frozen=True)
class FunctionSymbol:
    """A function in the symbol table (STT_FUNC with a non-zero size)."""

    name: str
    address: int
    size: int


@dataclass(frozen=True)
class Instruction:
    """One decoded machine instruction (AT&T syntax)."""

    address: int
    size: int
    mnemonic: str
    op_str: str
    bytes_hex: str  # e.g. "4801d8"

    @property
    def text(self) -> str:
        """``mnemonic op_str`` as an assembler would read it."""
        return f"{self.mnemonic} {self.op_str}".strip()


@dataclass(frozen=True)
class LineEntry:
    """A row of the DWARF line table: code from ``address`` up to ``end_address`` (exclusive)
    was generated for ``file``:``line``.

    ``file`` is the path the compiler recorded, joined with its directory (absolute when the
    compiler knew the directory).
    """

    file: str
    line: int
    address: int
    end_address: int
    column: int = 0


def _open(binary: Path) -> tuple[Any, ELFFile]:
    """Open ``binary`` as ELF or raise an error that says what the file is instead."""
    path = Path(binary)
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise ElfInspectionError(f"{path} does not exist: build the binary first") from None
    magic = stream.read(4)
    stream.seek(0)
    if magic != b"\x7fELF":
        stream.close()
        raise ElfInspectionError(
            f"{path} is not an ELF file (it starts with {magic!r}): pass a compiled binary "
            "or object file, not source or assembly text"
        )
    try:
        elf = ELFFile(stream)
    except ELFError as exc:
        stream.close()
        raise ElfInspectionError(f"{path} is a damaged ELF file ({exc}): rebuild it") from None
    if elf["e_machine"] != "EM_X86_64":
        stream.close()
        raise ElfInspectionError(f"{path} is {elf['e_machine']}, not x86-64: nothing to inspect")
    return stream, elf


@dataclass(frozen=True)
class _Symbol:
    name: str
    address: int
    size: int
    section_index: int


def _function_symbols(elf: ELFFile) -> list[_Symbol]:
    tables = [s for s in elf.iter_sections() if isinstance(s, SymbolTableSection)]
    # .symtab has static functions too; a stripped binary keeps only .dynsym.
    symtab = [t for t in tables if t.name == ".symtab"] or tables
    seen: set[tuple[str, int]] = set()
    found = []
    for table in symtab:
        for sym in table.iter_symbols():
            if sym["st_info"]["type"] != "STT_FUNC" or sym["st_size"] <= 0:
                continue
            if not isinstance(sym["st_shndx"], int):  # SHN_UNDEF / SHN_ABS: no code here
                continue
            key = (sym.name, sym["st_value"])
            if key in seen:
                continue
            seen.add(key)
            found.append(_Symbol(sym.name, sym["st_value"], sym["st_size"], sym["st_shndx"]))
    found.sort(key=lambda s: (s.address, s.name))
    return found


def functions(binary: Path) -> list[FunctionSymbol]:
    """The functions defined in ``binary`` (STT_FUNC, size > 0), sorted by address.

    In an object file (.o) addresses are offsets into the function's section.
    """
    stream, elf = _open(binary)
    with stream:
        return [FunctionSymbol(s.name, s.address, s.size) for s in _function_symbols(elf)]


def image_digest(binary: Path) -> str:
    """A digest of what ``binary`` loads into memory (:func:`loaded_contents`) and its entry
    point: two binaries with the same digest run the same machine code on the same data, so
    they behave (and time) alike; symbol names, debug information and the build ID differ
    freely."""
    import hashlib

    digest = hashlib.sha256()
    stream, elf = _open(binary)
    with stream:
        digest.update(f"entry {elf['e_entry']:#x}\n".encode())
    for name, data in loaded_contents(binary):
        digest.update(f"{name} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def _decoder() -> capstone.Cs:
    decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    decoder.syntax = capstone.CS_OPT_SYNTAX_ATT  # gcc's assembly is AT&T; match what users read
    return decoder


def _decode(code: bytes, address: int) -> list[Instruction]:
    decoder = _decoder()
    out: list[Instruction] = []
    offset = 0
    while offset < len(code):
        for insn in decoder.disasm(code[offset:], address + offset):
            out.append(
                Instruction(insn.address, insn.size, insn.mnemonic, insn.op_str, insn.bytes.hex())
            )
            offset += insn.size
        if offset < len(code):
            # capstone stops at bytes it cannot decode (data in text, new extensions): show
            # one byte as data and go on, as objdump does, rather than hide the rest.
            byte = code[offset]
            out.append(Instruction(address + offset, 1, ".byte", f"0x{byte:02x}", f"{byte:02x}"))
            offset += 1
    return out


def disassemble(binary: Path, name: str) -> list[Instruction]:
    """Disassemble function ``name`` of ``binary`` (AT&T syntax), in address order."""
    stream, elf = _open(binary)
    with stream:
        symbols = _function_symbols(elf)
        matches = [s for s in symbols if s.name == name]
        if not matches:
            names = ", ".join(sorted({s.name for s in symbols})[:20]) or "none"
            raise ElfInspectionError(
                f"function {name!r} is not in {binary} (functions there: {names}); "
                "a function inlined everywhere or a stripped binary has no symbol for it"
            )
        sym = matches[0]
        section = elf.get_section(sym.section_index)
        start = sym.address - section["sh_addr"]
        code = section.data()[start : start + sym.size]
        return _decode(code, sym.address)


def _file_names(dwarf: Any, cu: Any, program: Any) -> list[str]:
    """The line program's file table as paths, indexed the way its rows refer to files."""
    header = program.header
    version = header["version"]
    dirs = [
        d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d)
        for d in header["include_directory"]
    ]
    comp_dir = ""
    top = cu.get_top_DIE()
    if "DW_AT_comp_dir" in top.attributes:
        value = top.attributes["DW_AT_comp_dir"].value
        comp_dir = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    names = []
    for entry in header["file_entry"]:
        name = (
            entry.name.decode("utf-8", "replace") if isinstance(entry.name, bytes) else entry.name
        )
        index = entry.dir_index
        # DWARF 5 (gcc >= 11) counts directories from 0, where 0 is the compilation
        # directory; DWARF 2-4 count from 1 and use 0 for the compilation directory.
        if version >= 5:
            directory = dirs[index] if index < len(dirs) else comp_dir
        else:
            directory = comp_dir if index == 0 else dirs[index - 1] if index <= len(dirs) else ""
        if directory and not os.path.isabs(directory) and comp_dir:
            directory = os.path.join(comp_dir, directory)
        names.append(os.path.normpath(os.path.join(directory, name)) if directory else name)
    if version < 5:
        names.insert(0, "")  # rows count files from 1 before DWARF 5
    return names


def _rows(dwarf: Any) -> Iterator[LineEntry]:
    for cu in dwarf.iter_CUs():
        program = dwarf.line_program_for_CU(cu)
        if program is None:
            continue
        files = _file_names(dwarf, cu, program)
        previous = None
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            if previous is not None and state.address > previous.address and previous.line > 0:
                file = files[previous.file] if previous.file < len(files) else "?"
                yield LineEntry(
                    file, previous.line, previous.address, state.address, previous.column
                )
            previous = None if state.end_sequence else state


@functools.lru_cache(maxsize=32)
def _cached_line_map(path: str, mtime_ns: int, size: int) -> tuple[LineEntry, ...]:
    stream, elf = _open(Path(path))
    with stream:
        if not elf.has_dwarf_info() or elf.get_section_by_name(".debug_line") is None:
            raise ElfInspectionError(
                f"{path} has no DWARF line table (.debug_line): build it with -g "
                "(for example gcc -O3 -g)"
            )
        dwarf = elf.get_dwarf_info()
        rows = sorted(_rows(dwarf), key=lambda r: (r.address, r.end_address))
        return tuple(rows)


def line_map(binary: Path) -> list[LineEntry]:
    """The DWARF line table of ``binary`` as address ranges, sorted by address.

    Rows for line 0 (code the compiler could not attribute to a line) and empty ranges are
    left out. Handles DWARF 2 to 5 (gcc 12 writes DWARF 5).
    """
    stat = Path(binary).stat() if Path(binary).exists() else None
    if stat is None:
        raise ElfInspectionError(f"{binary} does not exist: build the binary first")
    return list(_cached_line_map(str(Path(binary).resolve()), stat.st_mtime_ns, stat.st_size))


def _same_file(asked: str, recorded: str) -> bool:
    """Whether ``asked`` (what a user has: absolute, relative or a bare name) is ``recorded``."""
    if os.path.isabs(asked) and os.path.isabs(recorded):
        return os.path.realpath(asked) == os.path.realpath(recorded)
    asked_parts = Path(os.path.normpath(asked)).parts
    recorded_parts = Path(recorded).parts
    return recorded_parts[-len(asked_parts) :] == asked_parts


def instructions_for_line(binary: Path, file: str | Path, line: int) -> list[Instruction]:
    """The instructions the compiler generated for ``file``:``line``, in address order.

    Every address range the line table attributes to the line counts, so a loop line gives
    its header, body and back-edge even when they are far apart. ``file`` may be absolute,
    relative or a bare name (matched against the end of the recorded path). Returns an empty
    list for a line that produced no code (a comment, or code optimised away).
    """
    wanted = str(file)
    ranges = sorted(
        {
            (r.address, r.end_address)
            for r in line_map(binary)
            if r.line == line and _same_file(wanted, r.file)
        }
    )
    if not ranges:
        return []
    stream, elf = _open(binary)
    with stream:
        sections = [
            s
            for s in elf.iter_sections()
            if s["sh_flags"] & 0x4 and s["sh_type"] == "SHT_PROGBITS"  # SHF_EXECINSTR
        ]
        if elf["e_type"] == "ET_REL":
            # In an object file every section starts at 0; gcc's code is in .text.
            sections.sort(key=lambda s: s.name != ".text")
        starts: list[int] = []
        out: list[Instruction] = []
        for begin, end in ranges:
            section = next(
                (
                    s
                    for s in sections
                    if s["sh_addr"] <= begin and end <= s["sh_addr"] + s["sh_size"]
                ),
                None,
            )
            if section is None:
                continue
            data = section.data()[begin - section["sh_addr"] : end - section["sh_addr"]]
            for insn in _decode(data, begin):
                index = bisect.bisect_left(starts, insn.address)
                if index < len(starts) and starts[index] == insn.address:
                    continue  # overlapping rows (views at one address) give it twice
                starts.insert(index, insn.address)
                out.insert(index, insn)
        return out


# Sections that differ between two builds of the same code: the build id hashes the whole
# file (symbol names included).
_NOT_CODE = (".note.gnu.build-id",)


def loaded_contents(binary: Path) -> tuple[tuple[str, bytes], ...]:
    """The bytes the loader maps of ``binary``: every allocated section but the build id,
    with its name (``.bss`` and other sections without file contents by size alone)."""
    stream, elf = _open(binary)
    with stream:
        found = []
        for section in elf.iter_sections():
            if not section["sh_flags"] & 0x2 or section.name in _NOT_CODE:  # SHF_ALLOC
                continue
            if section["sh_type"] == "SHT_NOBITS":
                found.append((section.name, section["sh_size"].to_bytes(8, "little")))
            else:
                found.append((section.name, section.data()))
        return tuple(found)


def same_machine_code(a: Path, b: Path) -> bool:
    """Whether two binaries load the same bytes: the same program, whatever its text said
    (comments, label names, blank lines). An unreadable file is never the same."""
    try:
        return loaded_contents(a) == loaded_contents(b)
    except ElfInspectionError:
        return False
