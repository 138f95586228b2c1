"""What the editor shows about a function: the result of its last run, or its best verified
candidate, kept in memory and persisted in the workspace's result store.

A result is the job's :class:`~asmopt.model.search.outcome.RunRecord`, the same record
``asmopt optimize --json`` prints: the worker keeps it in ``.asmopt/results.sqlite`` of the
file's workspace (the CLI's too) beside the optimizer's per-candidate records. Records of
winners are kept per candidate (so the best one survives a later run that found nothing); the
last run without a winner replaces the previous one.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from asmopt.model.search.outcome import RECORD_KIND, RunRecord

logger = logging.getLogger(__name__)


def _rank(result: RunRecord) -> tuple[float, float, float]:
    s = result.speedup
    if s is None:
        return (0.0, 0.0, result.created_at)
    return (s.ci_low, s.median, result.created_at)


@dataclass
class ResultIndex:
    """Results by (source path, function); ``None`` as function means the whole file."""

    _by_source: dict[str, dict[str | None, RunRecord]] = field(default_factory=dict)
    generation: int = 0  # bumped on every change, for caches of what is shown

    def get(self, source: str, function: str | None) -> RunRecord | None:
        return self._by_source.get(source, {}).get(function)

    def for_source(self, source: str) -> dict[str | None, RunRecord]:
        return dict(self._by_source.get(source, {}))

    def put(self, result: RunRecord) -> None:
        """Remember ``result``; a new run without a winner does not hide an earlier winner
        for the same function (that candidate is still verified and can be applied)."""
        self.generation += 1
        slot = self._by_source.setdefault(result.source, {})
        old = slot.get(result.function)
        if old is not None and old.faster and not result.faster:
            old = dataclasses.replace(old, message=result.message)
            slot[result.function] = old
            return
        slot[result.function] = result

    def merge(self, results: list[RunRecord]) -> bool:
        """Add results loaded from the store (newer in-memory ones win); True if anything
        changed."""
        changed = False
        for result in results:
            slot = self._by_source.setdefault(result.source, {})
            old = slot.get(result.function)
            if old is None or (result.faster and (not old.faster or _rank(result) > _rank(old))):
                slot[result.function] = result
                changed = True
        if changed:
            self.generation += 1
        return changed


def load_results(workspace: Path, target: str, source: str) -> list[RunRecord]:
    """Per function, the best stored winner, else the newest run record (blocking: call in a
    thread)."""
    from asmopt.executor.store import ResultStore, ResultStoreError
    from asmopt.server.messages import MessageError, structure_record

    try:
        with ResultStore(workspace, read_only=True) as store:
            records = store.records(target=target, limit=2000)
    except (ResultStoreError, OSError) as err:  # the editor works on without stored results
        logger.warning("stored results not loaded: %s", err)
        return []
    chosen: dict[str | None, RunRecord] = {}
    for record in records:  # newest first
        if record.get("kind") != RECORD_KIND or record.get("source") != source:
            continue
        try:
            result = structure_record(record)
        except MessageError as err:
            logger.warning("a stored run record was skipped: %s", err)
            continue
        old = chosen.get(result.function)
        if old is None or (result.faster and (not old.faster or _rank(result) > _rank(old))):
            chosen[result.function] = result
    return list(chosen.values())


def source_key(path: Path) -> str:
    """How results name their source file: the resolved absolute path."""
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())
