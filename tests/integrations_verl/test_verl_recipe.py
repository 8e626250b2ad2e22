"""docs/integrations.md's verl recipe, run through verl 0.9.1's own code on a jaxgym export: the
recipe's command-line overrides composed onto verl's ``ppo_trainer`` config by hydra (as
``verl.trainer.main_ppo`` does), verl's dataset class built from that config, and verl's reward
worker loading jaxgym's reward function from that config and scoring a batch, compared with
``bridges.scoring.GroupScorer``.

verl lives in a venv of its own (it pins transformers < 5.11); run these tests with
``bash .ci/build_verl_venv.sh .venv-verl && .venv-verl/bin/python -m pytest tests/integrations_verl``.
CI sets ``JAXGYM_REQUIRE_VERL=1``: then a verl that does not import fails instead of skipping."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from tests.recipes import recipe_block, substitute

if os.environ.get("JAXGYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401
else:
    pytest.importorskip("verl", reason="verl is not installed in this venv; run the verl tests with: bash "
                                       ".ci/build_verl_venv.sh .venv-verl && .venv-verl/bin/python -m pytest "
                                       "tests/integrations_verl")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROWS = 3
DATA = "data/train-00000-of-00001.parquet"


def recipe_overrides(train: Path, val: Path) -> list[str]:
    """The recipe's ``key=value`` overrides, with only the export paths and the checkout's path
    substituted (the recipe's ``...`` stands for the model and resource settings)."""
    block = recipe_block("verl", "bash")
    block = substitute(block, f"exports/shisensho/{DATA}", str(train / DATA))
    block = substitute(block, f"exports/shisensho-val/{DATA}", str(val / DATA))
    block = substitute(block, "/path/to/jaxgym/", f"{ROOT}/")
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:3] == ["python3", "-m", "verl.trainer.main_ppo"], words[:3]
    return [w for w in words[3:] if w != "..."]


def compose_config(overrides: list[str]):
    """verl's PPO config with ``overrides``: the config ``verl.trainer.main_ppo`` loads
    (verl/trainer/main_ppo.py:166, ``@hydra.main(config_path="config", config_name="ppo_trainer")``)."""
    import verl.trainer
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(verl.trainer.__file__).parent / "config"), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from bridges.export import to_dataset
    from learner.models import build_image_processor, build_tiny_tokenizer, make_processor

    root = tmp_path_factory.mktemp("verl")
    to_dataset("shisensho", ROWS, seed=0, out=root / "train", progress=False)
    to_dataset("shisensho", ROWS, seed=1, out=root / "val", progress=False)
    tokenizer = build_tiny_tokenizer()
    tokenizer.save_pretrained(root / "tokenizer")
    # verl's reward worker loads the policy's tokenizer from actor_rollout_ref.model.path
    # (verl/experimental/reward_loop/reward_loop.py:121-125); the recipe's "..." is where users set it.
    config = compose_config([*recipe_overrides(root / "train", root / "val"),
                             f"actor_rollout_ref.model.path={root / 'tokenizer'}"])
    return config, tokenizer, make_processor(tokenizer, build_image_processor())


def test_recipe_keys_reach_verls_config(recipe):
    config, _, _ = recipe
    # verl 0.9.1 reads the reward function from reward.custom_reward_function
    # (verl/trainer/ppo/reward.py:70); the old top-level keys are not read there.
    assert config.reward.custom_reward_function.path == str(ROOT / "bridges/rewards/verl.py")
    assert config.reward.custom_reward_function.name == "compute_score"
    assert (config.data.prompt_key, config.data.image_key, config.data.max_prompt_length) == ("verl_prompt", "images",
                                                                                              1024)


def test_verl_dataset_keeps_every_board_prompt(recipe):
    from verl.trainer.ppo.utils import create_rl_dataset

    config, tokenizer, processor = recipe
    # main_ppo's dataset path (verl/trainer/ppo/utils.py:110-136): RLHFDataset drops every row
    # whose prompt (board image tokens included) is over data.max_prompt_length, and also any row it
    # fails to process (verl/utils/dataset/rl_dataset.py:242-244), so all rows must survive.
    dataset = create_rl_dataset(config.data.train_files, config.data, tokenizer, processor)
    assert len(dataset) == ROWS
    item = dataset[0]
    content = item["raw_prompt"][0]["content"]
    assert [part["type"] for part in content][:1] == ["image"] and content[1]["type"] == "text"
    assert item["data_source"] == "jaxgym/shisensho-v0"

    # The length that filter measures (rl_dataset.py:207-240: chat template, board image resized by
    # qwen_vl_utils, processor) is over verl's default 512 and within the recipe's 1024.
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    messages = dataset._build_messages(dataset.dataframe[0], key=dataset.prompt_key)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images, videos, audios = dataset._process_multi_modal_info(messages, dataset.image_patch_size, dataset.config)
    length = len(build_multimodal_processor_inputs(processor, text=[text], images=images, videos=videos, audio=audios,
                                                   mm_processor_kwargs=dataset.mm_processor_kwargs)["input_ids"][0])
    assert 512 < length <= config.data.max_prompt_length


def test_verl_reward_worker_scores_like_group_scorer(recipe):
    from verl import DataProto
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.dataset.rl_dataset import collate_fn

    from bridges import export
    from bridges.scoring import GroupScorer
    from tests.test_trainer_rewards import _responses

    config, tokenizer, processor = recipe
    dataset = create_rl_dataset(config.data.train_files, config.data, tokenizer, processor)
    rows = [dataset[i] for i in range(len(dataset))]
    groups, expected = [], []
    for row in rows:
        env, state = export.load_state(row["reward_model"]["ground_truth"])
        group = _responses(env, state)
        groups.append(group)
        seed = json.loads(row["reward_model"]["ground_truth"])["score_seed"]
        expected.append(GroupScorer(env).score(jax.tree.map(lambda x: x[None], state), [group], jax.random.key(seed)))
    n = len(groups[0])

    # The trainer's batch: collated dataset rows, repeated n times interleaved (one group per prompt),
    # with the responses' token ids (verl/trainer/ppo/ray_trainer.py builds it the same way).
    batch = DataProto.from_single_dict(collate_fn(rows)).repeat(repeat_times=n, interleave=True)
    ids = [tokenizer.encode(text, add_special_tokens=False) for group in groups for text in group]
    width = max(map(len, ids))
    responses = torch.full((len(ids), width), tokenizer.pad_token_id or 0, dtype=torch.long)
    response_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, seq in enumerate(ids):
        responses[i, : len(seq)] = torch.tensor(seq)
        response_mask[i, : len(seq)] = 1
    prompts = torch.ones((len(ids), 4), dtype=torch.long)
    batch = batch.union(DataProto.from_dict(tensors={
        "prompts": prompts, "responses": responses,
        "attention_mask": torch.cat([torch.ones_like(prompts), response_mask], dim=1)}))

    # verl's reward worker: the reward manager (naive) with the custom function loaded from the
    # config (verl/experimental/reward_loop/reward_loop.py:131-147, verl/trainer/ppo/reward.py:50-86),
    # which decodes each response and calls compute_score(data_source=..., solution_str=...,
    # ground_truth=..., extra_info=...) (verl/experimental/reward_loop/reward_manager/naive.py:34-99).
    worker = RewardLoopWorker(config)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(batch))

    assert [o["reward_score"] for o in outputs] == [float(v) for s in expected for v in np.asarray(s.overall)[0]]
    for name in ("game", "format", "perception"):
        assert [o["reward_extra_info"][name] for o in outputs] == [
            float(v) for s in expected for v in np.asarray(getattr(s, name))[0]]
    assert len({o["reward_score"] for o in outputs}) > 1  # the responses differ in reward: a real comparison
