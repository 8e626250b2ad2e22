"""jaxgym.gym_env: every game as a single gymnasium env with text actions."""

from __future__ import annotations

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

import jaxgym  # noqa: E402
from jaxgym.gym_env import JaxgymEnv  # noqa: E402
from tests.bridges_support import GAMES, small_env  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("game", GAMES)
def test_every_game_makes_and_passes_the_env_checker(game):
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(f"jaxgym/{game}", render_mode="rgb_array", image_size=small_env(game).image_size[0])
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=3)
    assert obs["image"].shape == small_env(game).image_shape and obs["image"].dtype == np.uint8
    assert obs["perception"] == small_env(game).describe(env.unwrapped._state)
    assert obs["legal_action_mask"].shape == (small_env(game).num_actions,)
    assert np.array_equal(env.render(), obs["image"])


def test_text_actions_are_parsed_with_the_games_parser():
    env = gymnasium.make("jaxgym/2048-v0", image_size=64, max_steps=3)
    obs, _ = env.reset(seed=0)
    again, _ = env.reset(seed=0)
    assert obs["perception"] == again["perception"] and np.array_equal(obs["image"], again["image"])
    game = small_env("2048-v0")
    legal = int(np.flatnonzero(obs["legal_action_mask"])[0])
    obs, reward, terminated, truncated, info = env.step(f"<think>go</think>{game.format_answer(legal)}")
    assert info["parsed"] and info["legal"] and info["action"] == legal and info["step_count"] == 1
    _, reward, _, truncated, info = env.step("no answer here")
    assert not info["parsed"] and not info["legal"] and info["action"] == jaxgym.INVALID_ACTION and reward == 0.0
    _, _, _, truncated, _ = env.step("still none")
    assert truncated  # max_steps=3
    with pytest.raises(ValueError, match="answer text"):
        env.step(2)


def test_bad_render_mode_is_named():
    with pytest.raises(ValueError, match="render_mode='human'"):
        JaxgymEnv("2048", render_mode="human")
