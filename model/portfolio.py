"""Ask every policy, verify every candidate, keep the fastest — and mix the best functions.

:func:`optimize` is the whole "make it faster" job. It

1. asks each policy for proposals and drops duplicates (and copies of the baseline);
2. verifies every candidate in parallel (:func:`asmopt.executor.verify.verify_candidate`
   builds, tests and benchmarks in subprocesses, so a thread pool keeps the cores busy) and
   remembers each result in the workspace store;
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

import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Literal

from asmopt.executor.asmfile import clone_parent, parse_functions
from asmopt.executor.results import Verdict
from asmopt.executor.sandbox import Cancelled, Sandbox
from asmopt.executor.store import ResultStore
from asmopt.executor.verify import (
    Baseline,
    VerificationResult,
    VerifyOptions,
    candidate_hash,
    verify_candidate,
)
from asmopt.model.policy import Candidate, NoCandidate, Policy, PolicyError, Request

__all__ = [
    "PortfolioResult",
    "Trial",
    "mix_is_safe",
    "optimize",
    "rank",
    "rank_key",
]

Progress = Callable[[str], None]
TrialKind = Literal["candidate", "function", "mix"]

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


def _ask(policy: Policy, request: Request, n: int) -> list[Candidate | NoCandidate]:
    name = getattr(policy, "name", type(policy).__name__)
    try:
        return list(policy.propose(request, n))
    except PolicyError as err:
        return [NoCandidate(name, f"policy {name} cannot run: {err}")]
    except Exception as err:  # a broken policy must not sink the others
        return [NoCandidate(name, f"policy {name} failed: {type(err).__name__}: {err}")]


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
) -> PortfolioResult:
    """Find the fastest verified version of ``request``'s code (see the module docstring).

    ``workers`` verifications run at once (default: one per core). ``mix_sources`` bounds how
    many passing whole-file candidates (the fastest first) lend functions to the mix; mixing
    needs a whole-file request and a baseline with at least two functions. The ``confirm``
    best candidates that look faster are measured again with twice the budget and a tighter
    CI target; the winner is chosen among those fresh measurements (``confirm=0``: no second
    measurement, the screening figures decide).

    Returns every verified candidate with its result; never a winner that failed a test.
    """
    opts = options or VerifyOptions()
    workers = max(1, workers or os.cpu_count() or 1)
    say = progress or (lambda _msg: None)
    unusable: list[NoCandidate] = []
    notes: list[str] = []

    candidates: list[Candidate] = []
    seen: dict[str, str] = {candidate_hash(baseline.asm): "the baseline"}
    for policy in policies:
        if cancel is not None and cancel.is_set():
            break
        say(f"asking {policy.name}")
        for proposal in _ask(policy, request, proposals_per_policy):
            if isinstance(proposal, NoCandidate):
                unusable.append(proposal)
                continue
            key = candidate_hash(proposal.asm)
            if key in seen:
                notes.append(f"{proposal.label or proposal.policy}: same assembly as {seen[key]}")
                continue
            seen[key] = proposal.label or proposal.policy
            candidates.append(proposal)

    pool = _Verifier(baseline, sandbox, opts, store, workers, say, cancel)
    pool.record = dict(record or {})
    try:
        trials = pool.verify([(c, "candidate", {}) for c in candidates])
        mixed: Trial | None = None
        if mix and request.function is None and not pool.cancelled:
            extra, mixed = _mix(baseline, trials, pool, seen, notes, mix_sources, say)
            trials += extra
        if confirm > 0 and not pool.cancelled:
            trials = _confirm(trials, pool, opts, confirm, say)
    finally:
        pool.close()
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
    a meaningless (often far too narrow) CI, so the median is the second opinion."""
    faster = [t for t in trials if t.passed and t.result.speedup and t.result.speedup.median > 1.0]
    by_median = sorted(faster, key=lambda t: rank_key(t.result)[2], reverse=True)
    promising: list[Trial] = []
    for t in rank(faster)[:count] + by_median[:count]:
        if all(t is not p for p in promising):
            promising.append(t)
    if not promising:
        return trials
    bench = replace(
        opts.bench,
        budget_seconds=2 * opts.bench.budget_seconds,
        min_rounds=2 * opts.bench.min_rounds,
        target_rel_ci=opts.bench.target_rel_ci / 2,  # also a new result-store key
        seed=opts.bench.seed + 1,
    )
    say(f"measuring the best {len(promising)} again")
    again = pool.verify(
        [(t.candidate, t.kind, t.sources) for t in promising], replace(opts, bench=bench)
    )
    by_hash = {t.result.candidate_hash: t for t in promising}
    fresh = {
        t.result.candidate_hash: replace(
            by_hash[t.result.candidate_hash],
            result=t.result,
            screening=by_hash[t.result.candidate_hash].result,
        )
        for t in again
    }
    return [fresh.get(t.result.candidate_hash, t) for t in trials]


class _Verifier:
    """A thread pool of verifications that stops cleanly when cancelled."""

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
        self.cancel = cancel
        self.cancelled = False
        self.record: dict[str, str] = {}  # fields every stored record carries (target, ...)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asmopt-verify")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

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
        result = verify_candidate(
            candidate.asm,
            self.baseline,
            self.sandbox,
            options,
            store=self.store,
            meta=meta,
            cancel=self.cancel,
        )
        return Trial(candidate, result, kind, dict(sources))

    def verify(
        self,
        jobs: Sequence[tuple[Candidate, TrialKind, dict[str, str]]],
        options: VerifyOptions | None = None,
    ) -> list[Trial]:
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        if not jobs or self.cancelled:
            return []
        opts = options or self.options
        futures: dict[Future[Trial], Candidate] = {
            self.pool.submit(self._one, c, kind, sources, opts): c for c, kind, sources in jobs
        }
        done: list[Trial] = []
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
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
                done.append(trial)
                self.say(f"[{len(done)}/{len(futures)}] {trial.label}: {trial.result.message}")
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
    from asmopt.model.splice import SpliceError, splice_function

    functions = [fn.name for fn in parse_functions(baseline.asm) if fn.parent is None]
    if len(functions) < 2:
        return [], None
    donors = [t for t in rank(trials) if t.passed and t.candidate.function is None][:mix_sources]
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
    say(f"mixing: {len(jobs)} function candidates")
    per_function = pool.verify(jobs)

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
    say(f"verifying the {label}")
    mixed = pool.verify([(candidate, "mix", dict(choice))])
    return per_function + mixed, (mixed[0] if mixed else None)
