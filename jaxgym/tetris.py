"""Tetris in pure JAX with placement actions: each action puts the current piece down whole,
at a chosen rotation and column (default well 20 rows x 10 columns).

Why placement actions (rotation x column, as Jumanji's Tetris) rather than step-by-step
move/rotate/drop: one action is one decision a vision-language model can make from one
picture, so an episode needs a few dozen model calls instead of a few hundred, and rewards
are not smeared over long chains of shifts; the legal set is small and exact (``4 * cols``
flat actions with a mask); and the transition matches Jumanji's, which makes its step a
direct differential oracle. What it gives up: tucks and spins under overhangs (a piece
only falls straight down from above the well).

Rules: the piece enters from above the well at its column and rotation and falls straight
down until it rests on the floor or on a filled cell. It can enter only if every cell it
sweeps through on its way into the top rows is free (``swept_shapes``). Full rows are
cleared and the rows above move down. Clearing 1, 2, 3 or 4 rows at once scores 40, 100,
300 or 1200 (``LINE_SCORES``, Jumanji's and the classic level-0 table). Then the next piece,
uniform over the seven, is drawn; the game is over when it cannot enter anywhere.

Every function below is pure and branch-free (selects and static shapes), so ``vmap`` over
thousands of wells runs one program.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxgym import parsing
from jaxgym.core import (
    INVALID_ACTION,
    UNPARSEABLE,
    Array,
    Env,
    PRNGKey,
    State,
    check_board,
    check_int_param,
    initial_fields,
    resolve_image_size,
)
from jaxgym.protocol import GameProtocol

PIECE_NAMES = ("I", "O", "T", "S", "Z", "J", "L")
_PIECE_ROWS = (
    ("####",),
    ("##", "##"),
    (".#.", "###"),
    (".##", "##."),
    ("##.", ".##"),
    ("#..", "###"),
    ("..#", "###"),
)
"""The seven tetrominoes in their rotation-0 orientation (flat side down, as they spawn in
most modern Tetris games)."""
LINE_SCORES = (0, 40, 100, 300, 1200)
"""Points for clearing 0, 1, 2, 3 or 4 rows with one piece."""
ILLEGAL_PENALTY = -1.0
"""Reward of an illegal action (a no-op)."""


def _rotations(rows: tuple[str, ...]) -> np.ndarray:
    """bool ``(4, 4, 4)``: the piece turned 0..3 quarter turns clockwise, each pushed to the
    top-left corner of a 4x4 box."""
    shape = np.array([[ch == "#" for ch in row] for row in rows])
    out = np.zeros((4, 4, 4), bool)
    for r in range(4):
        h, w = shape.shape
        out[r, :h, :w] = shape
        shape = np.rot90(shape, -1)
    return out


PIECE_SHAPES = np.stack([_rotations(rows) for rows in _PIECE_ROWS])
"""bool ``(7, 4, 4, 4)``: ``PIECE_SHAPES[piece, rotation]`` in a top-left aligned 4x4 box."""
PIECE_WIDTHS = PIECE_SHAPES.any(axis=2).sum(axis=-1).astype(np.int32)
"""int32 ``(7, 4)``: columns each rotation spans."""


def swept_shapes(shapes: np.ndarray) -> np.ndarray:
    """The cells a piece passes through in the top four rows as it enters from above: row
    ``j`` of the result is the union of the piece's rows ``j..3``.

    >>> swept_shapes(PIECE_SHAPES[3, 0])[:2].astype(int).tolist()   # the S piece
    [[1, 1, 1, 0], [1, 1, 0, 0]]
    """
    return np.flip(np.logical_or.accumulate(np.flip(shapes, axis=-2), axis=-2), axis=-2)


PIECE_SWEPT = swept_shapes(PIECE_SHAPES)

_NO_CELL = -64
"""``PIECE_BOTTOMS`` of a box column the piece does not fill: below every column top (>= -1)
and far enough below that it never sets a landing row (wells have at most 40 rows)."""


def _bottoms(shapes: np.ndarray) -> np.ndarray:
    """int32 ``(..., 4)``: the lowest row of each box column that the piece fills, or
    ``_NO_CELL`` for an empty column."""
    lowest = 3 - np.argmax(np.flip(shapes, axis=-2), axis=-2)
    return np.where(shapes.any(axis=-2), lowest, _NO_CELL).astype(np.int32)


PIECE_BOTTOMS = _bottoms(PIECE_SHAPES)
"""int32 ``(7, 4, 4)``: ``PIECE_BOTTOMS[piece, rotation, x]`` is the lowest filled row of box
column ``x`` (``_NO_CELL`` where the column is empty). A piece dropped straight down meets
the well first with these cells, so they and the column tops decide every placement."""


@struct.dataclass
class TetrisState(State):
    """State of one Tetris well (fields of ``jaxgym.core.State`` plus the well and piece).

    Attributes:
        board: int32 ``(rows, cols)``; 0 empty, ``k + 1`` a cell of a piece of kind ``k``
            (``PIECE_NAMES[k]``), which sets its colour in the picture.
        piece: int32 ``()``, kind 0..6 of the piece to place now.
        lines: int32 ``()``, rows cleared since reset.
    """

    board: Array
    piece: Array
    lines: Array


def column_tops(board: Array) -> Array:
    """int32 ``(cols,)``: the first filled row of each column from the top, ``rows`` for an
    empty column (the floor).

    A piece falls straight down from above, so nothing under a column's top cell can touch
    it: the tops are all of the well that placements depend on (``(cols,)`` numbers instead
    of a ``4 x 4`` window at every cell for every rotation).

    >>> column_tops(jnp.array([[0, 1, 0], [2, 0, 0], [3, 3, 0]])).tolist()
    [1, 0, 3]
    """
    rows = board.shape[0]
    return jnp.min(jnp.where(board != 0, jnp.arange(rows, dtype=jnp.int32)[:, None], rows), axis=0).astype(jnp.int32)


def _top_windows(tops: Array) -> Array:
    """int32 ``(cols, 4)``: the tops of columns ``c..c+3`` for a box at column ``c``;
    columns beyond the right wall have top -1 (filled to above the well)."""
    cols = tops.shape[0]
    padded = jnp.concatenate([tops, jnp.full((3,), -1, tops.dtype)])
    return jnp.stack([padded[dx : dx + cols] for dx in range(4)], axis=-1)


def _legal_from_tops(tops: Array, piece: Array) -> Array:
    """``legal_placements`` from ``column_tops``: a placement can enter when every box column
    the piece fills is inside the walls and free from the top row down to the piece's lowest
    cell in that column (the cells it sweeps through, ``PIECE_SWEPT``)."""
    bottoms = jnp.asarray(PIECE_BOTTOMS)[piece]  # (4 rotations, 4 box columns)
    return jnp.all(_top_windows(tops)[None] > bottoms[:, None, :], axis=-1)


def _landing_from_tops(tops: Array, piece: Array) -> Array:
    """``landing_rows`` from ``column_tops``: the box comes to rest one row above the first
    box column whose lowest cell would reach its column's top."""
    bottoms = jnp.asarray(PIECE_BOTTOMS)[piece]
    return (jnp.min(_top_windows(tops)[None] - bottoms[:, None, :], axis=-1) - 1).astype(jnp.int32)


def legal_placements(board: Array, piece: Array) -> Array:
    """bool ``(4, cols)``: which (rotation, column) placements of ``piece`` can enter."""
    return _legal_from_tops(column_tops(board), piece)


def landing_rows(board: Array, piece: Array) -> Array:
    """int32 ``(4, cols)``: the top row of the piece's box where each placement comes to
    rest (meaningful where ``legal_placements``)."""
    return _landing_from_tops(column_tops(board), piece)


def clear_full_rows(board: Array) -> tuple[Array, Array]:
    """``(board, cleared)``: full rows removed, the rows above moved down (order kept).

    >>> board, n = clear_full_rows(jnp.array([[0, 2], [1, 1], [3, 0], [4, 4]]))
    >>> board.tolist(), int(n)
    ([[0, 0], [0, 0], [0, 2], [3, 0]], 2)
    """
    rows = board.shape[0]
    full = jnp.all(board != 0, axis=1)
    full_below = jnp.cumsum(full[::-1])[::-1] - full  # full rows strictly below each row
    target = jnp.arange(rows) + full_below
    # Each row of the result takes one kept row (or none: the empty rows on top), so a gather
    # of whole rows does it; summing a (rows, rows, cols) one-hot product instead costs XLA:CPU
    # over ten times as much once the placement is fused into it.
    moves_to = (target[None, :] == jnp.arange(rows)[:, None]) & ~full[None, :]  # (to, from)
    source = jnp.max(jnp.where(moves_to, jnp.arange(rows)[None, :], -1), axis=1)
    moved = jnp.take_along_axis(board, jnp.maximum(source, 0)[:, None], axis=0)
    return jnp.where(source[:, None] >= 0, moved, 0), jnp.sum(full).astype(jnp.int32)


def place(board: Array, piece: Array, rotation: Array, column: Array) -> tuple[Array, Array, Array]:
    """``(board, cleared, top)``: the piece dropped at ``(rotation, column)`` (assumed
    legal), full rows cleared; ``top`` is the row where the piece's box came to rest."""
    rows, cols = board.shape
    top = landing_rows(board, piece)[rotation, column]
    shape = jnp.asarray(PIECE_SHAPES)[piece, rotation]
    # The piece's cells from compares against its column and row rather than a gather from
    # its 4x4 box at every cell (which made ``place`` ~20% slower under vmap): its box rows
    # laid out along the well's columns, then each box row put at its well row.
    at_column = jnp.arange(cols)[None, :] == column + jnp.arange(4)[:, None]  # (box col, col)
    box_rows = jnp.any(shape[:, :, None] & at_column[None], axis=1)  # (box row, col)
    at_row = jnp.arange(rows)[:, None] == top + jnp.arange(4)[None, :]  # (row, box row)
    cells = jnp.any(at_row[:, :, None] & box_rows[None], axis=1)
    cleared_board, cleared = clear_full_rows(jnp.where(cells, piece + 1, board))
    return cleared_board, cleared, top


def draw_piece(key: PRNGKey) -> Array:
    """A uniformly random piece kind 0..6."""
    return jax.random.randint(key, (), 0, len(PIECE_NAMES), dtype=jnp.int32)


@jax.jit
def _fresh_state(board: Array, piece: Array) -> TetrisState:
    """A state (score 0, no moves yet) for a well and the piece to place; jitted, since
    ``from_board`` runs eagerly, where every op would compile on its own."""
    mask = legal_placements(board, piece).reshape(-1)
    return TetrisState(board=board, piece=piece, lines=jnp.int32(0), **initial_fields(mask, ~jnp.any(mask)))


class Tetris(Env):
    """Tetris in a ``rows x cols`` well with rotation x column placement actions.

    Parameters (``jaxgym.make("tetris", ...)``; out-of-range values raise ValueError):
        rows: 4..40 (default 20, the classic well). cols: 4..20 (default 10).
        max_steps: 1..10**6 pieces until ``truncated`` (default 400, Jumanji's time limit).
        image_size: int or ``(height, width)``, default 448.

    Spec sheet:
        - **state** (``TetrisState``): ``board`` int32 ``(rows, cols)`` (0 empty, ``k + 1``
          a cell of piece kind ``k``); ``piece`` int32 ``()`` the kind to place (``I O T S
          Z J L`` = 0..6); ``lines`` int32 ``()`` rows cleared; ``reward`` float32 ``()``;
          ``terminated``, ``truncated``, ``last_action_legal`` bool ``()``;
          ``legal_action_mask`` bool ``(4 * cols,)``; ``step_count`` int32 ``()``;
          ``score`` int32 ``()`` the points of ``LINE_SCORES`` so far.
        - **action**: int ``rotation * cols + column``: ``rotation`` 0..3 quarter turns
          clockwise from the orientation of ``PIECE_SHAPES[piece, 0]``, ``column`` the
          leftmost column the piece will fill. Legal when the piece fits inside the walls
          and can enter from above (``legal_placements``).
        - **reward**: float32, ``LINE_SCORES[rows cleared]`` (0, 40, 100, 300, 1200) for a
          legal placement. An illegal action (blocked, out of the walls, or outside
          ``0..4*cols-1``, ``INVALID_ACTION`` included) is a no-op with reward ``-1``: only
          ``step_count``, ``reward``, ``last_action_legal`` (False) and ``truncated``
          change, and the same piece waits. (Jumanji instead places the piece anyway and
          ends the episode.)
        - **termination**: the new piece cannot enter anywhere. ``truncated`` once
          ``step_count`` reaches ``max_steps``.
        - **randomness**: ``reset`` draws the first piece from its key, a legal ``step``
          the next piece from its key (``draw_piece``: uniform over the seven).
        - **render**: ``(H, W, 3)`` uint8, default 448x448: the well with cells coloured by
          piece kind, a preview of the current piece in rotation 0 at its right, and a
          status line ``Score: 140  Lines: 3`` (``renderers/tetris.py``).
        - **perception text**: the well, one line per row from the top, one character per
          cell: ``#`` filled, ``.`` empty (the current piece is shown in the picture).
        - **answer**: ``<answer>1 4</answer>``: rotation then column, the first two
          integers of the last answer block (``(1, 4)``, ``rotation 1, column 4`` work too);
          out-of-range numbers parse to ``INVALID_ACTION``.
    """

    name = "tetris"
    version = 0
    invalid_action_reward = ILLEGAL_PENALTY
    # Wells after a few random legal placements (a fresh well is empty); the game component is
    # +1 for a legal placement, -1 otherwise (line clears are too rare for sign shaping: it
    # would score almost every good placement -1); evaluation sums the raw reward (points).
    protocol = GameProtocol(
        sample_depth=8,
        sample_policy="legal",
        eval_warmup=0,
        w_format=1.0,
        w_perception=1.0,
        shaping="legal",
        eval_score="raw",
    )

    def __init__(self, rows: int = 20, cols: int = 10, max_steps: int = 400, image_size: int | tuple[int, int] = 448):
        self.rows = check_int_param("rows", rows, 4, 40)
        self.cols = check_int_param("cols", cols, 4, 20)
        self.max_steps = check_int_param("max_steps", max_steps, 1, 10**6)
        self.step_limit = self.max_steps
        self.image_size = resolve_image_size(image_size)
        self.num_actions = 4 * self.cols

    def _state(self, board: Array, piece: Array) -> TetrisState:
        return _fresh_state(board, piece)

    def reset(self, key: PRNGKey) -> TetrisState:
        return self._state(jnp.zeros((self.rows, self.cols), jnp.int32), draw_piece(key))

    def _step(self, state: TetrisState, action: Array, key: PRNGKey) -> tuple[TetrisState, Array]:
        legal = state.legal_action_mask[action]
        board, cleared, _ = place(state.board, state.piece, action // self.cols, action % self.cols)
        piece = draw_piece(key)
        mask = legal_placements(board, piece).reshape(-1)
        points = jnp.asarray(LINE_SCORES, jnp.int32)[cleared]
        limit = jnp.iinfo(jnp.int32).max
        placed = state.replace(
            board=board,
            piece=piece,
            lines=state.lines + cleared,
            reward=points.astype(jnp.float32),
            terminated=~jnp.any(mask),
            legal_action_mask=mask,
            score=jnp.where(points > limit - state.score, limit, state.score + points).astype(jnp.int32),
        )
        return placed, legal

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        """Cells and piece kinds as ``from_board`` accepts them (see ``Env.field_bounds``)."""
        top = int(np.iinfo(np.int32).max)
        return {**super().field_bounds(), "board": (0, len(PIECE_NAMES)), "piece": (0, len(PIECE_NAMES) - 1),
                "lines": (0, top)}

    def from_board(self, board: Any, piece: int = 0) -> TetrisState:
        """A state for a well (``(rows, cols)`` ints, 0 empty, 1..7 filled by that kind) and
        the piece kind to place (0..6, default 0 = I), score 0. A well may hold full rows
        only if the game could show it: none."""
        arr = check_board(board, (self.rows, self.cols), 0, len(PIECE_NAMES), what="cells")
        if arr is not None:
            if (arr != 0).all(axis=1).any():
                raise ValueError(f"board has full rows {np.flatnonzero((arr != 0).all(axis=1)).tolist()}; they clear")
        if isinstance(piece, (bool, np.bool_)) or not isinstance(piece, (int, np.integer)) or not 0 <= piece < 7:
            raise ValueError(f"piece={piece!r} is out of range; allowed: 0..6 ({' '.join(PIECE_NAMES)})")
        return self._state(jnp.asarray(board).astype(jnp.int32), jnp.int32(piece))

    def _describe(self, state: TetrisState) -> str:
        board = np.asarray(state.board)
        return "\n".join("".join("#" if v else "." for v in row) for row in board)

    def _prompt(self) -> str:
        return (
            f"You are playing Tetris in a well of {self.rows} rows and {self.cols} columns, shown "
            "in the image; the piece you must place now is drawn beside the well.\n"
            f"Columns are numbered 0 to {self.cols - 1} from the left. Your move places the piece "
            "whole: choose a rotation (0, 1, 2 or 3 quarter turns clockwise from the orientation "
            "shown) and the column of its leftmost cell. The piece then drops straight down from "
            "above the well until it lands. A piece that would stick out of the well or cannot "
            "get in is not placed and the move is wasted.\n"
            "A full row disappears and the rows above move down. Clearing 1, 2, 3 or 4 rows with "
            "one piece scores 40, 100, 300 or 1200 points. The game ends when the next piece "
            "cannot get into the well.\n"
            "Goal: score as many points as you can.\n\n"
            + parsing.response_format(
                "one line per row from top to bottom, one character per cell with no separators: # filled, . empty.",
                "the rotation and the column",
                "1 4",
                subject="the well",
            )
        )

    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        answer = parsing.answer_block(text)
        if answer is None:
            return UNPARSEABLE
        numbers = parsing.ints(answer, 2)
        if len(numbers) < 2:
            return UNPARSEABLE
        rotation, column = numbers
        if not (0 <= rotation < 4 and 0 <= column < self.cols):
            return INVALID_ACTION
        return rotation * self.cols + column

    def format_answer(self, action: int) -> str:
        action = int(action)
        if action == INVALID_ACTION:
            return parsing.format_answer("-1 -1")
        if not 0 <= action < self.num_actions:
            raise ValueError(
                f"action={action} is out of range; allowed: 0..{self.num_actions - 1} or INVALID_ACTION (-1)"
            )
        return parsing.format_answer(f"{action // self.cols} {action % self.cols}")
