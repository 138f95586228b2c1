"""Ask every policy, verify every candidate, keep the fastest — and mix the best functions.

:func:`optimize` is the whole "make it faster" job. It

1. asks each policy for proposals and drops duplicates (and copies of the baseline);
2. verifies every candidate in parallel as soon as it is proposed
   (:func:`asmopt.executor.verify.verify_candidate` builds, tests and benchmarks in
   subprocesses, so a thread pool keeps the cores busy) and remembers each result in the
   workspace store. Candidates *race* (``executor.benchmark.Race``): one that is clearly
   slower than another, or clearly not faster than the baseline, stops being timed early,
   with a stated error rate. A candidate whose linked binary loads the same machine code and
   data as one judged already (or as the baseline) is not tested or timed again: it shares
   that verdict. Each verified speed-up is reported as soon as it is known (``on_update``),
   first provisionally ("so far") and then final;
3. mixes per function: for each function of the baseline it splices each passing whole-file
   candidate's version of that function into the baseline and verifies that, then builds the
   file that takes every function from its fastest source and verifies it too;
4. ranks everything by verified speed-up — the 95% CI's lower bound first, then the median —
   and names a winner only when one passed every test and is measurably faster.

Mixing code from different compilers needs care: gcc's ``-fipa-ra`` lets a caller keep values
in call-clobbered registers that its callee (in the same file) is known not to touch. A callee
from another source may touch them. :func:`mix_is_safe` refuses a mix where a gcc-built caller
calls a function from another source that may clobber registers its own version left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from asmopt.executor.asmfile import clone_parent, parse_functions
from asmopt.executor.benchmark import Race, RaceLane, RacingRule, order_statistic_median_ci
from asmopt.executor.elf import ElfInspectionError, image_digest
from asmopt.executor.judge import Judge
from asmopt.executor.results import TestStatus, TestVerdict, Verdict
from asmopt.executor.sandbox import Cancelled, Sandbox
from asmopt.executor.store import ResultStore
from asmopt.executor.verify import (
    Baseline,
    VerificationResult,
    VerifyOptions,
    candidate_hash,
    store_key,
)
from asmopt.model.search.policy import Candidate, NoCandidate, Policy, PolicyError, Request
from asmopt.model.search.stages import Progress, Stage, quiet

__all__ = [
    "PortfolioResult",
    "SoFar",
    "Trial",
    "mix_is_safe",
    "optimize",
    "rank",
    "rank_key",
]

TrialKind = Literal["candidate", "function", "mix"]

# The racing rule of a job unless the caller says otherwise (see executor.benchmark).
DEFAULT_RACING = RacingRule()
# When a job races and confirms, candidates are screened to this precision (from this many
# rounds; the order-statistic CI is a valid 95% CI from 6) and the best is then measured
# again at the full one.
SCREEN_MIN_ROUNDS = 6
SCREEN_REL_CI = 0.05

# A function from another source must beat the baseline's by this much (median) before a mix
# takes it: below that, per-function measurements are mostly noise.
MIN_FUNCTION_GAIN = 1.01


@dataclass(frozen=True)
class Trial:
    """One verified candidate: what it is, where it came from, and its verdict.

    ``kind`` is ``candidate`` (a policy's proposal), ``function`` (one function of a
    whole-file candidate spliced into the baseline) or ``mix`` (every function from its
    fastest source). ``sources`` maps function -> label of the candidate it came from (for
    ``function`` and ``mix`` trials).
    """

    candidate: Candidate
    result: VerificationResult
    kind: TrialKind = "candidate"
    sources: dict[str, str] = field(default_factory=dict)
    screening: VerificationResult | None = None  # the first measurement, when re-measured
    same_code_as: str = ""  # label of the candidate whose machine code this one shares

    @property
    def confirmed(self) -> bool:
        """Re-measured with a larger budget after screening (see ``optimize(confirm=...)``)."""
        return self.screening is not None

    @property
    def passed(self) -> bool:
        return self.result.all_passed

    @property
    def faster(self) -> bool:
        return self.result.verdict is Verdict.FASTER

    @property
    def label(self) -> str:
        return self.candidate.label or self.candidate.policy


@dataclass(frozen=True)
class PortfolioResult:
    """Everything :func:`optimize` learnt, ready for a table.

    ``trials`` holds every verified candidate, best first (see :func:`rank_key`); ``winner``
    is the first of them when it passed every test and is measurably faster than the baseline,
    else None. ``unusable`` lists proposals that were not candidates (and why); ``notes`` says
    what was skipped (duplicates, functions that could not be mixed).
    """

    winner: Trial | None
    trials: tuple[Trial, ...]
    unusable: tuple[NoCandidate, ...] = ()
    notes: tuple[str, ...] = ()
    mix: Trial | None = None
    cancelled: bool = False

    @property
    def faster(self) -> bool:
        return self.winner is not None

    @property
    def message(self) -> str:
        if self.winner is not None:
            return f"{self.winner.label}: {self.winner.result.message}"
        if self.cancelled:
            return "cancelled before any candidate was shown faster"
        passing = [t for t in self.trials if t.passed]
        if passing:
            return (
                f"not faster: {len(passing)} of {len(self.trials)} candidates pass every test, "
                "none is measurably faster than gcc -O3"
            )
        return f"not faster: none of {len(self.trials)} candidates passes every test"


@dataclass(frozen=True)
class SoFar:
    """A verified speed-up as soon as it is known, for streaming to the user.

    ``final`` False: the candidate passed every test and the 95% CI of the rounds timed so far
    is above ``1 + min_gain`` (CPU) and its wall-time CI is not below 1, but timing goes on;
    True: its verdict is in. Either way every run behind it was checked.
    """

    label: str
    median: float
    ci_low: float
    ci_high: float
    rounds: int
    final: bool
    trial: Trial | None = None  # the finished trial, when final

    @property
    def text(self) -> str:
        """What an editor lens shows: "1.66x so far, still measuring" or "1.66x faster"."""
        if self.final:
            return f"{self.median:.2f}x faster [{self.ci_low:.2f}–{self.ci_high:.2f}]"
        return f"{self.median:.2f}x so far, still measuring"


OnUpdate = Callable[[SoFar], None]


# ---------------------------------------------------------------------------------------------
# Ranking.


def rank_key(result: VerificationResult) -> tuple[int, float, float]:
    """Sort key, larger is better: passing before failing, then the speed-up's CI lower
    bound, then its median. A failing candidate always ranks below every passing one."""
    if not result.all_passed or result.verdict in (Verdict.BUILD_FAILED, Verdict.TESTS_FAILED):
        return (0, 0.0, 0.0)
    if result.speedup is None:
        return (1, 0.0, 0.0)
    return (2, result.speedup.ci_low, result.speedup.median)


def rank(trials: Iterable[Trial]) -> list[Trial]:
    """``trials`` best first (a stable sort by :func:`rank_key`)."""
    return sorted(trials, key=lambda t: rank_key(t.result), reverse=True)


# ---------------------------------------------------------------------------------------------
# Safety of mixing: which caller-saved registers a function may clobber.

_CALLER_SAVED = (
    "rax rcx rdx rsi rdi r8 r9 r10 r11 "
    + " ".join(f"xmm{i}" for i in range(32))
    + " k0 k1 k2 k3 k4 k5 k6 k7"
).split()
_ALL = frozenset(_CALLER_SAVED)
_REG_RE = re.compile(r"%([a-z][a-z0-9]*)")
_ALIASES = {
    **{r: "rax" for r in ("rax", "eax", "ax", "al", "ah")},
    **{r: "rcx" for r in ("rcx", "ecx", "cx", "cl", "ch")},
    **{r: "rdx" for r in ("rdx", "edx", "dx", "dl", "dh")},
    **{r: "rsi" for r in ("rsi", "esi", "si", "sil")},
    **{r: "rdi" for r in ("rdi", "edi", "di", "dil")},
    **{f"r{n}{s}": f"r{n}" for n in range(8, 16) for s in ("", "d", "w", "b")},
    **{f"{p}mm{n}": f"xmm{n}" for n in range(32) for p in ("x", "y", "z")},
}
# Instructions that write registers they do not name (or name only as inputs).
_IMPLICIT_WRITES = {
    "cqto": {"rdx"},
    "cltd": {"rdx"},
    "cwtd": {"rdx"},
    "cltq": {"rax"},
    "cwtl": {"rax"},
    "cbtw": {"rax"},
    "cpuid": {"rax", "rbx", "rcx", "rdx"},
    "rdtsc": {"rax", "rdx"},
    "rdtscp": {"rax", "rdx", "rcx"},
    "syscall": {"rax", "rcx", "r11"},
}
_ONE_OPERAND_RAX_RDX = re.compile(r"^(?:i?mul|i?div)[bwlq]?$")
_STRING_OP = re.compile(r"^(?:rep\w*\s+)?(?:movs|stos|lods|scas|cmps)")
# Instructions whose last operand is read, not written.
_READS_LAST = re.compile(
    r"^(?:v?u?comis[sd]|v?ptest|cmp\w*|test\w*|bt[wlq]?|push\w*|call\w*|jmp\w*|j\w+|ret\w*|"
    r"nop\w*|prefetch\w*|i?mul[bwlq]?|i?div[bwlq]?|out\w*|ldmxcsr|fxrstor\w*|xrstor\w*)$"
)


def _instructions(text: str) -> Iterable[tuple[str, str]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        while True:  # drop labels in front of an instruction
            m = re.match(r"^[\w.$]+:\s*", line)
            if not m:
                break
            line = line[m.end() :]
        if not line or line.startswith("."):
            continue
        parts = line.split(None, 1)
        mnemonic = parts[0].lower()
        if mnemonic.startswith("rep") and len(parts) > 1:
            sub = parts[1].split(None, 1)
            mnemonic = f"{mnemonic} {sub[0].lower()}"
            parts = [mnemonic, sub[1] if len(sub) > 1 else ""]
        yield mnemonic, parts[1] if len(parts) > 1 else ""


def _calls(text: str) -> list[str]:
    """Targets of calls and tail calls (``*`` for indirect ones); local jumps excluded."""
    found: list[str] = []
    for mnemonic, args in _instructions(text):
        if mnemonic.startswith("call") or (
            mnemonic.startswith("jmp") and not args.startswith(".L")
        ):
            target = args.strip()
            found.append("*" if target.startswith("*") else target.split("@", 1)[0])
    return found


def clobbers_at_most(text: str) -> frozenset[str]:
    """Caller-saved registers a function (AT&T text) may change: every one it names or
    writes implicitly, and all of them when it calls anything."""
    if _calls(text):
        return _ALL
    regs: set[str] = set()
    for mnemonic, args in _instructions(text):
        regs |= {_ALIASES.get(r, r) for r in _REG_RE.findall(args)}
        regs |= _IMPLICIT_WRITES.get(mnemonic, set())
        if _ONE_OPERAND_RAX_RDX.match(mnemonic) or mnemonic.startswith(("cmpxchg", "xchg")):
            regs |= {"rax", "rdx"}
        if _STRING_OP.match(mnemonic):
            regs |= {"rcx", "rsi", "rdi", "rax"}
        if mnemonic.startswith(("vzeroupper", "vzeroall")):
            regs |= {f"xmm{i}" for i in range(16)}
    return frozenset(regs & _ALL)


def clobbers_at_least(text: str, defined: set[str]) -> frozenset[str]:
    """Caller-saved registers a function (AT&T text) surely changes: all of them when it
    calls something outside ``defined`` (gcc then assumes every one is clobbered), else the
    registers it names as the destination of an instruction that writes its last operand."""
    for target in _calls(text):
        if target == "*" or target not in defined:
            return _ALL
    regs: set[str] = set()
    for mnemonic, args in _instructions(text):
        if _READS_LAST.match(mnemonic.split()[-1]) or not args:
            continue
        last = args.rsplit(",", 1)[-1].strip()
        m = re.fullmatch(r"%([a-z][a-z0-9]*)", last)
        if m:
            regs.add(_ALIASES.get(m.group(1), m.group(1)))
    return frozenset(regs & _ALL)


def _root(name: str) -> str:
    while (parent := clone_parent(name)) is not None:
        name = parent
    return name


def _function_texts(asm: str) -> dict[str, str]:
    lines = asm.splitlines()
    return {fn.name: "\n".join(lines[fn.label_line : fn.end_line]) for fn in parse_functions(asm)}


def mix_is_safe(
    choice: dict[str, str], sources: dict[str, str], ipa_ra: dict[str, bool]
) -> tuple[bool, str]:
    """Whether taking function ``f`` from source ``choice[f]`` (the others from "baseline")
    keeps every call between functions of different sources correct.

    ``sources`` maps a source name to its whole assembly ("baseline" included); ``ipa_ra``
    says which sources may assume callee register use (gcc builds). For a call from ``g``
    (source S, with IPA-RA) to ``f`` (source T != S), every register T's ``f`` may clobber
    must be one S's own ``f`` surely clobbers. Returns (ok, reason when not).
    """
    texts = {name: _function_texts(asm) for name, asm in sources.items()}
    # A gcc part or clone (f.part.0, f.cold) comes with its function.
    owner = {f: choice.get(_root(f), "baseline") for f in texts["baseline"]}
    for f in choice:
        owner.update({g: choice[f] for g in texts[choice[f]] if _root(g) == f})
    functions = set(owner)
    for caller, source in owner.items():
        if not ipa_ra.get(source, True):
            continue
        body = texts[source].get(caller)
        if body is None:
            return False, f"`{caller}` is not in {source}"
        for callee in set(_calls(body)):
            if callee == "*" or callee not in functions or owner.get(callee) == source:
                continue
            theirs = texts[owner[callee]].get(callee)
            ours = texts[source].get(callee)
            if theirs is None or ours is None:
                return False, f"`{callee}` is missing from one of its sources"
            extra = clobbers_at_most(theirs) - clobbers_at_least(ours, set(texts[source]))
            if extra:
                return False, (
                    f"`{caller}` ({source}) may keep values in {', '.join(sorted(extra))} across "
                    f"its call to `{callee}`, which {owner[callee]}'s version changes"
                )
    return True, ""


# ---------------------------------------------------------------------------------------------
# The job.


def _ask(policy: Policy, request: Request, n: int) -> Iterator[Candidate | NoCandidate]:
    """The policy's proposals, one at a time as it makes them when it can (``propose_iter``),
    so that the first is verified while the others are still being made."""
    name = getattr(policy, "name", type(policy).__name__)
    try:
        stream = getattr(policy, "propose_iter", None)
        yield from (stream(request, n) if stream is not None else policy.propose(request, n))
    except PolicyError as err:
        yield NoCandidate(name, f"policy {name} cannot run: {err}", unavailable=True)
    except Exception as err:  # a broken policy must not sink the others
        yield NoCandidate(name, f"policy {name} failed: {type(err).__name__}: {err}")


def _planned(policy: Policy, request: Request, n: int) -> int:
    """How many proposals ``policy`` will make at most (the racing rule's contenders)."""
    inner = getattr(policy, "inner", policy)
    variants = getattr(inner, "variants_for", None)
    if variants is not None:
        return max(n, len(variants(request)))
    return n


def _uses_ipa_ra(candidate: Candidate) -> bool:
    # gcc builds (the baseline, gcc variants) may rely on callee register use; clang's default
    # does not. Unknown sources (LLM answers) are treated like gcc: the safe assumption.
    return candidate.meta.get("compiler", "gcc") != "clang"


def optimize(
    request: Request,
    policies: Sequence[Policy],
    baseline: Baseline,
    sandbox: Sandbox,
    options: VerifyOptions | None = None,
    *,
    store: ResultStore | None = None,
    workers: int | None = None,
    proposals_per_policy: int = 16,
    mix: bool = True,
    mix_sources: int = 6,
    confirm: int = 3,
    record: dict[str, str] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    racing: RacingRule | None = DEFAULT_RACING,
    same_code: bool = True,
    on_update: OnUpdate | None = None,
) -> PortfolioResult:
    """Find the fastest verified version of ``request``'s code (see the module docstring).

    ``workers`` verifications run at once (default: one per core). ``mix_sources`` bounds how
    many passing whole-file candidates (the fastest first) lend functions to the mix; mixing
    needs a whole-file request and a baseline with at least two functions. The ``confirm``
    best candidates that look faster are measured again with twice the budget and a tighter
    CI target; the winner is chosen among those fresh measurements (``confirm=0``: no second
    measurement, the screening figures decide).

    ``racing`` is the rule by which candidates that cannot win stop being timed early (None:
    every candidate is timed to its CI target or budget); its ``contenders`` and ``min_gain``
    are filled in here. A racing job that confirms screens candidates to a looser precision
    (``SCREEN_REL_CI`` from ``SCREEN_MIN_ROUNDS`` rounds) and measures the best again at the
    full one. ``same_code`` False times candidates with identical machine code
    again. ``on_update`` hears of every verified speed-up as soon as it is known (see
    :class:`SoFar`). When ``cancel`` is set, the job stops and returns what was verified.

    Returns every verified candidate with its result; never a winner that failed a test.
    """
    opts = options or VerifyOptions()
    workers = max(1, workers or os.cpu_count() or 1)
    say = progress or quiet
    unusable: list[NoCandidate] = []
    notes: list[str] = []

    seen: dict[str, str] = {candidate_hash(baseline.asm): "the baseline"}
    planned = sum(_planned(p, request, proposals_per_policy) for p in policies)
    screen = opts
    if racing is not None and confirm > 0:
        # Screen cheaply, confirm precisely: every screening CI is a valid 95% CI, only
        # wider; the winner is always one measured again at the full precision (_confirm).
        screen = replace(
            opts,
            bench=replace(
                opts.bench,
                min_rounds=min(opts.bench.min_rounds, SCREEN_MIN_ROUNDS),
                target_rel_ci=max(opts.bench.target_rel_ci, SCREEN_REL_CI),
            ),
        )
    pool = _Verifier(baseline, sandbox, screen, store, workers, say, cancel)
    pool.record = dict(record or {})
    pool.on_update = on_update
    pool.rule = replace(racing, min_gain=opts.min_gain) if racing is not None else None
    if same_code:
        pool.same_code = _SameCode(baseline)

    def proposals() -> Iterator[tuple[Candidate, TrialKind, dict[str, str]]]:
        for policy in policies:
            if cancel is not None and cancel.is_set():
                return
            say(Stage.GENERATE, f"asking {policy.name}")
            for proposal in _ask(policy, request, proposals_per_policy):
                if isinstance(proposal, NoCandidate):
                    unusable.append(proposal)
                    continue
                key = candidate_hash(proposal.asm)
                if key in seen:
                    label = proposal.label or proposal.policy
                    notes.append(f"{label}: same assembly as {seen[key]}")
                    continue
                seen[key] = proposal.label or proposal.policy
                yield proposal, "candidate", {}

    mixed: Trial | None = None
    try:
        trials = pool.resolve(pool.verify(proposals(), contenders=planned), screen)
        if mix and request.function is None and not pool.cancelled:
            extra, mixed = _mix(baseline, trials, pool, seen, notes, mix_sources, say)
            trials += extra
        if confirm > 0 and not pool.cancelled:
            trials = _confirm(trials, pool, opts, confirm, say)
    finally:
        pool.close()
    trials = pool.resolve(trials)
    shared = [t for t in trials if t.same_code_as]
    if shared:
        notes.append(
            f"{len(shared)} candidates had the same machine code as another and were not "
            "timed again: " + ", ".join(f"{t.label} = {t.same_code_as}" for t in shared)
        )
    ordered = rank(trials)
    if confirm > 0:
        ordered = [t for t in ordered if t.confirmed] + [t for t in ordered if not t.confirmed]
    best = ordered[0] if ordered else None
    winner = best if best is not None and best.faster and best.passed else None
    return PortfolioResult(
        winner=winner,
        trials=tuple(ordered),
        unusable=tuple(unusable),
        notes=tuple(notes),
        mix=mixed,
        cancelled=pool.cancelled,
    )


def _confirm(
    trials: list[Trial], pool: _Verifier, opts: VerifyOptions, count: int, say: Progress
) -> list[Trial]:
    """Measure again, with twice the budget, the ``count`` best trials by CI lower bound and
    the ``count`` best by median: a screening run cut short by its budget after two rounds has
    a meaningless (often far too narrow) CI, so the median is the second opinion. When the
    job races, the best by CI lower bound and only those whose median lies above its CI (at
    most ``count``), racing each other afresh. Trials that share another's machine code are
    not measured again (their twin is)."""
    faster = [
        t
        for t in trials
        if t.passed and t.result.speedup and t.result.speedup.median > 1.0 and not t.same_code_as
    ]
    by_median = sorted(faster, key=lambda t: rank_key(t.result)[2], reverse=True)
    promising: list[Trial] = []
    for t in rank(faster)[:count] + by_median[:count]:
        if all(t is not p for p in promising):
            promising.append(t)
    if pool.rule is not None and promising:
        # Racing: the best by CI lower bound, and others only when their median is above
        # its whole CI (they may well be better); near-ties are not measured again, since
        # any of them is a winner within the best one's CI.
        ordered = rank(promising)
        top = ordered[0].result.speedup
        assert top is not None
        promising = [ordered[0]] + [
            t for t in ordered[1:] if t.result.speedup and t.result.speedup.median > top.ci_high
        ]
        promising = promising[:count]
    pool.stage = Stage.BENCHMARK
    if not promising:
        say(Stage.BENCHMARK, "no candidate looks faster: nothing to measure again")
        return trials
    bench = replace(
        opts.bench,
        budget_seconds=2 * opts.bench.budget_seconds,
        min_rounds=2 * opts.bench.min_rounds,
        target_rel_ci=opts.bench.target_rel_ci / 2,  # also a new result-store key
        seed=opts.bench.seed + 1,
    )
    say(Stage.BENCHMARK, f"measuring the best {len(promising)} again")
    # A race of their own: the screening figures do not count against the fresh ones.
    again = pool.verify(
        [(t.candidate, t.kind, t.sources) for t in promising],
        replace(opts, bench=bench),
        contenders=len(promising),
        fresh_race=True,
    )
    by_hash = {t.result.candidate_hash: t for t in promising}
    fresh = {
        t.result.candidate_hash: replace(
            by_hash[t.result.candidate_hash],
            result=t.result,
            screening=by_hash[t.result.candidate_hash].result,
        )
        for t in again
        if t.result.candidate_hash in by_hash
    }
    return [fresh.get(t.result.candidate_hash, t) for t in trials]


class _SameCode:
    """Which machine code was judged already: the image digest of each built candidate
    (``executor.elf.image_digest``) and the first candidate that had it."""

    def __init__(self, baseline: Baseline) -> None:
        self.baseline = baseline
        self._lock = threading.Lock()
        self.owner: dict[str, tuple[str, str]] = {}  # digest -> (candidate hash, label)
        with contextlib.suppress(ElfInspectionError):
            self.owner[image_digest(baseline.binary)] = ("", "the baseline")

    def hook(self, chash: str, label: str) -> Callable[[Path], VerificationResult | None]:
        def check(binary: Path) -> VerificationResult | None:
            try:
                digest = image_digest(binary)
            except ElfInspectionError:
                return None
            with self._lock:
                owner = self.owner.setdefault(digest, (chash, label))
            if owner[0] == chash:
                return None  # the first with this code: judge it
            if not owner[0]:
                # The baseline's own code: it passed every test when it was built.
                passed = tuple(
                    TestVerdict(t.name, TestStatus.PASSED, "same machine code as the baseline")
                    for t in self.baseline.tests
                )
                return VerificationResult(
                    Verdict.NOT_FASTER,
                    chash,
                    None,
                    passed,
                    identical_to_baseline=True,
                    message="same machine code as the baseline (not timed)",
                )
            return VerificationResult(
                Verdict.NOT_FASTER,
                chash,
                None,
                message=f"same machine code as {owner[1]}",
                meta={"same_code_as": owner[0], "same_code_label": owner[1]},
            )

        return check


class _Verifier:
    """A thread pool of verifications that races candidates, shares verdicts between
    candidates with the same machine code, streams results, and stops cleanly when
    cancelled."""

    def __init__(
        self,
        baseline: Baseline,
        sandbox: Sandbox,
        options: VerifyOptions,
        store: ResultStore | None,
        workers: int,
        say: Progress,
        cancel: threading.Event | None,
    ) -> None:
        self.baseline = baseline
        self.sandbox = sandbox
        self.options = options
        self.store = store
        self.say = say
        self.stage = Stage.VERIFY  # what its progress lines report
        self.cancel = cancel
        self.cancelled = False
        self.record: dict[str, str] = {}  # fields every stored record carries (target, ...)
        self.rule: RacingRule | None = None
        self.race: Race | None = None
        self.same_code: _SameCode | None = None
        self.on_update: OnUpdate | None = None
        self.judged: dict[str, Trial] = {}  # candidate hash -> its latest own trial
        self._best_so_far = 1.0  # the highest CI lower bound streamed so far
        self._stream_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asmopt-verify")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _stream(self, update: SoFar) -> None:
        if self.on_update is None:
            return
        with self._stream_lock:
            if not update.final and update.ci_low <= self._best_so_far:
                return  # only a provisional figure that beats every earlier one is news
            self._best_so_far = max(self._best_so_far, update.ci_low)
        self.on_update(update)

    def _lane(self, chash: str, label: str) -> RaceLane:
        """The benchmark's per-round callback: race, and stream a provisional verdict."""
        race = self.race
        floor = 1.0 + self.options.min_gain
        told = {"done": False}

        def lane(ratios: Sequence[float], walls: Sequence[float]) -> str | None:
            if not told["done"] and len(ratios) >= 6:
                median, low, high = order_statistic_median_ci(ratios)
                _, _, wall_high = order_statistic_median_ci(walls)
                if low > floor and wall_high > 1.0:
                    told["done"] = True
                    self._stream(SoFar(label, median, low, high, len(ratios), final=False))
            return race.check(chash, label, ratios) if race is not None else None

        return lane

    def _one(
        self,
        candidate: Candidate,
        kind: TrialKind,
        sources: dict[str, str],
        options: VerifyOptions,
    ) -> Trial:
        meta = {
            "policy": candidate.policy,
            "label": candidate.label,
            "function": candidate.function,
            "kind": kind,
            "portable": candidate.portable,
            **self.record,
        }
        chash = candidate_hash(candidate.asm)
        label = candidate.label or candidate.policy
        result = Judge(self.baseline, self.sandbox, options, self.store).judge(
            candidate.asm,
            meta=meta,
            cancel=self.cancel,
            race=self._lane(chash, label),
            same_code=self.same_code.hook(chash, label) if self.same_code else None,
        )
        if self.race is not None and result.speedup is not None and result.speedup.samples:
            self.race.record(chash, label, result.speedup.samples)
        trial = Trial(candidate, result, kind, dict(sources))
        if not result.meta.get("same_code_as"):
            self.judged[chash] = trial
        if result.verdict is Verdict.FASTER and result.speedup is not None:
            s = result.speedup
            self._stream(SoFar(label, s.median, s.ci_low, s.ci_high, s.runs, True, trial))
        return trial

    def resolve(self, trials: list[Trial], store_as: VerifyOptions | None = None) -> list[Trial]:
        """Give each trial that shares another's machine code that one's verdict (dropping
        it when that one was never judged, as when the job was cancelled); with
        ``store_as``, the verdict is stored under the trial's own key for those options."""
        out = []
        for t in trials:
            owner_hash = t.result.meta.get("same_code_as")
            if not owner_hash:
                out.append(t)
                continue
            owner = self.judged.get(owner_hash)
            if owner is None:
                continue
            name = t.result.meta.get("same_code_label", owner.label)
            result = replace(
                owner.result,
                candidate_hash=t.result.candidate_hash,
                meta={**owner.result.meta, **t.result.meta},
                message=f"same machine code as {name}: {owner.result.message}",
            )
            out.append(replace(t, result=result, screening=owner.screening, same_code_as=name))
            if self.store is not None and store_as is not None:
                record = result.to_dict()
                record.update(result.meta)
                record.update(self.record)
                self.store.put(store_key(t.candidate.asm, self.baseline, store_as), record)
        return out

    def verify(
        self,
        jobs: Iterable[tuple[Candidate, TrialKind, dict[str, str]]],
        options: VerifyOptions | None = None,
        *,
        contenders: int = 0,
        fresh_race: bool = False,
    ) -> list[Trial]:
        """Verify ``jobs`` (taken one by one as they are made) ``workers`` at a time.
        ``contenders`` is how many more candidates this call may time (the racing rule's
        union bound counts them and every candidate raced before, unless ``fresh_race``)."""
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        if self.cancelled:
            return []
        opts = options or self.options
        if self.rule is not None:
            old = self.race
            known = 0 if fresh_race or old is None else len(self.judged)
            rule = replace(self.rule, contenders=max(2, contenders + known))
            self.race = Race(rule)
            if not fresh_race:
                for chash, trial in self.judged.items():
                    speedup = trial.result.speedup
                    if speedup is not None and speedup.samples:
                        self.race.record(chash, trial.label, speedup.samples)
        futures: dict[Future[Trial], Candidate] = {}
        done: list[Trial] = []
        pending: set[Future[Trial]] = set()

        def collect(timeout: float) -> None:
            nonlocal pending
            if not pending:
                return
            finished, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if self.cancel is not None and self.cancel.is_set():
                self.cancelled = True
                for fut in pending:
                    fut.cancel()
                self.sandbox.kill_all()
            for fut in finished:
                try:
                    trial = fut.result()
                except Cancelled:
                    self.cancelled = True
                    continue
                except CancelledError:
                    continue
                done.append(trial)
                line = f"[{len(done)}/{len(futures)}] {trial.label}: {trial.result.message}"
                self.say(self.stage, line)

        for c, kind, sources in jobs:
            if self.cancelled or (self.cancel is not None and self.cancel.is_set()):
                self.cancelled = True
                break
            fut = self.pool.submit(self._one, c, kind, sources, opts)
            futures[fut] = c
            pending.add(fut)
            collect(0)
        while pending:
            collect(0.2)
        return done


def _mix(
    baseline: Baseline,
    trials: list[Trial],
    pool: _Verifier,
    seen: dict[str, str],
    notes: list[str],
    mix_sources: int,
    say: Progress,
) -> tuple[list[Trial], Trial | None]:
    """Per-function trials and the mixed candidate (see :func:`optimize`)."""
    from asmopt.model.search.splice import SpliceError, splice_function

    functions = [fn.name for fn in parse_functions(baseline.asm) if fn.parent is None]
    if len(functions) < 2:
        return [], None
    # A candidate the race stopped (surely slower than another, or than 1.01x) lends nothing.
    donors = [
        t
        for t in rank(trials)
        if t.passed
        and t.candidate.function is None
        and not (t.result.speedup is not None and t.result.speedup.stopped_early)
    ][:mix_sources]
    if not donors:
        return [], None
    base_texts = _function_texts(baseline.asm)
    jobs: list[tuple[Candidate, TrialKind, dict[str, str]]] = []
    for donor in donors:
        donor_texts = _function_texts(donor.candidate.asm)
        for name in functions:
            if name not in donor_texts:
                continue  # inlined away (or renamed to a clone) in this variant
            if donor_texts[name] == base_texts.get(name):
                continue  # the same code: nothing to gain
            try:
                spliced = splice_function(baseline.asm, name, donor.candidate.asm)
            except SpliceError as err:
                notes.append(f"{donor.label}: `{name}` not mixed ({err})")
                continue
            key = candidate_hash(spliced)
            if key in seen:
                continue
            seen[key] = f"{donor.label}, function {name}"
            jobs.append(
                (
                    Candidate(
                        asm=spliced,
                        policy=donor.candidate.policy,
                        label=f"{donor.label}: function {name}",
                        function=name,
                        portable=donor.candidate.portable,
                        meta=dict(donor.candidate.meta),
                    ),
                    "function",
                    {name: donor.label},
                )
            )
    say(Stage.VERIFY, f"mixing: {len(jobs)} function candidates")
    per_function = pool.resolve(pool.verify(jobs, contenders=len(jobs)), pool.options)

    # The best source of each function, from the function trials.
    best: dict[str, Trial] = {}
    for trial in per_function:
        if not trial.passed or trial.result.speedup is None:
            continue
        if trial.result.speedup.median < MIN_FUNCTION_GAIN:
            continue
        name = trial.candidate.function or ""
        if name not in best or rank_key(trial.result) > rank_key(best[name].result):
            best[name] = trial
    if len(best) < 2:
        return per_function, None  # a one-function mix is a function trial already
    donor_by_label = {d.label: d for d in donors}
    sources = {"baseline": baseline.asm}
    ipa_ra = {"baseline": True}
    choice: dict[str, str] = {}
    for name, trial in best.items():
        label = trial.sources[name]
        donor = donor_by_label[label]
        sources[label] = donor.candidate.asm
        ipa_ra[label] = _uses_ipa_ra(donor.candidate)
        choice[name] = label
    # Drop functions one at a time (the weakest first) until the mix is safe and splices.
    order = sorted(choice, key=lambda f: rank_key(best[f].result))
    while len(choice) >= 2:
        ok, why = mix_is_safe(choice, sources, ipa_ra)
        mixed_asm: str | None = None
        if ok:
            try:
                mixed_asm = baseline.asm
                for name, label in choice.items():
                    mixed_asm = splice_function(mixed_asm, name, sources[label])
            except SpliceError as err:
                ok, why, mixed_asm = False, str(err), None
        if ok and mixed_asm is not None:
            break
        weakest = next(f for f in order if f in choice)
        notes.append(f"mix without `{weakest}` ({choice[weakest]}): {why}")
        del choice[weakest]
    else:
        return per_function, None
    assert mixed_asm is not None
    key = candidate_hash(mixed_asm)
    if key in seen:
        notes.append(f"the mix is the same assembly as {seen[key]}")
        return per_function, None
    seen[key] = "the mix"
    portable = all(donor_by_label[label].candidate.portable for label in choice.values())
    label = "mix: " + ", ".join(f"{f} from {src}" for f, src in sorted(choice.items()))
    candidate = Candidate(
        asm=mixed_asm,
        policy="portfolio",
        label=label,
        portable=portable,
        meta={"kind": "mix"},
    )
    say(Stage.VERIFY, f"verifying the {label}")
    mixed = pool.verify([(candidate, "mix", dict(choice))], contenders=1)
    mixed = pool.resolve(mixed, pool.options)
    return per_function + mixed, (mixed[0] if mixed else None)
