"""State sampler: shapes, the paper's defaults, restarts, determinism, resume, compile-once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgym
from bridges.protocol import GENERIC, protocol_for
from bridges.sampler import StateSampler, random_action, random_play
from bridges.scoring import unbatch
from tests.bridges_support import GAMES, leaves_equal, small_env

BATCH = 16
LEGAL_DEPTH = 4  # the scoring tests sample with the same settings: one compile


@pytest.mark.parametrize("game_id", GAMES)
@pytest.mark.slow
def test_paper_sampling_shapes_and_no_finished_boards(game_id):
    env = small_env(game_id)
    sampler = StateSampler(env, seed=1)
    assert sampler.depth == protocol_for(env).sample_depth
    states, images = sampler.sample(BATCH)
    assert images.shape == (BATCH, *env.image_shape) and images.dtype == jnp.uint8
    assert states.legal_action_mask.shape == (BATCH, env.num_actions)
    assert not states.terminated.any() and not states.truncated.any()
    assert states.last_action_legal.all() and not states.reward.any()
    assert (states.step_count <= sampler.depth).all()
    # Every board has a legal move, and the images are the renders of the states.
    assert states.legal_action_mask.any(axis=1).all()
    np.testing.assert_array_equal(np.asarray(images[3]), np.asarray(env.render(unbatch(states, 3))))


@pytest.mark.parametrize("game_id", GAMES)
@pytest.mark.slow
def test_same_seed_same_states_and_resume(game_id):
    env = small_env(game_id)
    a, b = StateSampler(env, seed=5), StateSampler(env, seed=5)
    first_a, _ = a.sample(BATCH)
    first_b, _ = b.sample(BATCH)
    assert leaves_equal(first_a, first_b)
    saved = a.state_dict()
    second_a, images_a = a.sample(BATCH)
    assert not leaves_equal(first_a, second_a)
    # A fresh sampler restored from the saved dict continues exactly where `a` was.
    resumed = StateSampler(env, seed=999)
    resumed.load_state_dict(saved)
    second_r, images_r = resumed.sample(BATCH)
    assert leaves_equal(second_a, second_r)
    np.testing.assert_array_equal(np.asarray(images_a), np.asarray(images_r))
    assert resumed.state_dict() == a.state_dict()


@pytest.mark.slow
def test_different_seeds_differ_and_compile_once():
    env = small_env("2048")
    sampler = StateSampler(env, seed=0)
    s1, _ = sampler.sample(BATCH)
    s2, _ = sampler.sample(BATCH)
    s3, _ = StateSampler(env, seed=1).sample(BATCH)
    assert not leaves_equal(s1, s2) and not leaves_equal(s1, s3)
    compiled = sampler._sample_fn._cache_size()
    sampler.sample(BATCH)
    StateSampler(env, seed=7).sample(BATCH)  # samplers of one env share the compiled program
    assert sampler._sample_fn._cache_size() == compiled


def tile_sum(states) -> np.ndarray:
    board = np.asarray(states.board)
    return np.where(board > 0, 2**board, 0).sum(axis=(1, 2))


@pytest.mark.slow
def test_2048_paper_depth_is_100_uniform_actions():
    # Uniform play takes illegal moves too (no-ops that still count as steps): a board that
    # did not finish a game has exactly 100 steps and fewer tiles than 100 legal moves
    # would have spawned (each legal move spawns a 2 or a 4, after 2 initial spawns).
    env = small_env("2048")
    states, _ = StateSampler(env, seed=3).sample(BATCH)
    full = np.asarray(states.step_count) == 100
    assert full.mean() > 0.5
    assert (tile_sum(states)[full] <= 4 * 102).all()
    assert tile_sum(states)[full].mean() < 2 * 102
    # Legal play spawns at every step.
    legal_play, _ = StateSampler(env, mode="legal", depth=LEGAL_DEPTH, seed=3).sample(BATCH)
    assert (np.asarray(legal_play.step_count) == LEGAL_DEPTH).all()
    assert (tile_sum(legal_play) >= 2 * (LEGAL_DEPTH + 2)).all()


@pytest.mark.parametrize("game_id", GAMES)
@pytest.mark.slow
def test_legal_random_action_picks_legal_actions(game_id):
    env = small_env(game_id)
    states, _ = StateSampler(env, mode="legal", depth=LEGAL_DEPTH, seed=2).sample(BATCH)
    keys = jax.random.split(jax.random.key(0), (BATCH, 32))
    pick = jax.jit(jax.vmap(jax.vmap(lambda s, k: random_action(s, k, "legal", env.num_actions), (None, 0))))
    actions = np.asarray(pick(states, keys))
    mask = np.asarray(states.legal_action_mask)
    assert np.take_along_axis(mask, actions, axis=1).all()


@pytest.mark.slow
def test_finished_boards_restart_during_random_play():
    # A time limit of 7 steps inside 30 random steps: every board is truncated and restarts
    # (at steps 7, 14, 21, 28), so it ends with 2 steps since its last reset.
    env = jaxgym.TimeLimit(small_env("2048"), max_steps=7)
    play = jax.jit(jax.vmap(lambda s, k: random_play(env, s, k, 30, "legal")))
    start = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), BATCH))
    end = play(start, jax.random.split(jax.random.key(1), BATCH))
    finished = np.asarray(end.terminated)
    assert not finished.any() and not np.asarray(end.truncated).any()
    np.testing.assert_array_equal(np.asarray(end.step_count), 2)


@pytest.mark.slow
def test_random_depth_mode_spreads_depths():
    env = small_env("2048")
    states, _ = StateSampler(env, mode="random-depth", depth=40, seed=0).sample(256)
    counts = np.asarray(states.step_count)
    assert counts.min() >= 0 and counts.max() <= 40
    assert len(np.unique(counts)) > 20


def test_depth_zero_is_fresh_boards():
    env = small_env("2048")
    sampler = StateSampler(env, mode="uniform", depth=0, seed=0)
    states, _ = sampler.sample(BATCH)
    assert (np.asarray(states.step_count) == 0).all()
    assert ((np.asarray(states.board) > 0).sum(axis=(1, 2)) == 2).all()


def test_unknown_games_get_the_generic_protocol():
    assert protocol_for("no-such-game") == GENERIC


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="nope"), "mode="),
        (dict(mode="legal"), "needs a depth"),
        (dict(depth=-1), "depth=-1"),
        (dict(depth=1.5), "depth=1.5"),
        (dict(seed="x"), "seed"),
    ],
)
def test_bad_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StateSampler(small_env("2048"), **kwargs)


def test_bad_resume_and_batch_size_raise():
    env = small_env("2048")
    saved = StateSampler(env, mode="legal", depth=3).state_dict()
    with pytest.raises(ValueError, match="cannot resume"):
        StateSampler(env).load_state_dict(saved)
    with pytest.raises(ValueError, match="batch_size"):
        StateSampler(env).sample(0)
