"""The judge: one baseline, and every candidate's verdict against it.

A :class:`Judge` owns what a verdict depends on: the baseline (built once, by
:meth:`Judge.prepare`), the sandbox every build and run happens in, the
:class:`~asmopt.executor.verify.VerifyOptions`, and the result store that remembers verdicts.
:meth:`Judge.judge` builds a candidate in the sandbox, runs every test, times it when all
pass, and answers from the store when the same text was judged before (``verify.py`` holds
the steps).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from asmopt.executor.cohort import Cohort, Seat
from asmopt.executor.racing import RaceLane
from asmopt.executor.results import VerificationResult
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.store import ResultStore
from asmopt.executor.testcases import TestCase
from asmopt.executor.verify import (
    Baseline,
    Progress,
    SameCode,
    VerifyOptions,
    instruction_counts,
    prepare_baseline,
    store_key,
    verify_candidate,
)


@dataclass(frozen=True, eq=False)
class Judge:
    """Judges candidates against ``baseline`` in ``sandbox`` under ``options``, remembering
    verdicts in ``store`` (None: nothing is remembered). Thread-safe as the sandbox and the
    store are: many candidates may be judged at once."""

    baseline: Baseline
    sandbox: Sandbox
    options: VerifyOptions = field(default_factory=VerifyOptions)
    store: ResultStore | None = None

    @classmethod
    def prepare(
        cls,
        source: Path,
        tests: Sequence[TestCase],
        work: Path,
        sandbox: Sandbox,
        options: VerifyOptions | None = None,
        *,
        store: ResultStore | None = None,
        compiler: str = "gcc",
        cflags: Sequence[str] = ("-O3",),
        progress: Progress | None = None,
        trusted_source: bool = True,
    ) -> Judge:
        """Build the baseline from ``source`` (C, compiled with ``compiler -S cflags``, or
        assembly as is) in ``work`` and learn its outputs on ``tests``; see
        :func:`~asmopt.executor.verify.prepare_baseline`, whose ``BaselineError`` this
        raises when the baseline cannot serve."""
        opts = options or VerifyOptions()
        baseline = prepare_baseline(
            source,
            tests,
            work,
            sandbox,
            compiler=compiler,
            cflags=cflags,
            options=opts,
            progress=progress,
            trusted_source=trusted_source,
        )
        return cls(baseline, sandbox, opts, store)

    def judge(
        self,
        asm: str,
        *,
        meta: dict[str, Any] | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        race: RaceLane | None = None,
        same_code: SameCode | None = None,
        cohort: Cohort | Seat | None = None,
    ) -> VerificationResult:
        """The verdict on candidate ``asm``: built like the baseline, every test run, timed
        when all pass; from the store when it was judged before (``cached`` is then True).
        See :func:`~asmopt.executor.verify.verify_candidate` for ``race``, ``same_code`` and
        ``cohort``; ``meta`` is recorded with the verdict."""
        return verify_candidate(
            asm,
            self.baseline,
            self.sandbox,
            self.options,
            store=self.store,
            meta=meta,
            progress=progress,
            cancel=cancel,
            race=race,
            same_code=same_code,
            cohort=cohort,
        )

    def with_options(self, **changes: Any) -> Judge:
        """The same judge with some options changed (``measure=False``: tests only)."""
        return replace(self, options=replace(self.options, **changes))

    def instruction_counts(self, asm: str) -> dict[str, Any]:
        """callgrind instruction counts of baseline and candidate on every timed test (see
        :func:`~asmopt.executor.verify.instruction_counts`); never a time."""
        return instruction_counts(asm, self.baseline, self.sandbox, self.options)

    def store_key(self, asm: str) -> str:
        """The key ``asm``'s verdict is stored under by this judge."""
        return store_key(asm, self.baseline, self.options)
