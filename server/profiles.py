"""Where a file's program spends its instructions, as the editor shows it.

A target's *profile* is valgrind's count of the instructions each function executes on the
target's tests (:mod:`asmopt.executor.profile`; instructions, never time). The language
server makes one in a worker process (:mod:`asmopt.server.profile_worker`) and keeps it
in the workspace store (``.asmopt/results.sqlite``, a record of kind ``profile``) under
:func:`profile_key`, which hashes everything that decides the counts: the target's sources,
its tests, its build settings. Reopening a file finds it there at once; a saved change to a
source or a test makes a new key, so the old profile is no longer shown.

This module holds what both sides need: the key, the record, and the texts of the lens,
the hover and the "hottest functions" list. It never runs anything.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmopt.executor.asmfile import clone_parent
from asmopt.executor.profile import FunctionShare, Profile

RECORD_KIND = "profile"
# Below this share of the instructions a function gets no lens (the hover still says it).
NEGLIGIBLE = 0.01
# Seconds of valgrind the editor spends at most: the quickest tests that fit are profiled.
BUDGET = 5.0
METRIC = "instructions (valgrind Ir); not time"


class ProfileUnavailable(Exception):
    """The target cannot be profiled (no tests, command tests, ...): the message says why."""


def profile_key(source: Path, target: Any, settings: Any, config_root: Path | None) -> str:
    """SHA-256 (hex) of what decides ``target``'s profile: its sources and tests (their
    bytes), how it is built (compiler, flags, the ``asmopt.toml`` that declares it) and this
    asmopt's version. Blocking (reads files); raises :class:`ProfileUnavailable` when the
    target has no tests to run (OSError when a file cannot be read)."""
    from asmopt import __version__
    from asmopt.executor.testcases import TestSetError, load_tests, tests_digest

    if target is None or target.tests is None:
        raise ProfileUnavailable(
            f"no tests for {source.name}: put NAME.in files in a tests/ folder beside it, or "
            "name a tests directory in asmopt.toml"
        )
    if target.has_commands:
        raise ProfileUnavailable(
            f"target {target.name!r} runs its tests as commands: the profile needs NAME.in "
            "tests that run the program itself"
        )
    try:
        tests = load_tests(target.tests)
    except TestSetError as err:
        raise ProfileUnavailable(str(err)) from err
    digest = hashlib.sha256(b"asmopt-profile-v1\0")

    def field(data: bytes | str) -> None:
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)

    field(__version__)
    # The program, not the file asked about: every file of a target shares its profile.
    sources = sorted({Path(s).resolve() for s in target.sources} | {source.resolve()})
    for path in sources:
        field(str(path))
        field(path.read_bytes())
    field(tests_digest(tests))
    field(repr((target.name, target.compiler, target.cflags, target.ldflags, target.args)))
    field(repr((settings.compiler, tuple(settings.cflags), settings.compile_commands)))
    if config_root is not None:
        toml = config_root / "asmopt.toml"
        field(toml.read_bytes() if toml.is_file() else b"")
    return digest.hexdigest()


def profile_from_dict(data: dict[str, Any]) -> Profile:
    """The :class:`Profile` of its ``to_dict()``."""

    def shares(items: Any) -> tuple[FunctionShare, ...]:
        return tuple(
            FunctionShare(str(f["name"]), int(f["instructions"]), float(f["share"]))
            for f in items or ()
        )

    return Profile(
        total=int(data.get("total") or 0),
        own=int(data.get("own") or 0),
        functions=shares(data.get("functions")),
        elsewhere=shares(data.get("elsewhere")),
        tests=tuple(data.get("tests") or ()),
        skipped=tuple(data.get("skipped_tests") or ()),
        seconds=float(data.get("seconds") or 0.0),
    )


def profile_record(key: str, target: str, source: str, profile: Profile) -> dict[str, Any]:
    """The store record of a profile."""
    return {
        "kind": RECORD_KIND,
        "key": key,
        "target": target,
        "source": source,
        "profile": profile.to_dict(),
        "created_at": time.time(),
    }


@dataclass(frozen=True)
class FunctionFigure:
    """One function's own instructions (its clones included) and their share of all."""

    name: str
    instructions: int
    share: float


@dataclass(frozen=True)
class ProfileEntry:
    """A target's profile as the editor shows it, with the key it was made for."""

    key: str
    target: str
    profile: Profile

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ProfileEntry:
        return cls(
            str(record.get("key") or ""),
            str(record.get("target") or ""),
            profile_from_dict(record.get("profile") or {}),
        )

    @functools.cached_property
    def _figures(self) -> dict[str, FunctionFigure]:
        counts: dict[str, int] = {}
        for f in self.profile.functions:
            name = clone_parent(f.name) or f.name
            counts[name] = counts.get(name, 0) + f.instructions
        total = self.profile.total
        return {n: FunctionFigure(n, v, v / total if total else 0.0) for n, v in counts.items()}

    def figures(self) -> dict[str, FunctionFigure]:
        """Per function of the program, its instructions with its clones' (gcc's
        ``f.cold``, ``f.constprop.0``, ... count as ``f``); computed once per entry."""
        return self._figures

    def figure(self, function: str) -> FunctionFigure | None:
        return self.figures().get(function)

    def hottest(self) -> list[FunctionFigure]:
        """The program's own functions, most instructions first."""
        return sorted(self.figures().values(), key=lambda f: (-f.instructions, f.name))

    @property
    def startup_bound(self) -> str:
        return self.profile.startup_bound()

    def about(self) -> str:
        """Which tests were profiled, in a few words."""
        p = self.profile
        tests = f"{len(p.tests)} test{'s' if len(p.tests) != 1 else ''}"
        if p.skipped:
            tests += f" ({len(p.skipped)} longer left out)"
        return f"valgrind on {tests}; instructions, not time"


def share_text(share: float) -> str:
    """``31%``, ``3.2%``, ``0.04%``: two significant figures below 10%."""
    percent = share * 100
    if percent >= 9.95:
        return f"{percent:.0f}%"
    if percent >= 0.995:
        return f"{percent:.1f}%"
    return f"{percent:.2g}%"


def lens_title(figure: FunctionFigure) -> str | None:
    """The lens beside a function's ``Optimize``, or None when its share is negligible."""
    if figure.share < NEGLIGIBLE:
        return None
    return f"{share_text(figure.share)} of instructions"


def startup_lens_title(entry: ProfileEntry) -> str | None:
    """The one lens saying the run is start-up and libc, or None when it is not."""
    if not entry.startup_bound:
        return None
    return (
        f"own code: {share_text(entry.profile.own_share)} of instructions; the rest is "
        "start-up and libc"
    )


def hover_text(entry: ProfileEntry, function: str) -> str:
    """The hover paragraph on a function's name."""
    figure = entry.figure(function)
    if figure is None:
        line = (
            f"**Profile** ({entry.about()}): `{function}` executed no instructions of its own "
            "(inlined into its callers at -O3, or not run by these tests)"
        )
    else:
        line = (
            f"**Profile** ({entry.about()}): `{function}` executes "
            f"{share_text(figure.share)} of the program's instructions "
            f"({figure.instructions:,} of {entry.profile.total:,})"
        )
    if entry.startup_bound:
        line += f"\n\n**Mostly start-up and libc:** {entry.startup_bound}"
    return line


def hottest_answer(
    entry: ProfileEntry, where: dict[str, tuple[str, int]], limit: int = 50
) -> dict[str, Any]:
    """The answer of ``asmopt.hottestFunctions`` (docs/protocol.md); ``where`` maps a
    function's name to the (uri, line) that defines it, when known."""
    p = entry.profile
    functions = []
    for figure in entry.hottest()[:limit]:
        uri, line = where.get(figure.name, (None, None))
        functions.append(
            {
                "name": figure.name,
                "instructions": figure.instructions,
                "share": figure.share,
                "uri": uri,
                "line": line,
            }
        )
    return {
        "target": entry.target,
        "metric": METRIC,
        "total": p.total,
        "ownShare": p.own_share,
        "startupBound": entry.startup_bound,
        "tests": list(p.tests),
        "skippedTests": list(p.skipped),
        "functions": functions,
        "elsewhere": [
            {"name": f.name, "instructions": f.instructions, "share": f.share}
            for f in p.elsewhere[:5]
        ],
    }


# What a source's lenses say while its target's profile is being made (``ProfileIndex.state``).
WAITING = "waiting"  # for the optimize jobs to end: valgrind does not run beside their timings
MEASURING = "measuring"  # the worker builds the program and runs it under valgrind
STATE_TITLES = {
    WAITING: "profile waits for the optimize job",
    MEASURING: "measuring instructions…",
}


def state_lens_title(state: str) -> str:
    """The lens on each function while the profile is being made."""
    return STATE_TITLES.get(state, STATE_TITLES[MEASURING])


class ProfileIndex:
    """The profiles the server knows, by source file (``source_key``), and for the sources
    whose profile is being made, in which state; ``generation`` grows with every change, so
    cached lenses know when to be remade."""

    def __init__(self) -> None:
        self._by_source: dict[str, ProfileEntry] = {}
        self._states: dict[str, str] = {}
        self.generation = 0

    def state(self, source: str | None) -> str | None:
        """``WAITING`` or ``MEASURING`` while ``source``'s profile is being made, else None."""
        return self._states.get(source) if source is not None else None

    def set_state(self, source: str, state: str | None) -> bool:
        """Set (None: clear) the state of ``source``; True when it changed."""
        if self._states.get(source) == state:
            return False
        if state is None:
            del self._states[source]
        else:
            self._states[source] = state
        self.generation += 1
        return True

    def get(self, source: str | None) -> ProfileEntry | None:
        return self._by_source.get(source) if source is not None else None

    def put(self, source: str, entry: ProfileEntry) -> None:
        old = self._by_source.get(source)
        if old is None or old.key != entry.key:
            self._by_source[source] = entry
            self.generation += 1

    def drop(self, source: str) -> ProfileEntry | None:
        old = self._by_source.pop(source, None)
        if old is not None:
            self.generation += 1
        return old

    def sources(self) -> list[str]:
        return list(self._by_source)


def load_profile(workspace: Path, key: str) -> ProfileEntry | None:
    """The stored profile under ``key`` (blocking; None when there is none or no store)."""
    from asmopt.executor.store import ResultStore, ResultStoreError

    try:
        with ResultStore(workspace, read_only=True) as store:
            record = store.get(key)
    except (ResultStoreError, OSError):
        return None
    if not record or record.get("kind") != RECORD_KIND:
        return None
    return ProfileEntry.from_record(record)


def forget_profile(workspace: Path, key: str) -> None:
    """Remove a stale profile from the store (blocking; best effort)."""
    from asmopt.executor.store import ResultStore

    with ResultStore(workspace, best_effort=True, warn=lambda _m: None) as store:
        store.delete(key)
