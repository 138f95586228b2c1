"""Scoring batches of candidates in parallel worker processes, for the local PPO trainer.

Each worker process holds one :class:`~asmopt.model.training.reward.Evaluator` (a sandbox and
a baseline cache), built once by the pool's initializer.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from asmopt.model.training.reward import (
    REWARDS,
    Evaluator,
    Problem,
    RewardConfig,
    RewardError,
    RewardInput,
    RewardSettings,
    Scored,
    reward_asmopt,
)

__all__ = ["RewardPool"]

_WORKER: Evaluator | None = None


def _worker_init(settings: RewardSettings) -> None:
    global _WORKER
    _WORKER = Evaluator(settings)


def _worker_evaluate(asm: str | None, problem: Problem) -> RewardInput:
    assert _WORKER is not None, "reward worker used before its initializer ran"
    return _WORKER.evaluate(asm, problem)


class RewardPool:
    """Scores batches of candidates in parallel worker processes.

    Each worker owns a sandbox and a baseline cache; results are also cached here per (row,
    candidate text), so a candidate seen before costs nothing. A worker that raises makes
    :meth:`score` raise :class:`RewardError` naming the row; a worker that dies (killed,
    out of memory) does too, and the pool is restarted for the next call.
    """

    def __init__(
        self,
        reward: str | Callable[[RewardInput], float] = "asmopt",
        settings: RewardSettings | None = None,
        workers: int | None = None,
        *,
        cache: bool = True,
    ) -> None:
        if isinstance(reward, str):
            if reward not in REWARDS:
                raise ValueError(f"unknown reward {reward!r}: choose from {', '.join(REWARDS)}")
            reward_fn = REWARDS[reward]
        else:
            reward_fn = reward
        self.settings = settings or RewardSettings()
        if reward == "asmopt" and self.settings.metric != "time":
            metric = self.settings.metric

            def reward_fn(r: RewardInput) -> float:
                return reward_asmopt(r, RewardConfig(metric=metric))

        self.reward = reward_fn
        self.workers = max(1, workers or min(8, os.cpu_count() or 1))
        self._cache: dict[tuple[str, str], RewardInput] | None = {} if cache else None
        self._pool: ProcessPoolExecutor | None = None
        self.executor_calls = 0  # candidates actually verified (not served from the cache)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the trainer holds torch's threads, which fork would copy broken.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self.settings,),
            )
        return self._pool

    def score(
        self, items: Sequence[tuple[str | None, Problem]], names: Sequence[str] | None = None
    ) -> list[Scored]:
        """Score ``(assembly or None, problem)`` pairs; same order as ``items``."""
        names = list(names) if names is not None else [p.key for _, p in items]
        keys = [(p.key, hashlib.sha256((a or "\0none").encode()).hexdigest()) for a, p in items]
        found: dict[int, RewardInput] = {}
        todo: dict[tuple[str, str], int] = {}  # distinct candidates to verify -> first index
        for i, key in enumerate(keys):
            if self._cache is not None and key in self._cache:
                found[i] = self._cache[key]
            elif items[i][0] is None:
                found[i] = RewardInput.no_assembly()
            elif key not in todo:
                todo[key] = i
        if todo:
            pool = self._executor()
            futures = {key: pool.submit(_worker_evaluate, *items[i]) for key, i in todo.items()}
            try:
                for key, future in futures.items():
                    i = todo[key]
                    try:
                        result = future.result()
                    except BrokenProcessPool as err:
                        raise RewardError(
                            f"a reward worker died while verifying a candidate for "
                            f"{names[i]} (killed, or out of memory); no reward was recorded "
                            "for this batch: resume from the last checkpoint"
                        ) from err
                    except RewardError as err:
                        raise RewardError(f"{names[i]}: {err}") from err
                    except Exception as err:
                        raise RewardError(
                            f"the reward worker failed on {names[i]}: {type(err).__name__}: {err}"
                        ) from err
                    self.executor_calls += 1
                    if self._cache is not None:
                        self._cache[key] = result
                    found[i] = result
            except RewardError:
                self._restart()
                raise
        for i, key in enumerate(keys):
            if i not in found:
                found[i] = self._cache[key] if self._cache is not None else found[todo[key]]
        out = []
        for i in range(len(items)):
            value = float(self.reward(found[i]))
            if not math.isfinite(value):
                raise RewardError(f"{names[i]}: the reward is {value}, not a finite number")
            out.append(Scored(value, found[i]))
        return out

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
