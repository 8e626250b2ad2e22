"""2048 rules against games.md's worked example and the gymnasium-2048 package (an
independent implementation), spawn statistics, and hypothesis properties."""

from __future__ import annotations

import collections
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium_2048.envs import TwentyFortyEightEnv
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import jaxgym
from jaxgym.game2048 import is_terminal, legal_moves, move, spawn_tile
from renderers.game2048 import cell_tile
from tests.golden import assert_matches_golden

ENV = jaxgym.make("2048")
STEP = jax.jit(ENV.step)
FROM_BOARD = jax.jit(ENV.from_board)
VMOVE = jax.jit(jax.vmap(move))
VSTEP = jax.jit(jax.vmap(ENV.step))
VLEGAL = jax.jit(jax.vmap(legal_moves))
VTERMINAL = jax.jit(jax.vmap(is_terminal))


def random_boards(rng: np.random.Generator, n: int, size: int = 4) -> np.ndarray:
    """Boards with every density from empty to full and many equal neighbours."""
    top = rng.integers(2, 12, size=(n, 1, 1))
    boards = rng.integers(1, 12, size=(n, size, size)) % top + 1
    empty_p = rng.uniform(0, 0.8, size=(n, 1, 1))
    return np.where(rng.uniform(size=boards.shape) < empty_p, 0, boards).astype(np.int32)


@pytest.mark.slow
def test_worked_example_of_games_md():
    board = jnp.array([[1, 1, 1, 1], [2, 0, 2, 0], [1, 2, 1, 2], [0, 0, 0, 0]])
    expected = {
        0: ([[1, 1, 1, 1], [2, 2, 2, 2], [1, 0, 1, 0], [0, 0, 0, 0]], 0),
        1: ([[0, 0, 2, 2], [0, 0, 0, 3], [1, 2, 1, 2], [0, 0, 0, 0]], 16),
        2: ([[0, 0, 0, 0], [1, 0, 1, 0], [2, 1, 2, 1], [1, 2, 1, 2]], 0),
        3: ([[2, 2, 0, 0], [3, 0, 0, 0], [1, 2, 1, 2], [0, 0, 0, 0]], 16),
    }
    for action, (rows, score) in expected.items():
        moved, got = move(board, action)
        assert moved.tolist() == rows, action
        assert int(got) == score, action


@pytest.mark.parametrize(
    "line, merged, score",
    [
        ([1, 1, 1, 1], [2, 2, 0, 0], 8),
        ([1, 1, 2, 0], [2, 2, 0, 0], 4),
        ([0, 1, 0, 1], [2, 0, 0, 0], 4),
        ([2, 1, 1, 0], [2, 2, 0, 0], 4),
        ([3, 3, 3, 0], [4, 3, 0, 0], 16),
        ([1, 2, 3, 4], [1, 2, 3, 4], 0),
    ],
)
def test_single_line_moves_left(line, merged, score):
    board = jnp.array([line, [0] * 4, [0] * 4, [0] * 4])
    moved, got = move(board, 3)
    assert moved[0].tolist() == merged
    assert int(got) == score


@pytest.mark.parametrize("size", [3, 4, 6])
def test_moves_legality_and_termination_match_gymnasium_2048(size):
    """>= 10,000 random (board, action) pairs per size against gymnasium-2048's static
    ``apply_action`` and ``is_terminated``: board before the spawn, reward, legality."""
    rng = np.random.default_rng(size)
    n = 10_000
    boards = random_boards(rng, n, size)
    actions = rng.integers(0, 4, size=n).astype(np.int32)
    moved, scores = VMOVE(jnp.asarray(boards), jnp.asarray(actions))
    legal = np.asarray(VLEGAL(jnp.asarray(boards)))
    terminal = np.asarray(VTERMINAL(jnp.asarray(boards)))
    moved, scores = np.asarray(moved), np.asarray(scores)
    for i in range(n):
        ref_board, ref_score, ref_legal = TwentyFortyEightEnv.apply_action(boards[i].astype(np.uint8), int(actions[i]))
        assert np.array_equal(moved[i], ref_board), (boards[i], actions[i])
        assert scores[i] == ref_score
        assert legal[i, actions[i]] == ref_legal
        assert terminal[i] == TwentyFortyEightEnv.is_terminated(boards[i].astype(np.uint8))
        if boards[i].any():
            assert terminal[i] == (not legal[i].any())


@pytest.mark.slow
def test_step_is_move_then_one_spawn_and_matches_oracle():
    """Through env.step: an illegal move is a no-op; a legal one is gymnasium-2048's board
    plus exactly one new 2 or 4 on a cell the move left empty; termination as the oracle."""
    rng = np.random.default_rng(7)
    n = 10_000
    boards = random_boards(rng, n)
    boards[0] = [[1, 2, 1, 2], [2, 1, 2, 1], [1, 2, 1, 2], [2, 1, 2, 1]]  # terminal
    actions = rng.integers(0, 4, size=n).astype(np.int32)
    states = jax.vmap(ENV.from_board)(jnp.asarray(boards))
    out = VSTEP(states, jnp.asarray(actions), jax.random.split(jax.random.key(0), n))
    new_boards = np.asarray(out.board)
    for i in range(n):
        ref_board, ref_score, ref_legal = TwentyFortyEightEnv.apply_action(boards[i].astype(np.uint8), int(actions[i]))
        assert bool(out.last_action_legal[i]) == ref_legal
        assert float(out.reward[i]) == (ref_score if ref_legal else 0)
        if ref_legal:
            diff = np.argwhere(new_boards[i] != ref_board)
            assert len(diff) == 1
            r, c = diff[0]
            assert ref_board[r, c] == 0 and new_boards[i, r, c] in (1, 2)
        else:
            assert np.array_equal(new_boards[i], boards[i])
        assert bool(out.terminated[i]) == TwentyFortyEightEnv.is_terminated(new_boards[i].astype(np.uint8))


def test_spawn_value_split_is_nine_to_one():
    n = 200_000
    board = jnp.zeros((4, 4), jnp.int32)
    spawned = jax.jit(jax.vmap(spawn_tile, in_axes=(None, 0)))(board, jax.random.split(jax.random.key(1), n))
    values = np.asarray(spawned).reshape(n, -1).max(axis=1)
    assert set(np.unique(values)) == {1, 2}
    twos = np.mean(values == 1)
    sigma = np.sqrt(0.9 * 0.1 / n)
    assert abs(twos - 0.9) < 5 * sigma, twos


def test_spawn_cell_is_uniform_over_empty_cells():
    n = 100_000
    board = np.ones((4, 4), np.int32) * 3
    empty_cells = [(0, 1), (1, 3), (2, 0), (2, 2), (3, 3), (0, 0), (3, 1)]
    for r, c in empty_cells:
        board[r, c] = 0
    spawned = jax.jit(jax.vmap(spawn_tile, in_axes=(None, 0)))(
        jnp.asarray(board), jax.random.split(jax.random.key(2), n)
    )
    changed = np.argwhere(np.asarray(spawned) != board[None])
    assert len(changed) == n  # exactly one cell per board, always an empty one
    counts = collections.Counter(map(tuple, changed[:, 1:].tolist()))
    assert set(counts) == set(empty_cells)
    result = stats.chisquare([counts[c] for c in empty_cells])
    assert result.pvalue > 1e-4, counts


def merge_rewards_from_multisets(before: np.ndarray, after: np.ndarray) -> int:
    """Reward implied by the tile multisets alone: with n_e tiles of exponent e before and m_e
    after, merges of exponent e are k_e = (n_e + k_{e-1} - m_e) / 2, each worth 2**(e+1)."""
    n = np.bincount(before.ravel(), minlength=40)
    m = np.bincount(after.ravel(), minlength=40)
    total, created = 0, 0
    for e in range(1, 39):
        merges = n[e] + created - m[e]
        assert merges >= 0 and merges % 2 == 0
        created = merges // 2
        total += created * 2 ** (e + 1)
    return total


board_strategy = st.lists(st.integers(0, 10), min_size=16, max_size=16).map(
    lambda v: np.array(v, np.int32).reshape(4, 4)
)


@settings(max_examples=300, deadline=None)
@given(board=board_strategy, action=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
@pytest.mark.slow
def test_tile_total_grows_by_the_spawn_and_reward_is_sum_of_merges(board, action, seed):
    state = FROM_BOARD(jnp.asarray(board))
    out = STEP(state, jnp.int32(action), jax.random.key(seed))
    before, after = board, np.asarray(out.board)
    values = lambda b: int(np.where(b > 0, 2 ** b.astype(np.int64), 0).sum())  # noqa: E731
    moved, _ = move(jnp.asarray(board), action)
    if bool(out.last_action_legal):
        spawned = values(after) - values(np.asarray(moved))
        assert spawned in (2, 4)
        assert values(after) == values(before) + spawned
        assert float(out.reward) == merge_rewards_from_multisets(before, np.asarray(moved))
        assert int(out.score) == int(out.reward)
    else:
        assert np.array_equal(after, before)
        assert float(out.reward) == 0.0


@pytest.mark.parametrize("action", [4, -1, 7, 2**31 - 1, -(2**31)])
def test_out_of_range_actions_are_illegal_noops(action):
    state = ENV.from_board(jnp.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]))
    out = STEP(state, jnp.int32(action), jax.random.key(0))
    assert np.array_equal(out.board, state.board)
    assert float(out.reward) == 0.0
    assert not bool(out.last_action_legal)
    assert int(out.step_count) == 1 and not bool(out.terminated)


def test_wide_integer_actions_do_not_wrap_into_legal_moves():
    state = ENV.from_board(jnp.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]))
    out = ENV.step(state, np.int64(2**32 + 1), jax.random.key(0))  # would wrap to 1 (right)
    assert not bool(out.last_action_legal)
    out = ENV.step(state, 2**40, jax.random.key(0))
    assert not bool(out.last_action_legal)


@pytest.mark.parametrize("bad", [1.0, 1.5, np.float32(2), jnp.float32(0), True, "1", None, jnp.array([0, 1])])
def test_non_integer_actions_raise_clearly(bad):
    state = ENV.reset(jax.random.key(0))
    with pytest.raises((TypeError, ValueError), match="action"):
        ENV.step(state, bad, jax.random.key(1))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>3</answer>", 3),
        ("<perception>..</perception><think>left</think><answer> 0 </answer>", 0),
        ("<answer>\n2\n</answer>", 2),
        ("<answer>move 1 (right)</answer>", 1),
        ("<ANSWER>2</Answer>", 2),
        ("<answer>1</answer> ... <answer>3</answer>", 3),
        ("<answer>７</answer>", 7),  # full-width digit: parsed, then an illegal no-op
        ("<answer>9</answer>", 9),
        ("<answer>-1</answer>", -1),
        ("<answer>99999999999999999999</answer>", 2**31 - 1),
        ("<answer>up</answer>", jaxgym.UNPARSEABLE),
        ("<answer></answer>", jaxgym.UNPARSEABLE),
        ("3", jaxgym.UNPARSEABLE),
        ("<answer>3", jaxgym.UNPARSEABLE),
        ("", jaxgym.UNPARSEABLE),
        (None, jaxgym.UNPARSEABLE),
        (b"<answer>1</answer>", jaxgym.UNPARSEABLE),
    ],
)
def test_parse_answer(text, expected):
    assert ENV.parse_answer(text) == expected


def test_parse_answer_is_fast_on_adversarial_text():
    cases = [
        "<answer>" + "1" * 1_000_000 + "</answer>",
        "<answer>" * 200_000,
        "x" * 1_000_000,
        "<answer>" * 100_000 + "</answer>" * 100_000,
        "9" * 1_000_000,
    ]
    for text in cases:
        t0 = time.perf_counter()
        result = ENV.parse_answer(text)
        assert time.perf_counter() - t0 < 1.0
        assert result == jaxgym.UNPARSEABLE or isinstance(result, int)


@pytest.mark.parametrize("action", range(4))
def test_format_answer_round_trips(action):
    assert ENV.parse_answer(ENV.format_answer(action)) == action


@pytest.mark.slow
def test_describe_matches_games_md_format():
    state = ENV.from_board(jnp.array([[0, 1, 0, 2], [11, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]))
    assert ENV.describe(state) == " - | 2 | - | 4 \n 2048 | - | - | - \n - | - | - | - \n 2 | 2 | 2 | 2 "
    batch = jax.vmap(ENV.reset)(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="one state"):
        ENV.describe(batch)


def test_from_board_validates_and_from_tiles_converts():
    with pytest.raises(ValueError, match="shape"):
        ENV.from_board(np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError, match="exponents"):
        ENV.from_board(np.full((4, 4), 18))
    with pytest.raises(ValueError, match="powers of two"):
        ENV.from_tiles(np.full((4, 4), 3))
    state = ENV.from_tiles([[0, 2, 4, 8], [0] * 4, [0] * 4, [2048, 0, 0, 0]])
    assert state.board.tolist()[0] == [0, 1, 2, 3] and int(state.board[3, 0]) == 11
    assert state.legal_action_mask.dtype == jnp.bool_


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=2), "size=2 is out of range; allowed: 3..8"),
        (dict(size=9), "size=9 is out of range; allowed: 3..8"),
        (dict(size="4"), "size must be an integer"),
        (dict(size=4.0), "size must be an integer"),
        (dict(image_size=20), "image_size=20 is out of range"),
        (dict(image_size=(448,)), "image_size must be"),
        (dict(colour=3), "unknown parameter"),
    ],
)
def test_invalid_configs_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jaxgym.make("2048", **kwargs)


def test_unknown_games_raise_listing_known_ones():
    with pytest.raises(ValueError, match="unknown game '2049'.*2048-v0"):
        jaxgym.make("2049")
    with pytest.raises(ValueError, match="no version 7"):
        jaxgym.make("2048-v7")
    assert jaxgym.make("2048-v0").id == "2048-v0"


@pytest.mark.parametrize("size", [3, 5, 8])
@pytest.mark.slow
def test_other_sizes_play_legal_games_to_the_end(size):
    env = jaxgym.make("2048", size=size, image_size=112)
    state = env.reset(jax.random.key(size))
    step = jax.jit(env.step)
    rng = np.random.default_rng(size)
    for t in range(3000):
        legal = np.flatnonzero(np.asarray(state.legal_action_mask))
        if state.terminated:
            assert len(legal) == 0
            break
        state = step(state, jnp.int32(rng.choice(legal)), jax.random.key(t))
        assert bool(state.last_action_legal)
    assert int(state.score) > 0
    assert env.render(state).shape == (112, 112, 3)


def golden_state(env):
    board = jnp.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 0, 17]])
    return env.from_board(board).replace(score=jnp.int32(1234567))


def test_render_equals_golden_image():
    assert_matches_golden(jax.jit(ENV.render)(golden_state(ENV)), "2048_4x4")


@pytest.mark.slow
def test_render_small_image_equals_golden_image():
    env = jaxgym.make("2048", size=5, image_size=(168, 224))
    board = jnp.arange(25).reshape(5, 5) % 14
    assert_matches_golden(env.render(env.from_board(board)), "2048_5x5_168x224")


def test_render_shows_each_exponents_tile_in_its_cell():
    """Composition check independent of the golden file: every cell's pixels are exactly the
    tile drawn for its exponent, wherever on the board it stands."""
    renderer = ENV._renderer
    state = golden_state(ENV)
    image = np.asarray(ENV.render(state))
    top, left = renderer.board_origin
    p = renderer.pitch
    for (r, c), exponent in np.ndenumerate(np.asarray(state.board)):
        cell = image[top + r * p : top + (r + 1) * p, left + c * p : left + (c + 1) * p]
        assert np.array_equal(cell, cell_tile(int(exponent), p, renderer.gap)), (r, c)
