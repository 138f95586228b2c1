"""Racing: the candidates of one job timed against each other, a clear loser stopped early.

:class:`RacingRule` says when a candidate stops being timed and what error rate that rule
keeps; :class:`Race` applies it to candidates timed at once, in any threads. Racing only ever
shortens the timing of a candidate, never its checks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from asmopt.executor.intervals import median_bounds, one_sided_rank


@dataclass(frozen=True)
class RacingRule:
    """When a candidate stops being timed because it cannot be the winner.

    Two kinds of evidence, each given half of the error rate ``alpha`` (``early_share``):

    *Median bounds.* Looks happen after ``first_look`` rounds (by default the fewest rounds
    at which a bound is possible at all) and then whenever the number of rounds has grown by
    ``growth`` (e.g. 10, 15, 23, 35, ...). At look j a candidate's round ratios give a lower
    and an upper bound of its median ratio (:func:`median_bounds`), each allowed the error
    ``delta / 2**(j+1)``, ``delta = alpha * (1 - early_share) / contenders``. Summed over all
    looks, each of a candidate's two bound sequences is ever wrong with probability at most
    ``delta`` (a union bound: valid however often, and whenever, the job looks). A
    candidate stops at a look when its upper bound is below ``1 + min_gain`` (it cannot be
    called faster than the baseline) or below another candidate's latest lower bound.

    *Early separation.* After ``early_looks`` rounds (3, 5, 8) a candidate stops when every
    one of its round ratios is below every round ratio of another candidate so far: were it
    not slower, that would happen with probability at most 1 / C(n + m, n) (n and m the two
    sample sizes; exact when both have the same distribution, smaller when it is faster);
    it stops only when that is at most ``epsilon = alpha * early_share / (contenders - 1) /
    len(early_looks)``. This drops a clear loser after a few rounds instead of ten.

    Error rate: with at most ``contenders`` candidates, the true best (the largest median
    ratio, and for the second rule a ratio distribution at least as large as each other's;
    with ties, any one of them) is stopped only if its own upper bound is wrong (``delta``),
    some other candidate's lower bound is ((contenders - 1) * ``delta``) or one of its
    separations from another happens by chance ((contenders - 1) * len(early_looks) *
    ``epsilon``): P(the true best is stopped) <= ``alpha`` (5% by default). A candidate
    whose true median is at least ``1 + min_gain`` is stopped by the baseline rule with
    probability at most ``delta``. It assumes what the CI already assumes: a candidate's
    round ratios are independent draws of one continuous distribution.
    ``tests/executor/test_racing.py`` checks the rate by simulation.
    """

    alpha: float = 0.05
    contenders: int = 16
    first_look: int = 0  # 0: the fewest rounds at which the first look can bound anything
    growth: float = 1.5
    min_gain: float = 0.01
    early_looks: tuple[int, ...] = (3, 5, 8)
    early_share: float = 0.5

    @property
    def delta(self) -> float:
        share = 1.0 - self.early_share if self.early_looks else 1.0
        return self.alpha * share / max(1, self.contenders)

    @property
    def epsilon(self) -> float:
        if not self.early_looks:
            return 0.0
        rivals = max(1, self.contenders - 1)
        return self.alpha * self.early_share / rivals / len(self.early_looks)

    @property
    def start(self) -> int:
        if self.first_look > 0:
            return self.first_look
        n = 1
        while one_sided_rank(n, self.delta / 2) == 0:
            n += 1
        return n

    def _looks(self, rounds: int) -> list[int]:
        looks, n = [], self.start
        while n <= rounds:
            looks.append(n)
            n = max(n + 1, math.ceil(n * self.growth))
        return looks

    def is_look(self, rounds: int) -> bool:
        """Whether the job looks at the median bounds after ``rounds`` rounds."""
        looks = self._looks(rounds)
        return bool(looks) and looks[-1] == rounds

    def bounds(self, samples: Sequence[float]) -> tuple[float, float]:
        """The (lower, upper) bounds of the median from the latest look at ``samples``;
        (-inf, inf) before the first look."""
        looks = self._looks(len(samples))
        if not looks:
            return -math.inf, math.inf
        j, n = len(looks) - 1, looks[-1]
        return median_bounds(samples[:n], self.delta / 2 ** (j + 1))

    def separated(self, mine: Sequence[float], theirs: Sequence[float]) -> bool:
        """Whether, at an early look, every one of ``mine`` is below every one of ``theirs``
        and that is unlikely enough by chance (at most ``epsilon``)."""
        n, m = len(mine), len(theirs)
        if n not in self.early_looks or m == 0 or max(mine) >= min(theirs):
            return False
        return 1.0 / math.comb(n + m, n) <= self.epsilon


class Race:
    """The candidates of one job timed against each other (see :class:`RacingRule`).

    Thread-safe: candidates timed at once in different threads race each other live. Early
    separation leaves out the pairs ``linked`` says shared baseline runs (their ratios are
    not independent); the median bounds need no independence between candidates.
    :meth:`check` is what :func:`benchmark`'s per-round callback calls.
    """

    def __init__(
        self, rule: RacingRule | None = None, linked: Callable[[str, str], bool] | None = None
    ) -> None:
        self.rule = rule or RacingRule()
        # Whether two candidates' round ratios share baseline runs (``BaselineRuns.linked``):
        # early separation compares only independent samples.
        self.linked = linked or (lambda a, b: False)
        self._lock = threading.Lock()
        self._lower: dict[str, tuple[float, str]] = {}  # key -> (lower bound, label)
        self._samples: dict[str, tuple[tuple[float, ...], str]] = {}  # key -> (ratios, label)
        self.stopped: dict[str, str] = {}  # key -> why it stopped early

    def record(self, key: str, label: str, samples: Sequence[float]) -> None:
        """Let ``samples`` (the round ratios of a candidate measured elsewhere, such as a
        stored result) count as a contender's."""
        lower, _ = self.rule.bounds(samples)
        with self._lock:
            self._lower[key] = (lower, label)
            self._samples[key] = (tuple(samples), label)

    def best(self) -> tuple[float, str] | None:
        """The highest lower bound recorded so far and whose it is."""
        with self._lock:
            finite = [v for v in self._lower.values() if v[0] > -math.inf]
        return max(finite) if finite else None

    def timing(self, keys: Iterable[str]) -> dict[str, tuple[tuple[float, ...], str]]:
        """The round ratios so far (and label) of each of ``keys`` that has any."""
        with self._lock:
            return {k: self._samples[k] for k in keys if k in self._samples}

    def check(self, key: str, label: str, samples: Sequence[float]) -> str | None:
        """Record ``samples`` of candidate ``key``; at a look, why it should stop (or None)."""
        n = len(samples)
        with self._lock:
            self._samples[key] = (tuple(samples), label)
            rivals = [(k, v) for k, v in self._samples.items() if k != key]
        reason = None
        if n in self.rule.early_looks:
            beaten = [
                name
                for k, (theirs, name) in rivals
                if self.rule.separated(samples, theirs) and not self.linked(key, k)
            ]
            if beaten:
                reason = f"{BEATEN}{beaten[0]} (every round so far below every one of its)"
        if reason is None and self.rule.is_look(n):
            lower, upper = self.rule.bounds(samples)
            with self._lock:
                self._lower[key] = (lower, label)
                others = [v for k, v in self._lower.items() if k != key]
            floor = 1.0 + self.rule.min_gain
            if upper < floor:
                reason = f"not faster than the baseline (median surely below {floor:.2f}x)"
            else:
                ahead = [(low, name) for low, name in others if low > upper]
                if ahead:
                    low, name = max(ahead)
                    reason = f"{BEATEN}{name} (median surely below its {low:.2f}x)"
        if reason is not None:
            with self._lock:
                self.stopped[key] = reason
        return reason


# How a reason begins when a rival beat the candidate (it may still be faster than the
# baseline: only its rank is known), as opposed to the baseline rule's "not faster than".
BEATEN = "slower than "

# How a race lane's reason begins when the job withdrew a measurement it no longer needs (a
# speculative second measurement of a candidate another has surely beaten): such a result says
# nothing of the candidate and is never stored.
WITHDRAWN = "withdrawn: "

# Called by benchmark() after every round with the CPU and the wall-time ratios of the rounds
# so far; returns a reason to stop timing, or None.
RaceLane = Callable[[Sequence[float], Sequence[float]], "str | None"]
