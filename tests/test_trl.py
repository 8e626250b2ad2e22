"""TRL end to end: GRPOTrainer trains the tiny Qwen2.5-VL on an exported jaxgym dataset with
jaxgym's reward functions, on CPU."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402


@pytest.mark.slow
def test_trl_grpo_trainer_runs_real_steps_with_jaxgym_rewards(tmp_path):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    from bridges.export import to_dataset
    from bridges.rewards.trl import make_reward_funcs, reward_weights
    from learner.models import build_tiny_policy

    ds = to_dataset("2048", 8, seed=0, image_size=64, mode="legal", depth=3, progress=False)
    model, processor = build_tiny_policy()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    tok = processor.tokenizer
    # A random-weight model never writes an answer, so every reward would be equal and the
    # advantages zero. Biasing sampling (each prefix after the assistant turn's opening) makes
    # every completion "<answer>d</answer>" with d uniform in 0..9: directions 0..3 are legal
    # or not on each board, 4..9 are invalid moves. That gives reward variance, a real update.
    opening = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    answer, close = tok.encode("<answer>", add_special_tokens=False), tok.encode("</answer>", add_special_tokens=False)
    digits = [tok.encode(str(d), add_special_tokens=False) for d in range(10)]
    assert all(len(d) == 1 for d in digits)
    bias = [opening + answer[: k + 1] for k in range(len(answer))]
    bias += [opening + answer + d + close[:k] for d in digits for k in range(len(close) + 1)]
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], save_strategy="no", seed=0,
        num_generations=8, per_device_train_batch_size=8, max_completion_length=8, max_steps=2, logging_steps=1,
        learning_rate=1e-3, reward_weights=reward_weights(ds[0]["answer"]),
        generation_kwargs={"sequence_bias": [[b, 100.0] for b in bias]},
    )
    trainer = GRPOTrainer(model=model, reward_funcs=make_reward_funcs(shaping="legal"), args=args,
                          train_dataset=ds, processing_class=processor)
    trainer.train()

    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert len(steps) == 2 and trainer.state.global_step == 2
    for name in ("game_reward", "format_reward", "perception_reward"):
        assert all(f"rewards/{name}/mean" in h for h in steps)
    games = [h["rewards/game_reward/mean"] for h in steps]
    assert all(-1.0 <= g <= 1.0 for g in games) and max(h["reward_std"] for h in steps) > 0
    changed = sum(float((before[n] - p.detach()).abs().sum()) for n, p in model.named_parameters())
    assert changed > 0
    assert torch.isfinite(torch.tensor([h["loss"] for h in steps])).all()
