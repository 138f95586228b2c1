"""asmopt.executor: the trusted core. Builds, runs, tests and times generated code, in a sandbox.

The verdict on a candidate:
- ``judge.py``: :class:`Judge`, one baseline and every candidate's verdict against it.
- ``verify.py``: the steps of a verdict (baseline, build, tests, timing, store).
- ``benchmark.py``: interleaved A/B timing; ``intervals.py`` its confidence intervals;
  ``racing.py`` stopping a clear loser early.
- ``testcases.py``: test sets, output comparison, one run's verdict; ``command_tests.py``
  tests that are commands.
- ``results.py``: the result types every layer passes around; ``store.py`` remembers them.

The sandbox (every generated program and every build of generated text runs in it):
- ``sandbox.py``: :class:`Sandbox`, what other layers import; ``session.py`` many runs in one
  sandbox; ``bwrap.py`` the bubblewrap command line; ``seccomp.py`` the filter;
  ``runner.py`` the in-sandbox runner (``runner.c``); ``limits.py`` limits, paths, errors;
  ``cgroup.py`` CPU accounting a program cannot escape.

Tools: ``toolchain.py`` (compile, assemble, link), ``diagnostics.py`` (their messages),
``asmfile.py`` (functions in a ``.s``), ``elf.py`` (inside binaries), ``estimate.py``
(llvm-mca), ``callgrind.py`` and ``profile.py`` (instruction counts).
"""
