"""Boards -> pixel_values in JAX (bridges.model_inputs) equal the HF image processor's output."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import torch

import jaxgym
from bridges.model_inputs import fallback_reason, image_tokens, patch_layout, pixel_values, to_torch
from learner.batching import chat_prompt, encode_prompts
from learner.models import build_image_processor, build_tiny_policy

GAMES = jaxgym.registered_games()
# Multiples of 28 (Qwen2-VL / Qwen2.5-VL: patch 14 x merge 2), square and not.
QWEN2_SIZES = (112, (112, 168), 224)
# Multiples of 32 (Qwen3-VL: patch 16 x merge 2).
QWEN3_SIZES = (128, (128, 192), 256)


def qwen2_processor():
    # As learner/models.py builds the tiny policy's (Qwen's defaults: CLIP mean/std, patch 14).
    return build_image_processor()


def qwen3_processor():
    # transformers maps qwen3_vl to Qwen2VLImageProcessorPil; Qwen3-VL's preprocessor_config.json
    # sets patch 16 and mean = std = 0.5.
    return build_image_processor(patch_size=16, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


@functools.cache
def boards(game: str, size: int | tuple[int, int]) -> np.ndarray:
    """Three boards of ``game`` at ``size``: fresh, and after one and two random legal moves."""
    env = jaxgym.make(game, image_size=size)
    step, render = jax.jit(env.step), jax.jit(env.render)
    state = jax.jit(env.reset)(jax.random.key(1))
    images = [np.asarray(render(state))]
    for i in range(2):
        legal = np.flatnonzero(np.asarray(state.legal_action_mask))
        action = int(np.random.default_rng(i).choice(legal)) if len(legal) else 0
        state = step(state, action, jax.random.key(10 + i))
        images.append(np.asarray(render(state)))
    return np.stack(images)


def assert_same_as_processor(processor, images: np.ndarray) -> None:
    layout = patch_layout(processor, images.shape[1], images.shape[2])
    assert layout is not None, fallback_reason(processor, images.shape[1], images.shape[2])
    values, grid = pixel_values(images, layout)
    reference = processor(images=list(images), return_tensors="np")
    assert values.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(values), reference["pixel_values"])
    np.testing.assert_array_equal(grid, reference["image_grid_thw"])


@pytest.mark.slow
@pytest.mark.parametrize("game", GAMES)
def test_pixel_values_equal_the_qwen2_vl_processor_on_every_game(game):
    processor = qwen2_processor()
    for size in QWEN2_SIZES:
        assert_same_as_processor(processor, boards(game, size))


@pytest.mark.slow
@pytest.mark.parametrize("game", GAMES)
def test_pixel_values_equal_the_qwen3_vl_processor_on_every_game(game):
    processor = qwen3_processor()
    for size in QWEN3_SIZES:
        assert_same_as_processor(processor, boards(game, size))


def test_settings_are_read_from_the_processor_not_assumed():
    # Random bytes, an unusual mean/std/rescale and merge 1 / temporal 3: any hard-coded
    # constant would show.
    processor = build_image_processor(image_mean=[0.1, 0.7, 0.3], image_std=[0.9, 0.2, 0.4], rescale_factor=1 / 200,
                                      merge_size=1, temporal_patch_size=3, patch_size=8, min_pixels=64)
    images = np.random.default_rng(0).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    assert_same_as_processor(processor, images)
    layout = patch_layout(processor, 24, 40)
    assert (layout.patch_size, layout.temporal_patch_size, layout.merge_size) == (8, 3, 1)


def test_pixel_values_reach_torch_without_a_copy():
    processor = qwen2_processor()
    images = np.zeros((2, 56, 56, 3), np.uint8)
    values, _ = pixel_values(images, patch_layout(processor, 56, 56))
    tensor = to_torch(values)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == values.shape
    assert tensor.data_ptr() == values.unsafe_buffer_pointer()


def test_fallback_decision():
    processor = qwen2_processor()
    assert fallback_reason(processor, 448, 448) is None
    assert fallback_reason(processor, 112, 168) is None
    # Not a multiple of 28: the processor resizes, so its pixels are not the board's.
    assert "resizes 100x100 boards to 112x112" in fallback_reason(processor, 100, 100)
    # Over the processor's pixel budget: resized down.
    small_budget = build_image_processor(max_pixels=224 * 224)
    assert "resizes 448x448" in fallback_reason(small_budget, 448, 448)
    assert patch_layout(small_budget, 448, 448) is None
    # Under its minimum: resized up.
    assert "resizes 28x28" in fallback_reason(processor, 28, 28)
    # Resizing off and a side that does not divide into merged patches.
    assert "not a multiple of 28" in fallback_reason(build_image_processor(do_resize=False), 42, 56)
    assert fallback_reason(build_image_processor(do_resize=False), 56, 84) is None
    # Any other processor class (a subclass may change what it computes).
    other = type("CustomImageProcessor", (type(processor),), {})()
    assert "CustomImageProcessor is not a Qwen2-VL-family image processor" in fallback_reason(other, 112, 112)


def test_pixel_values_reject_bad_batches():
    layout = patch_layout(qwen2_processor(), 56, 56)
    with pytest.raises(ValueError, match=r"uint8 batch of shape \(B, H, W, 3\).*float32"):
        pixel_values(np.zeros((1, 56, 56, 3), np.float32), layout)
    with pytest.raises(ValueError, match="50x56 boards are not a multiple of 28"):
        pixel_values(np.zeros((1, 50, 56, 3), np.uint8), layout)
    assert image_tokens(layout, 448, 448) == 256


@pytest.fixture(scope="module")
def tiny_processor():
    return build_tiny_policy()[1]


@pytest.mark.parametrize("batch_type", ["numpy", "jax", "list"])
def test_encode_prompts_equals_the_processor(tiny_processor, batch_type):
    processor = tiny_processor
    images = boards("shisensho-v0", 112)
    texts = [chat_prompt(processor, t) for t in ("Move.", "Which pair?", "Go")]
    batch = {"numpy": images, "jax": jax.numpy.asarray(images), "list": list(images)}[batch_type]
    encoded = encode_prompts(processor, texts, batch)
    reference = processor(text=texts, images=list(images), return_tensors="pt", padding=True, padding_side="left")
    mask = reference["attention_mask"].bool()
    assert encoded.token_ids == [row[m].tolist() for row, m in zip(reference["input_ids"], mask, strict=True)]
    torch.testing.assert_close(encoded.pixel_values, reference["pixel_values"], rtol=0, atol=0)
    assert torch.equal(encoded.image_grid_thw, reference["image_grid_thw"])


def test_encode_prompts_falls_back_to_the_processor_for_a_resized_board(tiny_processor):
    processor = tiny_processor
    images = np.random.default_rng(0).integers(0, 256, (2, 100, 100, 3), dtype=np.uint8)
    texts = [chat_prompt(processor, "Move.")] * 2
    encoded = encode_prompts(processor, texts, images)
    reference = processor(text=texts, images=list(images), return_tensors="pt", padding=True, padding_side="left")
    assert encoded.image_grid_thw.tolist() == [[1, 8, 8]] * 2  # resized to 112x112 by the processor
    torch.testing.assert_close(encoded.pixel_values, reference["pixel_values"], rtol=0, atol=0)
    # Boards of two sizes in one call: the processor too.
    mixed = [images[0], np.zeros((112, 112, 3), np.uint8)]
    assert encode_prompts(processor, texts, mixed).image_grid_thw.tolist() == [[1, 8, 8]] * 2
