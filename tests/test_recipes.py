"""docs/integrations.md's TRL recipe, run as written: the page's python block is executed with only
the model id, the dataset path and CPU settings substituted, so a batch or ``num_generations`` that
TRL refuses fails here."""

from __future__ import annotations

import os

import pytest

from tests.recipes import recipe_block, substitute

pytest.importorskip("trl")


def test_trl_recipe_block_is_found():
    block = recipe_block("TRL", "python")
    assert "GRPOTrainer(" in block and "trainer.train()" in block


@pytest.mark.slow
def test_trl_recipe_runs_as_written(tmp_path):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from bridges.export import to_dataset
    from learner.models import build_tiny_policy

    # 4 states: the recipe's per_device_train_batch_size 10 with num_generations 5 is 2 prompts a step.
    to_dataset("shisensho", 4, seed=0, out=tmp_path / "export", progress=False)
    code = recipe_block("TRL", "python")
    # A model id is downloaded; the tiny random Qwen2.5-VL stands in, with its processor (its
    # processor does not round-trip through AutoProcessor, so it is passed, not saved and loaded).
    code = substitute(code, 'model="Qwen/Qwen2.5-VL-3B-Instruct",',
                      "model=tiny_model, processing_class=tiny_processor,")
    code = substitute(code, '"exports/shisensho/data/*.parquet"', repr(str(tmp_path / "export/data/*.parquet")))
    code = substitute(code, 'output_dir="runs/trl",', f"output_dir={str(tmp_path / 'trl')!r}, " + (
        "use_cpu=True, bf16=False, report_to=[], save_strategy='no', max_steps=1, max_completion_length=8, "
        "logging_steps=1,"))
    model, processor = build_tiny_policy()
    namespace = {"tiny_model": model, "tiny_processor": processor}
    exec(compile(code, "docs/integrations.md (TRL recipe)", "exec"), namespace)

    trainer = namespace["trainer"]
    # The recipe's own batch and group were accepted and one real step ran with them.
    assert (trainer.args.num_generations, trainer.args.per_device_train_batch_size) == (5, 10)
    assert trainer.state.global_step == 1
    step = next(h for h in trainer.state.log_history if "loss" in h)
    for name in ("game_reward", "format_reward", "perception_reward"):
        assert f"rewards/{name}/mean" in step
    # w_perception=1.0 (what jaxgym's main job trains with) reached TRL's weights.
    assert float(trainer.reward_weights[2]) == 1.0
