"""The verifications of one search job: a thread pool (:class:`Verifier`) that judges
candidates ``workers`` at a time, races them (``executor.benchmark.Race``: one that surely
cannot win stops being timed early, with a stated error rate), gives a candidate whose linked
binary loads the same machine code as one judged already that one's verdict without testing
or timing it again (:class:`SameCode`), streams each verified speed-up as soon as it is known
(:class:`~asmopt.model.search.trials.SoFar`), and stops cleanly when cancelled.
:func:`asmopt.model.search.portfolio.optimize` drives it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from asmopt.executor.benchmark import (
    WITHDRAWN,
    Cohort,
    Race,
    RaceLane,
    RacingRule,
    Seat,
    order_statistic_median_ci,
)
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
    withdrawn,
)
from asmopt.model.search.policy import Candidate
from asmopt.model.search.stages import Progress, Stage
from asmopt.model.search.trials import OnUpdate, SoFar, Trial, TrialKind

__all__ = ["COHORT_SIZE", "Job", "SameCode", "Timing", "Verifier"]

# Candidates timed together on each core (executor.cohort): each round of a test runs the
# baseline once for all of them. 1: every candidate alone on a core, with its own baseline runs.
COHORT_SIZE = 3
# A candidate alone in its cohort while another cohort has no member takes its rounds two
# wide, on both cores (executor.cohort.Seat.widen): the last candidate timed, typically the
# winner's second measurement, no longer leaves a core idle.
WIDE_WHEN_ALONE = True
# Until a job's first verdict, its first candidate takes its rounds two wide even while the
# other core has candidates of its own (they wait a round at a time): its figures come twice
# as fast, and the first verified speed-up is streamed sooner (about 12 s instead of 15-21 s
# on examples/align); the other candidates' work is only put off, not added to.
FIRST_GOES_WIDE = True

# What the verifier is asked to judge: a candidate, its kind and where its functions came from.
Job = tuple[Candidate, TrialKind, dict[str, str]]
# The round ratios so far (and label) of each candidate still being timed, by candidate hash.
Timing = dict[str, tuple[tuple[float, ...], str]]


class SameCode:
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


@dataclass
class Withdrawal:
    """A measurement its job may withdraw: once ``why`` is said, the candidates of the
    :meth:`Verifier.verify` call it was given to stop being timed, and their results, cut
    short with ``WITHDRAWN``, are not stored (they say nothing of the candidate)."""

    why: str = ""


class Verifier:
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
        self.cancel = cancel
        self.cancelled = False
        self.record: dict[str, str] = {}  # fields every stored record carries (target, ...)
        self.rule: RacingRule | None = None
        self.same_code: SameCode | None = None
        self.on_update: OnUpdate | None = None
        self.judged: dict[str, Trial] = {}  # candidate hash -> its latest own trial
        # One cohort per worker: its candidates take turns on one core and share baseline
        # runs (executor.cohort); a candidate joins the one with the fewest members (_join).
        self.cohorts = [Cohort() for _ in range(workers)] if COHORT_SIZE > 1 else []
        self._cohort_turns = threading.Condition()
        self._first_done = False
        self._first: Cohort | None = None  # the first candidate's cohort
        self._tickets = 0  # candidates submitted
        self._joined = 0  # the ticket that may join next
        self._best_so_far = 1.0  # the highest CI lower bound streamed so far
        self.moves = 0  # candidates moved to a cohort whose core was idle (_rebalance)
        self.wide_rounds = 0  # rounds timed two wide in a lent cohort (_widen)
        self._stream_lock = threading.Lock()
        self.threads = workers * max(1, COHORT_SIZE)
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="asmopt-verify")

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

    def _lane(
        self, chash: str, label: str, race: Race | None, halt: Withdrawal | None = None
    ) -> RaceLane:
        """The benchmark's per-round callback: race, and stream a provisional verdict; stop
        once ``halt`` is set (its job withdrew the measurement)."""
        floor = 1.0 + self.options.min_gain
        told = {"done": False}

        def lane(ratios: Sequence[float], walls: Sequence[float]) -> str | None:
            if halt is not None and halt.why:
                return f"{WITHDRAWN}{halt.why}"
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
        race: Race | None,
        ticket: int = 0,
        halt: Withdrawal | None = None,
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
        cohort = self._join(ticket)
        seat = None
        if cohort is not None:
            seat = Seat(
                cohort, chash, self._rebalance, widen=self._widen, give_back=self._give_back
            )
        try:
            result = Judge(self.baseline, self.sandbox, options, self.store).judge(
                candidate.asm,
                meta=meta,
                cancel=self.cancel,
                race=self._lane(chash, label, race, halt),
                same_code=self.same_code.hook(chash, label) if self.same_code else None,
                cohort=seat,
            )
        finally:
            self._leave(seat.cohort if seat is not None else None)
        trial = Trial(candidate, result, kind, dict(sources))
        if withdrawn(result):
            return trial  # it says nothing of the candidate: not raced, kept or streamed
        if race is not None and result.speedup is not None and result.speedup.samples:
            race.record(chash, label, result.speedup.samples)
        if not result.meta.get("same_code_as"):
            self.judged[chash] = trial
        if result.verdict is Verdict.FASTER and result.speedup is not None:
            s = result.speedup
            self._stream(SoFar(label, s.median, s.ci_low, s.ci_high, s.runs, True, trial))
        return trial

    def restore(self, trial: Trial) -> None:
        """Make ``trial`` its candidate's own trial again (the one candidates with the same
        machine code take their verdict from), after a later measurement of it was dropped."""
        self.judged[trial.result.candidate_hash] = trial

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
        jobs: Iterable[Job],
        options: VerifyOptions | None = None,
        *,
        contenders: int = 0,
        fresh_race: bool = False,
        stage: Stage = Stage.VERIFY,
        on_idle: Callable[[list[Trial], Timing], bool] | None = None,
        halt: Withdrawal | None = None,
    ) -> list[Trial]:
        """Verify ``jobs`` (taken one by one as they are made) ``workers`` at a time.
        ``contenders`` is how many more candidates this call may time (the racing rule's
        union bound counts them and every candidate raced before, unless ``fresh_race``).
        Each call races in a race of its own, so two calls may run at once (in two threads),
        sharing the workers. Its progress lines report ``stage``. Once every job was taken
        and fewer are left than the pool has threads (a worker would be idle), ``on_idle`` is
        called with the trials done so far, and the round ratios so far of the candidates
        still being timed (:data:`Timing`), as each one ends, until it says it is done.
        Setting ``halt`` stops timing this call's candidates (see :class:`Withdrawal`)."""
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        if self.cancelled:
            return []
        opts = options or self.options
        race = self._race(contenders, fresh_race)
        futures: dict[Future[Trial], str] = {}  # -> its candidate's hash
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
                if withdrawn(trial.result):
                    continue  # its job said why when it withdrew it
                line = f"[{len(done)}/{len(futures)}] {trial.label}: {trial.result.message}"
                self.say(stage, line)

        for c, kind, sources in jobs:
            if self.cancelled or (self.cancel is not None and self.cancel.is_set()):
                self.cancelled = True
                break
            with self._cohort_turns:
                ticket = self._tickets
                self._tickets += 1
            fut = self.pool.submit(self._one, c, kind, sources, opts, race, ticket, halt)
            futures[fut] = candidate_hash(c.asm)
            pending.add(fut)
            collect(0)
        looked = -1
        while pending:
            idle = len(pending) < self.threads and len(done) > looked
            if on_idle is not None and idle and not self.cancelled:
                looked = len(done)
                timing = race.timing(futures[f] for f in pending) if race is not None else {}
                if on_idle(list(done), timing):
                    on_idle = None
            collect(0.2)
        return done

    def _join(self, ticket: int) -> Cohort | None:
        """The cohort a candidate is timed in: the one with the fewest members, at most
        ``COHORT_SIZE``; candidates join in the order they were submitted (``ticket``).
        Until a first verdict, the first candidate has its cohort (its core) to itself, and
        takes its rounds two wide (:meth:`_widen`), so that verdict comes sooner than when
        every candidate had a core."""
        if not self.cohorts:
            return None
        with self._cohort_turns:
            while True:
                free = [c for c in self.cohorts if c.members < self._room(c)]
                stop = self.cancel is not None and self.cancel.is_set()
                if stop or (free and ticket <= self._joined):
                    break
                self._cohort_turns.wait(0.2)
            cohort = min(free or self.cohorts, key=lambda c: c.members)
            cohort.members += 1
            self._joined = max(self._joined, ticket + 1)
            if self._first is None:
                self._first = cohort
            self._cohort_turns.notify_all()
        return cohort

    def _rebalance(self, seat: Seat) -> Cohort:
        """The cohort ``seat``'s candidate takes its next step in: another one, when that one
        has at least two members fewer than its own and room (the core of a cohort whose
        members are done would otherwise idle while another's take turns); else its own."""
        with self._cohort_turns:
            own = seat.cohort
            room = [c for c in self.cohorts if c is not own and c.members < self._room(c)]
            target = min(room, key=lambda c: c.members, default=None)
            if target is None or own.members - target.members < 2:
                return own
            own.members -= 1
            target.members += 1
            self.moves += 1
            self._cohort_turns.notify_all()
            return target

    def _widen(self, seat: Seat) -> Cohort | None:
        """A cohort lent to ``seat``'s candidate for one round two wide, when the candidate is
        alone in its own (``WIDE_WHEN_ALONE``): one without members; or, for the job's first
        candidate until the job's first verdict (``FIRST_GOES_WIDE``), any other, whose
        members wait while it holds that core for the round. It counts as a member of the
        lent cohort until :meth:`_give_back`."""
        if not WIDE_WHEN_ALONE:
            return None
        with self._cohort_turns:
            if seat.cohort.members != 1:
                return None
            others = [c for c in self.cohorts if c is not seat.cohort]
            lent = next((c for c in others if c.members == 0), None)
            first = FIRST_GOES_WIDE and seat.cohort is self._first and not self._first_done
            if lent is None and first and others:
                lent = min(others, key=lambda c: c.members)
            if lent is not None:
                lent.members += 1
                self.wide_rounds += 1
            return lent

    def _give_back(self, cohort: Cohort) -> None:
        with self._cohort_turns:
            cohort.members -= 1
            self._cohort_turns.notify_all()

    def _room(self, cohort: Cohort) -> int:
        if self._first_done or (self._first is not None and cohort is not self._first):
            return COHORT_SIZE
        return 1

    def _leave(self, cohort: Cohort | None) -> None:
        if cohort is not None:
            with self._cohort_turns:
                cohort.members -= 1
                self._first_done = True
                self._cohort_turns.notify_all()

    def _linked(self, a: str, b: str) -> bool:
        """Whether candidates ``a`` and ``b`` paired with the same baseline run."""
        return any(c.linked(a, b) for c in self.cohorts)

    def _race(self, contenders: int, fresh: bool) -> Race | None:
        """The race of one :meth:`verify` call: ``contenders`` new candidates, and unless
        ``fresh`` every candidate judged before (with its rounds)."""
        if self.rule is None:
            return None
        known = {} if fresh else dict(self.judged)
        race = Race(replace(self.rule, contenders=max(2, contenders + len(known))), self._linked)
        for chash, trial in known.items():
            speedup = trial.result.speedup
            if speedup is not None and speedup.samples:
                race.record(chash, trial.label, speedup.samples)
        return race
