"""The ways the compiler policy builds a C file: which compilers and flags it tries, in
which order, and what code built for an x86-64 micro-architecture level needs of the CPU.
:mod:`asmopt.model.search.compiler_search` builds and judges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_VARIANTS",
    "LEVEL_FEATURES",
    "LEVEL_SUMMARY",
    "NATIVE_VARIANTS",
    "Variant",
    "level_variants",
    "missing_cpu_features",
]


@dataclass(frozen=True)
class Variant:
    """One way to compile the C file: a compiler and its flags, optionally profile-guided.

    ``label`` is what users see ("clang -O3", "gcc -O3 PGO"); a PGO label gets the number of
    training inputs appended when it is built. ``native`` variants use ``-march=native``:
    the candidate then runs only on CPUs like this one and is labelled non-portable;
    ``level`` variants run only on CPUs of that x86-64 level and are labelled with it.
    """

    label: str
    compiler: str  # "gcc" or "clang"
    flags: tuple[str, ...]
    pgo: bool = False
    native: bool = False
    level: str = ""  # an x86-64 level above the baseline the code requires ("x86-64-v3")


# Ordered by expected value on small compute-bound C programs (CodeNet style): clang's code
# generation differs most from gcc's, so it wins most often; profiles fix gcc's branch
# layout and unrolling decisions; the rest win on fewer programs but cost little to try.
DEFAULT_VARIANTS: tuple[Variant, ...] = (
    Variant("clang -O3", "clang", ("-O3",)),
    Variant("gcc -O3 PGO", "gcc", ("-O3",), pgo=True),
    Variant("clang -O3 PGO", "clang", ("-O3",), pgo=True),
    Variant("gcc -O2", "gcc", ("-O2",)),
    Variant("clang -O2", "clang", ("-O2",)),
    Variant("gcc -O3 -funroll-loops", "gcc", ("-O3", "-funroll-loops")),
    Variant("gcc -O3 -fno-tree-vectorize", "gcc", ("-O3", "-fno-tree-vectorize")),
    Variant("gcc -O2 -funroll-loops PGO", "gcc", ("-O2", "-funroll-loops"), pgo=True),
    Variant(
        "gcc -O3 -fno-if-conversion",
        "gcc",
        ("-O3", "-fno-if-conversion", "-fno-if-conversion2"),
    ),
)

# Only with Request.allow_native. They may contract a*b+c into one FMA instruction (gcc does
# so by default in GNU C mode), which rounds differently: the tests must catch any change in
# printed floating-point results, and they do because the candidate is judged like any other.
NATIVE_VARIANTS: tuple[Variant, ...] = (
    Variant("gcc -O3 -march=native", "gcc", ("-O3", "-march=native"), native=True),
    Variant("clang -O3 -march=native", "clang", ("-O3", "-march=native"), native=True),
    Variant("gcc -O3 -march=native PGO", "gcc", ("-O3", "-march=native"), pgo=True, native=True),
)


# What each x86-64 micro-architecture level adds (the psABI's list, as /proc/cpuinfo names
# the flags), for labels and for checking that this machine can run, hence verify, the code.
LEVEL_FEATURES: dict[str, tuple[str, ...]] = {
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}
LEVEL_SUMMARY = {
    "x86-64-v2": "SSE4.2, POPCNT",
    "x86-64-v3": "AVX2, FMA, BMI2",
    "x86-64-v4": "AVX-512",
}
_LEVELS = ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4")


def level_variants(level: str) -> tuple[Variant, ...]:
    """Variants built for ``level`` (x86-64-v2/v3/v4): code that runs only on CPUs of that
    level or above. At v3 and above the compilers may contract ``a*b+c`` into one FMA
    instruction (gcc does by default in GNU C mode), which rounds once instead of twice:
    a float program whose printed results change fails its tests like any wrong output,
    unless the user chose to compare floats within a tolerance."""
    if level not in LEVEL_FEATURES:
        return ()
    march = f"-march={level}"
    return (
        Variant(f"clang -O3 {march}", "clang", ("-O3", march), level=level),
        Variant(f"gcc -O3 {march}", "gcc", ("-O3", march), level=level),
        Variant(f"gcc -O3 {march} PGO", "gcc", ("-O3", march), pgo=True, level=level),
    )


def missing_cpu_features(level: str, cpuinfo: str | None = None) -> list[str]:
    """The features of ``level`` (and the levels below it) this machine's CPU lacks; code
    built for the level cannot be verified here when any is missing."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    needed: list[str] = []
    for name in _LEVELS[1 : _LEVELS.index(level) + 1] if level in _LEVELS else ():
        needed += LEVEL_FEATURES[name]
    return [f for f in needed if f not in flags]
