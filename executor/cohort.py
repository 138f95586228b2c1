"""Cohorts: candidates of one job that take turns on one core and share baseline runs.

Every timed round pairs a candidate's run of a test with a baseline run of the same test made
at about the same time; the round's ratio is baseline time over candidate time. Timed alone,
each candidate runs the baseline for itself: half of all timed runs, and the slower half
whenever the candidate is faster. A :class:`Cohort` is a few candidates timed together on one
core instead:

- they take turns (:meth:`Cohort.turn`, first come first served): one process of the cohort
  runs at a time, whether it builds, tests or is timed, so a job with one cohort per core
  loads the machine as a job with one candidate per core did;
- a candidate about to run a test pairs with the cohort's latest baseline run of that test
  when that run is still to come (another member announced it) or ended no longer ago than
  twice its own duration, and it has not paired with that run before (:meth:`Cohort.claim`);
  it runs its own test in its turn and then takes that run's figures. Else it announces a
  baseline run of its own at once (:meth:`Cohort.announce`; others may pair with it from then
  on) and makes it and its own run of the test back to back, in one turn, as a candidate
  timed alone does (:meth:`Cohort.finish`).

What stays true:

- *No candidate runs while the baseline it is paired with runs.* A cohort runs one process at
  a time, so a candidate cannot slow the baseline run its own ratio divides (by thrashing the
  caches it shares with it, say): every run of the baseline a candidate pairs with ran while
  only candidates of *other* cohorts ran, as when each candidate had a core of its own.
- *A candidate's rounds use distinct baseline runs* (a run pairs with a given candidate at most
  once), so its round ratios are as independent of each other as before and its confidence
  interval means what it meant.

What changes: two candidates that paired with the same baseline run have correlated ratios in
those rounds. Statistics that compare candidates by their ratios as if independent (the race's
early separation) must leave such pairs out; :meth:`Cohort.linked` says which they are. Bounds
on one candidate's median (the race's other rule, and every CI) need no independence between
candidates.

Every baseline run is judged like a test by whoever ran it; one that fails is never shared.

A member alone in its cohort while another cohort has none (the last candidate of a job, its
winner's second measurement as a rule) would leave that core idle: it takes its rounds *two
wide* instead (:meth:`Seat.widened`), holding both cohorts' turns for the round. Both cores
run the baseline, then both run the candidate; each core's two runs pair, so both rules above
hold. A job may also lend a cohort that has members (its first candidate, until its first
verdict): they wait for the round's end, as for any member's turn.

A member takes its turns through a :class:`Seat`, which its job may move to another cohort
between two timed rounds (when that cohort's core would otherwise be idle). At that point the
member has no baseline run announced and none it waits for; afterwards it pairs only with
runs of the new cohort *announced after it moved* (``Cohort.claim``'s ``since``). The new
cohort's earlier runs ran while the member still ran in the old cohort, on the other core,
and may have been slowed by it: it must not be divided by them. Runs announced later start
later, in their owners' turns, when every process of the member runs in the new cohort's
turns. So what is said above holds across a move too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Cohort", "Seat", "SharedRun"]


@dataclass(eq=False)
class SharedRun:
    """One baseline run of one test, announced when a member decides to make it, as the
    members pairing with it see it."""

    owner: Hashable  # the member that makes it
    announced: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    ended: float = 0.0
    cpu_seconds: float | None = None  # None until it ends, and for good when it failed
    wall_seconds: float = 0.0
    cpu_source: str = ""  # how its CPU time was counted (RunResult.cpu_source)
    users: set[Hashable] = field(default_factory=set)

    def fresh(self, now: float) -> bool:
        """Whether a run that starts now may pair with this one: it has not run yet (it
        will run in its owner's turn), or it ended no longer ago than twice its duration."""
        if not self.done.is_set():
            return True
        return self.cpu_seconds is not None and now - self.ended <= 2.0 * self.wall_seconds

    def wait(self, cancelled: Callable[[], bool]) -> bool:
        """Wait until the run ended; whether it has figures (False: it failed, or the wait
        was cancelled, and the caller runs the baseline itself)."""
        while not self.done.wait(0.1):
            if cancelled():
                return False
        return self.cpu_seconds is not None


class Cohort:
    """Candidates that take turns on one core and share baseline runs (see the module).
    Thread-safe; each member is timed in a thread of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns = threading.Condition()
        self._queue: deque[object] = deque()
        self._busy = False
        self._holder: int | None = None  # the thread holding the turn
        self._latest: dict[Hashable, SharedRun] = {}  # test key -> its latest baseline run
        self._links: set[frozenset[Hashable]] = set()
        self.members = 0  # candidates assigned to it and not done (the caller keeps count)
        self.ran = 0  # baseline runs its members made
        self.paired = 0  # times a member paired with another's baseline run

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the cohort's core: one process of the cohort at a time, in arrival order. A
        thread that holds it may take it again inside (a candidate's own baseline run and its
        run of the same test, back to back)."""
        if self._holder == threading.get_ident():
            yield
            return
        me = object()
        with self._turns:
            self._queue.append(me)
            while self._busy or self._queue[0] is not me:
                self._turns.wait()
            self._queue.popleft()
            self._busy = True
            self._holder = threading.get_ident()
        try:
            yield
        finally:
            with self._turns:
                self._busy = False
                self._holder = None
                self._turns.notify_all()

    def claim(self, key: Hashable, me: Hashable, since: float = 0.0) -> SharedRun | None:
        """The latest baseline run of ``key`` (a test) when ``me`` may pair with it now
        (announced or fresh, not paired with ``me`` before, and announced at or after
        ``since``: when ``me`` joined this cohort from another), now marked as paired with
        it. One announced but not yet run is safe to pair with: it runs in a turn of its
        owner's, never beside ``me``'s run."""
        with self._lock:
            run = self._latest.get(key)
            if run is None or me in run.users or not run.fresh(time.monotonic()):
                return None
            if run.announced < since:
                return None  # it may have run beside me, when I ran in another cohort
            self._links.update(frozenset((me, other)) for other in run.users)
            run.users.add(me)
            self.paired += 1
            return run

    def announce(self, key: Hashable, me: Hashable) -> SharedRun:
        """``me`` will run the baseline on ``key`` next (and must, in its next turn: others
        may wait for it); end it with :meth:`finish` or :meth:`fail`."""
        run = SharedRun(me, users={me})
        with self._lock:
            self._latest[key] = run
            self.ran += 1
        return run

    def finish(self, run: SharedRun, cpu_seconds: float, wall_seconds: float, source: str) -> None:
        """``run`` ended and passed its check: these are its figures."""
        run.wall_seconds, run.cpu_source, run.ended = wall_seconds, source, time.monotonic()
        run.cpu_seconds = cpu_seconds
        run.done.set()

    def fail(self, run: SharedRun) -> None:
        """``run`` failed, or never ran: nobody pairs with it."""
        run.ended = time.monotonic()
        run.done.set()

    @staticmethod
    @contextmanager
    def both_turns(a: Cohort, b: Cohort) -> Iterator[None]:
        """Hold the turns of ``a`` and ``b`` at once (a wide round), taken in one fixed order
        so that two holders of two turns never wait on each other."""
        first, second = sorted((a, b), key=id)
        with first.turn(), second.turn():
            yield

    def linked(self, a: Hashable, b: Hashable) -> bool:
        """Whether candidates ``a`` and ``b`` ever paired with the same baseline run."""
        with self._lock:
            return frozenset((a, b)) in self._links


@dataclass(eq=False)
class Seat:
    """Where a member (``me``) takes its turns: ``cohort``, which ``move`` may change between
    two timed rounds (and only then: see the module).

    ``widen`` lends the member a second cohort for one round when it is alone in its own
    (and another cohort has no member, whose core would idle, or its job puts it first):
    the round is then timed *two wide* (``benchmark``'s wide rounds), holding both cohorts'
    turns. Within each test both
    cores run the baseline at once, then both run the candidate at once (or the other way
    round), each core pairing its own two runs. No candidate process runs while a baseline run
    it is paired with runs, so the cohorts' first rule holds; each of the two ratios pairs with
    a baseline run of its own, so the second holds too. Afterwards the member pairs only with
    baseline runs announced after the wide round (as after a move)."""

    cohort: Cohort
    me: Hashable
    move: Callable[[Seat], Cohort] | None = None  # the cohort to take the next round in
    moved_at: float = 0.0  # when it last changed cohorts (time.monotonic)
    # The cohort lent for the next round (None: none idles), and how to give it back.
    widen: Callable[[Seat], Cohort | None] | None = None
    give_back: Callable[[Cohort], None] | None = None

    @contextmanager
    def widened(self) -> Iterator[Cohort | None]:
        """For one round: the second cohort it may be timed two wide with, or None."""
        other = self.widen(self) if self.widen is not None else None
        if other is None:
            yield None
            return
        try:
            yield other
        finally:
            self.moved_at = time.monotonic()
            if self.give_back is not None:
                self.give_back(other)

    def between_rounds(self) -> None:
        """Called by the benchmark before each timed round: the member may change cohorts."""
        if self.move is None:
            return
        cohort = self.move(self)
        if cohort is not self.cohort:
            self.moved_at = time.monotonic()
            self.cohort = cohort
