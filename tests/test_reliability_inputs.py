"""Hostile inputs at the edges: wide integer actions at the jit boundary, huge answers,
config values that are not what they look like, boards too small to draw."""

from __future__ import annotations

import time
import tracemalloc

import jax
import numpy as np
import pytest

import jaxgym
from jaxgym.core import host_actions

WIDE = np.int64(2**40 + 3)  # wraps to 3 when narrowed to int32


@pytest.mark.slow
def test_wide_integer_actions_at_the_jit_boundary():
    env = jaxgym.make("2048")
    key = jax.random.key(0)
    state = env.reset(key)
    assert bool(jax.jit(env.step)(state, np.int64(3), key).last_action_legal)  # move 3 is legal here
    # What a user of jax.jit(env.step) hits: JAX narrows the int64 by wrapping before step runs
    # (x64 off), so this is move 3, as documented in Env.step and host_actions.
    wrapped = jax.jit(env.step)(state, np.int64(2**40 + 3), key)
    assert bool(wrapped.last_action_legal)
    # The documented way across the boundary: host_actions clamps, the action stays a no-op.
    stepped = jax.jit(env.step)(state, host_actions(np.int64(2**40 + 3)), key)
    assert not bool(stepped.last_action_legal)
    assert np.array_equal(np.asarray(stepped.board), np.asarray(state.board))
    assert not bool(env.step(state, WIDE, key).last_action_legal)  # unjitted: clamped inside step
    # A Python int that does not fit is refused by JAX itself, clearly.
    with pytest.raises(OverflowError, match="overflow"):
        jax.jit(env.step)(state, 2**40 + 3, key)


@pytest.mark.slow
def test_the_vector_env_clamps_wide_actions_before_its_jit():
    from jaxgym.vector_env import GymnasiumVectorEnv

    vec = GymnasiumVectorEnv("2048", num_envs=2)
    vec.reset(seed=0)
    _, _, _, _, info = vec.step(np.array([WIDE, -WIDE], np.int64))
    assert not np.asarray(info["last_action_legal"]).any()


def test_host_actions_refuses_what_is_not_an_integer():
    with pytest.raises(TypeError, match="float"):
        host_actions(np.array([1.5]))
    with pytest.raises(TypeError, match="bool"):
        host_actions(np.array([True]))
    assert host_actions(np.array([2**31 - 1, 0], np.uint64)).tolist() == [2**31 - 1, 0]


@pytest.mark.parametrize("game", ["2048", "shisensho", "swap"])
def test_a_huge_answer_block_is_parsed_in_bounded_time_and_memory(game):
    env = jaxgym.make(game)
    text = "<answer>" + "\ufdfa" * 1_000_000 + "</answer>"  # NFKC expands U+FDFA to 18 characters
    tracemalloc.start()
    start = time.perf_counter()
    result = env.parse_answer(text)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result == "unparseable"
    assert seconds < 0.25, seconds  # NFKC of the whole block took 1.5 s
    # str.lower's worst-case buffer for the 1M-character response is 14 MB; NFKC of the block added 39 MB.
    assert peak < 20 * 2**20, peak
    # Short answers parse as before, also behind a long preamble outside the block.
    assert env.parse_answer("x" * 100_000 + env.format_answer(1)) == 1


@pytest.mark.slow
def test_make_refuses_an_image_size_the_board_cannot_be_drawn_at():
    with pytest.raises(ValueError, match=r"image_size \(84, 84\) is too small for a 8x8 Swap board"):
        jaxgym.make("swap", image_size=84)
    env = jaxgym.make("swap", size=4, image_size=84)  # a smaller board fits
    assert env.render(env.reset(jax.random.key(0))).shape == (84, 84, 3)
