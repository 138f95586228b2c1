"""The compact PPO trainer: GAE, learning against the real executor, checkpoints, resuming
and the failures a user meets."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from asmopt.model.evaluation.dataset import problem_from_row  # noqa: E402
from asmopt.model.search.backends.transformers_backend import (  # noqa: E402
    TransformersBackend,
    make_tiny_model,
)
from asmopt.model.training.ppo import PPOConfig, PPOTrainer, TrainError, compute_gae  # noqa: E402
from asmopt.model.training.reward import (  # noqa: E402
    RewardError,
    RewardInput,
    RewardSettings,
    Scored,
)
from asmopt.model.training.reward_pool import RewardPool  # noqa: E402

pytestmark = pytest.mark.llm


def test_gae_matches_the_textbook_recursion():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float)
    gamma, lam = 0.9, 0.8
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    for b in range(3):
        n = int(mask[b].sum())
        expected, running = [0.0] * n, 0.0
        for t in reversed(range(n)):
            next_v = values[b, t + 1].item() if t + 1 < n else 0.0
            delta = rewards[b, t].item() + gamma * next_v - values[b, t].item()
            running = delta + gamma * lam * running
            expected[t] = running
        assert adv[b, :n].tolist() == pytest.approx(expected, abs=1e-5)
        assert ret[b, :n].tolist() == pytest.approx(
            [a + values[b, t].item() for t, a in enumerate(expected)], abs=1e-5
        )
        assert adv[b, n:].abs().sum() == 0


# --------------------------------------------------------------------------- learning

# A loop whose -O2 build is clearly faster than its -O0 build (shared with the other
# executor-backed model tests).
LOOP_C = (Path(__file__).parents[1] / "data" / "snippets" / "loop.c").read_text()
PROMPT = [{"role": "user", "content": "Make this program faster."}]


def bandit_problem(tmp: Path):
    """A row whose baseline is gcc -O0, and four answers: gcc -O2 (correct, about 2x
    faster), the baseline itself, a wrong -O2 (prints another number), and garbage."""
    src = tmp / "loop.c"
    src.write_text(LOOP_C)
    asm = {}
    for flag in ("-O0", "-O2"):
        out = tmp / f"loop{flag}.s"
        subprocess.run(["gcc", flag, "-S", str(src), "-o", str(out)], check=True)
        asm[flag] = out.read_text()
    subprocess.run(["gcc", "-O0", str(src), "-o", str(tmp / "loop")], check=True)
    inputs = ["300\n", "200\n"]
    outputs = [subprocess.run([tmp / "loop"], input=i, capture_output=True, text=True).stdout
               for i in inputs]  # fmt: skip
    row = {"prompt": PROMPT, "extra_info": {"inputs": inputs, "outputs": outputs,
           "unoptimized_assembly": asm["-O0"], "c_code": LOOP_C}}  # fmt: skip
    wrong = asm["-O2"].replace('"%ld\\n"', '"%ld7\\n"')
    assert wrong != asm["-O2"]
    answers = [asm["-O2"], asm["-O0"], wrong, "not assembly at all\n"]
    return problem_from_row(row, 0), answers


def p_correct_and_faster(trainer: PPOTrainer) -> float:
    """Exact probability that the policy's first token picks answer 0 (token id % 4 == 0)."""
    ids = torch.tensor([trainer.prompts[0]], device=trainer.device)
    with torch.no_grad():
        logits = trainer.policy(ids).logits[0, -1].float() / trainer.config.temperature
    probs = torch.softmax(logits, -1)
    return probs[torch.arange(probs.numel()) % 4 == 0].sum().item()


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_ppo_learns_to_pick_the_faster_correct_program(tmp_path):
    """A contextual bandit whose rewards come from the real sandboxed executor: the first
    generated token picks one of four answers, only one of them correct and faster. PPO
    must raise the chance of that answer far beyond chance, and a control run with the
    same rewards shuffled within each batch must not."""
    problem, answers = bandit_problem(tmp_path)
    model = make_tiny_model(tmp_path / "tiny", seed=1)

    def pick(ids, _text):
        return f"```assembly\n{answers[ids[0] % 4]}```"

    config = PPOConfig(batch_size=16, mini_batch_size=16, micro_batch_size=16,
                       max_new_tokens=1, temperature=1.0, actor_lr=3e-3, critic_lr=1e-2,
                       ppo_epochs=2, steps=30, seed=1, save_every=1000)  # fmt: skip
    # One pool for both runs: each answer is verified once, then served from its cache.
    pool = RewardPool("asmopt", RewardSettings(bench_budget=5.0), workers=4)

    def run(out: str, shuffle: bool):
        trainer = PPOTrainer(model, [problem] * 16, tmp_path / out, config, pool,
                             response_to_solution=pick, log=lambda _m: None)  # fmt: skip
        trainer.setup()
        before = p_correct_and_faster(trainer)
        if shuffle:
            score, rng = trainer.score, torch.Generator().manual_seed(0)

            def shuffled(samples):
                score(samples)
                order = torch.randperm(len(samples), generator=rng).tolist()
                scores = [samples[i].score for i in order]
                for s, sc in zip(samples, scores, strict=True):
                    s.score = sc

            trainer.score = shuffled
        metrics = trainer.train()
        return trainer, before, metrics

    trainer, before, metrics = run("ppo", shuffle=False)
    after = p_correct_and_faster(trainer)
    first = sum(m["reward_mean"] for m in metrics[:5]) / 5
    last = sum(m["reward_mean"] for m in metrics[-5:]) / 5
    assert pool.executor_calls <= 4  # the real executor ran once per answer
    # Initially about 1 in 4; after 30 steps nearly always the faster correct program.
    assert 0.15 < before < 0.35
    assert after > 0.8, (before, after)
    assert last > first + 1.0, (first, last)
    # Significance: 200 fresh samples from the trained policy, one-sided binomial test
    # against the initial rate.
    samples = trainer.rollout([0] * 200)
    hits = sum(1 for s in samples if s.response_ids[0] % 4 == 0)
    assert binomial_tail(hits, 200, before) < 1e-12, (hits, before)

    control, c_before, _ = run("control", shuffle=True)
    assert p_correct_and_faster(control) < 0.6, "shuffled rewards should not teach the answer"
    assert c_before == pytest.approx(before)
    pool.close()


# --------------------------------------------------------------------------- state


class FixedRewards(RewardPool):
    """Rewards without the executor (for checkpoint tests): 0, 1, 0, 1... in batch order;
    optionally fails at one call, as a dying worker would."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__("asmopt", workers=1)
        self.calls = 0
        self.fail_at = fail_at

    def score(self, items, names=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RewardError("a reward worker died while verifying a candidate for row-0")
        out = []
        for i, (asm, _problem) in enumerate(items):
            r = RewardInput(compiled=asm is not None, tests_total=1, tests_passed=1)
            out.append(Scored(float(i % 2), r))
        return out


def small_problem():
    row = {"prompt": PROMPT, "extra_info": {"inputs": ["1\n"], "outputs": ["1\n"],
           "unoptimized_assembly": "\t.text\nmain:\n\tret\n"}}  # fmt: skip
    return problem_from_row(row, 0)


def tiny_config(steps: int) -> PPOConfig:
    return PPOConfig(
        batch_size=2,
        mini_batch_size=2,
        micro_batch_size=1,
        max_new_tokens=4,
        temperature=1.0,
        actor_lr=1e-3,
        critic_lr=1e-3,
        steps=steps,
        seed=3,
    )


def params(trainer: PPOTrainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])


def test_resume_gives_the_same_model_as_an_uninterrupted_run(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    problems = [small_problem()] * 4
    straight = PPOTrainer(model, problems, tmp_path / "a", tiny_config(4), FixedRewards(),
                          log=lambda _m: None)  # fmt: skip
    straight.train()

    interrupted = PPOTrainer(model, problems, tmp_path / "b", tiny_config(4),
                             FixedRewards(fail_at=3), log=lambda _m: None)  # fmt: skip
    with pytest.raises(TrainError, match="resume from step 2"):
        interrupted.train()
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]

    resumed = PPOTrainer(model, problems, tmp_path / "b", tiny_config(4), FixedRewards(),
                         log=lambda _m: None)  # fmt: skip
    resumed.setup()
    assert resumed.step == 2
    resumed.train()
    assert torch.allclose(params(resumed), params(straight), atol=1e-6)
    records = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    record = records[-1]
    for key in ("reward_mean", "pass_rate", "speedup_mean", "kl", "policy_loss", "value_loss",
                "entropy"):  # fmt: skip
        assert math.isfinite(record[key]), key
    assert (tmp_path / "b" / "metrics.png").stat().st_size > 0

    # The checkpoint is a Hugging Face model that the transformers back-end loads.
    backend = TransformersBackend(tmp_path / "b" / "checkpoint", device="cpu")
    assert len(backend.complete(PROMPT, n=1, max_new_tokens=3, seed=0)) == 1


def test_kl_to_a_frozen_reference(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    config = PPOConfig(**{**tiny_config(2).__dict__, "kl_coef": 0.1})
    trainer = PPOTrainer(model, [small_problem()] * 2, tmp_path / "out", config,
                         FixedRewards(), log=lambda _m: None)  # fmt: skip
    metrics = trainer.train()
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # same weights at step 1
    assert metrics[1]["kl"] != 0.0


def test_checkpoint_from_another_architecture_is_refused(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    PPOTrainer(model, [small_problem()] * 2, tmp_path / "out", tiny_config(1), FixedRewards(),
               log=lambda _m: None).train()  # fmt: skip
    other = make_tiny_model(tmp_path / "other", vocab_texts=["zzz qqq " * 50, "xyzzy " * 80])
    trainer = PPOTrainer(other, [small_problem()] * 2, tmp_path / "out", tiny_config(2),
                         FixedRewards(), log=lambda _m: None)  # fmt: skip
    with pytest.raises(TrainError, match="another architecture"):
        trainer.setup()


def test_bad_inputs_have_clear_messages(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    not_a_model = tmp_path / "weights.txt"
    not_a_model.write_text("hello")
    trainer = PPOTrainer(not_a_model, [small_problem()], tmp_path / "o", tiny_config(1),
                         FixedRewards())  # fmt: skip
    with pytest.raises(TrainError, match="not a model"):
        trainer.setup()
    empty = small_problem().__class__(name="p", row=0, baseline_asm="x", tests=())
    with pytest.raises(TrainError, match="has no tests"):
        PPOTrainer(model, [empty], tmp_path / "o", tiny_config(1), FixedRewards())
    with pytest.raises(TrainError, match="multiple of micro_batch_size"):
        PPOConfig(mini_batch_size=3, micro_batch_size=2)
    with pytest.raises(TrainError, match="unknown dtype 'float16'"):
        PPOConfig(dtype="float16")
    small = PPOTrainer(model, [small_problem()] * 3, tmp_path / "o", tiny_config(1).__class__(
        **{**tiny_config(1).__dict__, "batch_size": 4, "mini_batch_size": 4}), FixedRewards(),
        log=lambda _m: None)  # fmt: skip
    with pytest.raises(TrainError, match="3 usable problems, fewer than one batch of 4"):
        small.setup()
