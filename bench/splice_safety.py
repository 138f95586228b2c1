"""How often the IPA-RA check refuses a splice, and why, over the shipped and bench programs.

For every program in ``examples/``, the editor suite's workspace, ``bench/programs/`` and
``bench/compiler_programs/`` it compiles the gcc -O3 baseline and five other builds (gcc -O2,
gcc -O3 -funroll-loops, gcc -O3 -march=x86-64-v3, clang -O2, clang -O3) to assembly,
splices each function that differs into the baseline, and asks
:func:`asmopt.model.search.registers.splice_is_safe` whether every gcc-built caller still
finds its registers. It prints each refusal (caller,
registers, callee) and counts per build, and the time one check takes (median).

Nothing is assembled, linked or run: the check reads assembly text.

    .venv/bin/python bench/splice_safety.py [--only align,sortmix]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, machine_line, table

from asmopt.executor.asmfile import parse_functions
from asmopt.executor.toolchain import compile_to_asm
from asmopt.model.search.compiler_search import clean_clang_asm
from asmopt.model.search.registers import splice_is_safe
from asmopt.model.search.splice import SpliceError, splice_function

BUILDS = {
    "gcc -O2": ("gcc", ("-O2",)),
    "gcc -O3 -funroll-loops": ("gcc", ("-O3", "-funroll-loops")),
    "gcc -O3 -march=x86-64-v3": ("gcc", ("-O3", "-march=x86-64-v3")),
    "clang -O2": ("clang", ("-O2",)),
    "clang -O3": ("clang", ("-O3",)),
}


def sources() -> list[Path]:
    found = sorted((ROOT / "examples").glob("*/*.c"))
    found += sorted((ROOT / "client-vscode" / "e2e" / "workspace").glob("*.c"))
    for folder in ("programs", "compiler_programs"):
        found += sorted((ROOT / "bench" / folder).glob("*/*.c"))
    return [s for s in found if (s.parent / "tests").is_dir()]


def assembly(source: Path, out: Path, compiler: str, flags: tuple[str, ...]) -> str | None:
    result = compile_to_asm(source, out, compiler=compiler, flags=flags)
    if not result.ok:
        return None
    text = out.read_text()
    return clean_clang_asm(text) if compiler == "clang" else text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="programs to check (by name)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    print(machine_line())
    counts: Counter[tuple[str, str]] = Counter()
    refusals: list[list[str]] = []
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="asmopt-splice-") as tmp:
        for source in sources():
            name = source.stem
            if only and name not in only:
                continue
            base = assembly(source, Path(tmp) / f"{name}.s", "gcc", ("-O3",))
            if base is None:
                continue
            lines = base.splitlines()
            mine = {
                fn.name: lines[fn.label_line : fn.end_line]
                for fn in parse_functions(base)
                if fn.parent is None
            }
            for label, (compiler, flags) in BUILDS.items():
                donor = assembly(source, Path(tmp) / f"{name}-other.s", compiler, flags)
                if donor is None:
                    continue
                dl = donor.splitlines()
                theirs = {f.name: dl[f.label_line : f.end_line] for f in parse_functions(donor)}
                for function, text in mine.items():
                    if function not in theirs or theirs[function] == text:
                        continue
                    try:
                        splice_function(base, function, donor)
                    except SpliceError:
                        counts[(label, "not spliceable")] += 1
                        continue
                    started = time.perf_counter()
                    ok, why = splice_is_safe(
                        {function: label},
                        {"baseline": base, label: donor},
                        {"baseline": True, label: compiler != "clang"},
                    )
                    seconds.append(time.perf_counter() - started)
                    counts[(label, "safe" if ok else "refused")] += 1
                    if not ok:
                        refusals.append([name, label, function, why])
    if refusals:
        print(table(["program", "build", "function", "why refused"], refusals))
    kinds = ("safe", "refused", "not spliceable")
    rows = [[label, *(counts[(label, kind)] for kind in kinds)] for label in BUILDS]
    total = sum(r[1] + r[2] for r in rows)
    print()
    print(table(["build", *kinds], rows))
    refused = sum(r[2] for r in rows)
    median_ms = statistics.median(seconds) * 1000 if seconds else 0.0
    print(f"\n{refused} of {total} splices refused; one check takes {median_ms:.0f} ms (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
