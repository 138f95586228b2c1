"""The shipped project example (examples/textstats) as a user runs it: a function of a
library file optimized through the program that calls it, built with each source's own
flags from compile_commands.json, tested and timed by commands in the sandbox; and a clear
message, naming the file and the change, for every kind of bad project input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from asmopt.model.search.optimizer import OptimizeError, OptimizeRequest, optimize
from asmopt.model.search.policy import Candidate, Request
from asmopt.model.settings import Settings, load_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "textstats"
SOURCES = ("src/textstats.c", "tests/test_textstats.c", "bench/bench_textstats.c")


def write_compile_commands(project: Path) -> Path:
    """build/compile_commands.json as CMake writes it (the "command" form, absolute paths,
    run from the build folder), without needing cmake."""
    build = project / "build"
    build.mkdir(exist_ok=True)
    entries = [
        {
            "directory": str(build),
            "command": f"/usr/bin/cc -DTEXTSTATS_TAB_WIDTH=8 -I{project}/include -O3 -DNDEBUG "
            f"-std=gnu11 -o CMakeFiles/x.dir/{src}.o -c {project}/{src}",
            "file": f"{project}/{src}",
        }
        for src in SOURCES
    ]
    path = build / "compile_commands.json"
    path.write_text(json.dumps(entries, indent=2))
    return path


@pytest.fixture
def project() -> Iterator[Path]:
    """A copy of the example with its compile_commands.json, in a folder the sandbox user
    can read (as root, bubblewrap runs as nobody)."""
    folder = Path(tempfile.mkdtemp(prefix="project-example-"))
    folder.chmod(0o755)
    root = folder / "textstats"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build"))
    # Small workloads keep the test quick.
    toml = (root / "asmopt.toml").read_text().replace("{bin} 1024 20", "{bin} 64 4")
    (root / "asmopt.toml").write_text(toml)
    write_compile_commands(root)
    yield root
    shutil.rmtree(folder, ignore_errors=True)


class CopyOfBaseline:
    """A policy that proposes the baseline's code (plus a comment, or it would be dropped as
    the baseline itself): the judge runs it, and it is not faster."""

    name = "compiler"

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def propose(self, request: Request, n: int = 1) -> list[Candidate]:
        self.requests.append(request)
        return [Candidate(request.baseline_asm + "# copy\n", policy="compiler", label="copy")]


def run(project: Path, source: str = "src/textstats.c", function: str | None = "textstats_scan",
        target=None, settings: Settings | None = None):  # fmt: skip
    policy = CopyOfBaseline()
    outcome = optimize(
        OptimizeRequest(
            project / source,
            function,
            settings or load_config(project).settings,
            target=target,
            workspace=project,
        ),
        policies=[policy],
    )
    return outcome, policy


def test_a_library_function_is_optimized_through_the_benchmark_target(project: Path) -> None:
    outcome, policy = run(project)
    assert outcome.target == "bench"
    assert any("targets bench, unit; used bench" in note for note in outcome.target_notes)
    (request,) = policy.requests
    # The source's own flags from compile_commands.json, with -O3 instead of its -O level.
    assert "-DTEXTSTATS_TAB_WIDTH=8" in request.cflags
    assert f"-I{project}/include" in request.cflags
    assert request.cflags[-1] == "-O3" and "-O2" not in request.cflags
    (ranked,) = outcome.candidates
    assert ranked.result.all_passed
    assert [t.name for t in ranked.result.tests] == ["test_command", "bench_command"]
    assert outcome.winner is None or outcome.winner.result.speedup is not None


def test_the_unit_test_target_is_chosen_by_name(project: Path) -> None:
    target = load_config(project).target_named("unit")
    outcome, _ = run(project, function="textstats_count_byte", target=target)
    assert outcome.target == "unit"
    assert [t.name for t in outcome.candidates[0].result.tests] == ["test_command"]


def test_a_library_file_no_target_lists_gets_a_starter_entry(project: Path) -> None:
    (project / "asmopt.toml").write_text('[settings]\ncompile_commands = "build"\n')
    with pytest.raises(OptimizeError) as err:
        run(project)
    message = str(err.value)
    assert "no [[target]]" in message and "asmopt.toml" in message
    assert 'sources = ["src/textstats.c", "tests/test_textstats.c"]' in message
    assert 'test_command = "{bin}"' in message


def test_a_harness_that_never_calls_the_function_is_named(project: Path) -> None:
    (project / "tests" / "smoke.c").write_text(
        '#include <stdio.h>\n#include "textstats.h"\n'
        'int main(int argc, char **argv) {\n'
        "    struct textstats s;\n"
        '    if (argc > 5) textstats_scan((const unsigned char *)"a b", 3, &s);\n'
        '    printf("ok\\n");\n    return 0;\n}\n'
    )  # fmt: skip
    (project / "tests" / "nocall.c").write_text("int main(void) { return 0; }\n")
    # Not in compile_commands.json: the target names the flags it needs (paths relative to
    # asmopt.toml).
    flags = 'cflags = "-O3 -Iinclude -DTEXTSTATS_TAB_WIDTH=8"\n'
    (project / "asmopt.toml").write_text(
        (project / "asmopt.toml").read_text()
        + '\n[[target]]\nname = "smoke"\nsources = ["src/textstats.c", "tests/smoke.c"]\n'
        'test_command = "{bin}"\n'
        + flags
        + '\n[[target]]\nname = "nocall"\nsources = ["src/textstats.c", "tests/nocall.c"]\n'
        'test_command = "{bin}"\n' + flags
    )
    config = load_config(project)
    with pytest.raises(OptimizeError, match=r"never call `textstats_scan`.*crashes on entry"):
        run(project, target=config.target_named("smoke"))
    with pytest.raises(OptimizeError, match="nothing in the target's program calls"):
        run(project, target=config.target_named("nocall"))
    with pytest.raises(OptimizeError, match=r"never call any function of textstats\.c"):
        run(project, function=None, target=config.target_named("nocall"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"{bin} 0 1 && {bin} 1 3 && {bin} 37 2"', '"./build/bench_textstats"'),
         "never runs the program asmopt builds"),
        (("{bin} 0 1 &&", "./no-such-runner {bin} &&"), "fails its own test test_command"),
        (('bench_command = "{bin} 64 4"', 'bench_command = "{bin} 1 1; sleep 60"'), "timed-out"),
        (('bench_command = "{bin} 64 4"', 'bench_command = "{bin} 1 1; yes"'), "output-too"),
        (('test_command = "{bin} 0 1', 'test_output = "nope.txt"\ntest_command = "{bin} 0 1'),
         "test_output = 'nope.txt' names no file"),
    ],
)  # fmt: skip
def test_broken_commands_name_the_target_and_what_to_change(
    project: Path, change: tuple[str, str], message: str
) -> None:
    toml = project / "asmopt.toml"
    assert change[0] in toml.read_text()
    toml.write_text(toml.read_text().replace(*change, 1))
    settings = load_config(project).settings.replace(test_timeout=3.0, max_output_mb=1)
    with pytest.raises(OptimizeError, match=message) as err:
        run(project, settings=settings)
    assert "asmopt.toml" in str(err.value)


def test_compile_commands_problems_name_the_file(project: Path) -> None:
    db = project / "build" / "compile_commands.json"
    db.write_text("[{]")
    with pytest.raises(OptimizeError, match=f"{db}: not valid JSON"):
        run(project)
    # Made for another checkout: every entry names a file that is not there.
    entries = [{"directory": "/old/checkout", "file": f"/old/checkout/{s}",
                "arguments": ["cc", "-Iinclude", "-c", s]} for s in SOURCES]  # fmt: skip
    db.write_text(json.dumps(entries))
    with pytest.raises(OptimizeError, match="names only files that do not exist") as err:
        run(project)
    assert "textstats.c does not compile" in str(err.value)
    # A database without this file.
    write_compile_commands(project)
    entries = json.loads(db.read_text())
    db.write_text(json.dumps([e for e in entries if "test_textstats" in e["file"]]))
    with pytest.raises(OptimizeError, match=r"has no entry for .*textstats\.c"):
        run(project)
    # None at all: built with -O3 alone, which this project cannot compile with.
    db.unlink()
    (project / "asmopt.toml").write_text(
        (project / "asmopt.toml").read_text().replace('compile_commands = "build"', "")
    )
    with pytest.raises(OptimizeError, match=r"No compile_commands\.json was found"):
        run(project)


def test_a_missing_source_is_named(project: Path) -> None:
    (project / "bench" / "bench_textstats.c").unlink()
    with pytest.raises(OptimizeError, match=r"lists .*bench_textstats\.c, which does not exist"):
        run(project)


@pytest.mark.slow
def test_asmopt_optimize_on_the_example_as_a_user_runs_it(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asmopt.cli", "optimize", "src/textstats.c",
         "-f", "textstats_scan", "--json", "--budget", "4"],
        capture_output=True, text=True, cwd=project, timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    assert data["target"] == "bench"
    assert any("--target" in note for note in data["target_notes"])
    assert data["tests"]["total"] == 2
    assert data["candidates"], data
    assert all(c["tests_passed"] == c["tests_total"] for c in data["candidates"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_the_cmake_build_exports_what_asmopt_reads(project: Path) -> None:
    shutil.rmtree(project / "build")
    subprocess.run(
        ["cmake", "-S", str(project), "-B", str(project / "build")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    subprocess.run(["cmake", "--build", str(project / "build")], check=True, capture_output=True)
    assert subprocess.run([str(project / "build" / "test_textstats")]).returncode == 0
    outcome, policy = run(project)
    assert "-DTEXTSTATS_TAB_WIDTH=8" in policy.requests[0].cflags
    assert outcome.candidates[0].result.all_passed


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_makefile_writes_compile_commands_without_building(project: Path) -> None:
    shutil.rmtree(project / "build")
    subprocess.run(["make", "-s", "-C", str(project), "compile_commands.json"], check=True,
                   capture_output=True)  # fmt: skip
    entries = json.loads((project / "build" / "compile_commands.json").read_text())
    assert {e["file"] for e in entries} == set(SOURCES)
    _, policy = run(project)
    assert f"-I{project}/include" in policy.requests[0].cflags


def test_a_test_folder_with_a_bench_command_runs_both_and_hides_the_answers(
    project: Path,
) -> None:
    answers = project / "tests" / "cases"
    answers.mkdir()
    (answers / "tiny.args").write_text("1\n1\n")
    # Expected output of a run that prints what the program can see of the answers.
    (answers / "tiny.out").write_text("lines 0 words 0 widest 0 total 0\n")
    (project / "asmopt.toml").write_text(
        '[settings]\ncompile_commands = "build"\n\n[[target]]\nname = "mixed"\n'
        'sources = ["src/*.c", "bench/bench_textstats.c"]\ntests = "tests/cases"\n'
        'bench_command = "{bin} 8 2; ls tests/cases"\n'
    )
    with pytest.raises(OptimizeError, match="tiny"):
        # The baseline's own output for tiny differs from this made-up answer: the folder's
        # test really runs, with its arguments.
        run(project)
    (answers / "tiny.out").unlink()
    (answers / "tiny.in").write_text("")
    outcome, _ = run(project)
    result = outcome.candidates[0].result
    assert [t.name for t in result.tests] == ["tiny", "bench_command"]
    assert result.all_passed
    # The runs see the project, but neither the folder of answers nor earlier verdicts.
    from asmopt.model.search.preparation import _command_tests, verify_options

    config = load_config(project)
    (target,) = config.targets
    _, options = _command_tests(target, config, verify_options(config.settings, target), [])
    assert options.files == project.resolve()
    assert set(options.hide) == {".asmopt", "tests/cases"}
    assert options.timed_tests == ("bench_command",)
