"""asmopt.model.evaluation: data sets and what a policy is worth on them.

- :mod:`.dataset`: the paper's data-set format: read, check, build from C programs.
- :mod:`.evaluate`: ``asmopt bench``: every row generated, verified and benchmarked, resumably.
  - :mod:`.rows`: one row judged (what a worker runs); :mod:`.farms`: where rows run (this
    process, a process pool, Ray); :mod:`.records`: what a run stores and returns.
- :mod:`.metrics`: the paper's metrics as its code computes them, and honest ones beside them.
- :mod:`.report`: report.json, report.md and the plots of a bench run.
"""
