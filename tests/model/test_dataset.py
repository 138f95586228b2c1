"""Data sets: the paper's parquet rows, built from C programs and read back, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asmopt.model.evaluation.dataset import (
    EXTRA_INFO_FIELDS,
    DatasetError,
    make_row,
    parquet_schema,
    read_dataset,
    summarize,
    write_jsonl,
    write_parquet,
)
from asmopt.model.evaluation.dataset_build import BuildOptions, build_dataset, load_tokenizer
from asmopt.model.search.prompts import build_prompt

PROGRAMS = Path(__file__).resolve().parent.parent / "data" / "programs"
FAST = {"timeout": 5.0, "bench_budget": 1.0}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ds")
    summary = build_dataset(PROGRAMS, out, BuildOptions(jsonl=True, **FAST))  # type: ignore[arg-type]
    return out, summary


def test_every_program_is_kept_and_split_with_the_seed(built) -> None:
    out, summary = built
    programs = sorted(p.name for p in PROGRAMS.iterdir() if p.is_dir())
    assert len(programs) >= 8
    assert summary.dropped == ()
    assert summary.train + summary.val == len(programs)
    assert summary.val == 1  # 10% of 10
    manifest = json.loads((out / "build.json").read_text())
    names = sorted(e["name"] for entries in manifest["splits"].values() for e in entries)
    assert names == programs


def test_split_is_reproducible(tmp_path: Path, built) -> None:
    out, _ = built
    again = build_dataset(PROGRAMS, tmp_path, BuildOptions(**FAST))  # type: ignore[arg-type]
    first = json.loads((out / "build.json").read_text())["splits"]
    second = json.loads((tmp_path / "build.json").read_text())["splits"]
    assert first == second
    assert again.train == len(first["train"])


def test_parquet_schema_is_the_papers(built) -> None:
    out, _ = built
    schema = pq.read_schema(out / "train.parquet")
    assert schema.names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert schema.remove_metadata().equals(parquet_schema())
    extra = schema.field("extra_info").type
    assert [extra.field(i).name for i in range(extra.num_fields)] == list(EXTRA_INFO_FIELDS)
    assert extra.field("unoptimized_compiled").type == pa.binary()
    assert schema.field("prompt").type == pa.list_(
        pa.struct([("role", pa.string()), ("content", pa.string())])
    )


def test_rows_hold_the_prompt_tests_and_baseline(built) -> None:
    out, _ = built
    rows = pq.read_table(out / "train.parquet").to_pylist()
    for row in rows:
        extra = row["extra_info"]
        assert row["data_source"] == "train" and row["ability"] == "code"
        assert row["reward_model"] == {
            "style": "rule",
            "ground_truth": extra["unoptimized_assembly"],
        }
        assert row["prompt"] == [{"role": "user", "content": extra["question"]}]
        assert extra["question"] == build_prompt(extra["c_code"], extra["unoptimized_assembly"])
        assert extra["answer"] == f"```assembly\n{extra['unoptimized_assembly']}```"
        assert extra["unoptimized_compiled"].startswith(b"\x7fELF")
        assert len(extra["inputs"]) == len(extra["outputs"]) >= 2
        assert (
            "\t.text" in extra["unoptimized_assembly"] or ".text" in extra["unoptimized_assembly"]
        )


def test_expected_outputs_come_from_the_out_files_or_the_baseline(built) -> None:
    out, _ = built
    problems = {
        p.name: p for split in ("train", "val") for p in read_dataset(out / f"{split}.parquet")
    }
    gcd = problems["gcd_lcm"]
    assert gcd.tests[1].expected == (PROGRAMS / "gcd_lcm/tests/t2.out").read_bytes()
    # digit_sum's t2 has no .out: the gcc -O3 build's output is the expected one.
    assert problems["digit_sum"].tests[1].expected == b"87\n"


def test_jsonl_reads_the_same_as_parquet(built) -> None:
    out, _ = built
    for split in ("train", "val"):
        a = read_dataset(out / f"{split}.parquet").problems
        b = read_dataset(out / f"{split}.jsonl").problems
        assert [(p.name, p.baseline_asm, p.tests, p.baseline_binary) for p in a] == [
            (p.name, p.baseline_asm, p.tests, p.baseline_binary) for p in b
        ]


def test_hf_datasets_loads_it_with_the_same_features(built) -> None:
    datasets = pytest.importorskip("datasets")
    out, _ = built
    loaded = datasets.load_dataset("parquet", data_files=str(out / "val.parquet"), split="train")
    row = pq.read_table(out / "val.parquet").to_pylist()[0]
    assert loaded.features == datasets.Dataset.from_list([row]).features
    assert loaded[0]["extra_info"]["question"] == row["extra_info"]["question"]


def test_show_summarizes(built) -> None:
    out, _ = built
    summary = summarize(read_dataset(out / "train.parquet"))
    assert summary["rows"] == summary["splits"]["train"]
    assert summary["prompt_matches_template"] == 1.0
    assert summary["with_baseline_binary"] == summary["rows"]


def test_directory_of_targets_reads_as_problems() -> None:
    data = read_dataset(PROGRAMS)
    names = [p.name for p in data]
    assert "sum_ab" in names and len(names) >= 8
    problem = data.problems[names.index("sum_ab")]
    assert problem.c_source and "main" in problem.c_source
    assert "main:" in problem.baseline_asm
    assert len(problem.tests) == 3


# --------------------------------------------------------------------------- filters


def _program(root: Path, name: str, code: str, tests: dict[str, tuple[str, str | None]]) -> None:
    folder = root / name
    (folder / "tests").mkdir(parents=True)
    (folder / f"{name}.c").write_text(code)
    for test, (stdin, stdout) in tests.items():
        (folder / "tests" / f"{test}.in").write_text(stdin)
        if stdout is not None:
            (folder / "tests" / f"{test}.out").write_text(stdout)


def test_programs_that_fail_their_own_tests_or_do_not_build_are_dropped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PROGRAMS / "sum_ab", src / "sum_ab")
    _program(src, "wrong", "#include <stdio.h>\nint main(void){puts(\"2\");return 0;}\n",
             {"t1": ("", "3\n")})  # fmt: skip
    _program(src, "broken", "int main(void) { return }\n", {"t1": ("", "")})
    _program(src, "crashes", "int main(void) { return 3; }\n", {"t1": ("", None)})
    summary = build_dataset(src, tmp_path / "out", BuildOptions(val_fraction=0.0, **FAST))  # type: ignore[arg-type]
    reasons = {d.name: d.reason for d in summary.dropped}
    assert reasons == {
        "wrong": "fails-own-tests",
        "broken": "does-not-build",
        "crashes": "fails-own-tests",
    }
    assert summary.train == 1 and summary.val == 0


def test_token_cap_and_min_speedup(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("sum_ab", "fib_mod"):
        shutil.copytree(PROGRAMS / name, src / name)
    words = load_tokenizer(str.split)
    sizes = {}
    for name in ("sum_ab", "fib_mod"):
        data = read_dataset(src / name)
        p = data.problems[0]
        sizes[name] = words(build_prompt(p.c_source or "", p.baseline_asm)) + words(
            f"```assembly\n{p.baseline_asm}```"
        )
    cap = min(sizes.values())
    summary = build_dataset(
        src,
        tmp_path / "capped",
        BuildOptions(tokenizer=words, max_tokens=cap, val_fraction=0.0, **FAST),  # type: ignore[arg-type]
    )
    kept = min(sizes, key=sizes.__getitem__)
    assert [d.name for d in summary.dropped if d.reason == "too-long"] == [
        n for n in sizes if n != kept
    ]
    # Tiny inputs run in about a millisecond either way: nothing is 1000x faster at -O3.
    summary = build_dataset(
        src,
        tmp_path / "fast",
        BuildOptions(min_speedup=1000.0, val_fraction=0.0, **FAST),  # type: ignore[arg-type]
    )
    assert {d.reason for d in summary.dropped} == {"below-min-speedup"}
    assert summary.train == 0


def test_tokenizer_file(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    model = tokenizers.models.WordLevel({"[UNK]": 0, "int": 1, "main": 2}, unk_token="[UNK]")
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    assert load_tokenizer(path)("int main ( void )") == 5
    with pytest.raises(DatasetError, match="not found"):
        load_tokenizer(tmp_path / "missing.json")


# --------------------------------------------------------------------------- bad input


def _row(**extra_changes):
    row = make_row(
        c_source="int main(void){return 0;}\n",
        o3_asm="\t.text\n\t.globl main\nmain:\n\txorl %eax, %eax\n\tret\n",
        inputs=["1\n"],
        outputs=[""],
        split="val",
        index=0,
        baseline_binary=b"\x7fELF",
    )
    row["extra_info"].update(extra_changes)
    return row


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "x"}]]}), path)
    with pytest.raises(DatasetError, match="no column 'extra_info'"):
        read_dataset(path)


def test_row_without_tests_is_named_by_row_and_column(tmp_path: Path) -> None:
    path = write_parquet([_row(), _row(inputs=[], outputs=[])], tmp_path / "x.parquet")
    with pytest.raises(DatasetError, match=r"row 1, column 'extra_info.inputs'.*no tests"):
        read_dataset(path)
    data = read_dataset(path, skip_invalid=True)
    assert len(data) == 1 and len(data.skipped) == 1


def test_other_malformed_rows(tmp_path: Path) -> None:
    rows = [_row(outputs=["a", "b"])]
    path = write_jsonl(rows, tmp_path / "x.jsonl")
    with pytest.raises(DatasetError, match=r"row 0.*outputs.*2 entries but inputs has 1"):
        read_dataset(path)
    (tmp_path / "y.jsonl").write_text('{"extra_info": {"inputs": ["1"], "outputs": ["1"]}}\n')
    with pytest.raises(DatasetError, match="unoptimized_assembly' is missing"):
        read_dataset(tmp_path / "y.jsonl")
    (tmp_path / "z.jsonl").write_text("{not json\n")
    with pytest.raises(DatasetError, match="line 1"):
        read_dataset(tmp_path / "z.jsonl")
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nope.parquet")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unknown data set format"):
        read_dataset(tmp_path / "data.csv")


def test_fenced_assembly_and_c_from_the_prompt() -> None:
    # Rows without c_code (the released data may not carry it): the C comes from the prompt.
    row = _row(unoptimized_assembly="```assembly\nmain:\n\tret\n```")
    del row["extra_info"]["c_code"]
    from asmopt.model.evaluation.dataset import problem_from_row

    problem = problem_from_row(row, 0)
    assert problem.baseline_asm == "main:\n\tret\n"
    assert problem.c_source == "int main(void){return 0;}\n"


def test_multi_source_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("int main(void){return 0;}\n")
    (tmp_path / "b.c").write_text("int f(void){return 0;}\n")
    (tmp_path / "asmopt.toml").write_text(
        '[[target]]\nname = "two"\nsources = ["a.c", "b.c"]\ntests = "tests"\n'
    )
    with pytest.raises(DatasetError, match="one C file"):
        read_dataset(tmp_path)
