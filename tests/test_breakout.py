"""Breakout: MinAtar's dynamics against gymnax's MinBreakout (differential, >= 10,000 steps),
lives and the serve, termination, invariants, text, parser and golden images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgym
from jaxgym import breakout as bo
from jaxgym.core import UNPARSEABLE
from tests.golden import assert_matches_golden

ENV = jaxgym.make("breakout")
# Our actions onto gymnax's minimal action set (0 no-op, 1 left, 2 right): release is a no-op.
GYMNAX_ACTION = jnp.array([0, 0, 2, 1], jnp.int32)


def tracking_or_random(key, state):
    """Half the time follow the ball (so bricks get hit), else a uniform action 0..3."""
    choice_key, action_key = jax.random.split(key)
    track = jnp.where(state.ball_x > state.paddle, bo.RIGHT, jnp.where(state.ball_x < state.paddle, bo.LEFT, bo.STAY))
    uniform = jax.random.randint(action_key, (), 0, 4)
    return jnp.where(jax.random.uniform(choice_key) < 0.5, track, uniform).astype(jnp.int32)


@pytest.mark.slow
def test_differential_against_gymnax_minatar():
    minatar_module = pytest.importorskip("gymnax.environments.minatar.breakout")
    minatar = minatar_module.MinBreakout()
    params = minatar.default_params
    env = jaxgym.make("breakout", lives=1)  # one ball: a lost ball ends both games in the same state
    batch, steps = 512, 60

    def to_gymnax(s):
        return minatar_module.EnvState(
            ball_y=s.ball_y, ball_x=s.ball_x, ball_dir=s.ball_dir, pos=s.paddle,
            brick_map=s.bricks.astype(jnp.float32), strike=s.strike, last_y=s.last_y, last_x=s.last_x,
            time=jnp.int32(0), terminal=jnp.bool_(False),
        )

    def one_step(state, key):
        action_key, step_key, reset_key = jax.random.split(key, 3)
        action = tracking_or_random(action_key, state)
        after = env.step(state, action, step_key)
        _, theirs, reward, done, _ = minatar.step_env(step_key, to_gymnax(state), GYMNAX_ACTION[action], params)
        compared = ~state.terminated & (~state.waiting | (action == bo.RELEASE))
        agree = jnp.stack([
            after.ball_y == theirs.ball_y,
            after.ball_x == theirs.ball_x,
            after.ball_dir == theirs.ball_dir,
            after.paddle == theirs.pos,
            after.last_y == theirs.last_y,
            after.last_x == theirs.last_x,
            after.strike == theirs.strike,
            jnp.all(after.bricks == (theirs.brick_map == 1)),
            after.reward == reward,
            (after.lives < state.lives) == done,
        ])
        fresh = env.reset(reset_key)
        following = jax.tree.map(lambda f, a: jnp.where(after.terminated, f, a), fresh, after)
        return following, (compared, agree, after.reward)

    @jax.jit
    def run(key):
        keys = jax.random.split(key, batch)
        states = jax.vmap(env.reset)(keys)
        step_keys = jax.random.split(jax.random.fold_in(key, 1), (steps, batch))
        _, out = jax.lax.scan(lambda s, k: jax.vmap(one_step)(s, k), states, step_keys)
        return out

    compared, agree, rewards = (np.asarray(v) for v in run(jax.random.key(0)))
    names = ["ball_y", "ball_x", "ball_dir", "paddle", "last_y", "last_x", "strike", "bricks", "reward", "lost"]
    assert compared.sum() >= 10_000, compared.sum()
    for i, name in enumerate(names):
        bad = compared & ~agree[..., i]
        assert not bad.any(), f"{name} differs from gymnax at {np.argwhere(bad)[:5].tolist()}"
    assert rewards[compared].sum() > 100, "too few bricks broken for the test to mean much"
    print(f"compared {compared.sum()} steps, {int(rewards[compared].sum())} bricks broken")


STEP = jax.jit(ENV.step)


@pytest.mark.slow
def test_the_ball_waits_for_release_and_a_lost_ball_costs_a_life():
    state = ENV.reset(jax.random.key(0))
    assert bool(state.waiting) and int(state.lives) == 5 and int(state.ball_y) == bo.SERVE_ROW
    held = STEP(state, bo.RIGHT, jax.random.key(1))
    assert (int(held.ball_y), int(held.ball_x)) == (int(state.ball_y), int(state.ball_x))
    assert int(held.paddle) == 5 and bool(held.waiting) and bool(held.last_action_legal)
    released = STEP(held, bo.RELEASE, jax.random.key(2))
    assert not bool(released.waiting) and int(released.ball_y) == bo.SERVE_ROW + 1
    # Paddle parked at the far side from the ball: the ball is missed.
    board = np.zeros((10, 10), np.int32)
    board[1:4] = bo.BRICK
    board[8, 5] = bo.BALL
    board[9, 0] = bo.PADDLE
    state = ENV.from_board(board, ball_dir=bo.DOWN_RIGHT, lives=2)
    lost = STEP(state, bo.STAY, jax.random.key(3))
    assert int(lost.lives) == 1 and bool(lost.waiting) and not bool(lost.terminated)
    assert int(lost.ball_y) == bo.SERVE_ROW and int(lost.ball_x) in (0, 9) and float(lost.reward) == 0.0
    state = ENV.from_board(board, ball_dir=bo.DOWN_RIGHT, lives=1)
    over = STEP(state, bo.STAY, jax.random.key(3))
    assert bool(over.terminated) and int(over.lives) == 0 and not bool(over.legal_action_mask.any())
    # A finished game stays finished: every action is an illegal no-op.
    after = STEP(over, bo.LEFT, jax.random.key(4))
    assert not bool(after.last_action_legal) and int(after.paddle) == int(over.paddle)


def test_breaking_the_last_brick_ends_the_game():
    board = np.zeros((10, 10), np.int32)
    board[2, 5] = bo.BRICK
    board[3, 4] = bo.BALL
    board[9, 4] = bo.PADDLE
    state = ENV.from_board(board, ball_dir=bo.UP_RIGHT)
    after = STEP(state, bo.STAY, jax.random.key(0))
    assert float(after.reward) == 1.0 and int(after.score) == 1
    assert bool(after.terminated) and not bool(after.bricks.any())
    assert int(after.ball_y) == 3 and bo.DIRECTION_NAMES[int(after.ball_dir)] == "down-right"


@jax.jit
def random_play(key):
    """30 steps of ``tracking_or_random`` from a fresh game: (states before, states after)."""

    def one(state, k):
        action_key, step_key = jax.random.split(k)
        after = ENV.step(state, tracking_or_random(action_key, state), step_key)
        return after, (state, after)

    return jax.lax.scan(one, ENV.reset(key), jax.random.split(key, 30))[1]


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_invariants_over_random_play(seed):
    before, after = random_play(jax.random.key(seed))
    for v in (after.ball_y, after.ball_x, after.paddle):
        assert bool(jnp.all((v >= 0) & (v < 10)))
    assert not bool(jnp.any(after.bricks & ~before.bricks)), "bricks never come back"
    assert bool(jnp.all(after.score == 30 - after.bricks.sum(axis=(1, 2))))
    assert bool(jnp.all((after.lives <= before.lives) & (after.lives >= 0)))
    assert bool(jnp.all(after.past_bricks[:, -1] == before.bricks)), "the previous frame is the last state's"
    assert bool(jnp.all(after.past_ball[:, -1] == jnp.stack([before.ball_y, before.ball_x], -1)))
    held = before.waiting & after.waiting
    assert bool(jnp.all(jnp.where(held, after.ball_y == before.ball_y, True))), "a waiting ball stays put"


def test_describe_prompt_and_parser():
    state = ENV.reset(jax.random.key(0))
    side = int(state.ball_x)
    direction = "down-right" if side == 0 else "down-left"
    assert ENV.describe(state) == (
        f"Paddle: column 4\nBall: row 3, column {side}, waiting to be released, then moving {direction}\n"
        "Bricks left: 30\nLives: 5"
    )
    prompt = ENV.prompt()
    assert "0 = stay, 1 = release the ball, 2 = move right, 3 = move left" in prompt
    assert "last 2 frames side by side" in prompt and "current recent frame" in prompt
    assert ENV.parse_answer("<answer> 2 </answer>") == 2
    assert ENV.parse_answer("<answer>move LEFT</answer>") == bo.LEFT
    assert ENV.parse_answer("<answer>Fire!</answer>") == bo.RELEASE
    assert ENV.parse_answer("<answer>7</answer>") == 7  # out of range: a no-op when stepped
    assert ENV.parse_answer("<answer>jump</answer>") == UNPARSEABLE
    assert ENV.parse_answer("no answer") == UNPARSEABLE


def test_from_board_validates():
    board = np.zeros((10, 10), np.int32)
    board[9, 4] = bo.PADDLE
    with pytest.raises(ValueError, match="exactly one ball"):
        ENV.from_board(board)
    board[5, 5] = bo.BALL
    with pytest.raises(ValueError, match="shape"):
        ENV.from_board(board[:9])
    with pytest.raises(ValueError, match="cell codes must be in 0..5"):
        ENV.from_board(np.where(board == 0, 7, board))
    board[9, 4] = 0
    board[8, 4] = bo.PADDLE
    with pytest.raises(ValueError, match="paddle"):
        ENV.from_board(board)
    with pytest.raises(ValueError, match="frames"):
        jaxgym.make("breakout", frames=5)


def golden_state():
    state = ENV.reset(jax.random.key(0))
    for action in (bo.RELEASE, bo.LEFT, bo.LEFT, bo.STAY):
        state = ENV.step(state, action, jax.random.key(1))
    return state


@pytest.mark.parametrize("size", [448, 224, (224, 448)])
@pytest.mark.slow
def test_golden_images(size):
    env = jaxgym.make("breakout", image_size=size)
    name = f"breakout_{size}" if isinstance(size, int) else f"breakout_{size[0]}x{size[1]}"
    assert_matches_golden(env.render(golden_state()), name)


@pytest.mark.parametrize("size", [56, 84, 112, 140, 252, 476, 896])
@pytest.mark.slow
def test_renders_at_multiples_of_28(size):
    for frames in (1, 2, 3) if size >= 112 else (1,):
        env = jaxgym.make("breakout", frames=frames, image_size=size)
        image = jax.jit(env.render)(env.reset(jax.random.key(0)))
        assert image.shape == (size, size, 3) and image.dtype == jnp.uint8
