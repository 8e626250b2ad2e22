"""Shisen-Sho (tile matching) in pure JAX, with coloured-shape tiles or image tiles.

Rules (``docs/games.md``): two tiles of the same kind at distinct cells are removed
together when a path of orthogonal steps joins them through empty cells with at most two
turns (three straight segments). The path may run through a one-cell empty ring around the
board. The game ends when the board is empty or no pair can be removed.

Two games share every rule and function here; only the source of the tile kinds differs:

- ``"shisensho"``: a kind is a (colour, shape) pair from ``jaxgym.palette.COLORS`` and
  ``jaxgym.palette.SHAPES``.
- ``"shisensho-images"``: a kind is an image class; the copies of a class show different
  images of it (``jaxgym.tile_images``), and tiles match by class, not by picture.

The connection test is a branch-free bitset kernel (``path_bits``, ``connected_cells``):
for each cell, the set of columns its row reaches through empty cells, and for each pair of
rows, the set of columns whose segment between them is clear. A horizontal-vertical-
horizontal path between P and Q exists iff the three sets share a column; vertical-first
paths use the same sets along columns. Straight and one-turn paths are the degenerate
cases, so the legal mask over all ``size**4`` pairs is three bitwise operations and a test
per pair (both orientations packed in one uint32 up to 14x14), one streaming pass.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxgym import parsing
from jaxgym._xla import computed_apart
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
from jaxgym.palette import COLOR_NAMES, SHAPES
from jaxgym.protocol import GameProtocol, random_cell_pairs

MIN_SIZE, MAX_SIZE = 2, 16
MAX_COLORS = len(COLOR_NAMES)
MAX_SHAPES = len(SHAPES)
RESET_TRIES = 8
"""Fresh boards drawn per reset before the last one is repaired (see ``ShisenSho.reset``)."""


@struct.dataclass
class ShisenShoState(State):
    """State of one Shisen-Sho board (fields of ``jaxgym.core.State`` plus the board).

    Attributes:
        board: int32 ``(size, size)``; 0 is an empty cell, ``k > 0`` a tile of kind ``k``
            (see ``ShisenSho.kind_names``).
    """

    board: Array


@struct.dataclass
class ShisenShoImageState(ShisenShoState):
    """State of one image-tile Shisen-Sho board.

    Attributes:
        picture: int32 ``(size, size)``; which image of its class each tile shows (an index
            into the dataset's images of that class), 0 on empty cells.
    """

    picture: Array


# --------------------------------------------------------------------------------------
# Actions


def _to_int32(value: Any) -> Array:
    """An integer scalar or array as int32, out-of-range values clamped (never wrapped)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return jnp.int32(parsing.clamp_to_int32(int(value)))
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(f"coordinates and actions must be integers, got dtype {value.dtype}")
    info = jnp.iinfo(value.dtype)
    if info.bits > 32 or not jnp.issubdtype(value.dtype, jnp.signedinteger):
        value = jnp.clip(value, max(info.min, parsing.INT32_MIN), parsing.INT32_MAX)
    return value.astype(jnp.int32)


def pair_to_action(r1: Any, c1: Any, r2: Any, c2: Any, size: int) -> Array:
    """The flat action ``((r1*size + c1)*size + r2)*size + c2`` of a pair of cells, or
    ``INVALID_ACTION`` (-1) if any coordinate is outside ``0..size-1`` (never wrapped).

    Works on Python ints and on integer arrays (broadcast, jit- and vmap-able).

    >>> int(pair_to_action(0, 1, 0, 2, size=6)), int(pair_to_action(0, 6, 0, 2, size=6))
    (38, -1)
    """
    coords = [_to_int32(v) for v in (r1, c1, r2, c2)]
    inside = functools.reduce(jnp.logical_and, [(v >= 0) & (v < size) for v in coords])
    r1, c1, r2, c2 = (jnp.clip(v, 0, size - 1) for v in coords)
    flat = ((r1 * size + c1) * size + r2) * size + c2
    return jnp.where(inside, flat, INVALID_ACTION).astype(jnp.int32)


def action_to_pair(action: Any, size: int) -> tuple[Array, Array, Array, Array]:
    """``(r1, c1, r2, c2)`` of a flat action; all four are -1 for an action outside
    ``0..size**4-1``. Works on Python ints and integer arrays.

    >>> [int(v) for v in action_to_pair(38, size=6)], [int(v) for v in action_to_pair(6**4, size=6)]
    ([0, 1, 0, 2], [-1, -1, -1, -1])
    """
    action = _to_int32(action)
    inside = (action >= 0) & (action < size**4)
    flat = jnp.where(inside, action, 0)
    c2, rest = flat % size, flat // size
    r2, rest = rest % size, rest // size
    c1, r1 = rest % size, rest // size
    return tuple(jnp.where(inside, v, -1).astype(jnp.int32) for v in (r1, c1, r2, c2))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------
# The connection kernel


def _pack_bits(flags: Array, axis: int) -> Array:
    """uint32 of the booleans along ``axis`` (at most 32 of them), element ``k`` as bit ``k``."""
    n = flags.shape[axis]
    weights = jnp.left_shift(jnp.uint32(1), jnp.arange(n, dtype=jnp.uint32)).reshape(
        [n if i == axis % flags.ndim else 1 for i in range(flags.ndim)]
    )
    return jnp.sum(jnp.where(flags, weights, jnp.uint32(0)), axis=axis, dtype=jnp.uint32)


def path_bits(board: Array) -> tuple[Array, Array, Array, Array]:
    """The bitsets behind every path with at most two turns on ``board``.

    Rows and columns are numbered in the padded grid (0 is the ring before the board,
    ``size + 1`` the ring after it); bit ``c`` stands for padded column (or row) ``c``:

    - ``reach_h`` uint32 ``(size, size)``: bit ``c`` of ``reach_h[r, j]`` is set iff every
      cell of row ``r`` from ``(r, j)`` to ``(r, c)``, except ``(r, j)`` itself, is empty (so
      the cell's own column is always set).
    - ``bridge_v`` uint32 ``(size, size)``: bit ``c`` of ``bridge_v[a, b]`` is set iff every
      cell of column ``c`` strictly between rows ``a`` and ``b`` is empty (all bits when
      ``|a - b| <= 1``).
    - ``reach_v`` and ``bridge_h``: the same along columns: bit ``r`` of ``reach_v[i, c]``
      for the column segment from ``(i, c)`` to ``(r, c)``; bit ``r`` of ``bridge_h[a, b]``
      for row ``r`` strictly between columns ``a`` and ``b``.

    P = (a, j) and Q = (b, k) are joined by P -> (a, c) -> (b, c) -> Q for some column c iff
    ``reach_h[a, j] & reach_h[b, k] & bridge_v[a, b]`` is nonzero, and by a path that starts
    vertically iff ``reach_v[a, j] & reach_v[b, k] & bridge_h[j, k]`` is nonzero. Every path
    with at most two turns is one of the two (straight and one-turn paths included).

    >>> reach_h, bridge_v, reach_v, bridge_h = path_bits(jnp.array([[1, 0, 2], [0, 0, 0], [0, 0, 0]]))
    >>> [format(int(v), "05b") for v in reach_h[0]]   # bits for padded columns 4..0
    ['00111', '00100', '11100']
    >>> format(int(bridge_v[0, 2]), "05b")             # row 1 between rows 0 and 2 is empty
    '11111'
    >>> format(int(reach_v[2, 0]), "05b"), format(int(bridge_h[0, 2]), "05b")
    ('11100', '11111')
    """
    size = board.shape[-1]
    m = size + 2
    occupied = jnp.pad((board != 0).astype(jnp.int32), 1)
    # row_count[r, c]: tiles in padded row r left of padded column c; col_count[r, c]: tiles
    # in padded column c above padded row r. Every segment's tile count is a difference of
    # two of them. Only slices, broadcasts and selects follow (no gathers, no transposes), so
    # under vmap these small arrays keep the batch axis first and the size**4 pass over pairs
    # stays a streaming loop.
    row_count = jnp.pad(jnp.cumsum(occupied, axis=1), ((0, 0), (1, 0)))
    col_count = jnp.pad(jnp.cumsum(occupied, axis=0), ((1, 0), (0, 0)))
    tile = occupied[1:-1, 1:-1]
    cell = jnp.arange(size)[:, None] + 1  # padded index of board row/column i
    target = jnp.arange(m)[None, :]  # padded index of the far end of a segment
    ahead = target >= cell  # (size, m): the far end lies at or after the cell

    def runs(count: Array) -> Array:
        """[line, i, t]: tiles on the segment from cell i to t of each line, cell excluded,
        for ``count[line, k]`` = tiles before position k of the line."""
        after = count[:, None, 1:] - count[:, 1 : size + 1, None]  # t >= i: (i, t]
        before = count[:, 2 : size + 2, None] - count[:, None, :m]  # t < i: [t, i)
        return jnp.where(ahead, after, before)

    def gaps(count: Array) -> Array:
        """[a, b, line]: tiles strictly between board positions a and b of each line, for
        ``count[k, line]`` = tiles before position k; negative (clear) when a == b."""
        upper, lower = count[2 : size + 2], count[1 : size + 1]  # before a + 1, before a
        a, b = jnp.arange(size)[:, None, None], jnp.arange(size)[None, :, None]
        return jnp.where(a < b, lower[None, :, :] - upper[:, None, :], lower[:, None, :] - upper[None, :, :])

    runs_h = runs(row_count[1:-1]) - tile[:, :, None]  # [r, j, c]
    runs_v = runs(col_count[:, 1:-1].T) - tile.T[:, :, None]  # [c, i, r]
    return (
        _pack_bits(runs_h == 0, -1),
        _pack_bits(gaps(col_count) <= 0, -1),
        _pack_bits(runs_v == 0, -1).T,
        _pack_bits(gaps(row_count.T) <= 0, -1),
    )


def connected_cells(board: Array) -> Array:
    """bool ``(size, size, size, size)``: ``[r1, c1, r2, c2]`` is True iff the cells are
    distinct and a path with at most two turns joins them through empty cells (the two
    cells themselves may hold tiles; kinds are ignored).

    >>> board = jnp.array([[1, 0, 2], [3, 3, 3], [3, 3, 3]])
    >>> bool(connected_cells(board)[0, 0, 0, 2]), bool(connected_cells(board)[1, 1, 2, 1])
    (True, True)
    >>> bool(connected_cells(board)[1, 1, 2, 2])
    False
    """
    size = board.shape[-1]
    reach_h, bridge_v, reach_v, bridge_h = path_bits(board)
    r1, c1, r2, c2 = (jnp.arange(size).reshape([-1 if i == axis else 1 for i in range(4)]) for axis in range(4))
    distinct = (r1 != r2) | (c1 != c2)
    if size + 2 <= 16:
        # Both bitsets fit one word (row-first bits low, column-first bits high): one AND
        # chain per pair instead of two; this pass over size**4 pairs is the step's cost.
        reach = reach_h | (reach_v << 16)
        bridge = bridge_v[:, None, :, None] | (bridge_h[None, :, None, :] << 16)
        return distinct & ((reach[:, :, None, None] & reach[None, None] & bridge) != 0)
    row_first = reach_h[:, :, None, None] & reach_h[None, None] & bridge_v[:, None, :, None]
    col_first = reach_v[:, :, None, None] & reach_v[None, None] & bridge_h[None, :, None, :]
    return distinct & ((row_first | col_first) != 0)


def connectable_pairs(board: Array) -> Array:
    """bool ``(size, size, size, size)``: which ordered pairs of cells can be removed now
    (both tiles, same kind, distinct, connected). Flattened, this is the legal action mask.

    >>> board = jnp.array([[1, 2], [2, 1]])       # no pair: the diagonals need 3 turns
    >>> int(connectable_pairs(board).sum())
    0
    >>> int(connectable_pairs(jnp.array([[1, 1], [2, 2]])).sum())   # 2 pairs, both orders
    4
    """
    same_kind = (board[:, :, None, None] == board[None, None]) & (board != 0)[:, :, None, None]
    return same_kind & connected_cells(board)


def legal_action_mask(board: Array) -> tuple[Array, Array]:
    """``(mask, stuck)``: the legal mask over the ``size**4`` flat actions (bool) and
    whether it is all False (no pair left, or an empty board).

    >>> mask, stuck = legal_action_mask(jnp.array([[1, 1], [2, 2]]))
    >>> mask.shape, int(mask.sum()), bool(stuck)
    ((16,), 4, False)
    """
    # Computed apart, the 4-D mask is a buffer and the reshape to flat actions free; fused
    # into the pair loop, that reshape costs XLA:CPU per-element div/mod (3-4x slower).
    pairs = computed_apart(connectable_pairs, board)
    return pairs.reshape(-1), ~jnp.any(pairs)


@functools.cache
def _full_board_links(size: int) -> np.ndarray:
    """bool ``(size**2, size**2)``: which distinct cells of a *full* board are connected.

    With every cell occupied, a path can only leave a tile straight into its neighbour or
    into the ring, and a two-turn path through the ring returns to the board on the edge it
    left (reaching another edge round a corner takes three turns). So two cells connect iff
    they are adjacent or lie on the same edge of the board.
    """
    r, c = np.divmod(np.arange(size * size), size)
    adjacent = np.abs(r[:, None] - r[None]) + np.abs(c[:, None] - c[None]) == 1
    last = size - 1
    same_edge = np.zeros_like(adjacent)
    for line, end in ((r, 0), (r, last), (c, 0), (c, last)):
        same_edge |= (line[:, None] == end) & (line[None] == end)
    return (adjacent | same_edge) & ~np.eye(size * size, dtype=bool)


def full_board_legal_mask(board: Array) -> Array:
    """bool ``(size**4,)``: the legal mask of a board with no empty cell (a fresh deal), equal
    to ``legal_action_mask(board)[0]`` there but with no pass of the path kernel: the
    geometry of a full board is fixed (``_full_board_links``), only the kinds vary.

    >>> full_board_legal_mask(jnp.array([[1, 2], [2, 1]])).reshape(4, 4).astype(int).tolist()
    [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    >>> mask = full_board_legal_mask(jnp.array([[1, 2, 1], [3, 4, 5], [2, 5, 3]]))
    >>> [divmod(int(a), 9) for a in jnp.flatnonzero(mask)]   # the 1s meet through the ring
    [(0, 2), (2, 0)]
    """
    flat = board.reshape(-1)
    same_kind = (flat[:, None] == flat[None, :]) & (flat != 0)[:, None]
    return (same_kind & _full_board_links(board.shape[-1])).reshape(-1)


def pair_connectable(board: Array, r1: Array, c1: Array, r2: Array, c2: Array) -> Array:
    """bool ``()``: whether the tiles at ``(r1, c1)`` and ``(r2, c2)`` can be removed.
    Coordinates must be on the board (``step`` maps others to the penalised no-op).

    >>> bool(pair_connectable(jnp.array([[1, 2], [2, 1]]), 0, 0, 1, 1))
    False
    """
    reach_h, bridge_v, reach_v, bridge_h = path_bits(board)
    row_first = reach_h[r1, c1] & reach_h[r2, c2] & bridge_v[r1, r2]
    col_first = reach_v[r1, c1] & reach_v[r2, c2] & bridge_h[c1, c2]
    kind = board[r1, c1]
    distinct = (r1 != r2) | (c1 != c2)
    return (kind != 0) & (kind == board[r2, c2]) & distinct & ((row_first | col_first) != 0)


def _force_pair(board: Array, picture: Array) -> tuple[Array, Array]:
    """Swap a copy of the first cell's kind next to it (flat boards, the first cell a tile):
    the two leftmost cells of row 0 then form a connectable pair."""
    idx = jnp.arange(board.shape[0])
    partner = jnp.argmax(jnp.where((board == board[0]) & (idx > 0), idx, -1))
    swap = jnp.where(idx == 1, partner, jnp.where(idx == partner, 1, idx))
    return board[swap], picture[swap]


# --------------------------------------------------------------------------------------
# The games


class ShisenSho(parsing.CellPairAnswers, Env):
    """Shisen-Sho on a ``size x size`` board of coloured-shape tiles.

    Spec sheet:
        - **parameters**: ``size`` 2..16 (default 6), ``colors`` 1..16 and ``shapes`` 1..6
          (the first ones of ``jaxgym.palette.COLORS`` and ``jaxgym.palette.SHAPES``, default
          6 and 6), ``copies`` per kind (even, >= 2, divides ``size**2``, default 4);
          ``size**2 / copies`` must not exceed ``colors * shapes``. ``image_size`` as in
          ``jaxgym.core.resolve_image_size`` (default 448).
        - **state** (``ShisenShoState``): ``board`` int32 ``(size, size)``, 0 empty, ``k > 0``
          the tile of kind ``k``: colour ``(k - 1) // shapes``, shape ``(k - 1) % shapes``
          (``kind_names[k]``, e.g. kind 1 is ``"Red circle"``); ``reward`` float32 ``()``;
          ``terminated``, ``truncated``, ``last_action_legal`` bool ``()``;
          ``legal_action_mask`` bool ``(size**4,)``; ``step_count`` int32 ``()``; ``score``
          int32 ``()``, the number of successful matches so far.
        - **action**: a flat int ``((r1*size + c1)*size + r2)*size + c2`` naming the pair
          ``(r1, c1), (r2, c2)`` (``pair_to_action``/``action_to_pair``);
          ``num_actions == size**4``. Both orders of a pair are the same move.
        - **reward**: float32, +1 when the pair is removed; -1 for anything else (an action
          outside ``0..size**4-1``, an empty cell, different kinds, the same cell twice, no
          path), which changes nothing but ``step_count`` (+1), ``reward`` and
          ``last_action_legal`` (False).
        - **termination**: the board is empty or no pair is connectable (after a step, or
          already at ``from_board``). No time limit: wrap with ``TimeLimit``.
        - **randomness**: only ``reset`` draws: ``size**2 / copies`` distinct kinds uniformly
          from the ``colors * shapes`` available, ``copies`` tiles of each, shuffled over the
          board. A board with no connectable pair is redrawn (rejection sampling, so fresh
          boards are uniform over boards with a pair) up to ``RESET_TRIES`` times; the last
          try is repaired instead by swapping a copy of the top-left tile's kind next to it,
          so ``reset`` always terminates and always has a pair, under ``vmap`` too. On the
          default 6x6 board a redraw is practically never needed. ``step`` ignores its key.
        - **render**: ``(H, W, 3)`` uint8, default 448x448: white cells on a light grey
          (200, 200, 200) grid, each tile its colour filled into its shape with a thin black
          outline (cross and X without), and a status line with the score and the tiles left
          (``renderers/shisensho.py``).
        - **perception text**: rows joined by newlines, cells by ``|``; a cell is
          `` {Colour} {shape} `` (e.g. `` Dark green star ``) or `` - ``.
        - **answer**: ``<answer>(r1, c1) (r2, c2)</answer>``, the last answer block. Any
          separators between the numbers are accepted (``(0,1),(0,2)``, one per line, no
          brackets). Exactly four integers are required: fewer or more is ``"unparseable"``
          (more than four names no single pair). Integers off the board give
          ``INVALID_ACTION``, never another cell. ``format_answer(INVALID_ACTION)`` is
          ``<answer>(-1, -1) (-1, -1)</answer>``.
        - **teachers** (``teachers``, for a cold start; ``bridges.teachers``): beside the
          generic ones (``expert`` and ``legal-random`` name a connectable pair here),
          ``same-kind``: two distinct cells holding the same kind, connectable or not (the
          weak teacher: RL can surpass it by learning which pairs connect);
          ``first-same-kind``: the first tile in reading order and a uniformly random other
          tile of its kind; ``first-next``: the first tile in reading order and the next tile
          of its kind in reading order, connectable or not. Both read the board in the order
          the perception block writes it, so the pair they name is one a small student can
          find in its own perception text (a pair anywhere on the board, as ``same-kind``
          names, is one it only learned to guess); on 4x4 boards, 4 of 8 colours, 0-6 random
          matches, 66% and 80% of their pairs connect, against 62% for ``same-kind``.
        - **reasoning line** (``reasoning_line``): ``(r1, c1) is {cell} and (r2, c2) is
          {cell}.``, the two cells as the perception text writes them.
    """

    name = "shisensho"
    version = 0
    invalid_action_reward = -1.0
    # An unmatched pair removes nothing, so the board, and the mask and "stuck" computed from
    # it, come out of ``_step`` as they were.
    unchanged_when_illegal = ("board", "picture", "legal_action_mask", "terminated")
    # The paper's: training states after 250 uniformly random actions (most of them illegal
    # no-ops), no perception reward for the shape game, matches counted in evaluation.
    protocol = GameProtocol(
        sample_depth=250, sample_policy="uniform", eval_warmup=0, w_format=1.0, w_perception=0.0,
        shaping="sign", eval_score="success", random_answer=random_cell_pairs,
    )
    teachers = ("same-kind", "first-same-kind", "first-next")
    tokenizer_corpus: ClassVar[tuple[str, ...]] = (
        # Every tile word of both kinds (palette colours, shapes, the CIFAR-10 classes), one
        # board row of them repeated so that each becomes one token. The lines are frozen:
        # they and the other games' lines define the tiny tokenizer the shipped cold-start
        # checkpoints were trained with (tests/test_learner_models.py rebuilds it).
        *[" | ".join(f" {word} " for word in (
            "Red Green Blue Yellow Magenta Cyan Maroon Dark green Navy Olive Purple Teal Orange Brown Steel blue "
            "Pink circle square triangle diamond cross star airplane automobile bird cat deer dog frog horse ship "
            "truck").split())] * 8,
        "<perception> Red circle | - | Blue square | Green triangle </perception>",
        "<think> The pair connects with two turns. </think> <answer>(0, 1) (2, 3)</answer>",
        " Yellow Magenta Cyan Maroon Dark green Navy Olive Purple Teal Orange Brown",
        "Steel blue Pink star cross diamond circle square triangle airplane automobile bird cat deer",
        "dog frog horse ship truck",
        " connect pair",
    )

    def __init__(
        self,
        size: int = 6,
        colors: int = 6,
        shapes: int = 6,
        copies: int = 4,
        image_size: int | tuple[int, int] = 448,
    ):
        self.colors = check_int_param("colors", colors, 1, MAX_COLORS)
        self.shapes = check_int_param("shapes", shapes, 1, MAX_SHAPES)
        self.color_names = COLOR_NAMES[: self.colors]
        self.shape_names = SHAPES[: self.shapes]
        kind_names = [f"{c} {s}" for c in self.color_names for s in self.shape_names]
        self._configure(size, copies, kind_names, "kinds (colors * shapes)", image_size)

    def _configure(self, size: int, copies: int, kind_names: Sequence[str], kinds_label: str, image_size: Any) -> None:
        self.size = check_int_param("size", size, MIN_SIZE, MAX_SIZE)
        self.copies = check_int_param("copies", copies, 2, self.size * self.size)
        if self.copies % 2:
            raise ValueError(f"copies={copies} must be even: tiles are removed in pairs")
        if (self.size * self.size) % self.copies:
            raise ValueError(
                f"copies={copies} must divide the {self.size * self.size} cells of a {self.size}x{self.size} board"
            )
        self.kinds_per_board = self.size * self.size // self.copies
        self.num_kinds = len(kind_names)
        if self.kinds_per_board > self.num_kinds:
            raise ValueError(
                f"a {self.size}x{self.size} board with copies={self.copies} needs {self.kinds_per_board} "
                f"distinct kinds, but there are only {self.num_kinds} {kinds_label}; use a smaller size, "
                f"more copies, or more kinds"
            )
        self.kind_names: tuple[str, ...] = ("-", *kind_names)
        self.image_size = resolve_image_size(image_size)
        self.num_actions = self.size**4

    # ---- actions ----------------------------------------------------------------------

    def pair_to_action(self, r1: Any, c1: Any, r2: Any, c2: Any) -> Array:
        """``pair_to_action`` for this board size."""
        return pair_to_action(r1, c1, r2, c2, self.size)

    def action_to_pair(self, action: Any) -> tuple[Array, Array, Array, Array]:
        """``action_to_pair`` for this board size."""
        return action_to_pair(action, self.size)

    # ---- dynamics ---------------------------------------------------------------------

    def _deal(self, key: PRNGKey) -> tuple[Array, Array]:
        """A shuffled full board (flat) and the picture of each tile (zeros here)."""
        kinds_key, cells_key = jax.random.split(key)
        kinds = jnp.argsort(jax.random.uniform(kinds_key, (self.num_kinds,)))[: self.kinds_per_board] + 1
        order = jax.random.permutation(cells_key, self.size * self.size)
        board = jnp.repeat(kinds.astype(jnp.int32), self.copies)[order]
        return board, jnp.zeros_like(board)

    def _state(self, board: Array, picture: Array, **fields: Any) -> ShisenShoState:
        return ShisenShoState(board=board, **fields)

    def reset(self, key: PRNGKey) -> ShisenShoState:
        n = self.size

        def attempt(t: Array) -> tuple[Array, Array, Array]:
            board, picture = self._deal(jax.random.fold_in(key, t))
            forced = _force_pair(board, picture)
            board, picture = jax.tree.map(lambda f, b: jnp.where(t >= RESET_TRIES - 1, f, b), forced, (board, picture))
            # Dealt boards are full, so their mask needs no pass of the path kernel.
            return board, picture, full_board_legal_mask(board.reshape(n, n))

        def redraw(carry: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array, Array]:
            t = carry[0]
            return (t + 1, *attempt(t))

        def needs_redraw(carry: tuple[Array, Array, Array, Array]) -> Array:
            t, _, _, legal = carry
            return ~jnp.any(legal) & (t < RESET_TRIES)

        # The loop's first pass is the first draw (an empty start has no pair), so the
        # drawing code is traced, and compiled, once.
        empty = jnp.zeros(n * n, jnp.int32)
        start = (jnp.int32(0), empty, empty, jnp.zeros(n**4, bool))
        _, board, picture, legal = jax.lax.while_loop(needs_redraw, redraw, start)
        return self._state(board.reshape(n, n), picture.reshape(n, n), **initial_fields(legal, ~jnp.any(legal)))

    def _step(self, state: ShisenShoState, action: Array, key: PRNGKey) -> tuple[ShisenShoState, Array]:
        del key  # the game is deterministic
        r1, c1, r2, c2 = action_to_pair(action, self.size)
        matched = pair_connectable(state.board, r1, c1, r2, c2)
        rows, cols = jnp.arange(self.size)[:, None], jnp.arange(self.size)[None, :]
        removed = matched & (((rows == r1) & (cols == c1)) | ((rows == r2) & (cols == c2)))
        board = jnp.where(removed, 0, state.board)
        legal, stuck = legal_action_mask(board)
        new = state.replace(
            board=board,
            reward=jnp.float32(1.0),
            terminated=stuck,
            legal_action_mask=legal,
            score=state.score + 1,
        )
        return self._remove_extras(new, removed), matched

    def _remove_extras(self, state: ShisenShoState, removed: Array) -> ShisenShoState:
        """``state`` with what else a tile carries cleared where ``removed`` (bool ``(size,
        size)``): nothing here, the board is all; an image game clears its pictures."""
        del removed
        return state

    # ---- boards from outside -------------------------------------------------------------

    def _check_board(self, board: Any) -> None:
        check_board(
            board, (self.size, self.size), 0, self.num_kinds, what="kinds", detail=" (0 is an empty cell)"
        )

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        """Kinds as ``from_board`` accepts them; pictures index a class's images (see ``Env.field_bounds``)."""
        bounds = {**super().field_bounds(), "board": (0, self.num_kinds)}
        if hasattr(self, "images_per_class"):
            bounds["picture"] = (0, self.images_per_class - 1)
        return bounds

    def _from_arrays(self, board: Array, picture: Array) -> ShisenShoState:
        legal, stuck = legal_action_mask(board)
        return self._state(board, picture, **initial_fields(legal, stuck))

    def from_board(self, board: Any) -> ShisenShoState:
        """A state for a board of kinds (0 empty, ``k`` the kind ``kind_names[k]``), score 0.
        Any counts per kind are allowed."""
        self._check_board(board)
        board = jnp.asarray(board).astype(jnp.int32)
        return self._from_arrays(board, jnp.zeros_like(board))

    def from_text(self, text: str) -> ShisenShoState:
        """A state from a perception text (the inverse of ``describe``)."""
        index = {name: k for k, name in enumerate(self.kind_names)}
        rows = []
        for line in text.strip("\n").split("\n"):
            cells = [cell.strip() for cell in line.split("|")]
            unknown = [cell for cell in cells if cell not in index]
            if unknown:
                raise ValueError(f"unknown cell {unknown[0]!r}; cells are '-' or one of {list(self.kind_names[1:])}")
            rows.append([index[cell] for cell in cells])
        if len(rows) != self.size or any(len(r) != self.size for r in rows):
            raise ValueError(f"text must have {self.size} rows of {self.size} cells")
        return self.from_board(np.asarray(rows, np.int32))

    # ---- text ---------------------------------------------------------------------------

    def _describe(self, state: ShisenShoState) -> str:
        board = np.asarray(state.board)
        return "\n".join("|".join(f" {self.kind_names[int(k)]} " for k in row) for row in board)

    def _tile_words(self) -> str:
        described = {"cross": "cross (a plus sign)", "star": "star (drawn as an X)"}
        shapes = ", ".join(described.get(s, s) for s in self.shape_names)
        return (
            "Each tile is a coloured shape; two tiles are the same kind when both their colour "
            f"and their shape are the same. Colours: {', '.join(self.color_names)}. Shapes: {shapes}."
        )

    def _cell_example(self) -> str:
        return f"' {self.kind_names[1]} '"

    def _prompt(self) -> str:
        n = self.size
        return (
            f"You are playing Shisen-Sho, a tile-matching game, on a {n}x{n} board shown in the "
            f"image. {self._tile_words()} Empty cells are blank.\n"
            f"Cells are named (row, col), counted from 0 at the top-left cell: rows go down from "
            f"0 to {n - 1}, columns go right from 0 to {n - 1}.\n"
            "A move names two tiles of the same kind. They are removed, and you score a point, "
            "if a path of horizontal and vertical lines joins them with at most two turns (at "
            "most three straight segments) and passes only through empty cells. The path may "
            "run around the outside of the board, just beyond its edges. A move that does not "
            "remove two tiles costs a point and changes nothing.\n"
            "Goal: remove as many pairs as you can.\n\n"
            + parsing.response_format(
                "one line per row from top to bottom, cells separated by |, each cell written as a space, "
                f"its tile and a space (for example {self._cell_example()}), or ' - ' for an empty cell.",
                "the two cells",
                "(0, 1) (2, 1)",
            )
        )

    def _pair_action(self, r1: int, c1: int, r2: int, c2: int) -> int:
        """``pair_to_action`` of four on-board cells, on the host (the parser's path: a
        Python formula, not a dispatch of JAX operations per answer)."""
        return ((r1 * self.size + c1) * self.size + r2) * self.size + c2

    # ---- what a teacher and a tokenizer need to know -------------------------------------

    def teacher_mask(self, teacher: str, state: ShisenShoState) -> Array:
        """The pair teachers (``teachers``; see the class doc): pairs of distinct cells of
        one kind (``same-kind``), or the first tile in reading order with any other tile of
        its kind (``first-same-kind``) or with the next one in reading order
        (``first-next``), connectable or not."""
        if teacher == "same-kind":
            return self._same_kind_pairs(state)
        if teacher in ("first-same-kind", "first-next"):
            return self._first_tile_pairs(state, next_only=teacher == "first-next")
        return super().teacher_mask(teacher, state)

    def _same_kind_pairs(self, state: ShisenShoState) -> Array:
        """``(num_actions,)`` bool: the two cells of the pair hold the same non-empty kind."""
        board = state.board.reshape(-1)
        cells = self.size * self.size
        first = jnp.repeat(board, cells)
        second = jnp.tile(board, cells)
        distinct = ~jnp.eye(cells, dtype=bool).reshape(-1)
        return (first == second) & (first > 0) & distinct

    def _first_tile_pairs(self, state: ShisenShoState, next_only: bool) -> Array:
        """``(num_actions,)`` bool: pairs whose first cell is the first tile in reading order
        and whose second holds its kind: any other such cell, or (``next_only``) the next one."""
        board = state.board.reshape(-1)
        cells = self.size * self.size
        index = jnp.arange(cells)
        first = jnp.argmax(board > 0)
        partners = (board == board[first]) & (board > 0) & (index != first)
        if next_only:
            partners = index == jnp.argmax(partners & (index > first))
        return ((index == first)[:, None] & partners[None, :]).reshape(-1)


class ShisenShoImages(ShisenSho):
    """Shisen-Sho whose tile kinds are image classes (the paper's "Shisen-Sho-CIFAR10").

    Everything is as in ``ShisenSho`` except the kinds:

    Spec sheet (differences):
        - **parameters**: ``size`` 2..16 (default 6), ``copies`` (default 4), ``dataset``:
          ``"patterns"`` (default: the embedded procedural image classes, no download),
          ``"cifar10"`` (the CIFAR-10 training images from ``data_dir``; see
          ``jaxgym.tile_images.load_cifar10``) or a ``jaxgym.tile_images.TileImages``;
          ``images_per_class`` (CIFAR-10 only: how many images of each class to use, the
          first ones in file order, default 100); ``data_dir``; ``image_size``. Each class
          must have at least ``copies`` images, and there must be ``size**2 / copies``
          classes at least. The paper's setting is ``make("shisensho-images",
          dataset="cifar10")``: 6x6, 9 of the 10 classes per board, 4 images each.
        - **state** (``ShisenShoImageState``): ``board`` int32 ``(size, size)``, 0 empty,
          ``k > 0`` a tile of class ``k - 1`` (``kind_names[k]`` is the class name);
          ``picture`` int32 ``(size, size)``, the image of that class the tile shows.
        - **randomness**: ``reset`` draws ``size**2 / copies`` distinct classes, and for each
          ``copies`` distinct images of it, uniformly; the rest is as in ``ShisenSho``.
        - **render**: the tiles' images scaled into the cells (exact area resampling).
        - **perception text**: a cell is `` {class name} `` (e.g. `` airplane ``) or `` - ``.
    """

    name = "shisensho-images"
    version = 0
    protocol = ShisenSho.protocol.replace(w_perception=1.0)  # the paper's, with perception rewarded

    def __init__(
        self,
        size: int = 6,
        copies: int = 4,
        dataset: Any = "patterns",
        images_per_class: int | None = None,
        data_dir: str | None = None,
        image_size: int | tuple[int, int] = 448,
    ):
        from jaxgym import tile_images

        self.tiles = tile_images.resolve_dataset(dataset, images_per_class=images_per_class, data_dir=data_dir)
        self.images_per_class = self.tiles.images.shape[1]
        self._configure(size, copies, self.tiles.class_names, f"classes in {self.tiles.name!r}", image_size)
        if self.images_per_class < self.copies:
            raise ValueError(
                f"copies={copies} needs {self.copies} different images per class, but {self.tiles.name!r} "
                f"has {self.images_per_class}"
            )

    def _deal(self, key: PRNGKey) -> tuple[Array, Array]:
        deal_key, picture_key = jax.random.split(key)
        board, _ = super()._deal(deal_key)
        # Each class gets its own draw of `copies` distinct images: rank iid uniforms per
        # class and let the j-th copy of a class (in board order) show its j-th ranked image.
        ranks = jnp.argsort(jax.random.uniform(picture_key, (self.num_kinds + 1, self.images_per_class)), axis=1)
        return board, ranks[board, _occurrence_index(board)].astype(jnp.int32)

    def _remove_extras(self, state: ShisenShoState, removed: Array) -> ShisenShoState:
        return state.replace(picture=jnp.where(removed, 0, state.picture))  # type: ignore[attr-defined]

    def _state(self, board: Array, picture: Array, **fields: Any) -> ShisenShoImageState:
        return ShisenShoImageState(board=board, picture=jnp.where(board != 0, picture, 0), **fields)

    def from_board(self, board: Any, picture: Any = None) -> ShisenShoImageState:  # type: ignore[override]
        """A state for a board of classes (0 empty, ``k`` the class ``kind_names[k]``).

        ``picture`` (same shape) picks each tile's image of its class; by default the copies
        of a class show its images 0, 1, 2, ... in row-major order (cycling if needed)."""
        self._check_board(board)
        board = jnp.asarray(board).astype(jnp.int32)
        if picture is None:
            picture = _occurrence_index(board.reshape(-1)).reshape(board.shape) % self.images_per_class
        else:  # strings, objects and bools refused as for the board, before any arithmetic
            check_board(picture, tuple(board.shape), 0, self.images_per_class - 1, what="image indices",
                        label="picture")
        return self._from_arrays(board, jnp.asarray(picture).astype(jnp.int32))  # type: ignore[return-value]

    def _tile_words(self) -> str:
        names = ", ".join(self.kind_names[1:])
        return (
            f"Each tile is a picture of one of these classes: {names}. Two tiles are the same "
            "kind when they show the same class, even if the pictures differ."
        )


def _occurrence_index(flat: Array) -> Array:
    """For each entry, how many equal entries come before it.

    >>> _occurrence_index(jnp.array([3, 1, 3, 3, 1])).tolist()
    [0, 0, 1, 2, 1]
    """
    n = flat.shape[0]
    earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
    return jnp.sum(earlier & (flat[None, :] == flat[:, None]), axis=1).astype(jnp.int32)
