"""asmopt.model.training: teaching a model to rewrite assembly with PPO.

- :mod:`.reward`: rewards (the paper's two designs and asmopt's default), each a verdict of
  the executor turned into a number.
- :mod:`.ppo`: a compact PPO trainer for causal LMs on one machine; beside it
  :mod:`.ppo_config` (its hyper-parameters, torch-free), :mod:`.ppo_math` (GAE, the clipped
  losses), :mod:`.policy_model` (the model, its precision, the value head) and
  :mod:`.run_log` (metrics.jsonl and its plot).
- :mod:`.verl_config`, :mod:`.train`: the launchers behind ``asmopt train`` (local, and verl on
  Ray at scale).
"""
