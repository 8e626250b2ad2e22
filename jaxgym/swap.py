"""Swap (match-3) in pure JAX, on a configurable ``size x size`` board (default 8x8).

Rules (``docs/games.md``, Swap): a move swaps two orthogonally adjacent tiles and is
valid iff afterwards some row or column holds a run of 3 or more identical tiles. A valid
move resolves in *waves*: every cell of every run (rows and columns as one set, so an L, T or
+ counts its shared cell once) is removed at once, scoring ``k * (k - 1)`` for a wave of
``k`` cells; the tiles above fall down; the emptied cells at the top of each column take new
random tiles; this repeats while runs exist. If the board then has no valid move it is
reshuffled until it has one and no run. An invalid move leaves the board as it was and
scores -1.

Every function below is pure and branch-free (selects, bounded ``lax.while_loop``), so
``vmap`` over thousands of boards runs one program. A tile *kind* ``k`` is the pair
(colour ``k // shapes``, shape ``k % shapes``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from jaxgym import parsing
from jaxgym.core import (
    INVALID_ACTION,
    Array,
    Env,
    PRNGKey,
    State,
    check_board,
    check_int_param,
    initial_fields,
    resolve_image_size,
)
from jaxgym.grid import slide_left
from jaxgym.palette import COLOR_NAMES, SHAPES
from jaxgym.protocol import EvalPreset, GameProtocol, random_cell_pairs

MAX_SHAPES = len(SHAPES)

REDRAWS = 10
"""The paper's generator redraws a cell at most this many times while it completes a run."""
MAX_SETTLE_STEPS = 64
"""Cap on the waves plus shuffles of one ``settle`` (one move, or a reset). Measured on
20,000 random valid moves from fresh 8x8 boards (``benchmarks/swap_settle.py --moves 20000``):
17.5% need a second wave or shuffle, 5% a third, 1% a fourth, 0.2% a fifth, the longest 9
(each further step happens with probability about 0.2 to 0.3), so the cap is never reached
in practice. If it were, ``fallback_board``, a constructed board with no run and a valid
swap, takes the board's place: every step terminates with the invariant intact."""


@struct.dataclass
class SwapState(State):
    """State of one Swap board (fields of ``jaxgym.core.State`` plus the board).

    Attributes:
        board: int32 ``(size, size)`` of tile kinds ``0..colors*shapes - 1``; kind ``k`` is
            colour ``k // shapes`` and shape ``k % shapes``. Always full.
    """

    board: Array


def num_swaps(size: int) -> int:
    """Number of orthogonally adjacent cell pairs, the flat action count: ``2*size*(size-1)``.

    >>> num_swaps(8)
    112
    """
    return 2 * size * (size - 1)


def _xp(*values: Any) -> Any:
    """jax.numpy for JAX inputs (jit/vmap), NumPy for host ints (cheap in parsers)."""
    return jnp if any(isinstance(v, jax.Array) for v in values) else np


def pair_to_action(r1: Any, c1: Any, r2: Any, c2: Any, size: int) -> Any:
    """The flat action swapping cells ``(r1, c1)`` and ``(r2, c2)`` (either order).

    Actions ``0 .. size*(size-1) - 1`` are the horizontal pairs ``(r, c)-(r, c+1)`` at
    ``r*(size-1) + c``; the next ``size*(size-1)`` are the vertical pairs ``(r, c)-(r+1, c)``
    at ``size*(size-1) + r*size + c``. Cells that are off the board, equal, diagonal or
    further apart give ``INVALID_ACTION`` (-1), never another swap. Works on host ints and,
    elementwise, on JAX arrays.

    >>> int(pair_to_action(0, 1, 0, 2, 8)), int(pair_to_action(1, 0, 0, 0, 8))
    (1, 56)
    >>> int(pair_to_action(0, 7, 0, 8, 8)), int(pair_to_action(0, 0, 1, 1, 8))
    (-1, -1)
    """
    xp = _xp(r1, c1, r2, c2)
    r1, c1, r2, c2 = (xp.asarray(v) for v in (r1, c1, r2, c2))
    on_board = (r1 >= 0) & (r1 < size) & (c1 >= 0) & (c1 < size) & (r2 >= 0) & (r2 < size) & (c2 >= 0) & (c2 < size)
    horizontal = (r1 == r2) & (xp.abs(c1 - c2) == 1)
    vertical = (c1 == c2) & (xp.abs(r1 - r2) == 1)
    top, left = xp.minimum(r1, r2), xp.minimum(c1, c2)
    h_action = r1 * (size - 1) + left
    v_action = size * (size - 1) + top * size + c1
    action = xp.where(horizontal, h_action, v_action)
    return xp.where(on_board & (horizontal | vertical), action, INVALID_ACTION).astype(xp.int32)


def action_to_pair(action: Any, size: int) -> tuple[Any, Any, Any, Any]:
    """``(r1, c1, r2, c2)`` of a flat action, the top/left cell first; ``(-1, -1, -1, -1)``
    for an action outside ``0 .. num_swaps(size) - 1``. Host ints or JAX arrays.

    >>> [int(v) for v in action_to_pair(1, 8)], [int(v) for v in action_to_pair(56, 8)]
    ([0, 1, 0, 2], [0, 0, 1, 0])
    """
    xp = _xp(action)
    action = xp.asarray(action)
    half = size * (size - 1)
    valid = (action >= 0) & (action < 2 * half)
    vertical = action >= half
    h, v = action, action - half
    r1 = xp.where(vertical, v // size, h // (size - 1))
    c1 = xp.where(vertical, v % size, h % (size - 1))
    r2 = r1 + vertical
    c2 = c1 + ~vertical
    return tuple(xp.where(valid, x, -1).astype(xp.int32) for x in (r1, c1, r2, c2))


def apply_swap(board: Array, action: Array) -> Array:
    """The board with the two cells of ``action`` exchanged (unchanged for an invalid action)."""
    size = board.shape[-1]
    r1, c1, r2, c2 = action_to_pair(jnp.asarray(action, jnp.int32), size)
    valid = r1 >= 0
    p = jnp.where(valid, r1 * size + c1, 0)
    q = jnp.where(valid, r2 * size + c2, 0)
    flat = board.ravel()
    swapped = flat.at[p].set(flat[q]).at[q].set(flat[p])
    return swapped.reshape(board.shape)


def _triples(board: Array) -> tuple[Array, Array]:
    """bool ``(G, G-2)``/``(G-2, G)``: three equal cells start here, along rows/columns."""
    rows = (board[:, :-2] == board[:, 1:-1]) & (board[:, 1:-1] == board[:, 2:])
    cols = (board[:-2, :] == board[1:-1, :]) & (board[1:-1, :] == board[2:, :])
    return rows, cols


def run_cells(board: Array) -> Array:
    """bool ``(G, G)``: the cells in a row or column run of 3 or more equal tiles.

    >>> run_cells(jnp.array([[0, 0, 0], [1, 2, 1], [2, 1, 2]])).astype(int).tolist()
    [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
    """
    rows, cols = _triples(board)
    # A cell is in a run if a triple starts at it or at one of the two cells before it.
    rows = jnp.pad(rows, ((0, 0), (2, 2)))
    cols = jnp.pad(cols, ((2, 2), (0, 0)))
    in_row = rows[:, 2:] | rows[:, 1:-1] | rows[:, :-2]
    in_col = cols[2:, :] | cols[1:-1, :] | cols[:-2, :]
    return in_row | in_col


def has_run(board: Array) -> Array:
    """bool ``()``: some row or column has a run of 3 or more equal tiles."""
    rows, cols = _triples(board)
    return jnp.any(rows) | jnp.any(cols)


def swap_creates_run(board: Array) -> Array:
    """bool ``(num_swaps,)``: which adjacent swaps create a run, for a board without a run.

    Only the two moved tiles can be in a new run, so each swap is decided from the cells
    within two steps of its pair, for all swaps at once (the legal-action mask). On a board
    that already has a run the answer is only about runs through the moved cells.
    """
    size = board.shape[-1]
    padded = jnp.pad(board, 2, constant_values=-1)  # -1 equals no kind

    def at(dr: int, dc: int) -> Array:
        return padded[2 + dr : 2 + dr + size, 2 + dc : 2 + dc + size]

    def receives_run(dr: int, dc: int) -> Array:
        """Does the tile from the neighbour at (dr, dc) complete a run in this cell?"""
        kind = at(dr, dc)

        def same(steps: int, along: tuple[int, int]) -> Array:
            return at(steps * along[0], steps * along[1]) == kind

        back, across = (-dr, -dc), (dc, dr)  # away from the neighbour; the perpendicular axis
        beyond = same(1, back) & same(2, back)
        through = (
            (same(1, across) & same(2, across))
            | (same(-1, across) & same(1, across))
            | (same(-1, across) & same(-2, across))
        )
        return (kind >= 0) & (beyond | through)

    horizontal = receives_run(0, 1)[:, :-1] | receives_run(0, -1)[:, 1:]
    vertical = receives_run(1, 0)[:-1, :] | receives_run(-1, 0)[1:, :]
    return jnp.concatenate([horizontal.ravel(), vertical.ravel()])


def uniform_kinds(bits: Array, kinds: int) -> Array:
    """Random 32-bit words to kinds ``0..kinds-1`` (modulo bias below ``kinds / 2**32``)."""
    return (bits % jnp.uint32(kinds)).astype(jnp.int32)


def _step_bits(key: PRNGKey, step: Array | int, size: int) -> Array:
    return jax.random.bits(jax.random.fold_in(key, step), (2 * size * size,), jnp.uint32)


def settle_draws(key: PRNGKey, step: Array | int, size: int, kinds: int) -> tuple[Array, Array]:
    """The randomness of settle step ``step`` (waves and shuffles counted together) of a
    settle with ``key``: ``(refill, order)``.

    ``refill`` int32 ``(size, size)``: if the step is a wave, the emptied cell ``(r, c)`` (at
    the top of column ``c``) takes ``refill[r, c]``. ``order`` int32 ``(size*size,)``: if the
    step is a shuffle, the board becomes ``board.ravel()[order].reshape(size, size)`` (a
    uniformly random permutation: the stable sort of random 32-bit keys, whose ties, below
    1e-6 per shuffle, keep their order). Public so that a reference implementation can replay
    a move with the same tiles. One draw of random bits feeds both (it compiles fast)."""
    bits = _step_bits(key, step, size)
    order = jnp.argsort(bits[size * size :], stable=True).astype(jnp.int32)
    return _refill_tiles(bits, size, kinds), order


def _refill_tiles(step_bits: Array, size: int, kinds: int) -> Array:
    """The ``refill`` of ``settle_draws``, from the step's random bits (the first half)."""
    return uniform_kinds(step_bits[: size * size], kinds).reshape(size, size)


def permute_by_keys(board: Array, sort_keys: Array) -> Array:
    """``board.ravel()[argsort(sort_keys, stable=True)]`` reshaped, without a sort: each
    tile's rank among the keys is counted, which vectorises better than a sort of 64.

    >>> permute_by_keys(jnp.array([[10, 11], [12, 13]]), jnp.array([7, 3, 9, 3], jnp.uint32)).tolist()
    [[11, 13], [10, 12]]
    """
    n = sort_keys.shape[0]
    index = jnp.arange(n)
    before = (sort_keys[None, :] < sort_keys[:, None]) | (
        (sort_keys[None, :] == sort_keys[:, None]) & (index[None, :] < index[:, None])
    )
    rank = jnp.sum(before, axis=1)  # tile i goes to position rank[i]
    lands = rank[:, None] == index[None, :]
    return jnp.sum(jnp.where(lands, board.reshape(n, 1), 0), axis=0).reshape(board.shape)


def collapse(board: Array, removed: Array, refill: Array) -> Array:
    """Remove ``removed`` cells, let the tiles above fall, and fill the emptied top cells
    from ``refill`` (same shape as the board).

    >>> collapse(jnp.array([[1], [2], [3]]), jnp.array([[False], [True], [False]]),
    ...          jnp.array([[7], [8], [9]])).ravel().tolist()
    [7, 1, 3]
    """
    tiles = jnp.where(removed, 0, board + 1)
    bottom_up_columns = tiles[::-1, :].T
    fallen = slide_left(bottom_up_columns).T[::-1, :] - 1
    return jnp.where(fallen < 0, refill, fallen)


def clear_wave(board: Array, refill: Array) -> tuple[Array, Array]:
    """One wave: remove every run cell at once, collapse, refill. ``(board, points)`` with
    ``points = k * (k - 1)`` for the ``k`` removed cells (0 if the board has no run).

    >>> board = jnp.array([[5, 6, 7, 8], [1, 1, 1, 2], [3, 4, 1, 4], [4, 3, 1, 3]])
    >>> board, points = clear_wave(board, jnp.full((4, 4), 9))   # an L of 5 cells
    >>> int(points), board.tolist()
    (20, [[9, 9, 9, 8], [5, 6, 9, 2], [3, 4, 9, 4], [4, 3, 7, 3]])
    """
    cells = run_cells(board)
    k = jnp.sum(cells, dtype=jnp.int32)
    return collapse(board, cells, refill), k * (k - 1)


def is_settled(board: Array) -> Array:
    """bool ``()``: the board has no run and at least one valid swap (the game's invariant)."""
    return ~has_run(board) & jnp.any(swap_creates_run(board))


def fallback_board(first: Array, second: Array, size: int) -> Array:
    """A settled board for when ``settle`` reached ``MAX_SETTLE_STEPS``: 2x2 blocks of the
    kinds ``first != second`` in a checkerboard.

    Every row and column reads ``a a b b a a ...``, so there is no run; swapping ``(1, 2)``
    with ``(2, 2)`` turns row 1 into ``a a a ...`` (for any ``size >= 3``), a valid move.

    >>> board = fallback_board(jnp.int32(3), jnp.int32(7), 4)
    >>> board.tolist(), bool(is_settled(board))
    ([[3, 3, 7, 7], [3, 3, 7, 7], [7, 7, 3, 3], [7, 7, 3, 3]], True)
    """
    blocks = (np.arange(size)[:, None] // 2 + np.arange(size)[None, :] // 2) % 2 == 1
    return jnp.where(jnp.asarray(blocks), second, first).astype(jnp.int32)


def settle(board: Array, key: PRNGKey, kinds: int) -> tuple[Array, Array, Array, Array]:
    """Bring a board to rest: ``(board, points, waves, shuffles)``.

    Step ``i = 0, 1, ...`` while the board is not settled, with ``refill, order =
    settle_draws(key, i)``: if the board has a run, clear a wave refilled from ``refill``;
    otherwise (no run, no valid swap) shuffle it by ``order``. Like the paper's game, the runs
    a shuffle creates are cleared in scored waves, and a shuffle that leaves no valid swap is
    shuffled again. ``points`` sums ``k * (k - 1)`` over all waves. After ``MAX_SETTLE_STEPS``
    steps the board is ``fallback_board`` of its first kind and another, so the result is
    always settled.

    The loop runs in rounds (the waves while runs remain, then one shuffle if still needed),
    so that under ``vmap`` the costlier shuffle is computed once per round for the batch,
    not once per wave.
    """
    size = board.shape[-1]
    n = size * size
    Carry = tuple[Array, Array, Array, Array]

    def steps_left(carry: Carry) -> Array:
        _, _, waves, shuffles = carry
        return waves + shuffles < MAX_SETTLE_STEPS

    def wave_pending(carry: Carry) -> Array:
        return has_run(carry[0]) & steps_left(carry)

    def wave(carry: Carry) -> Carry:
        board, points, waves, shuffles = carry
        refill = _refill_tiles(_step_bits(key, waves + shuffles, size), size, kinds)
        board, gained = clear_wave(board, refill)
        return board, points + gained, waves + 1, shuffles

    def unsettled(carry: Carry) -> Array:
        return ~is_settled(carry[0]) & steps_left(carry)

    def settle_round(carry: Carry) -> Carry:
        board, points, waves, shuffles = lax.while_loop(wave_pending, wave, carry)
        # No run now (unless the cap was hit): a board that is still unsettled has no valid swap.
        shuffle = unsettled((board, points, waves, shuffles))
        shuffled = permute_by_keys(board, _step_bits(key, waves + shuffles, size)[n:])
        return jnp.where(shuffle, shuffled, board), points, waves, shuffles + shuffle

    zero = jnp.int32(0)
    board, points, waves, shuffles = lax.while_loop(unsettled, settle_round, (board, zero, zero, zero))
    first = board[0, 0]
    fallback = fallback_board(first, (first + 1) % kinds, size)
    return jnp.where(is_settled(board), board, fallback), points, waves, shuffles


def fill_candidates(key: PRNGKey, size: int, kinds: int) -> Array:
    """int32 ``(size, size, REDRAWS + 1)``: the draw and the redraws of every cell for
    ``fill_board`` (public so a reference fill can use the same draws)."""
    bits = jax.random.bits(key, (size * size * (REDRAWS + 1),), jnp.uint32)
    return uniform_kinds(bits, kinds).reshape(size, size, REDRAWS + 1)


def fill_board(candidates: Array) -> Array:
    """The paper's initial fill: cells in row-major order, each taking its first draw that
    does not complete a run with the two cells to its left or the two above it, or its last
    draw after ``REDRAWS`` redraws.

    A cell only looks left and up, so all cells of one anti-diagonal ``r + c = d`` depend
    only on earlier anti-diagonals: the fill runs in ``2*size - 1`` vectorised steps and gives
    exactly the row-major result.

    >>> cands = jnp.zeros((3, 3, REDRAWS + 1), jnp.int32).at[:, :, 1:].set(1)
    >>> fill_board(cands).tolist()   # the third 0 of a line is redrawn to 1
    [[0, 0, 1], [0, 0, 1], [1, 1, 0]]
    """
    size = candidates.shape[0]
    width = size + 2  # two columns and rows of padding (-1, equal to no kind) left and above
    draws_of_cell = candidates.reshape(size * size, -1)
    # Per anti-diagonal: its cells' flat indices and their positions in the padded board;
    # short diagonals are padded with cell 0 written to the padded corner, which no cell reads.
    cells = np.zeros((2 * size - 1, size), np.int32)
    positions = np.zeros((2 * size - 1, size), np.int32)
    for d in range(2 * size - 1):
        rows = np.arange(max(0, d - size + 1), min(d, size - 1) + 1)
        cells[d, : len(rows)] = rows * size + (d - rows)
        positions[d, : len(rows)] = (rows + 2) * width + (d - rows) + 2
    cells, positions = jnp.asarray(cells), jnp.asarray(positions)

    def fill_diagonal(d: Array, padded: Array) -> Array:
        p, draws = positions[d], draws_of_cell[cells[d]]  # (size,), (size, REDRAWS + 1)
        left1, left2, up1, up2 = padded[p - 1], padded[p - 2], padded[p - width], padded[p - 2 * width]
        completes = ((left1 == left2)[:, None] & (draws == left1[:, None])) | (
            (up1 == up2)[:, None] & (draws == up1[:, None])
        )
        fits = ~completes
        first = jnp.take_along_axis(draws, jnp.argmax(fits, axis=1)[:, None], 1)[:, 0]
        return padded.at[p].set(jnp.where(jnp.any(fits, axis=1), first, draws[:, -1]))

    padded = lax.fori_loop(0, 2 * size - 1, fill_diagonal, jnp.full((width * width,), -1, jnp.int32))
    return padded.reshape(width, width)[2:, 2:]


@jax.jit
def _state_from_board(board: Array) -> SwapState:
    """A fresh state (score 0, no moves) for a settled board."""
    return SwapState(board=board, **initial_fields(swap_creates_run(board)))


def _saturating_add(total: Array, gain: Array) -> Array:
    limit = jnp.iinfo(jnp.int32).max
    return jnp.where(gain > limit - total, limit, total + gain).astype(jnp.int32)


class Swap(parsing.CellPairAnswers, Env):
    """Swap (match-3) on a ``size x size`` board of ``colors x shapes`` tile kinds.

    Parameters (``jaxgym.make("swap", ...)``; out-of-range values raise ValueError):
        size: board side, 4..12 (default 8, the paper's).
        colors: 1..16, the first colours of ``jaxgym.palette`` (default 4: Red, Green, Blue,
            Yellow, the paper's).
        shapes: 1..6, the first shapes of ``jaxgym.palette.SHAPES`` (default 3: circle,
            square, triangle, the paper's). ``colors * shapes`` must be at least 4; with few
            kinds cascades and reshuffles get long (still capped).
        max_moves: 1..10**9, steps until ``truncated`` (default 100, the paper's evaluation
            length; the paper's own game never ended).
        image_size: int or ``(height, width)``, default 448.

    Spec sheet:
        - **state** (``SwapState``): ``board`` int32 ``(size, size)`` of kinds (kind ``k`` is
          colour ``jaxgym.palette.COLOR_NAMES[k // shapes]``, shape
          ``jaxgym.palette.SHAPES[k % shapes]`` (``env.kind_name(k)``); the default
          kinds are 0 Red circle, 1 Red square, 2 Red triangle, 3 Green circle, ...,
          11 Yellow triangle); ``reward`` float32 ``()``; ``terminated`` (always False),
          ``truncated`` and ``last_action_legal`` bool ``()``; ``legal_action_mask`` bool
          ``(2*size*(size-1),)``; ``step_count`` int32 ``()`` (actions taken, valid or not);
          ``score`` int32 ``()`` (sum of wave scores, saturating at the int32 maximum).
        - **action**: int, one of the ``2*size*(size-1)`` adjacent swaps (112 for 8x8):
          horizontal pairs ``(r, c)-(r, c+1)`` at ``r*(size-1) + c``, then vertical pairs
          ``(r, c)-(r+1, c)`` at ``size*(size-1) + r*size + c``. ``pair_to_action`` and
          ``action_to_pair`` convert; a pair of cells that are not adjacent, or off the
          board, is ``INVALID_ACTION``.
        - **reward**: float32, the sum of ``k*(k-1)`` over the waves of a valid move (a wave
          removes ``k`` cells: 3 -> 6, 4 -> 12, two separate 3-runs -> 30). A swap that makes
          no run, and any action outside the range (``INVALID_ACTION`` included), is a
          no-op with reward -1: only ``step_count`` (+1), ``reward``, ``last_action_legal``
          (False) and ``truncated`` change. This is the raw reward; the +1/-1 training
          shaping belongs to the bridges.
        - **termination**: never (a board always has a valid move). ``truncated`` is set once
          ``step_count`` reaches ``max_moves`` (default 100, the paper's evaluation length);
          stepping on afterwards keeps working.
        - **randomness** (from the explicit keys only): reset splits its key into a fill key
          (``fill_candidates``: the paper's row-major fill with up to 10 redraws, then
          ``fill_board``) and a settle key; a valid step settles with the step key itself.
          ``settle`` with key ``k``: its ``i``-th wave or shuffle draws ``settle_draws(k, i)``
          (the refill tiles, or the permutation). At most ``MAX_SETTLE_STEPS`` of them, then
          a constructed ``fallback_board``: every step terminates, and every state has a full
          board, no run and a valid swap.
        - **render**: ``(H, W, 3)`` uint8, default 448x448: checkerboard cells (240/230
          grey), each tile a raised light square with its coloured, outlined shape, and a
          status line ``Score: 36  Moves: 12/100`` (``renderers/swap.py``).
        - **perception text**: rows joined by newlines, cells by `` | ``; a cell is
          ``{Colour} {shape}``, e.g. ``Red circle``.
        - **answer**: ``<answer>(r1, c1) (r2, c2)</answer>``, lenient about whitespace and
          separators (``(0,1),(0,2)``, one pair per line, square brackets); the last answer
          block counts. Well-formed pairs that are off the board or not adjacent parse to
          ``INVALID_ACTION``.

    Where the paper's code differs on purpose: the reset score is 0 (the reference kept the
    points of the runs cleared while generating the board). As in the reference, a reshuffle's
    own runs are cleared in scored waves that count towards the move's reward (this is what
    gives the reference's reward statistics), and scores are its ``k * (1 + k - 2)``.
    """

    name = "swap"
    version = 0
    invalid_action_reward = -1.0
    # The paper's: fresh boards, successful swaps counted in evaluation.
    # lmgame-bench's Candy Crush (github.com/lmgame-org/GamingAgent @ 996d848,
    # gamingagent/configs/custom_03_candy_crush/config.yaml: max_steps 50, num_runs 3;
    # gamingagent/envs/custom_03_candy_crush/game_env_config.json: num_rows 8, num_cols 8,
    # num_colours 4, num_moves 50, no specials) is Swap 8x8 with 4 colours of one shape.
    protocol = GameProtocol(
        sample_depth=0, sample_policy="uniform", eval_warmup=0, w_format=1.0, w_perception=1.0,
        shaping="sign", eval_score="success", random_answer=random_cell_pairs,
        eval_presets=(("lmgame", EvalPreset(
            runs=3, steps=50, warmup=0, params={"size": 8, "colors": 4, "shapes": 1, "max_moves": 50})),),
    )
    # The answer may list numbered steps around its two cells ("1. First: (5, 5)").
    first_two_pairs = True
    # Its words; the colours and shapes are Shisen-Sho's (frozen: see ShisenSho.tokenizer_corpus).
    tokenizer_corpus: ClassVar[tuple[str, ...]] = (" swap match",)

    def __init__(
        self,
        size: int = 8,
        colors: int = 4,
        shapes: int = 3,
        max_moves: int = 100,
        image_size: int | tuple[int, int] = 448,
    ):
        self.size = check_int_param("size", size, 4, 12)
        self.colors = check_int_param("colors", colors, 1, len(COLOR_NAMES))
        self.shapes = check_int_param("shapes", shapes, 1, MAX_SHAPES)
        self.color_names = COLOR_NAMES[: self.colors]
        self.shape_names = SHAPES[: self.shapes]
        self.kinds = self.colors * self.shapes
        if self.kinds < 4:
            raise ValueError(
                f"colors * shapes = {colors} * {shapes} = {self.kinds} tile kinds is too few; "
                f"allowed: at least 4 kinds (e.g. colors=2, shapes=2)"
            )
        self.max_moves = check_int_param("max_moves", max_moves, 1, 10**9)
        self.step_limit = self.max_moves
        self.image_size = resolve_image_size(image_size)
        self.num_actions = num_swaps(self.size)

    # --- actions -------------------------------------------------------------------------

    def pair_to_action(self, r1: Any, c1: Any, r2: Any, c2: Any) -> Any:
        """See the module function ``pair_to_action``."""
        return pair_to_action(r1, c1, r2, c2, self.size)

    def action_to_pair(self, action: Any) -> tuple[Any, Any, Any, Any]:
        """See the module function ``action_to_pair``."""
        return action_to_pair(action, self.size)

    def settle_draws(self, key: PRNGKey, step: Array | int) -> tuple[Array, Array]:
        """``(refill, order)`` of settle step ``step`` of a move with ``key`` (see the module
        function ``settle_draws``)."""
        return settle_draws(key, step, self.size, self.kinds)

    # --- dynamics ------------------------------------------------------------------------

    def reset(self, key: PRNGKey) -> SwapState:
        fill_key, settle_key = jax.random.split(key)
        board = fill_board(fill_candidates(fill_key, self.size, self.kinds))
        board, _, _, _ = settle(board, settle_key, self.kinds)
        return _state_from_board(board)

    def _step(self, state: SwapState, action: Array, key: PRNGKey) -> tuple[SwapState, Array]:
        swapped = apply_swap(state.board, action)
        valid = has_run(swapped)
        # An invalid move settles the unchanged, already settled board: no wave, no shuffle.
        settled, gained, _, _ = settle(jnp.where(valid, swapped, state.board), key, self.kinds)
        next_state = state.replace(
            board=settled,
            reward=gained.astype(jnp.float32),
            terminated=jnp.bool_(False),
            legal_action_mask=swap_creates_run(settled),
            score=_saturating_add(state.score, gained),
        )
        return next_state, valid

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        """Kinds as ``from_board`` accepts them (see ``Env.field_bounds``)."""
        return {**super().field_bounds(), "board": (0, self.kinds - 1)}

    def from_board(self, board: Any) -> SwapState:
        """A state for a board of kinds (score 0, no moves yet). The board must be what the
        game can show: full, kinds in range, no run, at least one valid swap."""
        arr = check_board(
            board, (self.size, self.size), 0, self.kinds - 1, what="kinds",
            detail=f" ({self.colors} colours x {self.shapes} shapes)", whole_floats=False,
        )
        if arr is None:  # traced: no checks
            return _state_from_board(jnp.asarray(board).astype(jnp.int32))
        state = _state_from_board(jnp.asarray(arr, jnp.int32))  # jitted: eager ops compile one by one
        if bool(has_run(state.board)):
            raise ValueError("board has a run of 3 or more; a Swap board never rests with a run")
        if not bool(jnp.any(state.legal_action_mask)):
            raise ValueError("board has no valid swap; a Swap board always has one (the game reshuffles)")
        return state

    # --- text ----------------------------------------------------------------------------

    def kind_name(self, kind: int) -> str:
        """``"{Colour} {shape}"`` of a tile kind, e.g. ``"Red circle"``."""
        kind = int(kind)
        if not 0 <= kind < self.kinds:
            raise ValueError(f"kind={kind} is out of range; allowed: 0..{self.kinds - 1}")
        return f"{self.color_names[kind // self.shapes]} {self.shape_names[kind % self.shapes]}"

    def _describe(self, state: SwapState) -> str:
        board = np.asarray(state.board)
        names = [self.kind_name(k) for k in range(self.kinds)]
        return "\n".join(" | ".join(names[int(k)] for k in row) for row in board)

    def _prompt(self) -> str:
        n = self.size
        colors = ", ".join(self.color_names)
        shapes = ", ".join(self.shape_names)
        return (
            f"You are playing Swap, a match-3 puzzle, on the {n}x{n} board shown in the image. "
            f"Every cell holds a tile: a shape ({shapes}) in a colour ({colors}). Two tiles are "
            "identical when both colour and shape are the same.\n"
            f"Cells are named (row, col), counted from 0 at the top-left cell: rows go down "
            f"from 0 to {n - 1}, columns go right from 0 to {n - 1}.\n"
            "A move swaps two tiles that are side by side in a row or a column (never "
            "diagonal). The move only counts if, after the swap, three or more identical "
            "tiles stand in a line in some row or column; otherwise nothing happens and the "
            "move is wasted. Lines of identical tiles disappear and score points, the tiles "
            "above fall down, and new tiles drop in from the top, which can make more lines.\n"
            "Goal: make a move that counts.\n\n"
            + parsing.response_format(
                "one line per row from top to bottom, the cells of a row separated by ' | ', each cell "
                "written as its colour and shape, for example 'Red circle | Blue square | ...'.",
                "the two cells to swap",
                "(0, 1) (0, 2)",
            )
        )

    def _pair_action(self, r1: int, c1: int, r2: int, c2: int) -> int:
        """``pair_to_action`` of four on-board cells (host ints): ``INVALID_ACTION`` unless
        the cells are adjacent."""
        return int(pair_to_action(r1, c1, r2, c2, self.size))
