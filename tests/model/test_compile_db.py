"""compile_commands.json: each source's own flags, in both entry forms, and clear messages
for every way the file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asmopt.model.search.compile_db import (
    CompileDbError,
    absolute_paths,
    baseline_flags,
    find_compile_db,
    load_compile_db,
)


def _write(path: Path, entries: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries))
    return path


def test_flags_from_arguments_drop_outputs_and_levels_and_make_paths_absolute(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "lib.c"
    src.write_text("int f(void){return 0;}\n")
    db = load_compile_db(
        _write(
            tmp_path / "build" / "compile_commands.json",
            [
                {
                    "directory": str(tmp_path / "build"),
                    "file": "../src/lib.c",
                    "arguments": [
                        "/usr/bin/cc", "-DNDEBUG", "-I../include", "-isystem", "third",
                        "-std=gnu11", "-O2", "-g", "-flto", "-MD", "-MT", "x.o", "-MF", "x.d",
                        "-fPIC", "-o", "CMakeFiles/lib.dir/src/lib.c.o", "-c", "../src/lib.c",
                    ],
                }
            ],
        )
    )  # fmt: skip
    flags = db.flags_for(src)
    assert flags == (
        "-DNDEBUG",
        f"-I{tmp_path / 'include'}",
        "-isystem",
        str(tmp_path / "build" / "third"),
        "-std=gnu11",
        "-fPIC",
    )


def test_command_form_is_split_like_a_shell(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    src.write_text("")
    path = _write(
        tmp_path / "compile_commands.json",
        [{"directory": str(tmp_path), "file": str(src),
          "command": f"gcc -DNAME='\"two words\"' -Iinc -O3 -c {src} -o a.o"}],
    )  # fmt: skip
    db = load_compile_db(path)
    assert db.flags_for(src) == ('-DNAME="two words"', f"-I{tmp_path / 'inc'}")
    path.write_text(path.read_text().replace("gcc -D", "/usr/bin/ccache gcc -D"))
    assert load_compile_db(path).flags_for(src) == ('-DNAME="two words"', f"-I{tmp_path / 'inc'}")
    assert db.flags_for(tmp_path / "other.c") is None


def test_the_last_entry_for_a_file_wins(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    entry = {"directory": str(tmp_path), "file": "a.c"}
    db = load_compile_db(
        _write(
            tmp_path / "compile_commands.json",
            [{**entry, "arguments": ["cc", "-DONE", "a.c"]},
             {**entry, "arguments": ["cc", "-DTWO", "a.c"]}],
        )
    )  # fmt: skip
    assert db.flags_for(src) == ("-DTWO",)


def test_found_at_the_root_then_in_build_or_where_the_setting_says(tmp_path: Path) -> None:
    assert find_compile_db(tmp_path) is None
    build = _write(tmp_path / "build" / "compile_commands.json", [])
    assert find_compile_db(tmp_path) == build.resolve()
    root = _write(tmp_path / "compile_commands.json", [])
    assert find_compile_db(tmp_path) == root.resolve()
    other = _write(tmp_path / "out" / "release" / "compile_commands.json", [])
    assert find_compile_db(tmp_path, "out/release") == other.resolve()
    assert find_compile_db(tmp_path, "out/release/compile_commands.json") == other.resolve()
    with pytest.raises(CompileDbError, match=r"compile_commands = 'nowhere'.*CMAKE_EXPORT"):
        find_compile_db(tmp_path, "nowhere")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"file": "a.c"}', "a JSON list of entries"),
        ('["a.c"]', "entry 1 is not an object"),
        ('[{"file": "a.c"}]', 'entry 1 needs "directory" and "file"'),
        ('[{"directory": ".", "file": "a.c"}]', 'needs "arguments"'),
        ('[{"directory": ".", "file": "a.c", "arguments": []}]', "non-empty list"),
        ('[{"directory": ".", "file": "a.c", "command": "cc \'a.c"}]', "cannot be split"),
    ],
)
def test_malformed_databases_name_the_file_and_the_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "compile_commands.json"
    path.write_text(text)
    with pytest.raises(CompileDbError, match=message) as err:
        load_compile_db(path)
    assert str(path) in str(err.value)


def test_a_response_file_is_named_as_unsupported(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "compile_commands.json",
        [{"directory": str(tmp_path), "file": "a.c", "arguments": ["cc", "@flags.rsp", "a.c"]}],
    )
    entry = load_compile_db(path).entries[0]
    with pytest.raises(CompileDbError, match="response file"):
        baseline_flags(entry)


def test_a_targets_own_flags_are_relative_to_its_folder(tmp_path: Path) -> None:
    flags = ("-O3", "-Iinclude", "-isystem", "vendor", "-I/abs", "-DX=1")
    assert absolute_paths(flags, tmp_path) == (
        "-O3", f"-I{tmp_path / 'include'}", "-isystem", str(tmp_path / "vendor"), "-I/abs", "-DX=1",
    )  # fmt: skip
