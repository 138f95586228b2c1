"""asmopt.model: everything above the executor that decides what to try and what it was worth.

One sub-package per job, each importing only the executor, :mod:`settings` and the packages
listed before it:

- :mod:`asmopt.model.settings`: the one settings type (``asmopt.toml``, CLI flags, the editor),
  the targets a workspace declares, and ``Workspace``: which ``asmopt.toml`` governs a file
  and where its result store is, for the CLI and the editor alike.
- :mod:`asmopt.model.search`: where candidates come from and how the best is found: the policy
  interface, compiler search, the LLM policy and its back-ends, prompts, splicing, the portfolio
  that verifies and mixes, refinement, and :func:`~asmopt.model.search.optimizer.optimize`, the
  "Optimize function" job shared by the CLI and the language server.
- :mod:`asmopt.model.evaluation`: data sets in the paper's format, ``asmopt bench``, the paper's
  metrics and the report.
- :mod:`asmopt.model.training`: rewards and PPO (a compact trainer, and verl at scale), trained
  on those data sets.

Layering (tested by ``tests/test_layers.py``): executor <- model <- server <- cli; inside
model, settings <- search <- evaluation <- training (training reads data sets; nothing in
search knows about either).
"""
