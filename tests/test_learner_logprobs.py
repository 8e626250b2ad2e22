"""Response log-probs of a VLM batch against a naive reference; the HF rollout engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.batching import chat_prompt, collate, encode_prompts
from learner.logprobs import response_logprobs, token_logprobs
from learner.models import banned_token_ids, build_tiny_policy
from learner.rollout import HFRolloutEngine, SamplingParams


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny_policy(seed=0)
    return model, processor


def _images(seed: int, count: int, size: tuple[int, int] = (56, 84)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def _prompts(processor, texts, images):
    return encode_prompts(processor, [chat_prompt(processor, t) for t in texts], images)


def _responses(processor, seed: int, lengths) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    banned = set(banned_token_ids_of(processor))
    allowed = [t for t in range(len(processor.tokenizer)) if t not in banned]
    return [rng.choice(allowed, size=n).tolist() for n in lengths]


def banned_token_ids_of(processor):
    ids = processor.tokenizer.convert_tokens_to_ids
    return [ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")]


def naive_logprobs(model, batch, temperature: float = 1.0) -> torch.Tensor:
    """Full-sequence logits and an fp32 log-softmax over the whole vocabulary: the reference."""
    out = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values,
        image_grid_thw=batch.image_grid_thw,
        mm_token_type_ids=(batch.input_ids == model.config.image_token_id).int(),
    )
    p = batch.prompt_length
    logp = torch.log_softmax(out.logits.float() / temperature, dim=-1)[:, p - 1 : -1]
    return logp.gather(-1, batch.response_ids[..., None]).squeeze(-1) * batch.response_mask


def test_logprobs_equal_the_naive_full_softmax(tiny):
    model, processor = tiny
    prompts = _prompts(processor, ["Describe the board.", "Which move? Answer now."], _images(0, 2))
    responses = _responses(processor, 1, [7, 3, 5])
    batch = collate(prompts, [0, 1, 1], responses, pad_token_id=processor.tokenizer.pad_token_id)
    for temperature in (1.0, 0.7):
        with torch.no_grad():
            fast, entropy = response_logprobs(model, batch, temperature=temperature, chunk_tokens=4, with_entropy=True)
            slow = naive_logprobs(model, batch, temperature)
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert (fast[batch.response_mask == 0] == 0).all()
    assert (entropy[batch.response_mask > 0] > 0).all()
    assert (entropy[batch.response_mask > 0] <= np.log(len(processor.tokenizer)) + 1e-4).all()


def test_chunked_gradients_equal_the_naive_ones(tiny):
    model, processor = tiny
    prompts = _prompts(processor, ["Describe the board."], _images(2, 1))
    batch = collate(prompts, [0, 0], _responses(processor, 3, [6, 4]), pad_token_id=0)
    weights = torch.randn(batch.response_mask.shape, generator=torch.Generator().manual_seed(0))
    grads = []
    for fn in (lambda: response_logprobs(model, batch, chunk_tokens=3)[0], lambda: naive_logprobs(model, batch)):
        model.zero_grad()
        (fn() * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(model.parameters()))
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4)
    model.zero_grad()


def test_logprobs_do_not_depend_on_padding_or_batch_composition(tiny):
    model, processor = tiny
    texts = ["Hi.", "A much longer prompt that needs a lot of left padding for the short one."]
    images = np.concatenate([_images(4, 1), _images(5, 1)])
    prompts = _prompts(processor, texts, images)
    short_response, long_response = _responses(processor, 6, [3, 12])
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        alone, _ = response_logprobs(model, collate(prompts, [0], [short_response], pad_token_id=pad))
        together, _ = response_logprobs(model, collate(prompts, [1, 0], [long_response, short_response],
                                                       pad_token_id=pad))
        other_alone, _ = response_logprobs(model, collate(prompts, [1], [long_response], pad_token_id=pad))
    # Row 1 now has many left-padding tokens and 9 right-padding positions.
    torch.testing.assert_close(together[1, :3], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[0], other_alone[0], atol=1e-5, rtol=1e-5)
    assert (together[1, 3:] == 0).all()


def test_token_logprobs_chunking_and_bounds():
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden, labels = torch.randn(11, 8, generator=gen), torch.randint(0, 50, (11,), generator=gen)
    expected = torch.log_softmax(head(hidden), -1).gather(-1, labels[:, None]).squeeze(-1)
    for chunk in (1, 4, 11, 100):
        logp, _ = token_logprobs(hidden, labels, head, chunk_tokens=chunk)
        torch.testing.assert_close(logp, expected)
    with pytest.raises(ValueError, match="chunk_tokens=0"):
        token_logprobs(hidden, labels, head, chunk_tokens=0)


def test_hf_rollouts_match_the_trainers_logprobs_and_never_sample_vision_tokens(tiny):
    model, processor = tiny
    engine = HFRolloutEngine(model, processor)
    images = _images(7, 2)
    # Make the image pad token the model's favourite: the engine must still never emit it.
    image_pad = model.config.image_token_id
    # A checkpoint's own sampling defaults (Qwen2.5-VL ships these) must not leak into rollouts.
    saved_generation_config = model.generation_config
    model.generation_config = type(saved_generation_config)(**{
        **saved_generation_config.to_dict(), "do_sample": True, "top_k": 1, "top_p": 0.001, "temperature": 0.1,
        "repetition_penalty": 1.05})
    with torch.no_grad():
        saved = model.lm_head.weight[image_pad].clone()
        model.lm_head.weight[image_pad] = model.model.language_model.norm.weight * 50
    try:
        torch.manual_seed(0)
        generation = engine.generate(["Describe the board.", "Move."], images, 3,
                                     SamplingParams(temperature=1.0, max_new_tokens=9))
        assert len(generation.token_ids) == 6 and len(generation.texts) == 6
        assert len({tuple(t) for t in generation.token_ids[:3]}) == 3  # sampled at temperature 1, not top-1
        sampled = {t for row in generation.token_ids for t in row}
        assert not sampled & set(banned_token_ids(model.config))
        # ... although the unbanned distribution puts most of its mass on it.
        assert max(max(row) for row in generation.logprobs) < np.log(0.5)
        prompts = _prompts(processor, ["Describe the board.", "Move."], images)
        batch = collate(prompts, [0, 0, 0, 1, 1, 1], generation.token_ids, pad_token_id=0)
        with torch.no_grad():
            trainer_logp, _ = response_logprobs(model, batch)
        for row, logp in enumerate(generation.logprobs):
            torch.testing.assert_close(torch.tensor(logp), trainer_logp[row, : len(logp)], atol=1e-4, rtol=1e-4)
    finally:
        model.generation_config = saved_generation_config
        with torch.no_grad():
            model.lm_head.weight[image_pad] = saved


def test_sync_weights_changes_what_a_separate_engine_generates(tiny, tmp_path):
    model, processor = tiny
    other, _ = build_tiny_policy(seed=1)
    copy, _ = build_tiny_policy(seed=0)
    engine = HFRolloutEngine(copy, processor)
    images = _images(8, 1)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    before = engine.generate(["Describe the board."], images, 1, greedy).token_ids
    target = HFRolloutEngine(other, processor).generate(["Describe the board."], images, 1, greedy).token_ids
    assert before != target
    from learner.models import checkpoint_name

    engine.sync_weights((checkpoint_name(n), p.detach()) for n, p in other.named_parameters())
    assert engine.generate(["Describe the board."], images, 1, greedy).token_ids == target
    with pytest.raises(KeyError, match="no parameter named 'model.language_model.norm.weight'"):
        engine.sync_weights([("model.language_model.norm.weight", torch.zeros(1))])


def _tiny_family_model(model_type: str, processor):
    """A tiny random Qwen2-VL or Qwen3-VL (the other members of the family) for ``processor``."""
    ids = processor.tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(processor.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2,
                rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 3, 3]))
    tokens = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                  vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    torch.manual_seed(0)
    if model_type == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
        return Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **tokens))
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    text = dict(text, head_dim=16)
    text["rope_parameters"] = dict(text["rope_parameters"], mrope_interleaved=True)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                  deepstack_visual_indexes=[1], num_position_embeddings=256)
    return Qwen3VLForConditionalGeneration(Qwen3VLConfig(text_config=text, vision_config=vision, **tokens))


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen3_vl"])
def test_other_qwen_vl_families_load_generate_and_score(tiny, tmp_path, model_type):
    from transformers import GenerationConfig

    from learner.models import export_policy, load_policy

    _, processor = tiny
    model = _tiny_family_model(model_type, processor)
    model.generation_config = GenerationConfig(eos_token_id=[processor.tokenizer.eos_token_id], pad_token_id=0)
    model, processor = load_policy(str(export_policy(model, processor, tmp_path / model_type)))
    assert model.config.model_type == model_type
    images = _images(9, 2)
    torch.manual_seed(0)
    generation = HFRolloutEngine(model, processor).generate(["Hi.", "Move."], images, 2,
                                                            SamplingParams(max_new_tokens=5))
    batch = collate(_prompts(processor, ["Hi.", "Move."], images), [0, 0, 1, 1], generation.token_ids,
                    pad_token_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        fast, _ = response_logprobs(model, batch, chunk_tokens=3)
        slow = naive_logprobs(model, batch)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    for row, logp in enumerate(generation.logprobs):
        torch.testing.assert_close(torch.tensor(logp), fast[row, : len(logp)], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_generation_from_the_step_encoding_equals_processing_the_boards_again(tiny):
    from learner.rollout import generation_inputs

    model, processor = tiny
    texts, images = ["Describe the board.", "Move."], _images(5, 2)
    encoded = _prompts(processor, texts, images)
    again = processor(text=[chat_prompt(processor, t) for t in texts for _ in range(3)],
                      images=[im for im in images for _ in range(3)], return_tensors="pt", padding=True,
                      padding_side="left")
    built = generation_inputs(processor, encoded, 3)
    assert set(built) == set(again)
    for key, value in again.items():
        torch.testing.assert_close(built[key], value, rtol=0, atol=0, msg=key)
    engine, sampling = HFRolloutEngine(model, processor), SamplingParams(temperature=1.0, max_new_tokens=5)
    torch.manual_seed(3)
    processed = engine.generate(texts, images, 3, sampling)
    torch.manual_seed(3)
    reused = engine.generate(texts, images, 3, sampling, encoded=encoded)
    assert reused.token_ids == processed.token_ids and reused.logprobs == processed.logprobs
    with pytest.raises(ValueError, match="encoded holds 2 prompts, not the 1 given"):
        engine.generate(texts[:1], images[:1], 3, sampling, encoded=encoded)
