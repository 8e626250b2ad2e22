"""bridges.protocol evaluation presets (--protocol paper / lmgame)."""

from __future__ import annotations

import jax
import pytest

import jaxgym
from bridges.protocol import eval_preset


@pytest.mark.slow
def test_lmgame_presets_are_lmgame_benchs_settings():
    g2048 = eval_preset("lmgame", "2048")
    assert (g2048.runs, g2048.steps, g2048.warmup) == (3, 1000, 0)
    env = jaxgym.make("2048", **g2048.params)
    assert env.size == 4
    swap = eval_preset("lmgame", "swap-v0")
    assert (swap.runs, swap.steps, swap.warmup) == (3, 50, 0)
    env = jaxgym.make("swap", **swap.params, image_size=112)
    assert (env.size, env.kinds, env.max_moves) == (8, 4, 50)  # 8x8, 4 candy colours, 50 moves
    state = env.reset(jax.random.key(0))
    assert int(state.board.max()) < 4
    play = jax.jit(lambda s: jax.lax.fori_loop(0, 50, lambda i, s: env.step(s, 0, jax.random.key(i)), s))
    assert bool(play(state).truncated)


def test_paper_preset_and_errors():
    paper = eval_preset("paper", "shisensho")
    assert (paper.runs, paper.steps, paper.warmup, paper.params) == (10, 100, None, {})
    with pytest.raises(ValueError, match="protocol='atari' is unknown"):
        eval_preset("atari", "2048")
    with pytest.raises(ValueError, match="no setting for game 'shisensho'"):
        eval_preset("lmgame", "shisensho")


def test_evaluate_cli_protocol_flag_fills_defaults_and_flags_override():
    from learner.evaluate import game_params, parse_args

    args = parse_args(["--game", "swap", "--policy", "random", "--protocol", "lmgame"])
    assert (args.runs, args.steps, args.warmup) == (3, 50, 0)
    assert game_params(args) == {"size": 8, "colors": 4, "shapes": 1, "max_moves": 50}
    args = parse_args(["--game", "2048", "--policy", "random", "--protocol", "lmgame", "--runs", "2",
                       "--image-size", "64"])
    assert (args.runs, args.steps) == (2, 1000) and game_params(args) == {"size": 4, "image_size": 64}
    paper = parse_args(["--game", "shisensho", "--policy", "random"])
    assert (paper.runs, paper.steps, paper.warmup) == (10, 100, None) and game_params(paper) == {}
    with pytest.raises(ValueError, match="no setting for game 'shisensho'"):
        parse_args(["--game", "shisensho", "--policy", "random", "--protocol", "lmgame"])
