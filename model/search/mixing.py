"""Mixing per function: each function of the baseline from whichever candidate made it fastest.

:func:`mix` is step 3 of :func:`asmopt.model.search.portfolio.optimize`. For each function of
the baseline it splices each donor's version of that function into the baseline and verifies
that (a ``function`` trial), then builds the file that takes every function from its fastest
source and verifies it too (the ``mix`` trial). Donors are the passing whole-file candidates
that the race did not stop, the fastest first.

Not every splice is worth timing; each one skipped is a judgement, stated here:

- a function whose code is the donor's and the baseline's alike is the same code (code
  compares with label numbers and comments left out, and constants by their contents:
  :func:`asmopt.executor.asmfile.comparable_code`);
- a donor that differs from the baseline in one function alone, spliced there, is that
  donor again, function for function: the splice is not timed, and the donor's verdict
  stands for it when the mix chooses its functions (only the layout of the two files may
  differ, which is what this may miss);
- a donor whose whole-file speed-up *ties with the baseline's* (its 95% CI contains 1.0, or
  its median is within ``MIN_FUNCTION_GAIN`` of it) lends nothing: as a whole it changed
  nothing measurable, and a function of it that is faster would need another that is slower
  by as much;
- a donor that *ties with a better-ranked donor* (one's median inside the other's CI)
  lends only the functions that donor left as the baseline had them: where both changed a
  function, the better-ranked one's version stands for both, since as wholes they are
  interchangeable within the CI. Two donors that each improve a different function still
  lend both (the case mixing is for);
- a mix whose every function comes from one donor, and that takes every function in which
  that donor differs from the baseline, is that donor again (timed whole already);
- nothing is spliced when the baseline's instruction profile (valgrind, on the tests it
  covers) leaves at most one unit of work that could gain ``MIN_FUNCTION_GAIN``: one function
  executing at least ``1 - 1 / MIN_FUNCTION_GAIN`` of the instructions, with libc and
  start-up counted as one more unit when they execute that much (a donor's function may take
  their work in, as an inlined ``memcpy`` does). A mix needs two functions that each gain that
  much; and a splice can only move that one unit's work, whose every donor's version (also
  when the donor inlined it into a caller) was timed whole with the donor, which differs from
  the splice in code that executes less than that share (and in layout). Instructions are not
  time: code that executes few instructions but misses the caches could matter more, which
  this may miss.

What these save on ties (every clang build and gcc -O2 at 1.64x on examples/align) is the
function trials that would measure the same 1.64x again; what they may miss is a mix of two
tied donors' versions of the same function, or a donor that is both faster in one function
and slower in another by the same amount.

Mixing code from different compilers needs care: gcc's ``-fipa-ra`` lets a caller keep values
in call-clobbered registers that its callee (in the same file) is known not to touch. A callee
from another source may touch them. :func:`asmopt.model.search.registers.splice_is_safe`
refuses a splice or a mix where a gcc-built caller keeps a value live across its call to a
function from another source that may change that register.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from asmopt.executor.asmfile import comparable_code, parse_functions
from asmopt.executor.racing import BEATEN
from asmopt.executor.verify import Baseline, candidate_hash
from asmopt.model.search.policy import Candidate
from asmopt.model.search.registers import splice_is_safe
from asmopt.model.search.stages import Progress, Stage
from asmopt.model.search.trials import Trial, rank, rank_key
from asmopt.model.search.verifier import Job, Verifier

if TYPE_CHECKING:
    from asmopt.executor.profile import Profile

__all__ = [
    "MIN_FUNCTION_GAIN",
    "mix",
    "one_unit_of_work",
]

# A function from another source must beat the baseline's by this much (median) before a mix
# takes it: below that, per-function measurements are mostly noise.
MIN_FUNCTION_GAIN = 1.01


def _uses_ipa_ra(candidate: Candidate) -> bool:
    # gcc builds (the baseline, gcc variants) may rely on callee register use; clang's default
    # does not. Unknown sources (LLM answers) are treated like gcc: the safe assumption.
    return candidate.meta.get("compiler", "gcc") != "clang"


# ---------------------------------------------------------------------------------------------
# The mix.


def one_unit_of_work(profile: Profile | None) -> str | None:
    """Why nothing is worth splicing, when ``profile`` leaves at most one unit of work that
    could gain ``MIN_FUNCTION_GAIN`` (see the module docstring); else None (also without a
    profile)."""
    if profile is None or profile.total == 0:
        return None
    floor = 1.0 - 1.0 / MIN_FUNCTION_GAIN
    hot = [f for f in profile.functions if f.share >= floor]
    rest = 1.0 - profile.own_share
    if len(hot) + (rest >= floor) > 1:
        return None
    tests = ", ".join(profile.tests)
    where = f"`{hot[0].name}` executes {hot[0].share:.2%}" if hot else "no function executes 1%"
    return (
        f"no mix: {where} of the instructions (valgrind on {tests}), so no two functions can "
        f"each gain {MIN_FUNCTION_GAIN - 1:.0%}; each donor's version of that work was timed "
        "with the donor, whole"
    )


def mix(
    baseline: Baseline,
    trials: list[Trial],
    pool: Verifier,
    seen: dict[str, str],
    notes: list[str],
    mix_sources: int,
    say: Progress,
    stage: Stage = Stage.VERIFY,
    profile: Profile | None = None,
) -> tuple[list[Trial], Trial | None]:
    """Per-function trials and the mixed candidate (see the module docstring). ``seen`` maps
    the hash of every assembly text judged so far to its label (and gains the new ones);
    ``notes`` gains what was skipped and why; at most ``mix_sources`` donors lend. Its
    progress lines report ``stage``. ``profile`` is the baseline's instruction profile, when
    the job has one."""
    functions = [fn.name for fn in parse_functions(baseline.asm) if fn.parent is None]
    if len(functions) < 2:
        return [], None
    donors = _donors(trials, mix_sources, notes)
    if not donors:
        return [], None
    why_not = one_unit_of_work(profile)
    if why_not is not None:
        notes.append(why_not)
        say(stage, why_not)
        return [], None
    # Spliced one by one while the first ones are timed; the racing rule counts every
    # (donor, function) pair as a contender, at least as many as are timed.
    again: list[Trial] = []  # splices that are their donor again (not timed)
    jobs = _function_jobs(baseline, donors, functions, seen, notes, again)
    say(
        stage,
        f"mixing: the functions of {len(donors)} donor{'s' if len(donors) != 1 else ''}",
    )
    upper = len(donors) * len(functions)
    per_function = pool.resolve(pool.verify(jobs, contenders=upper, stage=stage), pool.options)
    best = _best_sources(per_function + again)
    if len(best) < 2:
        return per_function, None  # a one-function mix is a function trial already
    by_label = {d.label: d for d in donors}
    if _is_one_donor(baseline, best, by_label, notes):
        return per_function, None
    made = _mixed(baseline, best, by_label, seen, notes)
    if made is None:
        return per_function, None
    candidate, choice = made
    say(stage, f"verifying the {candidate.label}")
    mixed = pool.verify([(candidate, "mix", choice)], contenders=1, stage=stage)
    mixed = pool.resolve(mixed, pool.options)
    return per_function + mixed, (mixed[0] if mixed else None)


def ties(a: Trial, b: Trial) -> bool:
    """Whether two trials' speed-ups tie: one's median lies inside the other's CI."""
    sa, sb = a.result.speedup, b.result.speedup
    if sa is None or sb is None:
        return False
    return sb.ci_low <= sa.median <= sb.ci_high or sa.ci_low <= sb.median <= sa.ci_high


def _donors(trials: list[Trial], mix_sources: int, notes: list[str]) -> list[Trial]:
    """The passing whole-file trials that may lend functions, the best first.

    Not those the race stopped by its baseline rule (surely below 1.01x), nor those tied with
    the baseline (the CI contains 1, or the median is within 1% of it). One that a rival
    stopped is only known to be slower than that rival, from rounds cut short: it lends when
    its median is faster than the baseline by ``MIN_FUNCTION_GAIN``."""
    donors = []
    for t in rank(trials):
        speedup = t.result.speedup
        if not t.passed or t.candidate.function is not None or speedup is None:
            continue
        if speedup.stopped_early:
            beaten = speedup.stopped_early.startswith(BEATEN)
            if not beaten or speedup.median < MIN_FUNCTION_GAIN:
                continue
        elif speedup.ci_low <= 1.0 <= speedup.ci_high or _within_noise(speedup.median):
            notes.append(f"{t.label}: not mixed (as a whole, the same speed as the baseline)")
            continue
        donors.append(t)
    return donors[:mix_sources]


def _within_noise(median: float) -> bool:
    """Whether a speed-up is within ``MIN_FUNCTION_GAIN`` of 1 either way: what a mix would
    not take from a single function either."""
    return 1.0 / MIN_FUNCTION_GAIN < median < MIN_FUNCTION_GAIN


def _function_jobs(
    baseline: Baseline,
    donors: list[Trial],
    functions: list[str],
    seen: dict[str, str],
    notes: list[str],
    again: list[Trial],
) -> Iterator[Job]:
    """One function trial per (donor, function) worth timing (see the module docstring);
    a splice that is its donor again goes to ``again``, with the donor's verdict."""
    from asmopt.model.search.splice import SpliceError, splice_function

    base_texts = comparable_code(baseline.asm)
    texts = {d.label: comparable_code(d.candidate.asm) for d in donors}
    for k, donor in enumerate(donors):
        mine = texts[donor.label]
        differs = {f for f, code in mine.items() if code != base_texts.get(f)}
        for name in functions:
            if name not in mine or mine[name] == base_texts.get(name):
                continue  # inlined away (or renamed to a clone), or the same code
            stands_for = next(
                (h.label for h in donors[:k]
                 if ties(h, donor) and texts[h.label].get(name, base_texts.get(name))
                 != base_texts.get(name)),
                None,
            )  # fmt: skip
            if stands_for is not None:
                notes.append(f"{donor.label}: `{name}` not mixed (ties with {stands_for}'s)")
                continue
            try:
                spliced = splice_function(baseline.asm, name, donor.candidate.asm)
            except SpliceError as err:
                notes.append(f"{donor.label}: `{name}` not mixed ({err})")
                continue
            ok, why = splice_is_safe(
                {name: donor.label},
                {"baseline": baseline.asm, donor.label: donor.candidate.asm},
                {"baseline": True, donor.label: _uses_ipa_ra(donor.candidate)},
            )
            if not ok:
                notes.append(f"{donor.label}: `{name}` not mixed ({why})")
                continue
            key = candidate_hash(spliced)
            if key in seen:
                continue
            seen[key] = f"{donor.label}, function {name}"
            c = donor.candidate
            candidate = Candidate(
                asm=spliced, policy=c.policy, label=f"{donor.label}: function {name}",
                function=name, portable=c.portable, meta=dict(c.meta),
            )  # fmt: skip
            if differs == {name} and set(mine) == set(base_texts):
                # The donor differs from the baseline in this function alone: the splice is
                # the donor again, function for function (only their layout may differ).
                notes.append(f"{donor.label}: `{name}` is {donor.label} again (not timed)")
                result = replace(donor.result, candidate_hash=key)
                again.append(Trial(candidate, result, "function", {name: donor.label},
                                   same_code_as=donor.label))  # fmt: skip
                continue
            yield candidate, "function", {name: donor.label}


def _best_sources(per_function: Iterable[Trial]) -> dict[str, Trial]:
    """The best function trial of each function that beats the baseline's by
    ``MIN_FUNCTION_GAIN``."""
    best: dict[str, Trial] = {}
    for trial in per_function:
        if not trial.passed or trial.result.speedup is None:
            continue
        if trial.result.speedup.median < MIN_FUNCTION_GAIN:
            continue
        name = trial.candidate.function or ""
        if name not in best or rank_key(trial.result) > rank_key(best[name].result):
            best[name] = trial
    return best


def _is_one_donor(
    baseline: Baseline, best: dict[str, Trial], by_label: dict[str, Trial], notes: list[str]
) -> bool:
    """Whether the mix would take every function from one donor, and every function in which
    that donor differs from the baseline: that is the donor again, timed whole already."""
    labels = {trial.sources[name] for name, trial in best.items()}
    if len(labels) != 1:
        return False
    label = labels.pop()
    base_texts = comparable_code(baseline.asm)
    theirs = comparable_code(by_label[label].candidate.asm)
    differs = {f for f, text in theirs.items() if text != base_texts.get(f) and f in base_texts}
    if not differs <= set(best):
        return False
    notes.append(f"no mix: every function's fastest source is {label}, timed whole already")
    return True


def _mixed(
    baseline: Baseline,
    best: dict[str, Trial],
    by_label: dict[str, Trial],
    seen: dict[str, str],
    notes: list[str],
) -> tuple[Candidate, dict[str, str]] | None:
    """The file that takes each function in ``best`` from its source, and that choice;
    functions are dropped one at a time (the weakest first) until the mix is safe and
    splices. None when fewer than two are left, or when the mix is an assembly text judged
    already."""
    from asmopt.model.search.splice import SpliceError, splice_function

    sources = {"baseline": baseline.asm}
    ipa_ra = {"baseline": True}
    choice: dict[str, str] = {}
    for name, trial in best.items():
        label = trial.sources[name]
        sources[label] = by_label[label].candidate.asm
        ipa_ra[label] = _uses_ipa_ra(by_label[label].candidate)
        choice[name] = label
    order = sorted(choice, key=lambda f: rank_key(best[f].result))
    mixed_asm: str | None = None
    while len(choice) >= 2:
        ok, why = splice_is_safe(choice, sources, ipa_ra)
        if ok:
            try:
                mixed_asm = baseline.asm
                for name, label in choice.items():
                    mixed_asm = splice_function(mixed_asm, name, sources[label])
                break
            except SpliceError as err:
                why, mixed_asm = str(err), None
        weakest = next(f for f in order if f in choice)
        notes.append(f"mix without `{weakest}` ({choice[weakest]}): {why}")
        del choice[weakest]
    if mixed_asm is None:
        return None
    key = candidate_hash(mixed_asm)
    if key in seen:
        notes.append(f"the mix is the same assembly as {seen[key]}")
        return None
    seen[key] = "the mix"
    candidate = Candidate(
        asm=mixed_asm,
        policy="portfolio",
        label="mix: " + ", ".join(f"{f} from {src}" for f, src in sorted(choice.items())),
        portable=all(by_label[label].candidate.portable for label in choice.values()),
        meta={"kind": "mix"},
    )
    return candidate, choice
