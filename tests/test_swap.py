"""Tests of Swap (match-3): rules against a plain-Python reference, invariants, the paper's
statistics, the JAX contract, the picture and the text protocol.

The reference below (``Ref*``/``ref_*``) is written from games.md, not from jaxgym.swap: it
finds maximal runs by scanning lines, lets tiles fall column by column, and replays a move
with the same random tiles and permutations as the env (``env.settle_draws``).
"""

from __future__ import annotations

import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgym
from jaxgym import INVALID_ACTION, UNPARSEABLE
from jaxgym import swap as swap_lib
from tests.golden import assert_matches_golden

G = 8
ENV = jaxgym.make("swap")
K = ENV.kinds
A = ENV.num_actions
BATCH = 1024

# A board drawn once from the env's generator, kept literally so the golden image does not
# depend on the PRNG implementation.
GOLDEN_BOARD = [
    [11, 4, 3, 4, 6, 0, 2, 1],
    [4, 10, 4, 1, 9, 6, 9, 11],
    [9, 9, 10, 6, 5, 2, 4, 3],
    [5, 6, 2, 10, 1, 1, 0, 10],
    [1, 1, 6, 8, 9, 7, 1, 5],
    [1, 8, 4, 4, 0, 6, 8, 0],
    [4, 6, 11, 1, 6, 2, 8, 10],
    [4, 11, 10, 10, 2, 6, 6, 5],
]

# The compiled programs every test shares (one compile each per batch shape).
reset_batch = jax.jit(jax.vmap(ENV.reset))
step_batch = jax.jit(jax.vmap(ENV.step))
render_batch = jax.jit(jax.vmap(ENV.render))
step_one = jax.jit(ENV.step)
settle_after_swap = jax.jit(lambda board, action, key: swap_lib.settle(swap_lib.apply_swap(board, action), key, K))


def pad_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def tree_take(tree, index):
    return jax.tree_util.tree_map(lambda x: x[index], tree)


# --------------------------------------------------------------------------------------
# The plain-Python reference
# --------------------------------------------------------------------------------------


def ref_pairs(size: int = G) -> list[tuple[int, int, int, int]]:
    """The documented action order: horizontal pairs row by row, then vertical pairs."""
    horizontal = [(r, c, r, c + 1) for r in range(size) for c in range(size - 1)]
    vertical = [(r, c, r + 1, c) for r in range(size - 1) for c in range(size)]
    return horizontal + vertical


def ref_run_cells(board: list[list[int]]) -> set[tuple[int, int]]:
    """Cells of maximal runs of >= 3 equal tiles, rows and columns as one set."""
    n = len(board)
    cells = set()
    lines = [[(r, c) for c in range(n)] for r in range(n)] + [[(r, c) for r in range(n)] for c in range(n)]
    for line in lines:
        start = 0
        while start < n:
            end = start
            while end + 1 < n and board[line[end + 1][0]][line[end + 1][1]] == board[line[start][0]][line[start][1]]:
                end += 1
            if end - start + 1 >= 3:
                cells.update(line[start : end + 1])
            start = end + 1
    return cells


def ref_swapped(board, pair):
    r1, c1, r2, c2 = pair
    out = [row[:] for row in board]
    out[r1][c1], out[r2][c2] = out[r2][c2], out[r1][c1]
    return out


def ref_collapse(board, cells, tiles) -> list[list[int]]:
    """Remove ``cells``; in each column the rest fall, and the emptied top cells (r, c)
    take ``tiles[r][c]``."""
    n = len(board)
    out = [row[:] for row in board]
    for c in range(n):
        kept = [board[r][c] for r in range(n) if (r, c) not in cells]
        new = [int(tiles[r][c]) for r in range(n - len(kept))]
        for r, kind in enumerate(new + kept):
            out[r][c] = kind
    return out


def ref_valid_actions(board) -> list[int]:
    return [a for a, pair in enumerate(ref_pairs(len(board))) if ref_run_cells(ref_swapped(board, pair))]


def ref_settled(board) -> bool:
    """No run, and some swap makes one."""
    if ref_run_cells(board):
        return False
    return any(ref_run_cells(ref_swapped(board, pair)) for pair in ref_pairs(len(board)))


REF_STEPS = 16  # settle steps drawn up front; a move needed at most 8 in 20,000


@jax.jit
@jax.vmap
def _draws(key):
    return jax.vmap(lambda i: ENV.settle_draws(key, i))(jnp.arange(REF_STEPS))


class RefRandom:
    """The refill tiles and shuffle orders of the first settle steps of one key, drawn
    through the env's public API."""

    def __init__(self, tiles: np.ndarray, orders: np.ndarray):
        self.tiles, self.orders = tiles, orders

    @staticmethod
    def batch(keys) -> list[RefRandom]:
        n = len(keys)
        padded = jnp.concatenate([keys, jnp.stack([keys[0]] * (pad_to(n, 256) - n))]) if n % 256 else keys
        tiles, orders = jax.device_get(_draws(padded))
        return [RefRandom(t, o) for t, o in zip(tiles[:n], orders[:n], strict=True)]


def ref_settle(board, rand: RefRandom) -> tuple[list[list[int]], int, int, int]:
    """games.md: clear waves (score k*(k-1), fall, refill from the top) while runs exist; a
    board without a run or a valid swap is reshuffled. Step i uses the i-th draws.
    Returns (board, points, waves, shuffles)."""
    n = len(board)
    board = [row[:] for row in board]
    points = waves = shuffles = 0
    while not ref_settled(board):
        step = waves + shuffles
        cells = ref_run_cells(board)
        if cells:
            points += len(cells) * (len(cells) - 1)
            board = ref_collapse(board, cells, rand.tiles[step])
            waves += 1
        else:
            flat = [kind for row in board for kind in row]
            flat = [flat[i] for i in rand.orders[step]]
            board = [flat[r * n : (r + 1) * n] for r in range(n)]
            shuffles += 1
    return board, points, waves, shuffles


def ref_move(board, action: int, rand: RefRandom) -> tuple[list[list[int]], float, int]:
    """One step: (board, reward, shuffles). Invalid: the board unchanged, reward -1."""
    if not 0 <= action < len(ref_pairs(len(board))):
        return board, -1.0, 0
    swapped = ref_swapped(board, ref_pairs(len(board))[action])
    if not ref_run_cells(swapped):
        return board, -1.0, 0
    board, points, _, shuffles = ref_settle(swapped, rand)
    return board, float(points), shuffles


def ref_fill(candidates: np.ndarray) -> list[list[int]]:
    """The paper's generator, literally: row-major, redraw (at most 10 times) while the cell
    completes a run with the two cells to its left or the two above it."""
    n = candidates.shape[0]
    board = [[None] * n for _ in range(n)]
    for r in range(n):
        for c in range(n):
            draws = iter(candidates[r, c].tolist())
            board[r][c] = next(draws)
            redraws = 0
            while redraws < 10 and (
                (r >= 2 and board[r - 1][c] == board[r - 2][c] == board[r][c])
                or (c >= 2 and board[r][c - 1] == board[r][c - 2] == board[r][c])
            ):
                board[r][c] = next(draws)
                redraws += 1
    return board


# Vectorised NumPy checks of the invariants over whole batches.
PAIRS = np.array(ref_pairs(), np.int64)
P_FLAT, Q_FLAT = PAIRS[:, 0] * G + PAIRS[:, 1], PAIRS[:, 2] * G + PAIRS[:, 3]


def np_has_run(boards: np.ndarray) -> np.ndarray:
    b = boards
    rows = (b[..., :, :-2] == b[..., :, 1:-1]) & (b[..., :, 1:-1] == b[..., :, 2:])
    cols = (b[..., :-2, :] == b[..., 1:-1, :]) & (b[..., 1:-1, :] == b[..., 2:, :])
    return rows.any(axis=(-1, -2)) | cols.any(axis=(-1, -2))


def np_valid_swaps(boards: np.ndarray) -> np.ndarray:
    """bool (B, 112): the swap makes a run (by trying every swap)."""
    flat = boards.reshape(len(boards), 1, G * G).astype(np.int8).repeat(A, axis=1)
    rows = np.arange(A)
    p_vals, q_vals = flat[:, rows, P_FLAT], flat[:, rows, Q_FLAT]
    flat[:, rows, P_FLAT], flat[:, rows, Q_FLAT] = q_vals, p_vals
    return np_has_run(flat.reshape(len(boards), A, G, G))


def assert_invariants(boards: np.ndarray, masks: np.ndarray) -> None:
    assert boards.dtype == np.int32
    assert ((boards >= 0) & (boards < K)).all(), "board not full of valid kinds"
    assert not np_has_run(boards).any(), "a board rests with a run"
    valid = np_valid_swaps(boards)
    assert valid.any(axis=1).all(), "a board has no valid swap"
    np.testing.assert_array_equal(masks, valid)


# --------------------------------------------------------------------------------------
# Rules against the reference
# --------------------------------------------------------------------------------------


def test_fill_matches_the_papers_row_major_generator():
    keys = jax.random.split(jax.random.key(11), 300)
    candidates = np.asarray(jax.vmap(lambda k: swap_lib.fill_candidates(k, G, K))(keys))
    filled = np.asarray(jax.jit(jax.vmap(swap_lib.fill_board))(jnp.asarray(candidates)))
    for cand, got in zip(candidates, filled, strict=True):
        assert got.tolist() == ref_fill(cand)
    assert (filled != candidates[..., 0]).any()  # the redraw path ran
    # A cell whose 11 draws all complete a run keeps its last draw: the run survives the
    # fill (then the reset clears it in waves).
    stubborn = np.zeros((G, G, swap_lib.REDRAWS + 1), np.int32)
    got = np.asarray(swap_lib.fill_board(jnp.asarray(stubborn)))
    assert got.tolist() == ref_fill(stubborn) and np_has_run(got)


@pytest.mark.slow
def test_reset_is_fill_then_settle_as_in_a_move():
    keys = jax.random.split(jax.random.key(12), BATCH)
    states = reset_batch(keys)
    boards = np.asarray(states.board)
    settled_differently = 0
    fill_keys, settle_keys = jax.vmap(jax.random.split, out_axes=1)(keys[:200])
    candidates = np.asarray(jax.vmap(lambda k: swap_lib.fill_candidates(k, G, K))(fill_keys))
    for i, rand in enumerate(RefRandom.batch(settle_keys)):
        board, _, waves, shuffles = ref_settle(ref_fill(candidates[i]), rand)
        assert boards[i].tolist() == board
        settled_differently += (waves + shuffles) > 0
    assert settled_differently > 0  # some fills had runs or no move: the settle path ran
    np.testing.assert_array_equal(np.asarray(states.score), 0)
    np.testing.assert_array_equal(np.asarray(states.step_count), 0)


def rollout(seed: int, steps: int, legal_fraction: float = 0.5):
    """Random play on BATCH fresh boards: half the actions legal, the rest uniform over
    -3..A+2 (mostly invalid). Yields (before, actions, keys, after) per step."""
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    states = reset_batch(jax.random.split(key, BATCH))
    for t in range(steps):
        mask = np.asarray(states.legal_action_mask)
        legal = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        anything = rng.integers(-3, A + 3, size=BATCH)
        actions = np.where(rng.random(BATCH) < legal_fraction, legal, anything).astype(np.int32)
        keys = jax.random.split(jax.random.fold_in(key, t + 1), BATCH)
        after = step_batch(states, jnp.asarray(actions), keys)
        yield states, actions, keys, after
        states = after


@settings(max_examples=3, deadline=None, derandomize=False)
@given(seed=st.integers(0, 2**31 - 1))
@pytest.mark.slow
def test_every_step_keeps_the_invariants_and_invalid_moves_change_nothing(seed):
    """3 seeds x 1024 boards x 4 steps = 12,288 random steps per run, checked vectorised."""
    for before, actions, _, after in rollout(seed, steps=4):
        b0, b1 = np.asarray(before.board), np.asarray(after.board)
        assert_invariants(b1, np.asarray(after.legal_action_mask))
        reward = np.asarray(after.reward)
        valid = np.asarray(before.legal_action_mask)[np.arange(BATCH), np.clip(actions, 0, A - 1)]
        valid &= (actions >= 0) & (actions < A)
        np.testing.assert_array_equal(np.asarray(after.last_action_legal), valid)
        # Invalid: nothing but the counters and the -1 change.
        np.testing.assert_array_equal(b1[~valid], b0[~valid])
        np.testing.assert_array_equal(reward[~valid], -1.0)
        np.testing.assert_array_equal(np.asarray(after.score)[~valid], np.asarray(before.score)[~valid])
        # Valid: at least one 3-run; the score adds the reward.
        assert (reward[valid] >= 6).all()
        np.testing.assert_array_equal(np.asarray(after.score) - np.asarray(before.score), np.where(valid, reward, 0))
        np.testing.assert_array_equal(np.asarray(after.step_count), np.asarray(before.step_count) + 1)
        assert not np.asarray(after.terminated).any()
        assert reward.dtype == np.float32


@pytest.mark.slow
def test_valid_moves_replay_exactly_in_the_reference():
    """500 random valid moves replayed with the same tiles. Moves whose board ends without a
    valid swap are reshuffled; the reference replays those too (same permutations), so the
    boards must agree exactly, reshuffles included."""
    checked = shuffled = 0
    for before, actions, keys, after in rollout(seed=7, steps=2, legal_fraction=1.0):
        b0, b1, reward = np.asarray(before.board), np.asarray(after.board), np.asarray(after.reward)
        for i, rand in enumerate(RefRandom.batch(keys[:250])):
            board, points, shuffles = ref_move(b0[i].tolist(), int(actions[i]), rand)
            assert b1[i].tolist() == board, f"move {i}"
            assert reward[i] == points
            checked += 1
            shuffled += shuffles > 0
    assert checked == 500
    assert shuffled > 0, "no reshuffle among the replayed moves"


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_invalid_swaps_are_minus_one_no_ops():
    states = reset_batch(jax.random.split(jax.random.key(3), BATCH))
    mask = np.asarray(states.legal_action_mask)
    pairs = [
        (0, 0, 0, 2),  # two apart
        (0, 0, 1, 1),  # diagonal
        (3, 3, 3, 3),  # same cell
        (0, 7, 0, 8),  # off the board
        (-1, 0, 0, 0),
        (7, 7, 8, 7),
        (2**31 - 1, 0, 0, 0),
    ]
    for pair in pairs:
        assert ENV.pair_to_action(*pair) == INVALID_ACTION
        assert int(jax.jit(ENV.pair_to_action)(*map(jnp.int32, pair))) == INVALID_ACTION
    bad_actions = [INVALID_ACTION, -7, A, A + 1, 10**6, 2**31 - 1]
    # An adjacent swap that makes no run on each board:
    no_run = np.argmin(mask, axis=1)
    assert not mask[np.arange(BATCH), no_run].any()
    for actions in [np.full(BATCH, a, np.int32) for a in bad_actions] + [no_run.astype(np.int32)]:
        after = step_batch(states, jnp.asarray(actions), jax.random.split(jax.random.key(4), BATCH))
        np.testing.assert_array_equal(np.asarray(after.board), np.asarray(states.board))
        np.testing.assert_array_equal(np.asarray(after.reward), -1.0)
        np.testing.assert_array_equal(np.asarray(after.score), 0)
        np.testing.assert_array_equal(np.asarray(after.legal_action_mask), mask)
        assert not np.asarray(after.last_action_legal).any()
    # A wider integer type must not wrap into a legal action.
    state = tree_take(states, 0)
    for wide in (np.uint32(2**32 - 1), np.uint32(A + 2**31)):
        after = step_one(state, wide, jax.random.key(0))
        assert float(after.reward) == -1.0 and (np.asarray(after.board) == np.asarray(state.board)).all()
    with pytest.raises(TypeError):
        ENV.step(state, 1.0, jax.random.key(0))


def test_action_codec_round_trips_and_matches_the_documented_order():
    for a, pair in enumerate(ref_pairs()):
        assert tuple(int(v) for v in ENV.action_to_pair(a)) == pair
        assert int(ENV.pair_to_action(*pair)) == a
        r1, c1, r2, c2 = pair
        assert int(ENV.pair_to_action(r2, c2, r1, c1)) == a  # either order
    # Vectorised JAX path agrees with the host path over every 4-tuple in -1..8.
    grid = np.stack(np.meshgrid(*[np.arange(-1, G + 1)] * 4, indexing="ij"), -1).reshape(-1, 4)
    host = np.array([int(ENV.pair_to_action(*map(int, row))) for row in grid[::97]])
    device = np.asarray(jax.jit(ENV.pair_to_action)(*jnp.asarray(grid.T, jnp.int32)))
    np.testing.assert_array_equal(device[::97], host)
    assert sorted(set(device.tolist())) == [INVALID_ACTION, *range(A)]
    assert [int(v) for v in ENV.action_to_pair(A)] == [-1, -1, -1, -1]
    assert [int(v) for v in ENV.action_to_pair(-1)] == [-1, -1, -1, -1]


# --------------------------------------------------------------------------------------
# Hand-made boards with exact rewards
# --------------------------------------------------------------------------------------


def filler() -> np.ndarray:
    """Kinds 4..9 with no run and none of the kinds 0..3 used by the patterns."""
    r, c = np.meshgrid(np.arange(G), np.arange(G), indexing="ij")
    return (4 + (r + 2 * c) % 6).astype(np.int32)


def board_with(cells: dict[tuple[int, int], int]) -> np.ndarray:
    board = filler()
    for (r, c), kind in cells.items():
        board[r, c] = kind
    return board


def key_with(board: np.ndarray, action: int, waves: int):
    """A step key whose refills add no further wave, so the reward is exactly the pattern's."""
    for i in range(200):
        key = jax.random.key(i)
        _, _, got_waves, shuffles = settle_after_swap(jnp.asarray(board), jnp.int32(action), key)
        if int(got_waves) == waves and int(shuffles) == 0:
            return key
    raise AssertionError("no key without a cascade from the refill")


A_, B_, C_ = 0, 1, 2
HAND_MADE = {
    # Moving A up into (3,3) completes (1..3, 3) and (3, 1..3): an L of 5 cells.
    "L": ({(1, 3): A_, (2, 3): A_, (3, 1): A_, (3, 2): A_, (3, 3): B_, (4, 3): A_}, (3, 3, 4, 3), 20, 1),
    # Moving A up into (3,3) completes (3, 2..4) and (1..3, 3): a T of 5 cells.
    "T": ({(1, 3): A_, (2, 3): A_, (3, 2): A_, (3, 4): A_, (3, 3): B_, (4, 3): A_}, (3, 3, 4, 3), 20, 1),
    # A straight line of four.
    "four": ({(2, 0): A_, (2, 1): A_, (2, 3): A_, (3, 2): A_, (2, 2): B_}, (2, 2, 3, 2), 12, 1),
    # A line of five.
    "five": ({(2, 0): A_, (2, 1): A_, (2, 3): A_, (2, 4): A_, (3, 2): A_, (2, 2): B_}, (2, 2, 3, 2), 20, 1),
    # The swap completes an A column and a B column at once: one wave of 6 cells.
    "two runs": ({(1, 3): A_, (2, 3): A_, (3, 3): B_, (1, 4): B_, (2, 4): B_, (3, 4): A_}, (3, 3, 3, 4), 30, 1),
    # Row 4 becomes C A A A; when it goes, the Cs above fall next to (4,1): a second wave.
    "cascade": (
        {(4, 1): C_, (3, 2): C_, (3, 3): C_, (4, 2): A_, (4, 3): A_, (4, 4): B_, (5, 4): A_},
        (4, 4, 5, 4),
        12,
        2,
    ),
}


@pytest.mark.parametrize("name", list(HAND_MADE))
@pytest.mark.slow
def test_hand_made_boards_score_exactly(name):
    cells, pair, reward, waves = HAND_MADE[name]
    board = board_with(cells)
    state = ENV.from_board(board)  # validates: no run, a valid swap exists
    action = int(ENV.pair_to_action(*pair))
    assert bool(state.legal_action_mask[action])
    assert int(state.legal_action_mask.sum()) >= 1
    key = key_with(board, action, waves)
    after = step_one(state, jnp.int32(action), key)
    assert float(after.reward) == reward
    assert int(after.score) == reward
    # The first wave alone, with the reference.
    swapped = ref_swapped(board.tolist(), ENV.action_to_pair(action))
    cells_removed = ref_run_cells(swapped)
    first_wave = len(cells_removed) * (len(cells_removed) - 1)
    tiles = np.full((G, G), 11)
    wave_board, points = swap_lib.clear_wave(jnp.asarray(swapped), jnp.asarray(tiles))
    assert int(points) == first_wave == (reward if waves == 1 else 6)
    assert np.asarray(wave_board).tolist() == ref_collapse(swapped, cells_removed, tiles)
    # And the whole move replays in the reference.
    ref_board, ref_points, _ = ref_move(board.tolist(), action, RefRandom.batch(jnp.stack([key]))[0])
    assert np.asarray(after.board).tolist() == ref_board and ref_points == reward


@pytest.mark.slow
def test_a_plus_counts_its_centre_once():
    """A + of runs cannot come from one swap on a resting board (the moved tile would have
    to be the centre, and its source cell is an arm), so it is checked on the wave rule and
    on settle, where cascades and reshuffles can produce it."""
    board = filler()
    for r, c in [(2, 3), (3, 3), (4, 3), (3, 2), (3, 4)]:
        board[r, c] = A_
    tiles = np.full((G, G), 11)
    wave_board, points = swap_lib.clear_wave(jnp.asarray(board), jnp.asarray(tiles))
    assert len(ref_run_cells(board.tolist())) == 5
    assert int(points) == 20  # 5 cells, not 6
    assert np.asarray(wave_board).tolist() == ref_collapse(board.tolist(), ref_run_cells(board.tolist()), tiles)
    settle = jax.jit(lambda b, k: swap_lib.settle(b, k, K))
    for i in range(50):
        _, points, waves, _ = settle(jnp.asarray(board), jax.random.key(i))
        if int(waves) == 1:
            assert int(points) == 20
            break
    else:
        raise AssertionError("every key cascaded")


@pytest.mark.slow
def test_settle_cap_falls_back_to_a_settled_board(monkeypatch):
    board = board_with({(0, 0): A_, (0, 1): A_, (0, 2): A_})
    monkeypatch.setattr(swap_lib, "MAX_SETTLE_STEPS", 0)  # read when settle is traced
    out, points, waves, shuffles = jax.jit(lambda b, k: swap_lib.settle(b, k, K))(jnp.asarray(board), jax.random.key(0))
    assert int(points) == int(waves) == int(shuffles) == 0
    out = np.asarray(out).tolist()
    assert ref_settled(out) and {kind for row in out for kind in row} == {A_, A_ + 1}
    for size in (4, 5, 8, 12):
        for first, second in [(0, 1), (3, 2), (11, 0)]:
            fallback = np.asarray(swap_lib.fallback_board(jnp.int32(first), jnp.int32(second), size)).tolist()
            assert ref_settled(fallback), (size, first, second)


@pytest.mark.slow
def test_small_palette_and_board_keep_the_invariants():
    """4 kinds on 5x5: long cascades, frequent reshuffles; the invariants still hold."""
    env = jaxgym.make("swap", size=5, colors=2, shapes=2)
    n = 128
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), n))
    step = jax.jit(jax.vmap(env.step))
    rng = np.random.default_rng(0)
    for t in range(4):
        boards = np.asarray(states.board)
        assert ((boards >= 0) & (boards < 4)).all() and not np_has_run(boards).any()
        assert np.asarray(states.legal_action_mask).any(axis=1).all()
        mask = np.asarray(states.legal_action_mask)
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask], np.int32)
        states = step(states, jnp.asarray(actions), jax.random.split(jax.random.key(t + 1), n))
        assert (np.asarray(states.reward) >= 6).all()


# --------------------------------------------------------------------------------------
# The paper's statistics
# --------------------------------------------------------------------------------------


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_fresh_board_statistics_match_the_paper():
    """10,000 fresh boards. games.md (1,000 boards of the paper's generator): 4.26 valid
    swaps on average (s.e. 0.08), a valid swap scores 6 82% of the time, mean 7.9, over
    4,259 swaps. Tolerances: 4 standard errors of the difference (theirs and ours)."""
    n = 10_000
    keys = jax.random.split(jax.random.key(2025), pad_to(n, BATCH))
    parts = [jax.device_get(reset_batch(keys[start : start + BATCH])) for start in range(0, len(keys), BATCH)]
    fresh = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:n], *parts)
    mask = fresh.legal_action_mask
    counts = mask.sum(axis=1)
    assert counts.min() >= 1
    se = np.hypot(0.08, counts.std() / np.sqrt(n))
    assert abs(counts.mean() - 4.26) < 4 * se, (counts.mean(), se)

    # Every valid swap of every board, stepped in batches of BATCH.
    board_index, actions = np.nonzero(mask)
    rewards = []
    step_keys = jax.random.split(jax.random.key(2026), pad_to(len(actions), BATCH))
    for start in range(0, len(actions), BATCH):
        idx = board_index[start : start + BATCH]
        act = actions[start : start + BATCH]
        fill = BATCH - len(idx)
        idx, act = np.pad(idx, (0, fill)), np.pad(act, (0, fill))
        states = tree_take(fresh, idx)
        after = step_batch(states, jnp.asarray(act, jnp.int32), step_keys[start : start + BATCH])
        rewards.append(np.asarray(after.reward)[: BATCH - fill])
    reward = np.concatenate(rewards)
    assert len(reward) == counts.sum() and (reward >= 6).all()
    p6 = (reward == 6).mean()
    se_p6 = np.sqrt(0.82 * 0.18 / 4259 + p6 * (1 - p6) / len(reward))
    assert abs(p6 - 0.82) < 4 * se_p6, (p6, se_p6)
    se_mean = reward.std() * np.sqrt(1 / 4259 + 1 / len(reward))
    assert abs(reward.mean() - 7.9) < 4 * se_mean, (reward.mean(), se_mean)


# --------------------------------------------------------------------------------------
# The JAX contract
# --------------------------------------------------------------------------------------


# Compile once, jit + vmap shapes and dtypes and determinism per key are the contract every
# game passes (tests/test_api_contract.py); what is Swap's own is below.


@pytest.mark.parametrize("batch", [1, BATCH])
@pytest.mark.slow
def test_batched_boards_have_the_games_shape(batch):
    states = reset_batch(jax.random.split(jax.random.key(0), batch))
    after = step_batch(states, jnp.zeros(batch, jnp.int32), jax.random.split(jax.random.key(1), batch))
    for s in (states, after):
        chex.assert_shape(s.board, (batch, G, G))
        chex.assert_type(s.board, jnp.int32)
        chex.assert_shape(s.legal_action_mask, (batch, A))
    chex.assert_shape(render_batch(tree_take(after, slice(0, 16))), (min(batch, 16), 448, 448, 3))


@pytest.mark.slow
def test_different_keys_give_different_boards():
    a = reset_batch(jax.random.split(jax.random.key(5), BATCH))
    other = reset_batch(jax.random.split(jax.random.key(6), BATCH))
    assert (np.asarray(a.board) != np.asarray(other.board)).any(axis=(1, 2)).mean() > 0.99


@pytest.mark.slow
def test_truncation_after_max_moves():
    state = ENV.reset(jax.random.key(0))
    assert ENV.max_moves == 100
    near_end = jax.tree_util.tree_map(lambda x: x[None], state.replace(step_count=jnp.int32(98)))
    step = lambda s: step_batch(s, jnp.full((1,), INVALID_ACTION, jnp.int32), jax.random.split(jax.random.key(1), 1))
    s99 = step(near_end)
    s100 = step(s99)
    s101 = step(s100)
    assert [bool(s.truncated[0]) for s in (s99, s100, s101)] == [False, True, True]
    assert not bool(s101.terminated[0])


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_score_saturates_instead_of_wrapping():
    state = ENV.reset(jax.random.key(0)).replace(score=jnp.int32(2**31 - 3))
    action = int(np.argmax(np.asarray(state.legal_action_mask)))
    after = step_one(state, jnp.int32(action), jax.random.key(1))
    assert int(after.score) == 2**31 - 1


# --------------------------------------------------------------------------------------
# Bad configuration and bad boards
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, fragment",
    [
        (dict(size=3), "size=3"),
        (dict(size=13), "size=13"),
        (dict(colors=0), "colors=0"),
        (dict(colors=17), "colors=17"),
        (dict(shapes=7), "shapes=7"),
        (dict(colors=1, shapes=3), "1 * 3 = 3"),
        (dict(max_moves=0), "max_moves=0"),
        (dict(max_moves="100"), "'100'"),
        (dict(max_moves=2.5), "2.5"),
        (dict(image_size=30), "image_size=30"),
        (dict(board=8), "board"),
    ],
)
def test_invalid_configs_raise_naming_the_value(params, fragment):
    with pytest.raises(ValueError, match=fragment.replace("*", r"\*")):
        jaxgym.make("swap", **params)


def test_from_board_rejects_boards_the_game_cannot_show():
    good = np.array(GOLDEN_BOARD)
    with pytest.raises(ValueError, match="shape"):
        ENV.from_board(good[:7])
    with pytest.raises(ValueError, match="kinds must be in 0..11"):
        ENV.from_board(np.where(good == 0, 12, good))
    with pytest.raises(ValueError, match="integer"):
        ENV.from_board(good.astype(float))
    with pytest.raises(ValueError, match="run"):
        ENV.from_board(board_with({(0, 0): A_, (1, 0): A_, (2, 0): A_}))
    with pytest.raises(ValueError, match="no valid swap"):
        ENV.from_board(filler())
    state = ENV.from_board(good)
    assert int(state.legal_action_mask.sum()) == len(ref_valid_actions(GOLDEN_BOARD))


# --------------------------------------------------------------------------------------
# Picture
# --------------------------------------------------------------------------------------


def test_golden_image():
    state = ENV.from_board(np.array(GOLDEN_BOARD)).replace(score=jnp.int32(36), step_count=jnp.int32(12))
    image = np.asarray(jax.jit(ENV.render)(state))
    assert image.shape == (448, 448, 3) and image.dtype == np.uint8
    assert_matches_golden(image, "swap_8x8")


@pytest.mark.slow
def test_render_shows_the_board_and_the_status():
    state = ENV.from_board(np.array(GOLDEN_BOARD))
    renderer = ENV._renderer
    a = np.asarray(ENV.render(state))
    b = np.asarray(ENV.render(state.replace(score=jnp.int32(123456), step_count=jnp.int32(99))))
    status_rows = slice(0, 44)
    assert (a[status_rows] != b[status_rows]).any() and (a[44:] == b[44:]).all()
    # Every kind is drawn differently; a swap changes exactly the two cells' pixels.
    swapped = ENV.from_board(np.array(ref_swapped(GOLDEN_BOARD, (0, 0, 0, 1))))
    c = np.asarray(ENV.render(swapped))
    changed_cols = np.flatnonzero((a != c).any(axis=(0, 2)))
    assert 0 < changed_cols.min() and changed_cols.max() < 448 // 2
    assert renderer.compositor.segment_width == 16  # the fast gather path at the default size
    # Other sizes and palettes build and keep their shapes.
    def some_state(env):
        return env.from_board(np.asarray(swap_lib.fallback_board(jnp.int32(0), jnp.int32(env.kinds - 1), env.size)))

    for params in [dict(size=4, image_size=96), dict(size=12, colors=16, shapes=6, image_size=(300, 520))]:
        env = jaxgym.make("swap", **params)
        image = env.render(some_state(env))
        assert image.shape == env.image_shape and image.dtype == jnp.uint8
    with pytest.raises(ValueError, match="too small"):  # refused by make, not at the first render
        jaxgym.make("swap", size=12, image_size=64)


# --------------------------------------------------------------------------------------
# Text protocol
# --------------------------------------------------------------------------------------


def test_perception_text():
    state = ENV.from_board(np.array(GOLDEN_BOARD))
    text = ENV.describe(state)
    lines = text.split("\n")
    assert len(lines) == G
    assert lines[0].startswith("Yellow triangle | Green square | Green circle | Green square")
    colours, shapes = ["Red", "Green", "Blue", "Yellow"], ["circle", "square", "triangle"]
    for line, row in zip(lines, GOLDEN_BOARD, strict=True):
        assert line.split(" | ") == [f"{colours[k // 3]} {shapes[k % 3]}" for k in row]
    with pytest.raises(ValueError, match="one state"):
        ENV.describe(reset_batch(jax.random.split(jax.random.key(0), 1)))


def test_prompt_states_the_rules_and_protocol():
    prompt = ENV.prompt()
    for needle in ["8x8", "(row, col)", "top-left", "<perception></perception>", "<think></think>",
                   "<answer>(0, 1) (0, 2)</answer>", "three or more", "' | '", "Red circle"]:
        assert needle in prompt, needle


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>(0, 1) (0, 2)</answer>", (0, 1, 0, 2)),
        ("<answer>(0,1),(0,2)</answer>", (0, 1, 0, 2)),
        ("<answer>\n(3, 4)\n(4, 4)\n</answer>", (3, 4, 4, 4)),
        ("<answer>  ( 7 ,  6 )   ( 7 , 7 ) </answer>", (7, 6, 7, 7)),
        ("<answer>[2, 2] [2, 3]</answer>", (2, 2, 2, 3)),
        ("<ANSWER>(1, 0) (0, 0)</ANSWER>", (0, 0, 1, 0)),
        ("<answer>1. First: (5, 5)\n2. Second: (5, 6)</answer>", (5, 5, 5, 6)),
        ("<answer>0 1 0 2</answer>", (0, 1, 0, 2)),
        ("<answer>（０，１）（０，２）</answer>", (0, 1, 0, 2)),
        ("<think><answer>(0,0) (0,1)</answer> maybe</think><answer>(6, 1) (7, 1)</answer>", (6, 1, 7, 1)),
    ],
)
def test_parse_answer_accepts_lenient_forms(text, expected):
    assert ENV.parse_answer(text) == int(ENV.pair_to_action(*expected))


@pytest.mark.parametrize(
    "text",
    ["<answer>(0, 8) (0, 7)</answer>", "<answer>(-1, 0) (0, 0)</answer>", "<answer>(0, 0) (0, 2)</answer>",
     "<answer>(0, 0) (1, 1)</answer>", "<answer>(4, 4) (4, 4)</answer>",
     "<answer>(99999999999999999999, 0) (0, 0)</answer>"],
)
def test_parse_answer_maps_impossible_swaps_to_the_invalid_action(text):
    assert ENV.parse_answer(text) == INVALID_ACTION


@pytest.mark.parametrize(
    "text",
    ["", "(0, 1) (0, 2)", "<answer></answer>", "<answer>(0, 1)</answer>", "<answer>swap them</answer>",
     "<answer>(0, 1) (0, 2)", "<answer>1 2 3</answer>", "<answer>1 2 3 4 5</answer>", None, 42, b"<answer>"],
)
def test_parse_answer_rejects_malformed_text(text):
    assert ENV.parse_answer(text) == UNPARSEABLE


def test_parse_answer_is_fast_on_huge_responses():
    huge = [
        "<answer>" + "(" * 1_000_000 + "</answer>",
        "<answer>" + "( 1" * 333_333 + "</answer>",
        "<answer>" + "(0, " * 250_000 + "(0, 1) (0, 2)</answer>",
        "<answer>" + "9" * 1_000_000 + "</answer>",
        "x" * 1_000_000,
    ]
    for text in huge:
        start = time.perf_counter()
        ENV.parse_answer(text)
        assert time.perf_counter() - start < 1.0


def test_format_answer_round_trips():
    for a in range(A):
        assert ENV.parse_answer(ENV.format_answer(a)) == a
    assert ENV.format_answer(1) == "<answer>(0, 1) (0, 2)</answer>"
    assert ENV.parse_answer(ENV.format_answer(INVALID_ACTION)) == INVALID_ACTION
    with pytest.raises(ValueError, match="action=112"):
        ENV.format_answer(A)


def test_registered():
    from renderers.draw import SHAPES

    assert swap_lib.MAX_SHAPES == len(SHAPES)
    assert "swap-v0" in jaxgym.registered_games()
    assert jaxgym.make("swap-v0").id == "swap-v0"
