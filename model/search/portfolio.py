"""Ask every policy, verify every candidate, keep the fastest — and mix the best functions.

:func:`optimize` is the whole "make it faster" job. It

1. asks each policy for proposals and drops duplicates (and copies of the baseline);
2. verifies every candidate in parallel as soon as it is proposed
   (:class:`asmopt.executor.judge.Judge` builds, tests and benchmarks in
   subprocesses, so a thread pool keeps the cores busy) and remembers each result in the
   workspace store. Candidates *race* (``executor.benchmark.Race``): one that is clearly
   slower than another, or clearly not faster than the baseline, stops being timed early,
   with a stated error rate. A candidate whose linked binary loads the same machine code and
   data as one judged already (or as the baseline) is not tested or timed again: it shares
   that verdict. Each verified speed-up is reported as soon as it is known (``on_update``),
   first provisionally ("so far") and then final (:mod:`.verifier` holds this machinery);
3. mixes per function (:mod:`.mixing`): for each function of the baseline it splices each
   donor's version of that function into the baseline and verifies that, then builds the
   file that takes every function from its fastest source and verifies it too — skipping
   the splices that ties make redundant;
4. measures the best again (``confirm``): once at the job's full precision when it races
   (candidates were screened at a looser one), so a winner's figure never comes from the
   measurement that selected it;
5. ranks everything by verified speed-up — the 95% CI's lower bound first, then the median —
   and names a winner only when one passed every test and is measurably faster.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from asmopt.executor.benchmark import RacingRule, order_statistic_median_ci
from asmopt.executor.intervals import MIN_CI_SAMPLES
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.store import ResultStore
from asmopt.executor.verify import Baseline, VerifyOptions, candidate_hash
from asmopt.model.search.mixing import MIN_FUNCTION_GAIN
from asmopt.model.search.mixing import mix as _mix
from asmopt.model.search.policy import Candidate, NoCandidate, Policy, PolicyError, Request
from asmopt.model.search.stages import Stage, quiet
from asmopt.model.search.trials import (
    OnUpdate,
    Progress,
    SoFar,
    Trial,
    TrialKind,
    rank,
    rank_key,
)
from asmopt.model.search.verifier import Job, SameCode, Timing, Verifier, Withdrawal

if TYPE_CHECKING:
    from asmopt.executor.profile import Profile

__all__ = [
    "MIN_FUNCTION_GAIN",
    "OnUpdate",
    "PortfolioResult",
    "SoFar",
    "Trial",
    "TrialKind",
    "optimize",
    "rank",
    "rank_key",
]

# The racing rule of a job unless the caller says otherwise (see executor.benchmark).
DEFAULT_RACING = RacingRule()
# When a job races and confirms, candidates are screened to this precision (from this many
# rounds; the order-statistic CI is a valid 95% CI from 6) and the best is then measured
# again at the full one.
SCREEN_MIN_ROUNDS = 6
SCREEN_REL_CI = 0.05
# ... within this share of the job's time budget (timing goes on past it only until the CI
# exists, as always): the screening only chooses what is measured again, with the whole
# budget. On examples/dispatch, the leader's rounds in a cohort spread so much (1.11-1.47)
# that its screening ran to the whole budget: 24 rounds, 54 s of the job's 87.
SCREEN_BUDGET_SHARE = 0.5
_NOTHING_AGAIN = "no candidate looks faster: nothing to measure again"


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
    """How many proposals ``policy`` will make at most when asked for ``n`` (the racing
    rule's contenders): what its ``planned`` says, else ``n``."""
    planned = getattr(policy, "planned", None)
    return int(planned(request, n)) if planned is not None else n


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
    profile: Callable[[], Profile | None] | None = None,
) -> PortfolioResult:
    """Find the fastest verified version of ``request``'s code (see the module docstring).

    ``workers`` verifications run at once (default: one per core). ``mix_sources`` bounds how
    many passing whole-file candidates (the fastest first) lend functions to the mix; mixing
    needs a whole-file request and a baseline with at least two functions. The ``confirm``
    best candidates that look faster are measured again (see :func:`_confirm`); the winner is
    chosen among those fresh measurements (``confirm=0``: no second measurement, the
    screening figures decide).

    ``racing`` is the rule by which candidates that cannot win stop being timed early (None:
    every candidate is timed to its CI target or budget); its ``contenders`` and ``min_gain``
    are filled in here. A racing job that confirms screens candidates to a looser precision
    (``SCREEN_REL_CI`` from ``SCREEN_MIN_ROUNDS`` rounds, in ``SCREEN_BUDGET_SHARE`` of the
    budget) and measures the best again at the full one. ``same_code`` False times
    candidates with identical machine code again. ``on_update`` hears of every verified
    speed-up as soon as it is known (see :class:`SoFar`). When ``cancel`` is set, the job
    stops and returns what was verified.
    ``profile`` gives the baseline's instruction profile (waiting for it if it is being made),
    or None: the mix uses it to skip splices that cannot gain (see ``mixing``).

    Returns every verified candidate with its result; never a winner that failed a test.
    """
    opts = options or VerifyOptions()
    say = progress or quiet
    unusable: list[NoCandidate] = []
    notes: list[str] = []
    seen: dict[str, str] = {candidate_hash(baseline.asm): "the baseline"}
    screen = _screening(opts) if racing is not None and confirm > 0 else opts
    workers = max(1, workers or os.cpu_count() or 1)
    pool = Verifier(baseline, sandbox, screen, store, workers, say, cancel)
    pool.record = dict(record or {})
    pool.on_update = on_update
    pool.rule = replace(racing, min_gain=opts.min_gain) if racing is not None else None
    if same_code:
        pool.same_code = SameCode(baseline)
    planned = sum(_planned(p, request, proposals_per_policy) for p in policies)
    asked = _proposals(policies, request, proposals_per_policy, seen, unusable, notes, say, cancel)
    # Threads for the measurements begun early, and the confirmation after the screening.
    background = ThreadPoolExecutor(EARLY_AT_MOST + 1, thread_name_prefix="asmopt-confirm")
    idle, early = _measure_early(pool, opts, say, background)
    try:
        racing_confirms = pool.rule is not None and confirm > 0
        screened = pool.verify(asked, contenders=planned, on_idle=idle if racing_confirms else None)
        trials = pool.resolve(screened, screen)
        trials, mixed = _after_screening(
            baseline, trials, pool, opts, mix=mix and request.function is None,
            mix_sources=mix_sources, confirm=confirm, seen=seen, notes=notes, say=say,
            background=background, early=early(), profile=profile or (lambda: None),
        )  # fmt: skip
    finally:
        background.shutdown(wait=True, cancel_futures=True)
        pool.close()
    ordered = _ordered(pool.resolve(trials), confirm > 0, notes)
    best = ordered[0] if ordered else None
    return PortfolioResult(
        winner=best if best is not None and best.faster and best.passed else None,
        trials=tuple(ordered),
        unusable=tuple(unusable),
        notes=tuple(notes),
        mix=mixed,
        cancelled=pool.cancelled,
    )


def _ordered(trials: list[Trial], confirmed_first: bool, notes: list[str]) -> list[Trial]:
    """``trials`` best first (those measured again first, when the job confirms); ``notes``
    gains which ones shared another's machine code."""
    shared = [t for t in trials if t.same_code_as]
    if shared:
        notes.append(
            f"{len(shared)} candidates had the same machine code as another and were not "
            "timed again: " + ", ".join(f"{t.label} = {t.same_code_as}" for t in shared)
        )
    ordered = rank(trials)
    if confirmed_first:
        ordered = [t for t in ordered if t.confirmed] + [t for t in ordered if not t.confirmed]
    return ordered


def _screening(opts: VerifyOptions) -> VerifyOptions:
    """Screen cheaply, confirm precisely: every screening CI is a valid 95% CI, only wider;
    the winner is always one measured again at the full precision (:func:`_confirm`)."""
    bench = replace(
        opts.bench,
        min_rounds=min(opts.bench.min_rounds, SCREEN_MIN_ROUNDS),
        target_rel_ci=max(opts.bench.target_rel_ci, SCREEN_REL_CI),
        budget_seconds=opts.bench.budget_seconds * SCREEN_BUDGET_SHARE,
    )
    return replace(opts, bench=bench)


def _proposals(
    policies: Sequence[Policy],
    request: Request,
    per_policy: int,
    seen: dict[str, str],
    unusable: list[NoCandidate],
    notes: list[str],
    say: Progress,
    cancel: threading.Event | None,
) -> Iterator[Job]:
    """Every policy's proposals as they come, less duplicates (noted) and non-candidates
    (kept in ``unusable``)."""
    for policy in policies:
        if cancel is not None and cancel.is_set():
            return
        say(Stage.GENERATE, f"asking {policy.name}")
        for proposal in _ask(policy, request, per_policy):
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


def _after_screening(
    baseline: Baseline,
    trials: list[Trial],
    pool: Verifier,
    opts: VerifyOptions,
    *,
    mix: bool,
    mix_sources: int,
    confirm: int,
    seen: dict[str, str],
    notes: list[str],
    say: Progress,
    background: ThreadPoolExecutor,
    early: _Early | None = None,
    profile: Callable[[], Profile | None] = lambda: None,
) -> tuple[list[Trial], Trial | None]:
    """Steps 3 and 4: the mix (when ``mix``) and the second measurement (``confirm``). A
    racing job measures its best whole-file candidate again *while* the mix's function trials
    are timed (both keep the workers busy; in ``background``, where ``early`` may have begun
    it during the screening), then measures again any function or mix trial whose median
    lies above that one's fresh CI (it may be better; a tie is not measured again: it is a
    winner within the best's CI). Without racing, the mix comes first and the best of
    everything is measured again after it (:func:`_confirm`)."""
    mixed: Trial | None = None
    if pool.rule is None or confirm == 0 or not mix:
        if mix and not pool.cancelled:
            extra, mixed = _mix(
                baseline, trials, pool, seen, notes, mix_sources, say, profile=profile()
            )
            trials = trials + extra
        if confirm > 0 and not pool.cancelled:
            trials = _confirm(trials, pool, opts, confirm, say, early)
        return trials, mixed
    if pool.cancelled:
        return trials, None
    chosen = _promising(trials, True, confirm)
    if not chosen and early is None:
        say(Stage.BENCHMARK, _NOTHING_AGAIN)
    again = background.submit(_measure_again, trials, chosen, pool, opts, say, early)
    # Reported as benchmarking: the job's stages stay in order (the best is being measured
    # again from here on).
    extra, mixed = _mix(
        baseline, trials, pool, seen, notes, mix_sources, say, Stage.BENCHMARK, profile()
    )
    trials = again.result()
    confirmed = rank(t for t in trials if t.confirmed)
    top = confirmed[0].result.speedup if confirmed else None
    if not pool.cancelled:
        more = _promising(extra, True, confirm, above=top.ci_high if top else 0.0)
        extra = _measure_again(extra, more, pool, opts, say)
    return trials + extra, mixed


def _confirm(
    trials: list[Trial],
    pool: Verifier,
    opts: VerifyOptions,
    count: int,
    say: Progress,
    early: _Early | None = None,
) -> list[Trial]:
    """Measure again, with twice the budget and half the CI target, the ``count`` best trials
    by CI lower bound and the ``count`` best by median: a screening run cut short by its
    budget after two rounds has a meaningless (often far too narrow) CI, so the median is the
    second opinion. When the job races, the best by CI lower bound, the best by median when
    its median is higher, and others only when their median lies above the first's CI (at
    most ``count``), racing each other afresh, at the job's own precision (``opts``: the
    precision the user asked for; the screening was looser): the rest within its CI are
    ties, reported with their screening figures, and measuring the best again is what keeps
    the winner's figure free of the selection. Trials that share
    another's machine code are not measured again (their twin is); nor is one ``early``
    measured again already."""
    chosen = _promising(trials, pool.rule is not None, count)
    if not chosen and early is None:
        say(Stage.BENCHMARK, _NOTHING_AGAIN)
    return _measure_again(trials, chosen, pool, opts, say, early)


def _promising(trials: list[Trial], racing: bool, count: int, above: float = 0.0) -> list[Trial]:
    """The trials :func:`_confirm` measures again, of those whose median is above ``above``
    (and 1) and that were not measured again already."""
    faster = [
        t
        for t in trials
        if t.passed
        and t.result.speedup
        and t.result.speedup.median > max(1.0, above)
        and not t.same_code_as
        and not t.confirmed
    ]
    by_median = sorted(faster, key=lambda t: rank_key(t.result)[2], reverse=True)
    promising: list[Trial] = []
    for t in rank(faster)[:count] + by_median[:count]:
        if all(t is not p for p in promising):
            promising.append(t)
    if racing and promising:
        # Racing: the best by CI lower bound; the best by median too when its median is
        # higher (a noisy candidate's wider CI can rank it below a steadier, slower one); and
        # others only when their median is above the best's whole CI (they may well be
        # better). Other near-ties are not measured again: any of them is a winner within
        # the best one's CI.
        ordered = rank(promising)
        top = ordered[0].result.speedup
        assert top is not None
        lead = by_median[0]
        promising = [ordered[0]] + [
            t
            for t in ordered[1:]
            if t.result.speedup
            and (
                t.result.speedup.median > top.ci_high
                or (t is lead and t.result.speedup.median > top.median)
            )
        ]
        promising = promising[:count]
    return promising


def _measure_again(
    trials: list[Trial],
    chosen: list[Trial],
    pool: Verifier,
    opts: VerifyOptions,
    say: Progress,
    early: _Early | None = None,
) -> list[Trial]:
    """``trials`` with each of ``chosen`` measured afresh (its screening result kept): at the
    job's precision when it races, else with twice the budget and half the CI target. What
    ``early`` measured afresh already (:func:`_measure_early`) is taken from it, not measured
    again; when it is not one of ``chosen``, it is withdrawn and its figures are dropped, so
    that what is measured again depends on the screening's figures alone, not on the order
    in which they came (a job that finds them all in the store confirms what this one did)."""
    chosen_hashes = {t.result.candidate_hash for t in chosen}
    if early is not None and early.chash not in chosen_hashes:
        early.halt.why = "not among the best once every candidate was screened"
        early.future.result()  # it stops within a round; if it had ended, it is dropped too
        screened = next((t for t in trials if t.result.candidate_hash == early.chash), None)
        if screened is not None:
            pool.restore(screened)  # the candidate's own figures are its screening ones again
        early = None
    # What ``early`` is measuring is not measured twice; the rest is measured meanwhile.
    started = early.chash if early is not None else ""
    fresh = _fresh([t for t in chosen if t.result.candidate_hash != started], pool, opts, say)
    known = early.future.result() if early is not None else {}
    for trial in known.values():
        say(Stage.BENCHMARK, f"{trial.label} was measured again: {trial.result.message}")
    fresh.update(known)
    return [fresh.get(t.result.candidate_hash, t) for t in trials]


def _fresh(
    chosen: list[Trial],
    pool: Verifier,
    opts: VerifyOptions,
    say: Progress,
    stage: Stage = Stage.BENCHMARK,
    halt: Withdrawal | None = None,
) -> dict[str, Trial]:
    """Each of ``chosen`` measured afresh (see :func:`_measure_again`), by candidate hash;
    none that ``halt`` withdrew."""
    if not chosen:
        return {}
    bench = replace(opts.bench, seed=opts.bench.seed + 1)  # the seed: a new store key
    if pool.rule is None:
        bench = replace(
            bench,
            budget_seconds=2 * opts.bench.budget_seconds,
            min_rounds=2 * opts.bench.min_rounds,
            target_rel_ci=opts.bench.target_rel_ci / 2,
        )
    say(stage, f"measuring the best {len(chosen)} again")
    # A race of their own: the screening figures do not count against the fresh ones.
    again = pool.verify(
        [(t.candidate, t.kind, t.sources) for t in chosen],
        replace(opts, bench=bench),
        contenders=len(chosen),
        fresh_race=True,
        stage=stage,
        halt=halt,
    )
    if halt is not None and halt.why:
        return {}
    by_hash = {t.result.candidate_hash: t for t in chosen}
    return {
        t.result.candidate_hash: replace(
            by_hash[t.result.candidate_hash],
            result=t.result,
            screening=by_hash[t.result.candidate_hash].result,
        )
        for t in again
        if t.result.candidate_hash in by_hash
    }


@dataclass(frozen=True)
class _Early:
    """A fresh measurement begun during the screening: whose, what it found, and how the job
    withdraws it."""

    trial: Trial
    future: Future[dict[str, Trial]]
    halt: Withdrawal

    @property
    def chash(self) -> str:
        return self.trial.result.candidate_hash


# How many measurements the screening begins early at most (each one after the first begins
# when another candidate came to rank first, and withdrew the one before).
EARLY_AT_MOST = 4


def _measure_early(
    pool: Verifier, opts: VerifyOptions, say: Progress, background: ThreadPoolExecutor
) -> tuple[Callable[[list[Trial], Timing], bool], Callable[[], _Early | None]]:
    """The screening's idle hook, and what it started: when every candidate is being verified
    and a worker would be idle, the best so far is measured again at once (in ``background``)
    rather than after the screening, so that the job's last step overlaps its first. When a
    candidate screened later comes to rank first (by its CI's lower bound, as the
    confirmation chooses: :func:`_promising`), that measurement is withdrawn and the new
    first is measured again at once, up to ``EARLY_AT_MOST`` times. A later candidate whose
    median lies above the first's CI is measured again after the screening, without waiting
    for this one (see :func:`_measure_again`). While a candidate still being screened ranks
    above the best so far on its rounds so far (:func:`_outranked`), nothing is begun: on
    examples/dispatch the measurement begun meanwhile was withdrawn when that one's screening
    ended, and had slowed it down."""
    started: list[_Early] = []

    def idle(done: list[Trial], timing: Timing) -> bool:
        best = _promising(pool.resolve(done), True, 1)
        current = started[-1] if started and not started[-1].halt.why else None
        if not best or (current is not None and current.chash == best[0].result.candidate_hash):
            return False  # keep being told: a later candidate may rank first
        if current is not None:
            current.halt.why = (
                f"{best[0].label} is surely faster"
                if _beaten(current.trial, best[0])
                else f"{best[0].label} now ranks first (the confirmation measures the first)"
            )
            say(Stage.VERIFY, f"{current.trial.label} is not measured again: {current.halt.why}")
        if _outranked(best[0], timing):
            return False  # it would likely be withdrawn: wait for that candidate's verdict
        if len(started) < EARLY_AT_MOST:
            halt = Withdrawal()
            future = background.submit(_fresh, best, pool, opts, say, Stage.VERIFY, halt)
            started.append(_Early(best[0], future, halt))
        return len(started) >= EARLY_AT_MOST

    def current() -> _Early | None:
        return started[-1] if started and not started[-1].halt.why else None

    return idle, current


def _outranked(best: Trial, timing: Timing) -> bool:
    """Whether a candidate still being screened ranks above ``best`` on its rounds so far (a
    higher lower bound of its 95% CI, once it has one): measuring ``best`` again now would
    most likely be withdrawn when that one's screening ends, and meanwhile slow it down."""
    top = best.result.speedup
    if top is None:
        return False
    for samples, _ in timing.values():
        if len(samples) >= MIN_CI_SAMPLES:
            median, low, _ = order_statistic_median_ci(samples)
            if median > 1.0 and low > top.ci_low:
                return True
    return False


def _beaten(measured: Trial, best: Trial) -> bool:
    """Whether ``best`` is another candidate whose screening CI lies wholly above that of
    ``measured``."""
    mine, theirs = measured.result.speedup, best.result.speedup
    if best.result.candidate_hash == measured.result.candidate_hash or not mine or not theirs:
        return False
    return theirs.ci_low > mine.ci_high
