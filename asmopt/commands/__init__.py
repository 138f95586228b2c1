"""asmopt.commands: one module per command of ``asmopt`` (the group is :mod:`asmopt.cli`).

- :mod:`.verify`: ``asmopt verify``, a candidate .s against the tests, timed against gcc -O3.
- :mod:`.optimize`: ``asmopt optimize``, a faster verified version of a source file.
- :mod:`.profile`: ``asmopt profile``, a program's hottest functions (valgrind).
- :mod:`.bench`: ``asmopt bench``, every row of a data set generated, verified, timed, reported.
- :mod:`.dataset`: ``asmopt dataset build`` and ``asmopt dataset show``, the paper's parquet.
- :mod:`.train`: ``asmopt train``, PPO locally or with verl; its options derive from
  ``PPOConfig``.
- :mod:`.doctor`: ``asmopt doctor``, the checks of :mod:`asmopt.doctor` as a table or JSON.
- :mod:`.serve`: ``asmopt serve``, the language server.
- :mod:`.serve_model`: ``asmopt serve-model``, a model behind an OpenAI-compatible API.
- :mod:`.common`: what they share: exit statuses, consoles, ``_fail``/``_warn``, option
  decorators (``comparator_option``, ``ci_option``, ``sandbox_options``), the sandbox and the
  workspace's result store.
"""
