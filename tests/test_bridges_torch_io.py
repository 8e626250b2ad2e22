"""Boards to model inputs: DLPack zero-copy into torch, PIL and numpy views, prompts."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from bridges.torch_io import images_to_numpy, images_to_pil, images_to_torch, prompts_for
from tests.bridges_support import GAMES, small_env

BIG_BATCH = 4096


@pytest.fixture(scope="module")
def big_batch():
    env = small_env("2048")
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), BIG_BATCH))
    images = jax.jit(jax.vmap(env.render))(states)
    return env, images.block_until_ready()


@pytest.mark.slow
def test_torch_tensor_shares_the_jax_buffer_of_a_4096_board_batch(big_batch):
    env, images = big_batch
    tensor = images_to_torch(images)
    assert tensor.dtype == torch.uint8
    assert tuple(tensor.shape) == (BIG_BATCH, *env.image_shape)
    assert images.unsafe_buffer_pointer() == tensor.data_ptr()
    assert tensor.is_contiguous()
    # Same pixels, read through torch.
    picks = [0, 1234, BIG_BATCH - 1]
    np.testing.assert_array_equal(tensor[picks].numpy(), np.asarray(images)[picks])


def test_channels_first_is_a_view_of_the_same_memory(big_batch):
    env, images = big_batch
    tensor = images_to_torch(images, channels_first=True)
    height, width, _ = env.image_shape
    assert tuple(tensor.shape) == (BIG_BATCH, 3, height, width)
    assert tensor.data_ptr() == images.unsafe_buffer_pointer()
    np.testing.assert_array_equal(tensor[7].permute(1, 2, 0).numpy(), np.asarray(images[7]))


def test_copy_owns_its_memory_and_leaves_jax_untouched(big_batch):
    _, images = big_batch
    before = np.asarray(images[:2]).copy()
    tensor = images_to_torch(images[:2], copy=True)
    assert tensor.data_ptr() != images.unsafe_buffer_pointer()
    tensor.zero_()
    np.testing.assert_array_equal(np.asarray(images[:2]), before)


def test_numpy_view_is_read_only_and_pil_images_match(big_batch):
    env, images = big_batch
    small = images[:3]
    array = images_to_numpy(small)
    assert array.dtype == np.uint8 and array.shape == (3, *env.image_shape)
    with pytest.raises(ValueError):
        array[0, 0, 0, 0] = 1
    pils = images_to_pil(small)
    assert len(pils) == 3
    for pil, expected in zip(pils, array, strict=True):
        assert pil.mode == "RGB" and pil.size == (env.image_shape[1], env.image_shape[0])
        np.testing.assert_array_equal(np.asarray(pil), expected)
    assert len(images_to_pil(small[0])) == 1


def test_numpy_input_is_aliased_too():
    array = np.zeros((2, 8, 8, 3), np.uint8)
    tensor = images_to_torch(array)
    assert tensor.data_ptr() == array.ctypes.data


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 8, 8, 3), np.float32), np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 4), np.uint8)],
    ids=["float", "no-channels", "rgba"],
)
def test_wrong_images_raise_a_clear_error(bad):
    with pytest.raises(ValueError, match="uint8 images of shape"):
        images_to_torch(bad)
    with pytest.raises(ValueError, match="uint8 images of shape"):
        images_to_pil(bad)


@pytest.mark.parametrize("game_id", GAMES)
def test_prompts_per_game(game_id):
    env = small_env(game_id)
    prompts = prompts_for(env, 3)
    assert prompts == [env.prompt()] * 3
    for tag in ("<perception>", "<think>", "<answer>"):
        assert tag in prompts[0]
