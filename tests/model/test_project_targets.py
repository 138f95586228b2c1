"""Targets of a real project in asmopt.toml: sources by glob, tests and benchmarks as
commands, the target that holds a library file, and a starter entry when none does."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmopt.model.settings import SettingsError, config_root, load_config, starter_target


def _project(root: Path, toml: str) -> Path:
    for rel, text in {
        "src/a.c": "int a(int x) { return x + 1; }\n",
        "src/b.c": "int b(int x) { return x * 2; }\n",
        "include/ab.h": "int a(int); int b(int);\n",
        "tests/run.c": '#include "ab.h"\nint main(void) { return a(1) + b(2) != 6; }\n',
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "asmopt.toml").write_text(toml)
    return root


def test_sources_by_glob_and_commands(tmp_path: Path) -> None:
    _project(
        tmp_path,
        '[settings]\ncompile_commands = "build"\n\n'
        '[[target]]\nname = "unit"\nsources = ["src/*.c", "tests/run.c"]\n'
        'test_command = "{bin} && echo done"\nbench_command = ["{bin}", "10"]\n'
        'bench_output = "ignore"\n',
    )
    config = load_config(tmp_path)
    assert config.settings.compile_commands == "build"
    (target,) = config.targets
    assert [p.name for p in target.sources] == ["a.c", "b.c", "run.c"]
    assert target.test_command == "{bin} && echo done"
    assert target.bench_command == ("{bin}", "10")
    assert target.bench_output == "ignore"
    assert target.root == tmp_path.resolve()
    assert config.target_for(tmp_path / "src" / "b.c") is target
    assert config.targets_containing(tmp_path / "src" / "a.c") == (target,)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('sources = ["lib/*.c"]', r"sources pattern 'lib/\*\.c' matches no file"),
        ('sources = ["src/a.c"]\ntest_command = 3', "test_command must be a shell command"),
        ('sources = ["src/a.c"]\ntest_command = ""', "test_command is empty"),
        ('sources = ["src/a.c"]\ntest_command = "{bin} \'x"', "cannot be parsed"),
        ('sources = ["src/a.c"]\ntests = "t"\ntest_command = "{bin}"', "either tests"),
        ('sources = ["src/a.c"]\ntest_commands = "{bin}"', "unknown keys test_commands"),
        ('sources = ["src/a.c"]\ntest_output = ""', 'test_output must be "ignore"'),
    ],
)
def test_target_mistakes_name_the_target_and_the_key(
    tmp_path: Path, table: str, message: str
) -> None:
    _project(tmp_path, f'[[target]]\nname = "t1"\n{table}\n')
    with pytest.raises(SettingsError, match=message) as err:
        load_config(tmp_path)
    assert "t1" in str(err.value)


def test_the_config_governing_a_file_is_the_nearest_upwards(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", '[[target]]\nname = "x"\nsources = ["src/a.c"]\n')
    assert config_root(project / "src" / "a.c", tmp_path) == project.resolve()
    loose = tmp_path / "other" / "z.c"
    loose.parent.mkdir()
    loose.write_text("")
    assert config_root(loose, tmp_path) == tmp_path.resolve()
    assert config_root(loose) == loose.parent.resolve()


def test_starter_entry_names_the_file_and_the_program_that_calls_it(tmp_path: Path) -> None:
    _project(tmp_path, "")
    (tmp_path / "include" / "a.h").write_text("int a(int);\n")
    (tmp_path / "tests" / "run.c").write_text('#include "a.h"\nint main(void){return a(0)-1;}\n')
    text = starter_target(tmp_path / "src" / "a.c", tmp_path)
    assert 'sources = ["src/a.c", "tests/run.c"]' in text
    assert 'test_command = "{bin}"' in text
    # It is valid asmopt.toml as written.
    (tmp_path / "asmopt.toml").write_text(text)
    (target,) = load_config(tmp_path).targets
    assert target.name == "a" and target.test_command == "{bin}"
