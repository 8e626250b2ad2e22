"""bridges.rewards.trl_env: multi-turn play through TRL's environment_factory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("datasets")

from bridges import export  # noqa: E402
from bridges.rewards.trl_env import GameEnvironment, TextGameEnvironment  # noqa: E402


@pytest.fixture(scope="module")
def row():
    return export.to_dataset("2048", 1, seed=2, mode="legal", depth=3, progress=False, image_size=64)[0]


@pytest.mark.slow
def test_reset_and_move_play_the_exported_state(row):
    env = GameEnvironment()
    first = env.reset(**row)
    game, state = export.load_state(row["answer"])
    assert first[0]["type"] == "image" and np.array_equal(np.asarray(first[0]["image"]), np.asarray(game.render(state)))
    assert game.prompt() in first[1]["text"]
    legal = int(np.flatnonzero(np.asarray(state.legal_action_mask))[0])
    result = env.move(game.format_answer(legal))
    key = jax.random.split(jax.random.key(json.loads(row["answer"])["score_seed"]))[1]
    want = game.step(state, legal, key)
    assert np.array_equal(np.asarray(env.state.board), np.asarray(want.board))
    assert np.array_equal(np.asarray(result[0]["image"]), np.asarray(game.render(want)))
    assert "Move 1: legal" in result[1]["text"]
    assert env.get_reward() == (1.0 if float(want.reward) > 0 else -1.0)  # the paper's sign shaping
    env.move("no answer")
    assert env.moves == 2 and "unreadable" in env.move("x")[1]["text"]


@pytest.mark.slow
def test_text_variant_and_no_move_reward(row):
    env = TextGameEnvironment()
    (part,) = env.reset(**row)
    game, state = export.load_state(row["answer"])
    assert part["type"] == "text" and game.describe(state) in part["text"]
    assert env.get_reward() == -1.0  # never moved: the invalid-move reward
    with pytest.raises(ValueError, match="'answer' column"):
        env.reset(prompt=[])


@pytest.mark.slow
def test_trl_grpo_trainer_plays_through_the_move_tool_with_images(tmp_path):
    trl = pytest.importorskip("trl")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    from learner.models import build_tiny_policy

    ds = export.to_dataset("2048", 2, seed=0, image_size=64, mode="legal", depth=3, progress=False)
    model, processor = build_tiny_policy()
    # TRL parses tool calls for the chat templates it knows; the tiny model takes its Qwen3-VL one.
    template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_vl.jinja").read_text()
    processor.chat_template = processor.tokenizer.chat_template = template
    tok = processor.tokenizer
    # A random model never writes a tool call: bias sampling (each prefix of the call after the
    # assistant turn's opening) so that it calls move, and TRL runs the tool and the next turn.
    opening = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    call = tok.encode('<tool_call>\n{"name": "move", "arguments": {"answer": "<answer>1</answer>"}}\n</tool_call>'
                      "<|im_end|>", add_special_tokens=False)
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], save_strategy="no", seed=0,
        num_generations=2, per_device_train_batch_size=2, max_completion_length=160, max_steps=1, logging_steps=1,
        learning_rate=1e-3, max_tool_calling_iterations=2, disable_tqdm=True,
        generation_kwargs={"sequence_bias": [[opening + call[: k + 1], 100.0] for k in range(len(call))]},
    )
    trainer = GRPOTrainer(model=model, args=args, train_dataset=ds.select_columns(["prompt", "answer"]),
                          processing_class=processor, environment_factory=GameEnvironment)
    trainer.train()
    (log, *_) = trainer.state.log_history
    assert log["tools/call_frequency"] > 0 and log["tools/failure_frequency"] == 0
    assert "rewards/GameEnvironment/mean" in log
    played = trainer._environment_pool[None]
    assert played and all(e.moves >= 1 for e in played)
