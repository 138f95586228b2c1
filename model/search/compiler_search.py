"""The embedded default policy: other compilers, other flags, profile-guided builds.

No model weights needed. For a C file it asks gcc and clang for assembly under a handful of
flag sets that often beat ``gcc -O3`` (ordered by how often they win on small compute-bound
programs), and builds profile-guided variants: an instrumented build runs the target's test
inputs *inside the sandbox* (the user's program is trusted no more than generated code), and
the profile it leaves in a directory lent for the purpose feeds ``-fprofile-use``.

Each variant is a whole translation unit; for a per-function request the variant's version of
that function is spliced into the baseline (:func:`asmopt.model.search.splice.splice_function`).
Every candidate is plain assembly: it is linked like the baseline (``gcc x.s -lm``) by the
verifier, so link-time or start-up differences never pass for speed.

Profile-guided builds learn from the test inputs and are then timed on those same inputs; the
speed-up they show is for that workload. The label says how many inputs trained them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asmopt.executor.leftover import open_left
from asmopt.executor.results import BuildResult
from asmopt.executor.sandbox import Sandbox, SandboxError, SandboxLimits
from asmopt.executor.testcases import TestCase, TestSetError, load_tests
from asmopt.executor.toolchain import build_binary, compile_to_asm, find_tool
from asmopt.model.search.compiler_variants import (
    DEFAULT_VARIANTS,
    LEVEL_FEATURES,
    LEVEL_SUMMARY,
    NATIVE_VARIANTS,
    Variant,
    level_variants,
    missing_cpu_features,
)
from asmopt.model.search.policy import Candidate, NoCandidate, PolicyError, Proposal, Request

__all__ = [
    "DEFAULT_VARIANTS",
    "LEVEL_FEATURES",
    "NATIVE_VARIANTS",
    "CompilerSearchPolicy",
    "Variant",
    "clean_clang_asm",
    "level_variants",
    "missing_cpu_features",
]

# What gcc -Wmissing-profile says when -fprofile-use finds no data for a file.
_MISSING_PROFILE = "profile count data file not found"
# Directives clang emits that GNU as does not know (-fno-addrsig avoids .addrsig; PGO adds
# .cg_profile call-graph hints). Dropping them changes no code.
_CLANG_ONLY_DIRECTIVES = re.compile(r"^\s*\.(?:cg_profile|addrsig|addrsig_sym)\b")
# FMA instructions (vfmadd231sd, ...): code built for a level may contract a*b+c into one.
_FMA = re.compile(r"\bvf(?:n?m(?:add|sub)|maddsub|msubadd)\d{3}[sp][sd]\b")
# Flags of the user's that say how hard to optimize or for which CPU: the variant decides.
_OPTIMIZATION_FLAG = re.compile(r"^-(?:O\S*|march=.*|mtune=.*|mcpu=.*|f(?:no-)?profile-.*)$")
# The most that a profiling run may leave behind (a .gcda is a few KiB per function).
_MAX_PROFILE_BYTES = 64 * 1024 * 1024


def clean_clang_asm(asm: str) -> str:
    """clang's assembly with the directives GNU as rejects removed (``.cg_profile``,
    ``.addrsig``); these carry linker hints only, never code."""
    return "".join(
        line for line in asm.splitlines(keepends=True) if not _CLANG_ONLY_DIRECTIVES.match(line)
    )


def _clang_flags(compiler: str) -> tuple[str, ...]:
    # -fno-addrsig: no .addrsig section, which GNU as (the verifier's assembler) rejects.
    return ("-fno-addrsig",) if compiler == "clang" else ()


def _user_flags(cflags: Sequence[str]) -> tuple[str, ...]:
    """The user's flags that still apply (defines, includes, -std), without -O/-march."""
    return tuple(f for f in cflags if not _OPTIMIZATION_FLAG.match(f))


@dataclass
class _Built:
    asm: str
    label: str
    note: str = ""


@dataclass
class CompilerSearchPolicy:
    """Proposes the assembly other compilers and flags produce for the request's C file.

    ``propose(request, n)`` returns up to ``n`` proposals, best bets first: a
    :class:`Candidate` per variant that built, a :class:`NoCandidate` per variant that could
    not (compiler missing, no tests to train a profile on, the function was inlined away).

    ``sandbox`` runs the instrumented builds of profile-guided variants; without one the
    policy makes its own (bubblewrap) for the duration of a call. ``training_limits`` bound
    each profiling run. ``max_training_inputs`` caps how many test inputs train a profile.
    """

    name: str = "compiler"
    variants: tuple[Variant, ...] = DEFAULT_VARIANTS
    native_variants: tuple[Variant, ...] = NATIVE_VARIANTS
    sandbox: Sandbox | None = None
    training_limits: SandboxLimits = field(default_factory=SandboxLimits)
    max_training_inputs: int = 10
    timeout: float = 120.0

    def variants_for(self, request: Request) -> list[Variant]:
        """The variants tried for ``request``, in order: native ones (first, since a user who
        allows them wants them tried) only with ``request.allow_native``; those built for
        ``request.march_level`` when it is above the portable baseline (next, for the same
        reason); profile-guided ones only when the request names a test directory; clang ones
        only when clang exists."""
        chosen = list(self.native_variants if request.allow_native else ())
        chosen += list(level_variants(request.march_level)) + list(self.variants)
        if request.tests_dir is None:
            chosen = [v for v in chosen if not v.pgo]
        if find_tool("clang") is None:
            chosen = [v for v in chosen if v.compiler != "clang"]
        return chosen

    def planned(self, request: Request, n: int = 1) -> int:
        """How many proposals :meth:`propose_iter` makes at most when asked for ``n``."""
        return min(max(n, 0), len(self.variants_for(request)))

    def propose(self, request: Request, n: int = 1) -> list[Proposal]:
        """Compile the request's C file under up to ``n`` variants (see :meth:`variants_for`)."""
        return list(self.propose_iter(request, n))

    def propose_iter(self, request: Request, n: int = 1) -> Iterator[Proposal]:
        """:meth:`propose`, one proposal at a time as each variant is built, so that the
        first can be verified while the others are still compiling."""
        if n <= 0:
            return
        variants = self.variants_for(request)[:n]
        training = self._training_inputs(request) if any(v.pgo for v in variants) else []
        owned: Sandbox | None = None
        with tempfile.TemporaryDirectory(prefix="asmopt-compilers-") as tmp:
            work = Path(tmp)
            source = self._source(request, work)
            try:
                for k, variant in enumerate(variants):
                    vdir = work / f"v{k}"
                    vdir.mkdir()
                    built: _Built | str
                    missing = missing_cpu_features(variant.level) if variant.level else []
                    if missing:
                        built = (
                            f"this machine's CPU lacks {', '.join(missing)}, so code built for "
                            f"{variant.level} cannot be verified here"
                        )
                    elif not variant.pgo:
                        built = self._build_plain(variant, source, request, vdir)
                    elif isinstance(training, str):
                        built = training
                    else:
                        if self.sandbox is None and owned is None:
                            owned = Sandbox(self.training_limits)
                        sandbox = self.sandbox or owned
                        assert sandbox is not None
                        built = self._build_pgo(variant, source, request, training, sandbox, vdir)
                    if isinstance(built, str):
                        yield NoCandidate(self.name, f"{variant.label}: {built}")
                    else:
                        yield self._candidate(request, variant, built)
            finally:
                if owned is not None:
                    owned.close()

    # -- inputs -----------------------------------------------------------------------------
    def _source(self, request: Request, work: Path) -> Path:
        if request.source_path is not None and Path(request.source_path).suffix == ".c":
            if not Path(request.source_path).exists():
                raise PolicyError(
                    f"{request.source_path} does not exist: the compiler policy rebuilds the C "
                    "file, so pass the path of the target's source"
                )
            return Path(request.source_path)
        if request.c_source is None:
            raise PolicyError(
                "the compiler policy needs C source (Request.source_path or Request.c_source); "
                "for a hand-written .s file use an LLM policy"
            )
        # The text of an unsaved editor buffer: compile a copy.
        path = work / "source.c"
        path.write_text(request.c_source)
        return path

    def _training_inputs(self, request: Request) -> list[TestCase] | str:
        assert request.tests_dir is not None
        try:
            tests = load_tests(Path(request.tests_dir))
        except TestSetError as err:
            return f"no inputs to train a profile on ({err})"
        return tests[: self.max_training_inputs]

    # -- building ---------------------------------------------------------------------------
    def _flags(self, variant: Variant, request: Request, *extra: str) -> tuple[str, ...]:
        return (
            *variant.flags,
            *_clang_flags(variant.compiler),
            *extra,
            *_user_flags(request.cflags),
        )

    def _compile(
        self, variant: Variant, request: Request, source: Path, out: Path, *extra: str
    ) -> BuildResult:
        """``source`` to assembly in ``out`` with the variant's compiler and flags (+ ``extra``)."""
        return compile_to_asm(
            source,
            out,
            compiler=variant.compiler,
            flags=self._flags(variant, request, *extra),
            timeout=self.timeout,
        )

    def _build_plain(
        self, variant: Variant, source: Path, request: Request, vdir: Path
    ) -> _Built | str:
        out = vdir / "variant.s"
        build = self._compile(variant, request, source, out)
        if not build.ok:
            return _first_error(build.stderr, build.diagnostics)
        return _Built(_read_asm(out, variant), variant.label)

    def _build_pgo(
        self,
        variant: Variant,
        source: Path,
        request: Request,
        training: list[TestCase],
        sandbox: Sandbox,
        vdir: Path,
    ) -> _Built | str:
        if variant.compiler == "clang" and find_tool("llvm-profdata") is None:
            return "llvm-profdata not found (apt-get install llvm) to merge clang's profile"
        # One path for the instrumented and the final compile: gcc names the .gcda file after
        # the output file (-o), and -fprofile-use looks for the same name.
        out = vdir / "variant.s"

        def compile_with(*extra: str) -> BuildResult:
            return self._compile(variant, request, source, out, *extra)

        profile = self._record_profile(variant.compiler, compile_with, training, sandbox, out)
        if isinstance(profile, str):
            return profile
        copied, trained = profile
        use_flags = _profile_use_flags(variant.compiler, copied, vdir, self.timeout)
        if isinstance(use_flags, str):
            return use_flags
        build = compile_with(*use_flags)
        if not build.ok:
            return "profile-guided build failed: " + _first_error(build.stderr, build.diagnostics)
        if _MISSING_PROFILE in build.stderr or "no profile data available" in build.stderr:
            # Without data, -fprofile-use quietly builds with guessed counts: not a PGO build.
            return "the compiler did not find the profile data it was given: " + (
                build.stderr.strip().splitlines()[0] if build.stderr.strip() else "no message"
            )
        label = f"{variant.label} ({trained} training input{'s' if trained != 1 else ''})"
        return _Built(_read_asm(out, variant), label)

    def _record_profile(
        self,
        compiler: str,
        compile_with: Callable[..., BuildResult],
        training: list[TestCase],
        sandbox: Sandbox,
        out: Path,
    ) -> tuple[list[Path], int] | str:
        """Build an instrumented program (``compile_with(*flags)`` writes ``out``) and run
        it on ``training`` inside ``sandbox``.

        Returns the profile files (copied next to ``out``, under ``profile/``) and how many
        runs left data, or why there is no profile.
        """
        lent = sandbox.make_output_dir()
        seen_as = sandbox.output_path(lent)
        instrumented = self._build_instrumented(compiler, compile_with, sandbox, out, seen_as)
        if isinstance(instrumented, str):
            return instrumented
        trained = self._run_training(instrumented, training, sandbox, lent)
        if isinstance(trained, str):
            return trained
        copied = _collect_profile(lent, out.parent / "profile", (".gcda", ".profraw"))
        shutil.rmtree(lent, ignore_errors=True)
        if trained == 0 or not copied:
            return (
                f"the instrumented build left no profile data after {len(training)} training "
                "runs (every run crashed or timed out?)"
            )
        return copied, trained

    def _build_instrumented(
        self,
        compiler: str,
        compile_with: Callable[..., BuildResult],
        sandbox: Sandbox,
        out: Path,
        seen_as: str,
    ) -> Path | str:
        """Compile and link a program that writes its profile under ``seen_as`` (the lent
        directory as the sandboxed program sees it); returns its path or why it failed."""
        instrumented = out.parent / "instrumented"
        if compiler == "gcc":
            gen_flags: tuple[str, ...] = (
                f"-fprofile-generate={seen_as}",
                "-fprofile-update=single",
            )
            link_flags: tuple[str, ...] = ("-fprofile-generate",)
        else:
            gen_flags = (f"-fprofile-instr-generate={seen_as}/prof-%p.profraw",)
            link_flags = ("-fprofile-instr-generate",)
        build = compile_with(*gen_flags)
        if not build.ok:
            return "instrumented build failed: " + _first_error(build.stderr, build.diagnostics)
        # The instrumented program is linked by its own compiler: it needs that compiler's
        # profiling runtime (libgcov, libclang_rt.profile).
        link = build_binary(
            [out],
            instrumented,
            linker=compiler,
            flags=link_flags,
            ldflags=("-lm",),
            timeout=self.timeout,
            sandbox=sandbox,
        )
        if not link.ok:
            return "instrumented link failed: " + _first_error(link.stderr, link.diagnostics)
        return instrumented

    def _run_training(
        self, instrumented: Path, training: list[TestCase], sandbox: Sandbox, lent: Path
    ) -> int | str:
        """Run ``instrumented`` on each training input; how many runs left a profile."""
        trained = 0
        for test in training:
            try:
                run = sandbox.run(
                    instrumented,
                    test.stdin,
                    test.args,
                    limits=self.training_limits,
                    output_dir=lent,
                )
            except SandboxError as err:
                return f"the profiling run could not start: {err}"
            # A run that fails still leaves a usable profile when it exits normally; one
            # that timed out or crashed leaves none, and its input is simply not counted.
            if run.exit_code is not None and not run.timed_out:
                trained += 1
        return trained

    # -- the candidate ----------------------------------------------------------------------
    def _candidate(self, request: Request, variant: Variant, built: _Built) -> Proposal:
        label = built.label
        if variant.native:
            label += ", non-portable: -march=native"
        meta = {
            "compiler": variant.compiler,
            "flags": " ".join(variant.flags),
            "pgo": "yes" if variant.pgo else "no",
        }
        if variant.level:
            label += f", requires {variant.level} ({LEVEL_SUMMARY[variant.level]})"
            meta["requires"] = variant.level
            if _FMA.search(built.asm):
                # Fused multiply-add rounds once: the tests decide whether outputs changed.
                label += ", fused multiply-add"
                meta["fma"] = "yes"
        if request.function is None:
            return Candidate(
                asm=built.asm,
                policy=self.name,
                label=label,
                portable=not (variant.native or variant.level),
                meta=meta,
            )
        from asmopt.model.search.registers import splice_is_safe
        from asmopt.model.search.splice import SpliceError, splice_function

        try:
            spliced = splice_function(
                request.baseline_asm, request.function, built.asm, c_source=request.c_source
            )
        except SpliceError as err:
            return NoCandidate(self.name, f"{label}: {err}")
        # gcc's callers may keep values in registers their own build of the function left
        # alone; this build's may not (clang does not assume it of its callees).
        ok, why = splice_is_safe(
            {request.function: label},
            {"baseline": request.baseline_asm, label: built.asm},
            {"baseline": True, label: variant.compiler != "clang"},
        )
        if not ok:
            why = f"{label}: function {request.function} not spliced: {why}"
            return NoCandidate(self.name, why)
        return Candidate(
            asm=spliced,
            policy=self.name,
            label=f"{label}, function {request.function}",
            function=request.function,
            portable=not (variant.native or variant.level),
            meta=meta,
        )


def _read_asm(path: Path, variant: Variant) -> str:
    text = path.read_text(errors="replace")
    return clean_clang_asm(text) if variant.compiler == "clang" else text


def _first_error(stderr: str, diagnostics: Sequence[object]) -> str:
    for diag in diagnostics:
        message = getattr(diag, "message", "")
        if getattr(getattr(diag, "severity", None), "value", "") == "error" and message:
            return str(message)
    text = stderr.strip()
    return text.splitlines()[0] if text else "the compiler failed without a message"


def _collect_profile(lent: Path, into: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Copy the profile files a sandboxed run left in ``lent`` into ``into``, keeping their
    relative paths (gcc looks a .gcda up by the path of the file it compiles).

    What the program left is untrusted: only regular files with a profile suffix are taken,
    links are never followed, and the total size is capped.
    """
    copied: list[Path] = []
    total = 0
    for root, dirs, files in os.walk(lent, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            if not name.endswith(suffixes):
                continue
            src = os.path.join(root, name)
            try:
                fh = open_left(Path(src))
            except OSError:
                continue  # a link, a FIFO or anything but a regular file, or gone
            with fh:
                if total + os.fstat(fh.fileno()).st_size > _MAX_PROFILE_BYTES:
                    continue
                data = fh.read(_MAX_PROFILE_BYTES - total + 1)
            total += len(data)
            target = into / os.path.relpath(src, lent)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            copied.append(target)
    return copied


def _profile_use_flags(
    compiler: str, copied: list[Path], vdir: Path, timeout: float
) -> tuple[str, ...] | str:
    """The flags that build from the profile in ``vdir/profile`` (clang's merged first)."""
    if compiler == "gcc":
        return (
            f"-fprofile-use={vdir / 'profile'}",
            "-fprofile-partial-training",
            "-Wmissing-profile",
        )
    merged = vdir / "merged.profdata"
    error = _merge_clang_profiles(copied, merged, timeout)
    if error:
        return error
    return (f"-fprofile-instr-use={merged}", "-Wprofile-instr-missing")


def _merge_clang_profiles(raw: list[Path], merged: Path, timeout: float) -> str:
    """Merge clang's .profraw files; returns an error message, or "" on success."""
    tool = find_tool("llvm-profdata")
    if tool is None:
        return "llvm-profdata not found: apt-get install llvm"
    try:
        proc = subprocess.run(
            [tool, "merge", "-o", str(merged), *(str(p) for p in raw)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"llvm-profdata merge failed: {err}"
    if proc.returncode != 0 or not merged.exists():
        first = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else "no message"
        return f"llvm-profdata could not merge the profile: {first}"
    return ""
