"""A project's own build flags, from its ``compile_commands.json``.

``compile_commands.json`` is the compilation database clangd and every build system share
(CMake's ``CMAKE_EXPORT_COMPILE_COMMANDS``, Meson, Bear): one entry per translation unit with
its ``directory``, ``file`` and the compiler's argument list (``arguments``) or command line
(``command``). asmopt builds a source's ``gcc -O3`` baseline with that source's own flags, so
that includes, defines and the language standard resolve as in the project's build.

:func:`find_compile_db` finds the file (a setting, else the workspace root, else ``build/``);
:func:`load_compile_db` reads it; :meth:`CompileDb.flags_for` gives a source's flags ready for
``gcc -S``: the optimization level, output, dependency and debug flags removed, relative paths
made absolute (the baseline is compiled from elsewhere, and so are compiler-search variants).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

COMPILE_DB = "compile_commands.json"
# Where a database is looked for when the settings name none: the root, then these folders.
DEFAULT_DB_FOLDERS = (".", "build")


class CompileDbError(ValueError):
    """The database is unreadable or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class CompileEntry:
    """One translation unit of the database: how the project compiles ``file``."""

    file: Path  # absolute
    directory: Path  # absolute; relative paths in ``arguments`` are relative to it
    arguments: tuple[str, ...]  # argv, compiler first


@dataclass(frozen=True)
class CompileDb:
    """The entries of one ``compile_commands.json``."""

    path: Path
    entries: tuple[CompileEntry, ...]

    def entry_for(self, source: Path) -> CompileEntry | None:
        """The entry that compiles ``source`` (the last one, as clangd takes it), if any."""
        wanted = Path(source).resolve()
        found = None
        for entry in self.entries:
            if entry.file == wanted:
                found = entry
        return found

    def flags_for(self, source: Path) -> tuple[str, ...] | None:
        """``source``'s own flags for ``gcc -S`` (see :func:`baseline_flags`), or None when the
        database has no entry for it."""
        entry = self.entry_for(source)
        return None if entry is None else baseline_flags(entry)


def find_compile_db(root: Path, setting: str | None = None) -> Path | None:
    """The ``compile_commands.json`` of the workspace at ``root``.

    ``setting`` (the ``compile_commands`` setting) names the file or the folder holding it,
    relative to ``root``; without it the root and then ``build/`` are looked in. Raises
    :class:`CompileDbError` when the setting names something that is not there.
    """
    root = Path(root)
    if setting:
        named = (root / setting).resolve()
        path = named / COMPILE_DB if named.is_dir() else named
        if not path.is_file():
            raise CompileDbError(
                f"compile_commands = {setting!r} in asmopt.toml: {path} does not exist; build "
                "the project once with compile commands exported (cmake "
                "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON, meson, or bear -- make), or point the "
                "setting at the folder that holds compile_commands.json"
            )
        return path
    for folder in DEFAULT_DB_FOLDERS:
        path = (root / folder / COMPILE_DB).resolve()
        if path.is_file():
            return path
    return None


def load_compile_db(path: Path) -> CompileDb:
    """Read ``path``; every problem is a :class:`CompileDbError` naming the file, the entry
    and what to change."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CompileDbError(f"{path}: cannot be read ({err.strerror})") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CompileDbError(
            f"{path}: not valid JSON ({err}); regenerate it with your build system "
            "(cmake -DCMAKE_EXPORT_COMPILE_COMMANDS=ON, meson, or bear -- make)"
        ) from err
    if not isinstance(data, list):
        raise CompileDbError(
            f"{path}: a compilation database is a JSON list of entries, got {type(data).__name__}"
        )
    entries = []
    for i, raw in enumerate(data):
        where = f"{path}: entry {i + 1}"
        if not isinstance(raw, dict):
            raise CompileDbError(f"{where} is not an object")
        directory, file = raw.get("directory"), raw.get("file")
        if not isinstance(directory, str) or not isinstance(file, str):
            raise CompileDbError(f'{where} needs "directory" and "file" strings')
        if "arguments" in raw:
            args = raw["arguments"]
            if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
                raise CompileDbError(f'{where}: "arguments" must be a non-empty list of strings')
        elif isinstance(raw.get("command"), str):
            try:
                args = shlex.split(raw["command"])
            except ValueError as err:
                raise CompileDbError(f'{where}: "command" cannot be split ({err})') from err
            if not args:
                raise CompileDbError(f'{where}: "command" is empty')
        else:
            raise CompileDbError(f'{where} needs "arguments" (a list) or "command" (a string)')
        base = (path.parent / directory).resolve()
        entries.append(CompileEntry((base / file).resolve(), base, tuple(args)))
    return CompileDb(path, tuple(entries))


# Flags that take their value as the next argument when written apart (-I dir), and whose
# value is a path.
_PATH_OPTIONS = (
    "-I", "-isystem", "-iquote", "-idirafter", "-include", "-imacros", "-isysroot",
    "--sysroot", "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-B", "-specs",
    "-fmacro-prefix-map", "-ffile-prefix-map",
)  # fmt: skip
# Options whose value is the next argument and that do not matter to the assembly (outputs,
# dependency files, the language of the next file is kept).
_DROP_WITH_VALUE = ("-o", "-MF", "-MT", "-MQ", "-MJ", "--serialize-diagnostics", "-main-file-name")
_DROP_ALONE = re.compile(
    r"^(-c|-S|-E|-M|-MM|-MD|-MMD|-MP|-MG|-pipe|-Wp,-M.*|-g.*|-flto.*|-ffat-lto-objects"
    r"|-fno-lto|-save-temps.*|-fsyntax-only|-v|--verbose|-O.*|-o.+|-MF.+|-MT.+|-MQ.+)$"
)
_COMPILER_WRAPPERS = ("ccache", "sccache", "distcc", "icecc")
# Linker-only options: the baseline is compiled to assembly; the target's ldflags link it.
_LINK_ONLY = re.compile(r"^(-l.*|-L.*|-Wl,.*|-shared|-static|-pie|-no-pie|-rdynamic)$")


def baseline_flags(entry: CompileEntry) -> tuple[str, ...]:
    """The entry's flags as ``gcc -S`` needs them for the baseline.

    Removed: the compiler (and a ``ccache``-like wrapper), the source file, ``-c``/``-o``,
    dependency-file flags (``-M*``), debug information (``-g*``: no code changes, much
    larger assembly), ``-flto`` (its ``-S`` output is compiler IR, not machine code),
    linker-only flags and every ``-O`` level (the caller adds ``-O3`` or the user's flags).
    Paths are made absolute against the entry's ``directory``, so the flags work from any
    folder.
    """
    args = list(entry.arguments[1:])
    if Path(entry.arguments[0]).name in _COMPILER_WRAPPERS and args:
        args = args[1:]  # ccache gcc ...: the compiler is the wrapper's first argument
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in _DROP_WITH_VALUE:
            i += 1
            continue
        if arg.startswith("@"):
            raise CompileDbError(
                f"the entry for {entry.file} uses a response file ({arg}), which asmopt does "
                "not read; have the build system write plain arguments"
            )
        if _DROP_ALONE.match(arg) or _LINK_ONLY.match(arg):
            continue
        if not arg.startswith("-") and _is_source(arg, entry):
            continue
        if arg in _PATH_OPTIONS and i < len(args):
            out += [arg, _absolute(args[i], entry.directory)]
            i += 1
            continue
        out.append(_joined_path_option(arg, entry.directory))
    return tuple(out)


def absolute_paths(flags: Sequence[str], directory: Path) -> tuple[str, ...]:
    """``flags`` with the paths of include-like options made absolute against ``directory``
    (``-Iinclude`` -> ``-I/project/include``; also ``-I include``, ``-isystem``, ...)."""
    out: list[str] = []
    i = 0
    while i < len(flags):
        arg = flags[i]
        i += 1
        if arg in _PATH_OPTIONS and i < len(flags):
            out += [arg, _absolute(flags[i], directory)]
            i += 1
        else:
            out.append(_joined_path_option(arg, directory))
    return tuple(out)


def _is_source(arg: str, entry: CompileEntry) -> bool:
    return (entry.directory / arg).resolve() == entry.file


def _absolute(value: str, directory: Path) -> str:
    if "=" in value and not value.startswith(("/", ".")):  # -fmacro-prefix-map=OLD=NEW
        return value
    return value if Path(value).is_absolute() else str((directory / value).resolve())


def _joined_path_option(arg: str, directory: Path) -> str:
    """``-Iinclude`` -> ``-I/abs/include`` (and the other path options written together)."""
    for option in ("-isystem", "-iquote", "-idirafter", "-I", "--sysroot="):
        if arg.startswith(option) and len(arg) > len(option):
            return option + _absolute(arg[len(option) :], directory)
    return arg
