"""The GRPO loop end to end on CPU: DeepSpeed ZeRO-2/3 steps, bitwise resume, learning, CLI."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch

from bridges.scoring import unbatch
from learner import algorithms
from learner.models import build_tiny_policy, checkpoint_name, load_policy
from learner.trainer import GRPOTrainer
from tests.learner_support import TextRewardScorer, small_config


def _quiet(_: str) -> None:
    pass


def _parameters(trainer: GRPOTrainer) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone().float() for name, t in trainer.engine.named_checkpoint_tensors()}


@pytest.mark.parametrize(("zero_stage", "precision"), [(2, "fp32"), (3, "bf16")])
@pytest.mark.slow
def test_grpo_step_with_deepspeed_zero_changes_every_parameter(tmp_path, zero_stage, precision):
    # lr 1e-2: Adam's first step then moves even a norm weight of 1.0 by more than a bf16 ulp.
    config = small_config(str(tmp_path / "run"), zero_stage=zero_stage, precision=precision, lr=1e-2)
    trainer = GRPOTrainer(config, scorer=TextRewardScorer(), echo=_quiet)
    assert type(trainer.engine.engine.optimizer).__name__.startswith("DeepSpeedZeroOptimizer")
    before = _parameters(trainer)
    metrics = trainer.train_step()
    after = _parameters(trainer)
    assert before.keys() == after.keys() and len(before) == len(list(trainer.engine.policy.parameters()))
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == []
    numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    assert all(np.isfinite(v) for v in numeric.values()), numeric
    assert metrics["grad_norm"] > 0 and metrics["optimizer_steps"] == 1
    assert metrics["kl"] == 0.0  # the first step starts at the reference policy
    # The rollout engine's log-probs and the trainer's agree (same weights, same pixels).
    assert metrics["rollout_logprob_gap/max"] < 1e-3

    # The export (gathered from the ZeRO partitions) holds exactly the trained weights.
    exported, _ = load_policy(str(trainer.engine.export(tmp_path / "export", trainer.processor)))
    assert exported.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    for name, param in exported.named_parameters():
        assert torch.equal(param.float(), after[checkpoint_name(name)]), name


@pytest.mark.slow
def test_a_frozen_vision_tower_keeps_its_weights_while_the_language_model_trains(tmp_path):
    config = small_config(str(tmp_path / "run"), freeze_vision_tower=True)
    trainer = GRPOTrainer(config, scorer=TextRewardScorer(), echo=_quiet)
    before = _parameters(trainer)
    trainer.train_step()
    after = _parameters(trainer)
    vision = [name for name in before if name.split(".")[0] == "visual" or ".visual." in name]
    assert vision and len(vision) < len(before)
    assert [name for name in vision if not torch.equal(before[name], after[name])] == []
    assert [name for name in before if name not in vision and torch.equal(before[name], after[name])] == []


@pytest.mark.slow
def test_micro_batching_and_gradient_checkpointing_do_not_change_the_update(tmp_path):
    results = []
    # One micro-batch; or 3 + 3 + 2 sequences accumulated under ZeRO-2 with recomputed activations.
    for micro, checkpointing in ((8, False), (3, True)):
        # adam_eps keeps Adam's first step from turning rounding-level gradients into full-size updates.
        config = small_config(str(tmp_path / f"run{micro}"), zero_stage=2, micro_batch_size=micro, lr=1e-3,
                              adam_eps=1e-4, gradient_checkpointing=checkpointing)
        trainer = GRPOTrainer(config, scorer=TextRewardScorer(), echo=_quiet)
        assert trainer.engine.policy.is_gradient_checkpointing == checkpointing
        metrics = trainer.train_step()
        results.append((metrics, _parameters(trainer)))
    (whole, whole_params), (micro, micro_params) = results
    assert whole["reward/overall"] == micro["reward/overall"]  # the same rollouts
    assert whole["grad_norm"] == pytest.approx(micro["grad_norm"], rel=1e-4)
    for name in whole_params:
        # float32 sums in another order, through Adam's normalisation: a few 1e-6 apart.
        torch.testing.assert_close(micro_params[name], whole_params[name], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_several_updates_per_batch_use_recomputed_old_logprobs(tmp_path):
    config = small_config(str(tmp_path / "run"), states_per_step=4, updates_per_step=2, ppo_epochs=2, lr=1e-2,
                          clip_high=0.28, dual_clip=3.0, kl_estimator="k2", loss_aggregation="seq-mean-token-mean",
                          drop_zero_variance_groups=True)
    # Every group's rewards differ (a per-response offset), except group 1's: that one is
    # dropped, so 3 groups x 4 responses train.
    scorer = TextRewardScorer()
    score = scorer.score

    def with_a_constant_group(states, responses, key):
        scores = score(states, responses, key)
        scores.overall += 0.1 * np.arange(scores.overall.shape[1], dtype=np.float32)
        scores.overall[1] = 0.25
        return scores

    scorer.score = with_a_constant_group
    trainer = GRPOTrainer(config, scorer=scorer, echo=_quiet)
    metrics = trainer.train_step()
    assert metrics["optimizer_steps"] == 4 and metrics["sequences_trained"] == 12
    assert metrics["zero_variance_group_fraction"] == 0.25
    assert "seconds/old_logprobs" in metrics and "seconds/ref_logprobs" in metrics
    # After the first update the policy moved: ratios leave 1 and the KL to the reference grows.
    assert metrics["ratio/mean"] != 1.0 and metrics["kl"] > 0
    assert metrics["clip_fraction/low"] + metrics["clip_fraction/high"] > 0
    assert metrics["rollout_logprob_gap/max"] < 1e-3  # old log-probs were computed before any update


@pytest.mark.slow
def test_a_step_whose_groups_are_all_dropped_changes_nothing(tmp_path):
    config = small_config(str(tmp_path / "run"), drop_zero_variance_groups=True)
    trainer = GRPOTrainer(config, scorer=TextRewardScorer(lambda text: 1.0), echo=_quiet)
    before = _parameters(trainer)
    metrics = trainer.train_step()
    assert metrics["optimizer_steps"] == 0 and metrics["sequences_trained"] == 0
    assert metrics["zero_variance_group_fraction"] == 1.0
    after = _parameters(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)


class _CountingImageProcessor:
    """Delegates to the processor's image processor, counting the images it is given."""

    def __init__(self, inner):
        self.inner, self.images = inner, 0

    def __call__(self, images=None, *args, **kwargs):
        self.images += len(images) if isinstance(images, (list, tuple)) else 1
        return self.inner(images, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.slow
def test_a_step_processes_each_board_once_and_describes_it_once(tmp_path):
    # Rollouts start from the step's one encoding, and the scorer's perception truths feed the
    # measures and the rollout dump, so neither the image processor nor describe runs per response.
    config = small_config(str(tmp_path / "run"), dump_every=1, dump_groups=2)
    trainer = GRPOTrainer(config, echo=_quiet)
    counter = _CountingImageProcessor(trainer.processor.image_processor)
    trainer.processor.image_processor = counter
    described, drawn = [], []
    describe, sample = trainer.env.describe, trainer.sampler.sample
    trainer.env.describe = lambda state: described.append(1) or describe(state)
    trainer.sampler.sample = lambda batch: drawn.append(sample(batch)) or drawn[-1]
    try:
        trainer.train_step()
    finally:
        trainer.processor.image_processor = counter.inner
        del trainer.env.describe, trainer.sampler.sample
    assert counter.images == config.states_per_step
    assert len(described) == config.states_per_step
    dump = json.loads((tmp_path / "run" / "rollouts" / "step_000001" / "rollouts.json").read_text())
    host = jax.device_get(drawn[0][0])
    assert [g["perception_truth"] for g in dump["groups"]] == [describe(unbatch(host, b)) for b in range(2)]



@pytest.mark.parametrize("zero_stage", [0, 3])
@pytest.mark.slow
def test_resume_is_bitwise(tmp_path, zero_stage):
    def run(run_dir, steps, resume="", **overrides):
        config = small_config(str(run_dir), steps=steps, resume=resume, sample_depth=3, zero_stage=zero_stage,
                              **overrides)
        trainer = GRPOTrainer(config, scorer=TextRewardScorer(), echo=_quiet)
        trainer.train()
        return trainer

    # Checkpoints after every step (the two newest kept) do not disturb the run.
    straight = run(tmp_path / "straight", 4, save_every=1, keep_checkpoints=2)
    assert sorted(p.name for p in (tmp_path / "straight" / "checkpoints").glob("step_*")) == [
        "step_000003", "step_000004"]
    run(tmp_path / "halves", 2)
    resumed = run(tmp_path / "other", 4, resume=str(tmp_path / "halves"))
    assert resumed.step == 4 and resumed.run_dir == tmp_path / "other"
    expected, got = _parameters(straight), _parameters(resumed)
    initial = {checkpoint_name(n): p for n, p in build_tiny_policy(seed=0)[0].named_parameters()}
    assert all(not torch.equal(expected[k], initial[k]) for k in expected)  # training moved every weight
    assert all(torch.equal(expected[k], got[k]) for k in expected)

    def lines(path):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in records]

    straight_lines = lines(tmp_path / "straight" / "metrics.jsonl")
    assert lines(tmp_path / "halves" / "metrics.jsonl") == straight_lines[:2]
    assert lines(tmp_path / "other" / "metrics.jsonl") == straight_lines[2:]


def _reward_curve(tmp_path, name: str, steps: int) -> list[float]:
    config = small_config(str(tmp_path / name), steps=steps, states_per_step=4, group_size=4, max_response_tokens=8,
                          micro_batch_size=16, lr=3e-2, kl_coef=0.0)
    trainer = GRPOTrainer(config, scorer=TextRewardScorer(), echo=_quiet)
    assert trainer.engine.reference is None  # kl_coef 0: no reference model is loaded
    return [trainer.train_step()["reward/overall"] for _ in range(steps)]


@pytest.mark.slow
def test_reward_rises_and_does_not_with_the_advantage_sign_flipped(tmp_path, monkeypatch):
    # The reward: the share of digits in the response (about 0.05 for the random tiny model).
    steps = 12
    learned = _reward_curve(tmp_path, "learn", steps)
    start, end = np.mean(learned[:4]), np.mean(learned[-4:])
    assert end > 0.3 and end > start + 0.2, learned

    group_advantages = algorithms.group_advantages
    monkeypatch.setattr(algorithms, "group_advantages", lambda *a, **k: -group_advantages(*a, **k))
    flipped = _reward_curve(tmp_path, "flipped", steps)
    assert flipped[:1] == learned[:1]  # the same start: only the update differs
    assert np.mean(flipped[-4:]) <= np.mean(flipped[:4]), flipped
