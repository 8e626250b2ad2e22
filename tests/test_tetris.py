"""Tetris: Jumanji's Tetris as a differential oracle on the same wells and pieces, invariants,
line-clear scores, parsing and pictures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgym
from jaxgym import tetris as T
from jaxgym.core import INVALID_ACTION, UNPARSEABLE
from tests.golden import assert_matches_golden

_JITTED: dict = {}


def _jit_step(env):
    """``jax.jit(env.step)``, one per game configuration (eager steps compile op by op)."""
    return _JITTED.setdefault(("step", env.id, repr(vars(env))), jax.jit(env.step))


def _jit_render(env):
    return _JITTED.setdefault(("render", env.id, repr(vars(env))), jax.jit(env.render))


def jumanji_mapping():
    """``(piece_map (7,), rotation_map (7, 4))``: Jumanji's piece index and rotation index of
    each of our (piece, rotation) shapes, found by comparing the 4x4 shapes."""
    from jumanji.environments.packing.tetris.constants import TETROMINOES_LIST

    theirs = np.array(TETROMINOES_LIST, bool)
    piece_map = np.zeros(7, np.int32)
    rotation_map = np.zeros((7, 4), np.int32)
    for p in range(7):
        matches = [q for q in range(7) if any((theirs[q, r] == T.PIECE_SHAPES[p, 0]).all() for r in range(4))]
        assert len(matches) == 1, (T.PIECE_NAMES[p], matches)
        piece_map[p] = matches[0]
        for r in range(4):
            same = [s for s in range(4) if (theirs[matches[0], s] == T.PIECE_SHAPES[p, r]).all()]
            assert same, (T.PIECE_NAMES[p], r)
            rotation_map[p, r] = same[0]
    return piece_map, rotation_map


@pytest.mark.slow
def test_pieces_are_the_seven_tetrominoes_with_all_rotations():
    piece_map, _ = jumanji_mapping()
    assert sorted(piece_map.tolist()) == list(range(7))
    assert (T.PIECE_SHAPES.sum(axis=(2, 3)) == 4).all()
    # Four quarter turns come back; rotation r + 1 is rotation r turned clockwise.
    for p in range(7):
        for r in range(4):
            turned = np.rot90(T.PIECE_SHAPES[p, r], -1)
            turned = turned[np.ix_(turned.any(axis=1), turned.any(axis=0))]
            nxt = T.PIECE_SHAPES[p, (r + 1) % 4]
            assert nxt[np.ix_(nxt.any(axis=1), nxt.any(axis=0))].shape == turned.shape
            assert (nxt[np.ix_(nxt.any(axis=1), nxt.any(axis=0))] == turned).all()


@pytest.mark.slow
@pytest.mark.parametrize("rows,cols", [(20, 10), (10, 10), (8, 6)])
def test_step_matches_jumanji_on_random_legal_play(rows, cols):
    """Both play the same legal placement of the same piece from the same well, step after
    step (>= 10,000 steps per size, restarting finished games): wells, rewards and legal
    masks agree. Illegal actions are not compared: Jumanji places the piece anyway and ends
    the episode, jaxgym makes them penalised no-ops."""
    from jumanji.environments.packing.tetris.env import Tetris as JumanjiTetris

    env = jaxgym.make("tetris", rows=rows, cols=cols)
    oracle = JumanjiTetris(num_rows=rows, num_cols=cols, time_limit=10**6)
    piece_map, rotation_map = (jnp.asarray(a) for a in jumanji_mapping())
    batch, steps = 128, 80

    def their_mask(grid_padded, piece):
        mask = oracle._calculate_action_mask(jnp.clip(grid_padded, max=1), piece_map[piece])  # (4, cols), theirs
        return mask[rotation_map[piece]].reshape(-1)  # in our (rotation, column) order

    def one_step(ours, theirs, action, key, reset_key):
        rotation, column = action // cols, action % cols
        theirs = theirs.replace(
            tetromino_index=piece_map[ours.piece],
            action_mask=oracle._calculate_action_mask(jnp.clip(theirs.grid_padded, max=1), piece_map[ours.piece]),
        )
        theirs, timestep = oracle.step(theirs, jnp.stack([rotation_map[ours.piece, rotation], column]))
        ours = env.step(ours, action, key)
        agree = (
            jnp.all((ours.board != 0) == (theirs.grid_padded[:rows, :cols] != 0))
            & (ours.reward == timestep.reward)
            & jnp.all(ours.legal_action_mask == their_mask(theirs.grid_padded, ours.piece))
        )
        # Finished games restart on both sides with an empty well.
        fresh = env.reset(reset_key)
        their_fresh, _ = oracle.reset(reset_key)
        done = ours.terminated
        ours = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, ours)
        theirs = jax.tree.map(lambda a, b: jnp.where(done, a, b), their_fresh, theirs)
        return ours, theirs, agree, done, ours.reward

    step = jax.jit(jax.vmap(one_step))
    keys = jax.random.split(jax.random.key(rows * 100 + cols), batch)
    ours = jax.vmap(env.reset)(keys)
    theirs, _ = jax.vmap(oracle.reset)(keys)
    lines = games = 0
    for t in range(steps):
        k = jax.random.split(jax.random.key(t), 3 * batch).reshape(3, batch)
        actions = jax.vmap(lambda key, m: jax.random.categorical(key, jnp.where(m, 0.0, -1e9)))(
            k[0], ours.legal_action_mask
        ).astype(jnp.int32)
        ours, theirs, agree, done, _ = step(ours, theirs, actions, k[1], k[2])
        assert bool(jnp.all(agree)), f"step {t}: boards {np.flatnonzero(~np.asarray(agree))[:5]} disagree"
        games += int(jnp.sum(done))
        lines += int(jnp.sum(ours.lines))
    assert batch * steps >= 10_000
    assert games > 0, "random play should end some games"


@pytest.mark.slow
def test_single_row_clear_scores_40_and_four_rows_1200():
    env = jaxgym.make("tetris", rows=6, cols=4)
    board = np.zeros((6, 4), np.int32)
    board[-4:, 1:] = 2  # a one-column hole at column 0, four rows deep
    state = env.from_board(board, piece=0)
    vertical_i = 1 * 4 + 0  # rotation 1 (vertical), column 0
    out = _jit_step(env)(state, vertical_i, jax.random.key(0))
    assert bool(out.last_action_legal) and float(out.reward) == 1200 and int(out.lines) == 4
    assert int(out.score) == 1200 and not np.asarray(out.board).any()

    board = np.zeros((6, 4), np.int32)
    board[-1, 1:] = 4  # the bottom row misses column 0
    board[-2, 2:] = 4
    # J in rotation 0 is "#.." over "###": at column 0 its "###" stops on (4, 2), one row
    # above the hole, so nothing clears.
    landed = _jit_step(env)(env.from_board(board, piece=5), 0 * 4 + 0, jax.random.key(0))
    assert bool(landed.last_action_legal) and float(landed.reward) == 0 and int(landed.lines) == 0
    assert env.describe(landed).split("\n")[-4:] == ["#...", "###.", "..##", ".###"]


@pytest.mark.slow
def test_line_clear_keeps_the_rows_above_in_order():
    env = jaxgym.make("tetris", rows=5, cols=4)
    board = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [6, 0, 0, 0], [7, 7, 0, 0], [1, 1, 0, 7]])
    state = env.from_board(board, piece=1)
    out = _jit_step(env)(state, 0 * 4 + 2, jax.random.key(0))
    # The O at column 2 rests on (4, 3), filling (2..3, 2..3): row 3 is full and clears.
    assert float(out.reward) == 40 and int(out.lines) == 1
    assert env.describe(out).split("\n") == ["....", "....", "....", "#.##", "##.#"]
    assert np.asarray(out.board)[3].tolist() == [6, 0, 2, 2]


def test_illegal_actions_are_penalised_no_ops():
    env = jaxgym.make("tetris", rows=6, cols=4)
    state = env.from_board(np.zeros((6, 4), np.int32), piece=0)
    assert state.legal_action_mask.reshape(4, 4).tolist() == [
        [True, False, False, False],  # horizontal I only fits at column 0
        [True, True, True, True],
        [True, False, False, False],
        [True, True, True, True],
    ]
    for action in (1, 3, 16, -1, INVALID_ACTION, 2**31 - 1):
        out = _jit_step(env)(state, action, jax.random.key(0))
        assert not bool(out.last_action_legal) and float(out.reward) == T.ILLEGAL_PENALTY
        assert np.array_equal(out.board, state.board) and int(out.piece) == 0 and int(out.step_count) == 1


def _reference_drop(board: np.ndarray, piece: int, rotation: int, column: int) -> tuple[bool, int, np.ndarray]:
    """``(legal, top, board)`` by the rules in words, cell by cell: the piece may enter when
    the cells it sweeps through in the top rows are inside the walls and free; it then moves
    down one row at a time while its next position is free."""
    rows, cols = board.shape
    filled = np.pad(board != 0, ((0, 4), (0, 4)), constant_values=True)

    def free(shape, y):
        return not (filled[y : y + 4, column : column + 4] & shape).any()

    if not free(T.PIECE_SWEPT[piece, rotation], 0):
        return False, -1, board
    shape = T.PIECE_SHAPES[piece, rotation]
    top = 0
    while free(shape, top + 1):
        top += 1
    out = board.copy()
    ys, xs = np.nonzero(shape)
    out[top + ys, column + xs] = piece + 1
    kept = out[~(out != 0).all(axis=1)]
    return True, top, np.concatenate([np.zeros((rows - len(kept), cols), out.dtype), kept])


@pytest.mark.slow
@pytest.mark.parametrize("rows,cols", [(20, 10), (6, 5)])
def test_placements_match_a_cell_by_cell_drop_on_wells_with_overhangs(rows, cols):
    """Random wells, overhangs and holes included (not only wells that play can reach):
    legal masks, landing rows and placed wells equal a direct simulation of the drop."""
    rng = np.random.default_rng(rows * 100 + cols)
    boards = (rng.random((60, rows, cols)) < rng.random((60, 1, 1)) * 0.6) * rng.integers(1, 8, (60, rows, cols))
    pieces = rng.integers(0, 7, 60)
    legal = np.asarray(jax.jit(jax.vmap(T.legal_placements))(boards, pieces))
    tops = np.asarray(jax.jit(jax.vmap(T.landing_rows))(boards, pieces))
    placed = jax.jit(jax.vmap(jax.vmap(T.place, in_axes=(None, None, 0, 0)), in_axes=(0, 0, None, None)))
    rotation, column = np.divmod(np.arange(4 * cols), cols)
    wells, _, _ = (np.asarray(a) for a in placed(boards, pieces, rotation, column))
    for b in range(len(boards)):
        for r, c in zip(rotation, column):
            ok, top, well = _reference_drop(boards[b], int(pieces[b]), int(r), int(c))
            assert legal[b, r, c] == ok, (b, r, c)
            if ok:
                assert tops[b, r, c] == top, (b, r, c)
                assert np.array_equal(wells[b, r * cols + c], well), (b, r, c)


def test_game_over_when_the_next_piece_cannot_enter():
    env = jaxgym.make("tetris", rows=4, cols=4)
    board = np.array([[0, 0, 0, 0], [3, 3, 0, 3], [3, 3, 0, 3], [3, 0, 3, 3]])
    state = env.from_board(board, piece=1)  # an O cannot enter anywhere
    assert bool(state.terminated) and not bool(jnp.any(state.legal_action_mask))
    alive = env.from_board(board, piece=0)  # a vertical I goes into column 2
    assert not bool(alive.terminated)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, 60))
def test_invariants_under_random_play(seed, length):
    """Legal placements add 4 cells and clear whole rows; no state has a full row; the
    score is the sum of rewards of legal steps; illegal actions change nothing."""
    env = jaxgym.make("tetris", rows=8, cols=6)
    step = _jitted(env)
    state = env.reset(jax.random.key(seed))
    total = 0
    for t, key in enumerate(jax.random.split(jax.random.key(seed), length)):
        a_key, s_key = jax.random.split(key)
        action = jax.random.randint(a_key, (), -2, env.num_actions + 2)
        before = state
        state = step(before, action, s_key)
        filled = int(np.count_nonzero(before.board))
        after = int(np.count_nonzero(state.board))
        if bool(state.last_action_legal):
            assert after == filled + 4 - env.cols * (int(state.lines) - int(before.lines))
            total += int(state.reward)
        else:
            assert np.array_equal(state.board, before.board) and int(state.piece) == int(before.piece)
            assert float(state.reward) == T.ILLEGAL_PENALTY
        assert not (np.asarray(state.board) != 0).all(axis=1).any()
        assert int(state.score) == total and int(state.step_count) == t + 1
        if bool(state.terminated):
            break


_JIT = {}


def _jitted(env):
    return _JIT.setdefault((env.rows, env.cols), jax.jit(env.step))


@pytest.mark.slow
def test_next_piece_is_uniform():
    pieces = jax.vmap(T.draw_piece)(jax.random.split(jax.random.key(0), 7000))
    counts = np.bincount(np.asarray(pieces), minlength=7)
    assert len(counts) == 7 and (np.abs(counts - 1000) < 150).all(), counts


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<answer>1 4</answer>", 14),
        ("<answer>(0, 9)</answer>", 9),
        ("<think>hmm</think><answer>rotation 3, column 0</answer>", 30),
        ("<answer>0 0</answer> no <answer>2\n5</answer>", 25),
        ("<answer>4 0</answer>", INVALID_ACTION),
        ("<answer>0 10</answer>", INVALID_ACTION),
        ("<answer>-1 3</answer>", INVALID_ACTION),
        ("<answer>３ ２</answer>", 32),
        ("<answer>3</answer>", UNPARSEABLE),
        ("<answer>left</answer>", UNPARSEABLE),
        ("1 4", UNPARSEABLE),
        (None, UNPARSEABLE),
    ],
)
def test_parse_answer(text, expected):
    assert jaxgym.make("tetris").parse_answer(text) == expected


def test_format_answer_round_trips_and_prompt():
    env = jaxgym.make("tetris")
    for action in range(env.num_actions):
        assert env.parse_answer(env.format_answer(action)) == action
    assert env.parse_answer(env.format_answer(INVALID_ACTION)) == INVALID_ACTION
    prompt = env.prompt()
    for needed in ("20 rows and 10 columns", "40, 100, 300 or 1200", "<perception>", "<answer>1 4</answer>"):
        assert needed in prompt


@pytest.mark.parametrize(
    "params,message",
    [({"rows": 3}, "rows=3"), ({"cols": 21}, "cols=21"), ({"max_steps": 0}, "max_steps=0"), ({"rows": 4.0}, "rows")],
)
def test_parameters_are_validated(params, message):
    with pytest.raises(ValueError, match=message):
        jaxgym.make("tetris", **params)


@pytest.mark.parametrize(
    "board,piece,message",
    [
        (np.zeros((5, 4), np.int32), 0, "shape"),
        (np.full((6, 4), 8), 0, "0..7"),
        (np.ones((6, 4), np.int32), 0, "full rows"),
        (np.full((6, 4), 0.5), 0, "integer"),
        (np.zeros((6, 4), np.int32), 7, "piece=7"),
    ],
)
def test_from_board_rejects_bad_input(board, piece, message):
    with pytest.raises(ValueError, match=message):
        jaxgym.make("tetris", rows=6, cols=4).from_board(board, piece=piece)


def _literal_state(env):
    board = np.zeros((20, 10), np.int32)
    board[-1, :9] = np.arange(9) % 7 + 1
    board[-2, :5] = 3
    board[-2, 6:] = [6, 6, 7, 7]
    board[-3, 2] = 5
    return env.from_board(board, piece=2).replace(score=jnp.int32(140), lines=jnp.int32(3))


def test_golden_image():
    env = jaxgym.make("tetris")
    assert_matches_golden(np.asarray(jax.jit(env.render)(_literal_state(env))), "tetris_20x10")


def test_golden_image_small():
    env = jaxgym.make("tetris", image_size=112)
    assert_matches_golden(np.asarray(_jit_render(env)(_literal_state(env))), "tetris_20x10_112")


@pytest.mark.slow
def test_render_shows_the_piece_and_the_well():
    env = jaxgym.make("tetris", image_size=112)
    state = _literal_state(env)
    images = [np.asarray(_jit_render(env)(state.replace(piece=jnp.int32(p)))) for p in range(7)]
    assert len({im.tobytes() for im in images}) == 7
    stepped = _jit_step(env)(state, int(np.flatnonzero(state.legal_action_mask)[0]), jax.random.key(0))
    assert not np.array_equal(np.asarray(_jit_render(env)(stepped.replace(piece=state.piece))), images[2])
