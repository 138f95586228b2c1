"""asmopt.model.search: candidates, and the search for the fastest verified one.

- :mod:`.policy`: the one interface every source of candidates implements.
- :mod:`.compiler_search`: the embedded default: other compilers, flags, PGO (the variants
  it tries, and what a CPU needs to run them: :mod:`.compiler_variants`).
- :mod:`.llm_policy`, :mod:`.prompts`, :mod:`.backends`: a language model as a policy (the
  paper's prompt, transformers / OpenAI-compatible / vLLM back-ends); :mod:`.openai_server` is
  ``asmopt serve-model``, the small server the ``openai`` back-end can talk to.
- :mod:`.splice`: one candidate function into a translation unit's baseline assembly;
  :mod:`.registers` refuses a splice whose gcc-built callers keep values in registers the
  new function changes (``-fipa-ra``).
- :mod:`.portfolio`: ask every policy, judge every candidate, race, keep the fastest, mix;
  :mod:`.trials` (a verdict, ranking), :mod:`.verifier` (the job's pool of verifications,
  raced and streamed) and :mod:`.mixing` (per-function mixes) are its parts.
- :mod:`.refine`: the model revises its answer after seeing the verifier's findings.
- :mod:`.compile_db`: a project's own flags from ``compile_commands.json``.
- :mod:`.optimizer`: the "Optimize function" job as one call (CLI and language server);
  :mod:`.preparation` checks its request and builds the baseline; :mod:`.stages` names the
  stages its progress reports; :mod:`.outcome` holds what it returns and the one
  ``RunRecord`` that the CLI's ``--json``, the editor and the store share.
"""
