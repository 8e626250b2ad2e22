"""Shisen-Sho and image-tile Shisen-Sho: rules against a breadth-first-search oracle and the
worked examples of games.md, statistics, properties, contracts, rendering, text."""

from __future__ import annotations

import os
import pickle
import time
from collections import deque

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgym
from jaxgym import INVALID_ACTION, UNPARSEABLE, tile_images
from jaxgym import shisensho as ss
from tests.golden import assert_matches_golden

DIRECTIONS = ((-1, 0), (0, 1), (1, 0), (0, -1))


# ---------------------------------------------------------------------------------------
# Oracles


def bfs_reachable_tiles(board: np.ndarray, source: tuple[int, int]) -> set[tuple[int, int]]:
    """Plain breadth-first search over states (cell, direction, turns) on the board padded
    with an empty ring: the occupied cells that a path with at most 2 turns from ``source``
    reaches through empty cells (board coordinates, the source excluded)."""
    n = board.shape[0]
    m = n + 2

    def empty(y: int, x: int) -> bool:
        return not (1 <= y <= n and 1 <= x <= n) or board[y - 1, x - 1] == 0

    start = (source[0] + 1, source[1] + 1)
    found = set()
    best: dict[tuple[int, int, int], int] = {}
    queue: deque[tuple[int, int, int, int]] = deque()
    for d, (dy, dx) in enumerate(DIRECTIONS):
        queue.append((start[0] + dy, start[1] + dx, d, 0))
    while queue:
        y, x, d, turns = queue.popleft()
        if not (0 <= y < m and 0 <= x < m):
            continue
        if not empty(y, x):
            if (y, x) != start:
                found.add((y - 1, x - 1))
            continue
        if best.get((y, x, d), 99) <= turns:
            continue
        best[(y, x, d)] = turns
        for d2, (dy, dx) in enumerate(DIRECTIONS):
            t2 = turns + (d2 != d)
            if t2 <= 2:
                queue.append((y + dy, x + dx, d2, t2))
    return found


def bfs_mask(board: np.ndarray) -> np.ndarray:
    """The legal mask ``(n, n, n, n)`` from the plain BFS."""
    n = board.shape[0]
    mask = np.zeros((n,) * 4, bool)
    for r in range(n):
        for c in range(n):
            if board[r, c]:
                for q in bfs_reachable_tiles(board, (r, c)):
                    mask[r, c, q[0], q[1]] = board[q] == board[r, c]
    return mask


def _shift(a: np.ndarray, d: int) -> np.ndarray:
    """Move every cell of the last two axes one step in direction ``d``, zero-filled."""
    out = np.zeros_like(a)
    if d == 0:
        out[..., :-1, :] = a[..., 1:, :]
    elif d == 1:
        out[..., :, 1:] = a[..., :, :-1]
    elif d == 2:
        out[..., 1:, :] = a[..., :-1, :]
    else:
        out[..., :, :-1] = a[..., :, 1:]
    return out


def flood_connected(boards: np.ndarray) -> np.ndarray:
    """The same search as ``bfs_reachable_tiles``, level by level in numpy for a batch of
    boards and every source at once: for 0, 1, 2 turns, the cells entered moving in each
    direction. Returns bool ``(B, n, n, n, n)``: ``[b, r1, c1, r2, c2]`` iff both cells are
    occupied, distinct, and ``(r2, c2)`` is reached from ``(r1, c1)`` (kinds ignored)."""
    B, n, _ = boards.shape
    m = n + 2
    empty = np.ones((B, 1, m, m), bool)
    empty[:, 0, 1:-1, 1:-1] = boards == 0
    seeds = np.zeros((B, n * n, m, m), bool)
    cells = np.arange(n * n)
    seeds[:, cells, cells // n + 1, cells % n + 1] = True

    def ray(start: np.ndarray, d: int) -> np.ndarray:
        front = _shift(start, d)
        reached = front.copy()
        while front.any():
            front = _shift(front & empty, d)
            reached |= front
        return reached

    entered = [ray(seeds, d) for d in range(4)]
    for _ in range(2):
        corners = [e & empty for e in entered]
        entered = [
            entered[d] | ray(corners[(d + 1) % 4] | corners[(d + 2) % 4] | corners[(d + 3) % 4], d) for d in range(4)
        ]
    reached = (entered[0] | entered[1] | entered[2] | entered[3])[:, :, 1:-1, 1:-1].reshape(B, n, n, n, n)
    occupied = boards != 0
    distinct = ~np.eye(n * n, dtype=bool).reshape(n, n, n, n)
    return reached & occupied[:, :, :, None, None] & occupied[:, None, None] & distinct


def random_boards(rng: np.random.Generator, count: int, size: int, num_kinds: int = 96) -> np.ndarray:
    """Game-like boards (4 copies of distinct kinds, shuffled) with a random fraction of
    the cells removed (0 to 95%, uniformly per board)."""
    kinds_per_board = size * size // 4
    boards = np.empty((count, size * size), np.int32)
    for i in range(count):
        kinds = rng.permutation(num_kinds)[:kinds_per_board] + 1
        boards[i] = rng.permutation(np.repeat(kinds, 4))
    keep = rng.uniform(size=boards.shape) >= rng.uniform(0, 0.95, size=(count, 1))
    return (boards * keep).reshape(count, size, size)


def same_kind(boards: np.ndarray) -> np.ndarray:
    n = boards.shape[-1]
    a = boards.reshape(-1, n, n, 1, 1)
    b = boards.reshape(-1, 1, 1, n, n)
    return (a == b) & (a != 0)


# ---------------------------------------------------------------------------------------
# Shared compiled functions (compiled once per module)

ENV = jaxgym.make("shisensho")
ENV_IMAGES = jaxgym.make("shisensho-images")
BATCH = 1024  # one batch size for the batched tests, so each function compiles once


class Compiled:
    """Jitted functions of one env, shared by the tests (compiling dominates test time)."""

    def __init__(self, env):
        self.reset, self.step, self.render = jax.jit(env.reset), jax.jit(env.step), jax.jit(env.render)
        self.from_board = jax.jit(env.from_board)
        self.vreset, self.vstep = jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))
        self.vrender = jax.jit(jax.vmap(env.render))
        self.each_action = jax.jit(jax.vmap(env.step, in_axes=(None, 0, None)))


FN = Compiled(ENV)
FN_IMAGES = Compiled(ENV_IMAGES)
COMPILED = {"shisensho": (ENV, FN), "shisensho-images": (ENV_IMAGES, FN_IMAGES)}
SMALL = jaxgym.make("shisensho", size=4, colors=2, shapes=2, copies=4)
_kernels: dict[int, tuple] = {}


def kernels(size: int) -> tuple:
    if size not in _kernels:
        _kernels[size] = (jax.jit(jax.vmap(ss.connected_cells)), jax.jit(jax.vmap(ss.connectable_pairs)))
    return _kernels[size]


def parse_board(rows: list[str]) -> np.ndarray:
    """A board from rows of 'A' (kind 1), '.' (empty) and 'X' (distinct other kinds)."""
    n = len(rows)
    board = np.zeros((n, n), np.int32)
    other = 2
    for r, row in enumerate(rows):
        for c, ch in enumerate(row):
            if ch == "A":
                board[r, c] = 1
            elif ch == "X":
                board[r, c] = other
                other = other % 35 + 2  # never kind 1
    return board


# ---------------------------------------------------------------------------------------
# The oracles agree with each other


def test_flood_search_equals_plain_bfs():
    rng = np.random.default_rng(1)
    checked = 0
    for size, count in ((4, 60), (6, 40), (8, 12), (12, 3)):
        boards = random_boards(rng, count, size)
        flood = flood_connected(boards) & same_kind(boards)
        for b in range(count):
            np.testing.assert_array_equal(flood[b], bfs_mask(boards[b]), err_msg=f"{boards[b]}")
            checked += 1
    assert checked == 115


# ---------------------------------------------------------------------------------------
# Worked examples of games.md

WORKED_EXAMPLES = [
    (["AA....", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX"], (0, 0, 0, 1), True),
    (["AXXXXA", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX"], (0, 0, 0, 5), True),
    (["AXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "AXXXXX"], (0, 0, 5, 0), True),
    (["A.....", "X....A", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX"], (0, 0, 1, 5), True),
    (["A...XX", "XXX.XX", "XXX.XX", "XXX.XX", "XXX..A", "XXXXXX"], (0, 0, 4, 5), True),
    (["AXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXA"], (0, 0, 5, 5), False),
    (["AA....", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX"], (0, 0, 0, 0), False),
    (["AX....", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX", "XXXXXX"], (0, 0, 0, 1), False),
]


@pytest.mark.parametrize("rows, pair, connects", WORKED_EXAMPLES)
def test_worked_examples(rows, pair, connects):
    board = parse_board(rows)
    state = FN.from_board(board)
    action = ENV.pair_to_action(*pair)
    reversed_action = ENV.pair_to_action(pair[2], pair[3], pair[0], pair[1])
    assert bool(state.legal_action_mask[action]) == connects
    assert bool(state.legal_action_mask[reversed_action]) == connects
    assert bool(bfs_mask(board)[pair]) == connects
    after = FN.step(state, action, jax.random.key(0))
    assert float(after.reward) == (1.0 if connects else -1.0)
    expected = board.copy()
    if connects:
        expected[pair[0], pair[1]] = expected[pair[2], pair[3]] = 0
    np.testing.assert_array_equal(np.asarray(after.board), expected)


# ---------------------------------------------------------------------------------------
# The kernel against the search on thousands of boards


@pytest.mark.slow
def test_kernel_equals_search_on_5000_random_boards():
    rng = np.random.default_rng(2025)
    total = 0
    # Sizes up to 14 pack both bitsets in one word; 16 keeps them apart: both paths run.
    for size, count in ((4, 2200), (6, 1500), (8, 950), (12, 300), (16, 50)):
        connected_fn, pairs_fn = kernels(size)
        for chunk in range(0, count, 500):
            boards = random_boards(rng, min(500, count - chunk), size)
            expected = flood_connected(boards)
            got_connected = np.asarray(connected_fn(jnp.asarray(boards)))
            got_pairs = np.asarray(pairs_fn(jnp.asarray(boards)))
            occupied_pairs = (boards != 0)[:, :, :, None, None] & (boards != 0)[:, None, None]
            # Geometry on every pair of occupied cells, whatever their kinds ...
            np.testing.assert_array_equal(got_connected & occupied_pairs, expected, err_msg=f"size {size}")
            # ... and the legal pairs: same kind and connected, nothing else.
            np.testing.assert_array_equal(got_pairs, expected & same_kind(boards), err_msg=f"size {size}")
            total += len(boards)
    assert total == 5000


@pytest.mark.parametrize("size", [2, 3, 4, 6, 12, 16])
def test_full_board_mask_equals_the_kernel_on_full_boards(size):
    # reset's shortcut: on a board with no empty cell only neighbours and same-edge cells
    # connect. Few kinds make many same-kind pairs, so both kinds of link are exercised.
    rng = np.random.default_rng(size)
    boards = jnp.asarray(rng.integers(1, 4, size=(200, size, size)))
    full = jax.jit(jax.vmap(ss.full_board_legal_mask))(boards)
    kernel, _ = jax.jit(jax.vmap(ss.legal_action_mask))(boards)
    np.testing.assert_array_equal(np.asarray(full), np.asarray(kernel))
    assert int(full.sum()) > 0


@pytest.mark.slow
def test_force_pair_repairs_a_board_without_pairs():
    board = jnp.array([1, 2, 2, 1])  # 2x2 diagonals: no pair (each needs 3 turns)
    assert not bool(ss.connectable_pairs(board.reshape(2, 2)).any())
    fixed, picture = ss._force_pair(board, jnp.arange(4))
    assert fixed.tolist() == [1, 1, 2, 2] and picture.tolist() == [0, 3, 2, 1]
    assert bool(ss.connectable_pairs(fixed.reshape(2, 2))[0, 0, 0, 1])


@pytest.mark.slow
def test_fresh_boards_always_have_a_pair_even_when_most_draws_have_none():
    # On a 2x2 board with two kinds, a third of the shuffles have no pair.
    env = jaxgym.make("shisensho", size=2, colors=2, shapes=1, copies=2)
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(3), 3000))
    assert bool(states.legal_action_mask.any(-1).all())
    assert not bool(states.terminated.any())
    boards = np.asarray(states.board).reshape(-1, 4)
    assert (np.sort(boards, axis=1) == [1, 1, 2, 2]).all()
    # Rejection sampling keeps the boards uniform over those with a pair: both arrangements
    # with a pair (pairs in rows, or in columns; two placements each) are equally likely.
    rows = (boards[:, 0] == boards[:, 1]).mean()
    assert abs(rows - 0.5) < 0.05


# ---------------------------------------------------------------------------------------
# Statistics of games.md


def _z_tolerance(ours: np.ndarray, reference_se: float) -> float:
    """Four standard errors of the difference between our mean and the reference's."""
    se = ours.std(ddof=1) / np.sqrt(len(ours))
    return 4 * float(np.hypot(se, reference_se))


@pytest.mark.slow
def test_fresh_board_statistics_match_games_md():
    chunks = [FN.vreset(jax.random.split(jax.random.key(seed), BATCH)) for seed in range(10)]
    states = jax.tree.map(lambda *x: jnp.concatenate(x), *chunks)  # 10,240 boards
    pairs = np.asarray(states.legal_action_mask.sum(-1)) / 2  # unordered pairs
    # games.md: 8.56 connectable same-kind pairs, standard error 0.06 over 2,000 boards.
    assert abs(pairs.mean() - 8.56) < _z_tolerance(pairs, 0.06)
    assert pairs.min() >= 1
    boards = np.asarray(states.board).reshape(len(pairs), -1)
    counts = np.apply_along_axis(np.bincount, 1, boards, minlength=37)
    assert ((counts == 0) | (counts == 4)).all() and (counts[:, 0] == 0).all()
    assert ((counts == 4).sum(1) == 9).all()


@pytest.mark.slow
def test_statistics_after_250_random_actions_match_games_md():
    def play(state, key):
        def body(s, k):
            return ENV.step(s, jax.random.randint(k, (), 0, ENV.num_actions), k), None

        return jax.lax.scan(body, state, jax.random.split(key, 250))[0]

    n = BATCH
    states = FN.vreset(jax.random.split(jax.random.key(5), n))
    final = jax.jit(jax.vmap(play))(states, jax.random.split(jax.random.key(6), n))
    tiles = np.asarray((final.board != 0).sum((1, 2))).astype(float)
    pairs = np.asarray(final.legal_action_mask.sum(-1)) / 2
    # games.md gives 30.2 tiles and 7.1 pairs without a standard error: assume the paper's
    # spread equals ours over 2,000 boards, as for its fresh-board statistic.
    assert abs(tiles.mean() - 30.2) < _z_tolerance(tiles, tiles.std(ddof=1) / np.sqrt(2000))
    assert abs(pairs.mean() - 7.1) < _z_tolerance(pairs, pairs.std(ddof=1) / np.sqrt(2000))
    np.testing.assert_array_equal(np.asarray(final.score), (36 - tiles) / 2)
    np.testing.assert_array_equal(np.asarray(final.step_count), 250)


# ---------------------------------------------------------------------------------------
# Properties

FN_SMALL = Compiled(SMALL)
_ALL_SMALL_ACTIONS = jnp.arange(SMALL.num_actions)
small_boards = st.lists(st.integers(0, 4), min_size=16, max_size=16).map(lambda v: np.array(v, np.int32).reshape(4, 4))


@settings(max_examples=60, deadline=None)
@given(board=small_boards, action=st.integers(-300, 300))
def test_step_either_removes_one_same_kind_pair_or_changes_nothing(board, action):
    state = FN_SMALL.from_board(board)
    after = FN_SMALL.step(state, action, jax.random.key(0))
    new = np.asarray(after.board)
    assert int(after.step_count) == 1
    if float(after.reward) == 1.0:
        removed = np.argwhere(new != board)
        assert len(removed) == 2 and (new[tuple(removed.T)] == 0).all()
        kinds = board[tuple(removed.T)]
        assert kinds[0] == kinds[1] != 0
        r1, c1, r2, c2 = (int(v) for v in SMALL.action_to_pair(action))
        assert {(r1, c1), (r2, c2)} == {tuple(p) for p in removed.tolist()}
        assert int(after.score) == 1 and bool(after.last_action_legal)
        assert bool(state.legal_action_mask[action])
    else:
        assert float(after.reward) == -1.0
        np.testing.assert_array_equal(new, board)
        assert int(after.score) == 0 and not bool(after.last_action_legal)
        assert not (0 <= action < SMALL.num_actions and bool(state.legal_action_mask[action]))
    assert after.reward.dtype == jnp.float32


@settings(max_examples=40, deadline=None)
@given(board=small_boards)
def test_legal_mask_is_exactly_the_actions_that_score(board):
    state = FN_SMALL.from_board(board)
    outcomes = FN_SMALL.each_action(state, _ALL_SMALL_ACTIONS, jax.random.key(0))
    scores = np.asarray(outcomes.reward) == 1.0
    np.testing.assert_array_equal(np.asarray(state.legal_action_mask), scores)
    np.testing.assert_array_equal(np.asarray(state.legal_action_mask).reshape((4,) * 4), bfs_mask(board))
    # Termination: exactly when nothing can be removed (an empty board included).
    assert bool(state.terminated) == (not scores.any())
    terminated = np.asarray(outcomes.terminated)
    np.testing.assert_array_equal(terminated, ~np.asarray(outcomes.legal_action_mask).any(-1))


@pytest.mark.slow
def test_terminal_states_have_no_legal_action_or_an_empty_board():
    def play(state, key):
        def body(s, k):
            # Always take the first legal action (or action 0 once nothing is legal).
            return ENV.step(s, jnp.argmax(s.legal_action_mask), k), (s.terminated, s.legal_action_mask.any())

        return jax.lax.scan(body, state, jax.random.split(key, 20))

    states = FN.vreset(jax.random.split(jax.random.key(9), BATCH))
    final, (terminated, any_legal) = jax.jit(jax.vmap(play))(states, jax.random.split(jax.random.key(1), BATCH))
    terminated, any_legal = np.asarray(terminated), np.asarray(any_legal)
    np.testing.assert_array_equal(terminated, ~any_legal)
    done = np.asarray(final.terminated)
    assert done.any()  # greedy play clears or blocks some boards within 20 moves
    empty = ~np.asarray(final.board).any((1, 2))
    assert (~np.asarray(final.legal_action_mask).any(-1) | empty)[done].all()
    cleared = FN.from_board(np.zeros((6, 6), np.int32))
    assert bool(cleared.terminated) and not bool(cleared.legal_action_mask.any())


# ---------------------------------------------------------------------------------------
# Batched boards (compile once, jit + vmap shapes and dtypes, determinism per key: the
# contract every game passes, tests/test_api_contract.py)

@pytest.mark.parametrize("game", sorted(COMPILED))
@pytest.mark.parametrize("batch", [1, BATCH])
@pytest.mark.slow
def test_batched_boards_masks_and_penalties_have_the_games_shapes(game, batch):
    env, fn = COMPILED[game]
    n = env.size
    keys = jax.random.split(jax.random.key(batch), batch)
    states = fn.vreset(keys)
    actions = jax.random.randint(jax.random.key(1), (batch,), -5, env.num_actions + 5)  # out-of-range ones too
    after = fn.vstep(states, actions, keys)
    for s in (states, after):
        chex.assert_shape(s.board, (batch, n, n))
        assert s.board.dtype == jnp.int32
        chex.assert_shape(s.legal_action_mask, (batch, n**4))  # a pair of cells, ordered
        if game == "shisensho-images":
            assert s.picture.dtype == jnp.int32 and s.picture.shape == (batch, n, n)
    assert fn.vrender(after).shape == (batch, *env.image_shape)
    assert set(np.unique(np.asarray(after.reward)).tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("game", sorted(COMPILED))
@pytest.mark.slow
def test_actions_evaluated_together_on_one_state_do_not_leak(game):
    env, fn = COMPILED[game]
    a = fn.vreset(jax.random.split(jax.random.key(11), BATCH))
    actions = jnp.flatnonzero(a.legal_action_mask[0], size=4)
    one = jax.tree.map(lambda x: x[0], a)
    outcomes = fn.each_action(one, actions, jax.random.key(0))
    for i, act in enumerate(actions.tolist()):
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], outcomes), fn.step(one, act, jax.random.key(5)))


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_image_tiles_of_a_class_show_different_images():
    states = FN_IMAGES.vreset(jax.random.split(jax.random.key(4), BATCH))
    boards = np.asarray(states.board).reshape(BATCH, -1)
    pictures = np.asarray(states.picture).reshape(BATCH, -1)
    seen = set()
    for board, picture in zip(boards, pictures, strict=True):
        assert len(np.unique(board)) == 9
        for k in np.unique(board):
            assert len(set(picture[board == k].tolist())) == 4
            seen.update((int(k), int(p)) for p in picture[board == k])
    # Every class and every one of its 8 images gets drawn.
    assert len(seen) == 10 * 8
    # A match empties the picture too.
    state = jax.tree.map(lambda x: x[0], states)
    after = FN_IMAGES.step(state, jnp.argmax(state.legal_action_mask).astype(jnp.int32), jax.random.key(0))
    assert float(after.reward) == 1.0
    assert (np.asarray(after.picture)[np.asarray(after.board) == 0] == 0).all()


# ---------------------------------------------------------------------------------------
# Rendering


def golden_board() -> np.ndarray:
    """Every kind of the default palette once, in order, with four cells emptied."""
    board = np.arange(1, 37, dtype=np.int32).reshape(6, 6)
    board[1, 2] = board[3, 3] = board[4, 0] = board[5, 5] = 0
    return board


def test_golden_image_shapes():
    state = FN.from_board(golden_board()).replace(score=jnp.int32(7))
    image = FN.render(state)
    assert image.shape == (448, 448, 3) and image.dtype == jnp.uint8
    assert_matches_golden(image, "shisensho_6x6")


def test_golden_image_images():
    board = np.repeat(np.arange(1, 10, dtype=np.int32), 4).reshape(6, 6)
    board[0, 1] = board[2, 4] = 0
    state = FN_IMAGES.from_board(board).replace(score=jnp.int32(12))
    assert_matches_golden(FN_IMAGES.render(state), "shisensho_images_6x6")


def test_render_shows_each_tile_in_its_cell():
    from renderers.shisensho import shape_tiles

    layout = ENV._renderer.layout
    board = golden_board()
    image = np.asarray(FN.render(FN.from_board(board)))
    atlas = shape_tiles(layout, ENV.colors, ENV.shapes)
    for (r, c), kind in np.ndenumerate(board):
        y, x = layout.top + r * layout.pitch, layout.left + c * layout.pitch
        np.testing.assert_array_equal(image[y : y + layout.pitch, x : x + layout.pitch], atlas[kind])
    # Distinct kinds look different; the empty cell is plain white inside.
    assert len({atlas[k].tobytes() for k in range(37)}) == 37
    inner = atlas[0][layout.gap : -layout.gap, layout.gap : -layout.gap]
    assert (inner == 255).all()


def test_render_images_follow_the_picture_field():
    board = np.zeros((6, 6), np.int32)
    board[0, 0] = board[0, 1] = 3
    a = FN_IMAGES.from_board(board, picture=np.zeros((6, 6), np.int32))
    b = FN_IMAGES.from_board(board, picture=np.full((6, 6), 5, np.int32))
    ia, ib = np.asarray(FN_IMAGES.render(a)), np.asarray(FN_IMAGES.render(b))
    layout = ENV_IMAGES._renderer.layout
    cell = np.s_[layout.top : layout.top + layout.pitch, layout.left : layout.left + layout.pitch]
    assert not np.array_equal(ia[cell], ib[cell])
    # The cell holds the class's image area-scaled into it, byte for byte.
    from renderers.draw import resize_area

    side = layout.inner - 2 * max(1, layout.pitch // 32)
    at = layout.gap // 2 + max(1, layout.pitch // 32)
    expected = resize_area(ENV_IMAGES.tiles.images[2, 5], side, side)
    np.testing.assert_array_equal(ib[cell][at : at + side, at : at + side], expected)


def test_status_line_changes_with_score_and_tiles():
    state = FN.from_board(golden_board())
    base = np.asarray(FN.render(state))
    scored = np.asarray(FN.render(state.replace(score=jnp.int32(5))))
    top = ENV._renderer.layout.status
    assert not np.array_equal(base[:top], scored[:top])
    np.testing.assert_array_equal(base[top:], scored[top:])


# ---------------------------------------------------------------------------------------
# Text: perception, prompt, answers


def test_perception_text_format():
    board = np.zeros((6, 6), np.int32)
    board[0, :3] = [1, 3 * 6 + 1, 1 * 6 + 6]  # Red circle, Yellow circle, Green star
    text = ENV.describe(FN.from_board(board))
    rows = text.split("\n")
    assert len(rows) == 6
    assert rows[0] == " Red circle | Yellow circle | Green star | - | - | - "
    assert rows[1] == "|".join([" - "] * 6)
    big = jaxgym.make("shisensho", colors=16)
    assert big.kind_names[7 * 6 + 6] == "Dark green star"
    full = FN.reset(jax.random.key(0))
    assert ENV.from_text(ENV.describe(full)).board.tolist() == full.board.tolist()


def test_perception_text_images():
    board = np.zeros((6, 6), np.int32)
    board[2, 1] = 1
    board[5, 5] = 10
    text = ENV_IMAGES.describe(FN_IMAGES.from_board(board))
    rows = text.split("\n")
    assert rows[2] == " - | stripes | - | - | - | - "
    assert rows[5].endswith("| zigzag ")


@pytest.mark.parametrize("env", [ENV, ENV_IMAGES], ids=["shapes", "images"])
def test_prompt_states_the_protocol(env):
    text = env.prompt()
    for needle in ("6x6", "(row, col)", "top-left", "outside", "two turns", "<perception></perception>",
                   "<think></think>", "<answer>", "0 to 5"):
        assert needle in text, needle
    if env is ENV_IMAGES:
        assert "airplane" not in text and "stripes" in text
    else:  # the vocabulary of the perception text
        for word in ("Red", "Cyan", "circle", "diamond", "star (drawn as an X)"):
            assert word in text, word
        assert "Maroon" not in text


@pytest.mark.parametrize(
    "text, pair",
    [
        ("<answer>(0, 1) (0, 2)</answer>", (0, 1, 0, 2)),
        ("<answer>(0,1),(0,2)</answer>", (0, 1, 0, 2)),
        ("<answer>\n(5, 4)\n(3, 2)\n</answer>", (5, 4, 3, 2)),
        ("<perception>x</perception><think>try (1, 1) (2, 2)?</think>  <ANSWER>  (1 , 0)   ( 2 ,3 )  </answer> bye",
         (1, 0, 2, 3)),
        ("<answer>(9, 9) (9, 9)</answer> no wait <answer>(0, 0) (1, 1)</answer>", (0, 0, 1, 1)),
        ("<answer>1 2 3 4</answer>", (1, 2, 3, 4)),
        ("<answer>（０，１）（０，２）</answer>", (0, 1, 0, 2)),  # full-width forms
        ("<answer>row 0, col 1 and row 0, col 2</answer>", (0, 1, 0, 2)),
    ],
)
def test_parse_answer_lenient(text, pair):
    assert ENV.parse_answer(text) == int(ENV.pair_to_action(*pair))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>(0, 6) (0, 2)</answer>", INVALID_ACTION),
        ("<answer>(-1, 0) (0, 2)</answer>", INVALID_ACTION),
        ("<answer>(0, 99999999999999999999) (0, 2)</answer>", INVALID_ACTION),
        ("<answer>(0, 1)</answer>", UNPARSEABLE),
        ("<answer>(0, 1) (0, 2) (0, 3)</answer>", UNPARSEABLE),
        ("<answer>(0, 1) (0, 2, 3)</answer>", UNPARSEABLE),
        ("<answer></answer>", UNPARSEABLE),
        ("(0, 1) (0, 2)", UNPARSEABLE),
        ("<answer>(0, 1) (0, 2)", UNPARSEABLE),
        ("<answer>two and three</answer>", UNPARSEABLE),
        ("", UNPARSEABLE),
        (None, UNPARSEABLE),
        (12, UNPARSEABLE),
        ("<answer>(٠, ١) (٠, ٢)</answer>", UNPARSEABLE),  # Arabic-Indic digits are not numbers here
    ],
)
def test_parse_answer_invalid_or_unparseable(text, expected):
    assert ENV.parse_answer(text) == expected


def test_parse_answer_bounded_time_on_huge_inputs():
    huge = [
        "<answer>" * 200_000,
        "<answer>" + "1" * 1_000_000 + "</answer>",
        "<answer>" + "(1, " * 250_000 + "</answer>",
        "x" * 1_000_000 + "<answer>(0, 1) (0, 2)</answer>",
        "<answer>(0, 1) (0, 2)</answer>" + "\n" * 1_000_000,
        "\u00e9\u0301" * 500_000,
    ]
    start = time.perf_counter()
    results = [ENV.parse_answer(t) for t in huge]
    # Linear-time parsing: a few MB of text in well under the generous bound.
    assert time.perf_counter() - start < 10
    assert results == [UNPARSEABLE, UNPARSEABLE, UNPARSEABLE, 38, 38, UNPARSEABLE]


def test_format_answer_round_trips():
    for action in range(SMALL.num_actions):
        assert SMALL.parse_answer(SMALL.format_answer(action)) == action
    for action in np.random.default_rng(0).integers(0, ENV.num_actions, 300).tolist() + [0, ENV.num_actions - 1]:
        text = ENV.format_answer(action)
        assert ENV.parse_answer(text) == action
        assert ENV_IMAGES.parse_answer(ENV_IMAGES.format_answer(action)) == action
    assert ENV.format_answer(38) == "<answer>(0, 1) (0, 2)</answer>"
    # INVALID_ACTION (what the parser gives an off-board pair) is written back as one.
    assert ENV.format_answer(INVALID_ACTION) == "<answer>(-1, -1) (-1, -1)</answer>"
    assert ENV.parse_answer(ENV.format_answer(INVALID_ACTION)) == INVALID_ACTION
    for bad in (-2, ENV.num_actions):
        with pytest.raises(ValueError, match=f"action={bad} is out of range"):
            ENV.format_answer(bad)


def test_action_codec():
    n = 6
    coords = np.stack(np.meshgrid(*[np.arange(-2, n + 2)] * 4, indexing="ij"), -1).reshape(-1, 4)
    flat = np.asarray(jax.jit(jax.vmap(lambda c: ss.pair_to_action(c[0], c[1], c[2], c[3], n)))(jnp.asarray(coords)))
    inside = ((coords >= 0) & (coords < n)).all(1)
    assert (flat[~inside] == INVALID_ACTION).all()
    np.testing.assert_array_equal(np.sort(flat[inside]), np.arange(n**4))  # a bijection, no aliasing
    back = np.stack([np.asarray(v) for v in ss.action_to_pair(jnp.asarray(flat[inside]), n)], -1)
    np.testing.assert_array_equal(back, coords[inside])
    for bad in (-1, n**4, 2**31 - 1, -(2**31)):
        assert [int(v) for v in ENV.action_to_pair(bad)] == [-1] * 4
    assert int(ENV.pair_to_action(10**15, 0, 0, 0)) == INVALID_ACTION
    assert int(ENV.pair_to_action(np.int64(2**40), 0, 0, 1)) == INVALID_ACTION
    assert int(ENV.pair_to_action(np.uint32(2**32 - 1), 0, 0, 1)) == INVALID_ACTION
    with pytest.raises(TypeError):
        ENV.pair_to_action(0.5, 0, 0, 1)


# ---------------------------------------------------------------------------------------
# Bad input


@pytest.mark.slow
def test_bad_actions_are_penalised_no_ops():
    state = FN.from_board(parse_board(WORKED_EXAMPLES[0][0]))
    step = FN.step
    for action in (-1, -(2**31), ENV.num_actions, ENV.num_actions + 38, 2**31 - 1,
                   int(ENV.pair_to_action(0, 0, 0, 0)),   # the same cell twice
                   int(ENV.pair_to_action(0, 2, 0, 3)),   # two empty cells
                   int(ENV.pair_to_action(0, 0, 1, 0))):  # different kinds
        after = step(state, action, jax.random.key(0))
        assert float(after.reward) == -1.0 and not bool(after.last_action_legal)
        np.testing.assert_array_equal(np.asarray(after.board), np.asarray(state.board))
        assert int(after.score) == 0 and int(after.step_count) == 1
    after = ENV.step(state, np.int64(2**40 + 38), jax.random.key(0))  # must not wrap onto 38
    assert float(after.reward) == -1.0
    with pytest.raises(TypeError):
        ENV.step(state, 1.0, jax.random.key(0))


@pytest.mark.parametrize(
    "params, named",
    [
        (dict(size=1), "size=1"),
        (dict(size=17), "size=17"),
        (dict(size=6, copies=3), "copies=3"),
        (dict(size=6, copies=0), "copies=0"),
        (dict(size=5), "copies=4"),
        (dict(colors=17), "colors=17"),
        (dict(colors=0), "colors=0"),
        (dict(shapes=7), "shapes=7"),
        (dict(size=12, colors=3, shapes=3), "9 kinds"),
        (dict(size=6.0), "6.0"),
        (dict(image_size=20), "image_size=20"),
    ],
)
def test_invalid_configs_raise(params, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        jaxgym.make("shisensho", **params)


@pytest.mark.parametrize(
    "params, named",
    [
        (dict(size=12), "10 classes"),
        (dict(size=4, copies=16), "has 8"),
        (dict(dataset="mnist"), "mnist"),
        (dict(dataset="patterns", images_per_class=4), "cifar10"),
    ],
)
def test_invalid_image_configs_raise(params, named):
    with pytest.raises(ValueError, match=named):
        jaxgym.make("shisensho-images", **params)


def test_from_board_validates():
    with pytest.raises(ValueError, match="shape"):
        ENV.from_board(np.zeros((5, 5), np.int32))
    with pytest.raises(ValueError, match="37"):
        ENV.from_board(np.full((6, 6), 37))
    with pytest.raises(ValueError, match="-1"):
        ENV.from_board(np.full((6, 6), -1))
    with pytest.raises(ValueError, match="picture"):
        ENV_IMAGES.from_board(np.ones((6, 6), np.int32), picture=np.full((6, 6), 8))
    with pytest.raises(ValueError, match="unknown cell"):
        ENV.from_text("\n".join(["|".join([" Red blob "] * 6)] * 6))


# ---------------------------------------------------------------------------------------
# Tile image data: the embedded default and the CIFAR-10 loader

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_fake_cifar(root: str, per_batch: int = 30) -> np.ndarray:
    """A ``cifar-10-batches-py`` directory in the real format (Python-2-style pickles with
    bytes keys, uint8 ``(N, 3072)`` rows of R, G, B planes); returns the images ``(5N, 32,
    32, 3)`` in file order with labels cycling 0..9."""
    directory = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(directory)
    rng = np.random.default_rng(0)
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    with open(os.path.join(directory, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    images = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pictures = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = [(i * 7 + len(images)) % 10 for i in range(per_batch)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": pictures.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        if name != "test_batch":
            images.append((pictures, np.asarray(labels)))
    return images


@pytest.mark.slow
def test_cifar10_loader_reads_the_pickle_layout(tmp_path):
    batches = write_fake_cifar(str(tmp_path))
    tiles = tile_images.load_cifar10(tmp_path, images_per_class=4)
    assert tiles.class_names == tuple(CIFAR_NAMES)
    assert tiles.images.shape == (10, 4, 32, 32, 3) and tiles.images.dtype == np.uint8
    pictures = np.concatenate([p for p, _ in batches])
    labels = np.concatenate([lab for _, lab in batches])
    for c in range(10):
        np.testing.assert_array_equal(tiles.images[c], pictures[labels == c][:4])
    # The directory itself works as data_dir too, and the env preset builds and plays.
    same = tile_images.load_cifar10(tmp_path / "cifar-10-batches-py", images_per_class=4)
    np.testing.assert_array_equal(same.images, tiles.images)
    env = jaxgym.make("shisensho-images", dataset="cifar10", data_dir=str(tmp_path), images_per_class=4)
    state = env.reset(jax.random.key(0))
    assert len(np.unique(np.asarray(state.board))) == 9
    assert set(env.describe(state).replace("|", " ").split()) <= set(CIFAR_NAMES)
    assert env.render(state).shape == (448, 448, 3)
    test_split = tile_images.load_cifar10(tmp_path, split="test", images_per_class=2)
    assert test_split.images.shape == (10, 2, 32, 32, 3)
    with pytest.raises(ValueError, match="images_per_class=100"):
        tile_images.load_cifar10(tmp_path, images_per_class=100)
    with pytest.raises(ValueError, match="split='val'"):
        tile_images.load_cifar10(tmp_path, split="val")


def test_cifar10_missing_directory_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        jaxgym.make("shisensho-images", dataset="cifar10", data_dir=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message


def test_cifar10_loader_refuses_code_in_pickles(tmp_path):
    write_fake_cifar(str(tmp_path), per_batch=10)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": Evil()}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        tile_images.load_cifar10(tmp_path, images_per_class=1)


def test_embedded_patterns_are_distinct_images():
    tiles = tile_images.pattern_tiles()
    assert tiles.images.shape == (10, 8, 32, 32, 3)
    flat = tiles.images.reshape(80, -1)
    assert len({row.tobytes() for row in flat}) == 80
    # Matches the committed generator bit for bit.
    import importlib.util

    path = os.path.join(os.path.dirname(jaxgym.__file__), "assets", "build_pattern_tiles.py")
    spec = importlib.util.spec_from_file_location("build_pattern_tiles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images, names = module.build()
    assert names == tiles.class_names
    assert np.abs(images.astype(int) - tiles.images).max() <= 1  # float rounding across machines


def test_custom_tile_images():
    rng = np.random.default_rng(0)
    custom = tile_images.TileImages(rng.integers(0, 256, (9, 4, 8, 8, 3), dtype=np.uint8), [f"c{i}" for i in range(9)])
    env = jaxgym.make("shisensho-images", dataset=custom)
    state = env.reset(jax.random.key(1))
    assert env.describe(state).count(" c") == 36
    with pytest.raises(ValueError, match="class name"):
        tile_images.TileImages(custom.images, ["a|b"] + [f"c{i}" for i in range(8)])
    with pytest.raises(ValueError, match="uint8"):
        tile_images.TileImages(custom.images.astype(np.float32), custom.class_names)
