"""Cohorts (executor.cohort): candidates that take turns on one core and share baseline runs.

What must hold: a cohort runs one process at a time, so no candidate ever runs beside the
baseline run its ratio divides; a candidate pairs with a given baseline run at most once, so
its rounds stay independent; and sharing does save baseline runs."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import pytest

from asmopt.executor.benchmark import BenchmarkError, BenchmarkOptions, Race, RacingRule, benchmark
from asmopt.executor.cohort import Cohort, Seat
from asmopt.executor.results import RunResult
from asmopt.executor.sandbox import SandboxLimits
from asmopt.executor.testcases import TestCase


def test_turns_are_one_at_a_time_in_arrival_order():
    cohort = Cohort()
    inside = 0
    most = 0
    order: list[int] = []
    lock = threading.Lock()
    gate = threading.Event()

    def member(i: int) -> None:
        gate.wait()
        time.sleep(0.01 * i)  # arrive in order 0, 1, 2, ...
        for _ in range(3):
            with cohort.turn():
                nonlocal inside, most
                with lock:
                    inside += 1
                    most = max(most, inside)
                    order.append(i)
                time.sleep(0.02)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=member, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert most == 1
    assert sorted(order) == sorted(list(range(4)) * 3)
    assert order[:2] == [0, 0] or order[0] == 0  # the first to arrive goes first


def test_a_baseline_run_pairs_with_each_other_member_once():
    cohort = Cohort()
    run = cohort.announce("t1", "a")
    assert cohort.claim("t1", "a") is None  # its own
    assert cohort.claim("t1", "b") is run  # announced, not run yet: safe to pair with
    assert cohort.claim("t1", "b") is None  # only once
    assert cohort.claim("t2", "b") is None  # another test
    cohort.finish(run, 2.0, 0.5, "cgroup")
    assert cohort.claim("t1", "c") is run  # fresh
    assert cohort.linked("a", "b") and cohort.linked("b", "c") and cohort.linked("a", "c")
    assert not cohort.linked("b", "d")
    assert (cohort.ran, cohort.paired) == (1, 2)


def test_a_member_that_moved_in_pairs_only_with_runs_announced_after_it_came():
    cohort = Cohort()
    earlier = cohort.announce("t1", "a")
    cohort.finish(earlier, 2.0, 100.0, "cgroup")  # fresh for a long while
    came = time.monotonic()
    assert cohort.claim("t1", "mover", since=came) is None  # it may have run beside it
    later = cohort.announce("t1", "a")
    assert cohort.claim("t1", "mover", since=came) is later
    assert cohort.claim("t1", "b") is later  # a member that was there all along: as before


def test_failed_and_stale_runs_are_not_shared():
    cohort = Cohort()
    failed = cohort.announce("t1", "a")
    cohort.fail(failed)
    assert cohort.claim("t1", "b") is None
    assert not failed.wait(lambda: False)
    old = cohort.announce("t1", "a")
    cohort.finish(old, 2.0, 0.01, "cgroup")
    old.ended -= 1.0  # ended long ago compared with its 10 ms
    assert cohort.claim("t1", "b") is None


def test_a_member_that_failed_to_run_its_announced_run_frees_its_waiters():
    cohort = Cohort()
    run = cohort.announce("t1", "a")
    assert cohort.claim("t1", "b") is run
    threading.Timer(0.05, cohort.fail, args=(run,)).start()
    assert run.wait(lambda: False) is False  # the waiter then runs its own


@dataclass
class _Clock:
    """Every run of every fake session: (who, start, end, cpu)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: list[tuple[str, float, float, float]] = field(default_factory=list)
    count: int = 0
    threads: dict[str, set[threading.Thread]] = field(default_factory=dict)  # who -> ran in


class _FakeSession:
    """A one-binary session whose runs sleep briefly and report a CPU time: the baseline's
    unique per run (so a reused run would show), a candidate's fixed."""

    def __init__(self, who: str, clock: _Clock, cpu: float | None, sleep: float = 0.004) -> None:
        self.who, self.clock, self.cpu, self.sleep = who, clock, cpu, sleep
        self.limits = SandboxLimits()

    def run(self, index, stdin, args, limits, cancel=None) -> RunResult:
        start = time.monotonic()
        time.sleep(self.sleep)
        end = time.monotonic()
        with self.clock.lock:
            self.clock.count += 1
            cpu = self.cpu if self.cpu is not None else 2.0 + self.clock.count * 1e-4
            self.clock.runs.append((self.who, start, end, cpu))
            lane = getattr(self, "lane", self.who)
            self.clock.threads.setdefault(lane, set()).add(threading.current_thread())
        return RunResult(0, None, b"", b"", cpu, end - start, cpu_source="cgroup")

    def close(self) -> None:
        self.closed = True


def _time_together(
    members: int, cohort: Cohort | None, clock: _Clock, tests: int = 2, move=None, rounds=8
):
    tests = [TestCase(f"t{i}", b"", None) for i in range(tests)]
    opts = BenchmarkOptions(
        min_rounds=rounds, max_rounds=rounds, target_rel_ci=0.0, warmup_rounds=0
    )
    results: dict[str, object] = {}

    def one(i: int) -> None:
        name = f"c{i}"
        sessions = (_FakeSession(f"base-for-{name}", clock, None), _FakeSession(name, clock, 1.0))
        shared = Seat(cohort, name, move) if cohort is not None else None
        results[name] = benchmark(
            None,
            None,
            None,
            tests,
            opts,
            sessions=sessions,
            shared=shared,  # type: ignore[arg-type]
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(members)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_cohort_never_runs_two_processes_at_once_and_shares_baseline_runs():
    clock = _Clock()
    cohort = Cohort()
    results = _time_together(3, cohort, clock, tests=1)
    spans = sorted((s, e) for _, s, e, _ in clock.runs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # one at a time: no candidate beside the run it pairs with
    baseline_runs = sum(1 for who, *_ in clock.runs if who.startswith("base"))
    candidate_runs = sum(1 for who, *_ in clock.runs if not who.startswith("base"))
    assert candidate_runs == 3 * 8
    assert baseline_runs < candidate_runs * 0.75, (baseline_runs, cohort.paired)
    assert cohort.paired > 0 and cohort.ran == baseline_runs
    for estimate in results.values():
        samples = estimate.samples  # type: ignore[attr-defined]
        assert len(samples) == 8
        # One test: a round's ratio is its baseline run's time (unique per run) over 1.0, so
        # a baseline run paired with one candidate twice would repeat a ratio.
        assert all(abs(r - 2.0) < 0.1 for r in samples)
        assert len(set(samples)) == len(samples)


def test_without_a_cohort_every_candidate_runs_its_own_baseline():
    clock = _Clock()
    _time_together(2, None, clock)
    baseline_runs = sum(1 for who, *_ in clock.runs if who.startswith("base"))
    assert baseline_runs == 2 * 8 * 2


@pytest.mark.parametrize("linked", [False, True])
def test_early_separation_leaves_out_candidates_that_shared_baseline_runs(linked):
    race = Race(RacingRule(contenders=2, early_looks=(5,)), linked=lambda a, b: linked)
    race.check("fast", "fast", [2.0] * 5 + [2.01] * 5)
    reason = race.check("slow", "slow", [1.0, 1.01, 1.02, 1.0, 1.01])
    assert (reason is None) == linked


def test_a_turn_taken_again_by_its_holder_does_not_wait():
    cohort = Cohort()
    with cohort.turn(), cohort.turn():
        pass
    with cohort.turn():  # and it was given back
        pass


def test_a_candidates_own_baseline_run_and_its_run_are_back_to_back():
    clock = _Clock()
    _time_together(3, Cohort(), clock, tests=2)
    runs = sorted(clock.runs, key=lambda r: r[1])
    for i, (who, *_) in enumerate(runs):
        if who.startswith("base-for-"):
            owner = who.removeprefix("base-for-")
            neighbours = {runs[j][0] for j in (i - 1, i + 1) if 0 <= j < len(runs)}
            assert owner in neighbours, (who, neighbours)


def test_a_member_moves_to_an_idle_cohort_between_rounds_and_each_cohort_stays_one_at_a_time():
    clock = _Clock()
    crowded, idle = Cohort(), Cohort()
    crowded.members = 3
    # The idle cohort's last member just made baseline runs of both tests, fresh enough to
    # pair with: they ran while the mover still ran in the crowded cohort, so it must not.
    before = [idle.announce((f"t{i}", None), "gone") for i in range(2)]
    for run in before:
        idle.finish(run, 2.0, 100.0, "cgroup")
    made_before = idle.ran
    moved: dict[str, float] = {}
    lock = threading.Lock()

    def move(seat: Seat) -> Cohort:
        # The verifier's rule in small: the first member at a round boundary moves.
        with lock:
            if seat.cohort is crowded and idle.members == 0:
                crowded.members -= 1
                idle.members += 1
                moved[str(seat.me)] = time.monotonic()
                return idle
            return seat.cohort

    results = _time_together(3, crowded, clock, tests=2, move=move, rounds=6)
    assert len(moved) == 1 and idle.ran > 0, (moved, idle.ran)
    ((mover, when),) = moved.items()

    def cohort_of(who: str, start: float) -> Cohort:
        return idle if who in (mover, f"base-for-{mover}") and start >= when else crowded

    for cohort in (crowded, idle):
        spans = sorted((s, e) for who, s, e, _ in clock.runs if cohort_of(who, s) is cohort)
        assert spans
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end  # each cohort: one process at a time
    # Once it moved, it paired with no baseline run of the cohort it left, nor with one its
    # new cohort made before it came; it made its own there.
    assert all(run.users == {"gone"} for run in before)
    assert idle.paired == 0 and idle.ran - made_before == sum(
        1 for who, s, *_ in clock.runs if who == f"base-for-{mover}" and s >= when
    )
    for estimate in results.values():
        samples = estimate.samples  # type: ignore[attr-defined]
        assert len(samples) == 6


def _lender(lent: list[Cohort], idle: Cohort, after: int = 0):
    """A seat's ``widen`` and ``give_back`` as the verifier makes them, for one idle cohort:
    lent when it has no member (and only from the ``after``-th ask on)."""
    asks = {"n": 0}

    def widen(seat: Seat) -> Cohort | None:
        asks["n"] += 1
        if asks["n"] <= after or idle.members:
            return None
        idle.members += 1
        lent.append(idle)
        return idle

    def give_back(cohort: Cohort) -> None:
        cohort.members -= 1

    return widen, give_back


def test_a_member_alone_is_timed_two_wide_and_never_beside_a_baseline_run_it_pairs_with():
    """A candidate alone in its cohort while another cohort idles takes its rounds two wide:
    both cores run the baseline at once, then both run the candidate. Its runs overlap each
    other's, never a baseline run's; each ratio has a baseline run of its own; the looks and
    ``max_rounds`` count ratios, not loop turns; the lent cohort is given back."""
    clock = _Clock()
    own, idle = Cohort(), Cohort()
    own.members = 1
    lent: list[Cohort] = []
    widen, give_back = _lender(lent, idle, after=2)
    seat = Seat(own, "c", widen=widen, give_back=give_back)
    spares: list[tuple[_FakeSession, _FakeSession]] = []

    def spare():
        spares.append(
            (_FakeSession("base-for-c", clock, None, 0.03), _FakeSession("c", clock, 1.0, 0.03))
        )
        for session, name in zip(spares[-1], ("base-lane1", "c-lane1"), strict=True):
            session.lane = name
        return spares[-1]

    tests = [TestCase(f"t{i}", b"", None) for i in range(2)]
    opts = BenchmarkOptions(min_rounds=9, max_rounds=9, target_rel_ci=0.0, warmup_rounds=0)
    # Runs of 30 ms: two started at once overlap however late a thread starts on a busy box.
    sessions = (_FakeSession("base-for-c", clock, None, 0.03), _FakeSession("c", clock, 1.0, 0.03))
    sessions[0].lane, sessions[1].lane = "base-lane0", "c-lane0"
    estimate = benchmark(None, None, None, tests, opts, sessions=sessions, shared=seat, spare=spare)  # type: ignore[arg-type]

    # Two rounds narrow, then wide rounds (two ratios each) until 9 ratios: the last wide
    # round's second ratio is not added (the 9th was the last look).
    assert len(lent) == 4 and len(spares) == 1 and idle.members == 0
    assert all(getattr(s, "closed", False) for s in spares[0])  # the spare pair is closed
    assert estimate.runs == 9
    assert all(abs(r - 2.0) < 0.1 for r in estimate.samples)
    assert seat.moved_at > 0  # it pairs only with baseline runs announced after
    cand = [(s, e) for who, s, e, _ in clock.runs if who == "c"]
    base = [(s, e) for who, s, e, _ in clock.runs if who == "base-for-c"]
    assert len(cand) == 2 * (2 + 2 * 4) and len(base) == len(cand)  # a baseline run each
    assert not [(c, b) for c in cand for b in base if c[0] < b[1] and b[0] < c[1]]
    at_once = [(a, b) for a, b in itertools.combinations(cand, 2) if a[0] < b[1] and b[0] < a[1]]
    assert len(at_once) == 2 * 4  # each test of each wide round: both cores at once
    # Each session is only ever run from one thread that outlives it (the member's own, and
    # one helper for the second pair): a session's next bubblewraps start in the thread of its
    # last run and die with it (--die-with-parent), so a thread per run would kill them.
    assert [len(clock.threads[f"{who}-lane{i}"]) for who in ("c", "base") for i in (0, 1)] == [
        1, 1, 1, 1,
    ]  # fmt: skip
    assert clock.threads["c-lane0"] != clock.threads["c-lane1"]


def test_a_member_is_not_timed_wide_while_another_cohort_has_members():
    clock = _Clock()
    own, busy = Cohort(), Cohort()
    own.members, busy.members = 1, 1
    lent: list[Cohort] = []
    widen, give_back = _lender(lent, busy)
    seat = Seat(own, "c", widen=widen, give_back=give_back)
    tests = [TestCase("t0", b"", None)]
    opts = BenchmarkOptions(min_rounds=4, max_rounds=4, target_rel_ci=0.0, warmup_rounds=0)
    sessions = (_FakeSession("base-for-c", clock, None), _FakeSession("c", clock, 1.0))
    estimate = benchmark(None, None, None, tests, opts, sessions=sessions, shared=seat)  # type: ignore[arg-type]
    assert not lent and estimate.runs == 4 and busy.members == 1
    spans = sorted((s, e) for _, s, e, _ in clock.runs)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))  # one at a time


def test_two_turns_are_taken_in_one_order_whoever_asks():
    a, b = Cohort(), Cohort()
    done = []

    def take(x: Cohort, y: Cohort) -> None:
        for _ in range(50):
            with Cohort.both_turns(x, y):
                time.sleep(0.0005)
        done.append(1)

    threads = [threading.Thread(target=take, args=p) for p in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(done) == 2  # no deadlock


class _LosingSession(_FakeSession):
    """A fake session whose ``lose``-th run (1-based) comes back lost: its sandbox died
    before it answered."""

    def __init__(self, who: str, clock: _Clock, cpu: float | None, lose: int) -> None:
        super().__init__(who, clock, cpu)
        self.lose, self.calls = lose, 0

    def run(self, index, stdin, args, limits, cancel=None) -> RunResult:
        self.calls += 1
        if self.calls == self.lose:
            return RunResult(None, 9, b"", b"", 0.0, 0.001, lost=True)
        return super().run(index, stdin, args, limits, cancel)


@pytest.mark.parametrize("cohort", [False, True])
def test_a_baseline_run_whose_sandbox_died_is_made_again(cohort):
    """The baseline passed its tests and no candidate reaches its sandbox: a timed run of it
    that died before answering was the machine's doing, and is made once more rather than
    reported as "cannot be timed". A candidate's lost run is not: it may be its own doing."""
    clock = _Clock()
    tests = [TestCase("t0", b"", None), TestCase("t1", b"", None)]
    opts = BenchmarkOptions(min_rounds=4, max_rounds=4, target_rel_ci=0.0, warmup_rounds=0)
    seat = Seat(Cohort(), "c") if cohort else None
    base = _LosingSession("base-for-c", clock, None, lose=3)
    estimate = benchmark(
        None, None, None, tests, opts, sessions=(base, _FakeSession("c", clock, 1.0)), shared=seat
    )  # type: ignore[arg-type]
    assert estimate.runs == 4 and base.calls == 4 * 2 + 1
    assert all(abs(r - 2.0) < 0.1 for r in estimate.samples)

    losing = _LosingSession("c", clock, 1.0, lose=3)
    with pytest.raises(BenchmarkError, match="candidate"):
        benchmark(
            None,
            None,
            None,
            tests,
            opts,
            sessions=(_FakeSession("base-for-c", clock, None), losing),
            shared=seat,
        )  # type: ignore[arg-type]


def test_a_baseline_run_lost_in_a_wide_round_is_made_again_in_its_lane():
    clock = _Clock()
    own, idle = Cohort(), Cohort()
    own.members = 1
    lent: list[Cohort] = []
    widen, give_back = _lender(lent, idle)
    seat = Seat(own, "c", widen=widen, give_back=give_back)
    lost_lane = _LosingSession("base-for-c", clock, None, lose=2)
    lost_lane.lane = "base-lane1"

    def spare():
        return lost_lane, _FakeSession("c", clock, 1.0)

    tests = [TestCase("t0", b"", None)]
    opts = BenchmarkOptions(min_rounds=4, max_rounds=4, target_rel_ci=0.0, warmup_rounds=0)
    sessions = (_FakeSession("base-for-c", clock, None), _FakeSession("c", clock, 1.0))
    estimate = benchmark(None, None, None, tests, opts, sessions=sessions, shared=seat, spare=spare)  # type: ignore[arg-type]
    assert lent and estimate.runs == 4 and lost_lane.calls == 2 + 1
    assert len(clock.threads["base-lane1"]) == 1  # made again in its own lane's thread


def test_a_wide_round_holds_the_lent_cores_turns_for_the_whole_round(monkeypatch):
    """A job may lend a cohort that has members of its own (its first candidate goes two
    wide until the first verdict): they wait for the wide round's end and never run within
    it. Were the turns taken test by test, their runs would come in between and a wide round
    would take as long as two narrow ones."""
    import asmopt.executor.benchmark as benchmark_module

    clock = _Clock()
    own, busy = Cohort(), Cohort()
    own.members, busy.members = 1, 1
    real = benchmark_module._wide_round
    calls: list[tuple[float, float]] = []

    def recorded(*args, **kwargs):
        start = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            calls.append((start, time.monotonic()))

    monkeypatch.setattr(benchmark_module, "_wide_round", recorded)

    def widen(seat: Seat) -> Cohort | None:
        busy.members += 1
        return busy

    def give_back(cohort: Cohort) -> None:
        cohort.members -= 1

    def sessions(who: str) -> tuple[_FakeSession, _FakeSession]:
        return (
            _FakeSession(f"base-for-{who}", clock, None, 0.01),
            _FakeSession(who, clock, 1.0, 0.01),
        )

    tests = [TestCase(f"t{i}", b"", None) for i in range(3)]
    opts = BenchmarkOptions(min_rounds=8, max_rounds=8, target_rel_ci=0.0, warmup_rounds=0)
    other = threading.Thread(
        target=benchmark,
        args=(None, None, None, tests, opts),
        kwargs={"sessions": sessions("d"), "shared": Seat(busy, "d")},
    )
    other.start()
    seat = Seat(own, "c", widen=widen, give_back=give_back)
    estimate = benchmark(
        None, None, None, tests, opts, sessions=sessions("c"), shared=seat,
        spare=lambda: sessions("c"),
    )  # type: ignore[arg-type]  # fmt: skip
    other.join()

    assert estimate.runs == 8 and len(calls) == 4 and busy.members == 1
    theirs = [(s, e) for who, s, e, _ in clock.runs if who in ("d", "base-for-d")]
    assert len(theirs) == 2 * 3 * 8  # the other member was timed meanwhile
    for start, end in calls:
        mine = [(s, e) for who, s, e, _ in clock.runs if who.endswith("c") and start <= s < end]
        assert len(mine) == 4 * len(tests)  # both sides, both cores, every test
        first, last = min(s for s, _ in mine), max(e for _, e in mine)
        assert not [(s, e) for s, e in theirs if s < last and first < e]
