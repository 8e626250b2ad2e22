"""2048 in pure JAX, on a configurable ``size x size`` board (3..8, default 4).

Rules (``shared/spec/games.md``): a move slides every tile as far as it goes in one
direction, merging equal neighbours pairwise from the leading edge, each tile at most once
per move; a move that changes nothing is illegal; a legal move then spawns a 2 (probability
0.9) or a 4 on a uniformly random empty cell. The game ends when no move is legal.

Every function below is pure and branch-free (selects, no ``lax.cond``), so ``vmap`` over
thousands of boards runs one straight-line program.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxgym import parsing
from jaxgym.core import (
    UNPARSEABLE,
    Array,
    Env,
    PRNGKey,
    State,
    check_action,
    check_int_param,
    initial_fields,
    resolve_image_size,
)

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
ACTION_NAMES = ("up", "right", "down", "left")
SPAWN_TWO_PROBABILITY = 0.9


@struct.dataclass
class Game2048State(State):
    """State of one 2048 board (fields of ``jaxgym.core.State`` plus the board).

    Attributes:
        board: int32 ``(size, size)``; 0 is an empty cell, ``e > 0`` is the tile ``2**e``.
    """

    board: Array


def slide_left(rows: Array) -> Array:
    """Compact the non-empty cells of each row to the left, keeping their order.

    >>> slide_left(jnp.array([0, 1, 0, 1])).tolist()
    [1, 1, 0, 0]
    """
    n = rows.shape[-1]
    occupied = rows != 0
    target = jnp.cumsum(occupied, axis=-1) - 1
    moves_to = (target[..., :, None] == jnp.arange(n)) & occupied[..., :, None]
    return jnp.sum(jnp.where(moves_to, rows[..., :, None], 0), axis=-2)


def merge_left(rows: Array) -> tuple[Array, Array]:
    """Merge equal neighbours of compacted rows pairwise from the left, each tile once.

    Returns the rows with merged pairs at the left cell (a hole at the right one) and the
    sum of the merged tile values per row. In tile values, ``[2 2 2 2] -> [4 _ 4 _]``
    scoring 8; as exponents:

    >>> rows, score = merge_left(jnp.array([1, 1, 1, 1]))
    >>> rows.tolist(), int(score)
    ([2, 0, 2, 0], 8)
    """
    n = rows.shape[-1]
    cells = [rows[..., i] for i in range(n)]
    merges = []
    consumed = jnp.zeros(rows.shape[:-1], bool)  # cell i was merged into cell i - 1
    for i in range(n - 1):
        merge = ~consumed & (cells[i] != 0) & (cells[i] == cells[i + 1])
        merges.append(merge)
        consumed = merge
    merges.append(jnp.zeros(rows.shape[:-1], bool))
    out, score = [], jnp.zeros(rows.shape[:-1], jnp.int32)
    for i in range(n):
        was_consumed = merges[i - 1] if i > 0 else jnp.zeros(rows.shape[:-1], bool)
        out.append(jnp.where(merges[i], cells[i] + 1, jnp.where(was_consumed, 0, cells[i])))
        score = score + jnp.where(merges[i], jnp.left_shift(1, cells[i] + 1), 0)
    return jnp.stack(out, axis=-1), score


def move_left(rows: Array) -> tuple[Array, Array]:
    """One move to the left on each row: slide, merge, slide. Returns rows and score.

    >>> rows, score = move_left(jnp.array([1, 1, 2, 0]))   # [2 2 4 _] -> [4 4 _ _]
    >>> rows.tolist(), int(score)
    ([2, 2, 0, 0], 4)
    """
    merged, score = merge_left(slide_left(rows))
    return slide_left(merged), score


@functools.cache
def orientation_maps(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat index maps that turn each action into a move to the left, and back.

    ``board.ravel()[to_left[a]].reshape(size, size)`` is the board seen so that action ``a``
    moves tiles towards column 0; ``moved.ravel()[from_left[a]]`` undoes it.
    """
    idx = np.arange(size * size).reshape(size, size)
    views = {UP: idx.T, RIGHT: idx[:, ::-1], DOWN: idx[::-1, :].T, LEFT: idx}
    to_left = np.stack([views[a].ravel() for a in range(4)])
    from_left = np.argsort(to_left, axis=1)
    return to_left.astype(np.int32), from_left.astype(np.int32)


def move(board: Array, action: Array) -> tuple[Array, Array]:
    """Apply a move (0 up, 1 right, 2 down, 3 left) without spawning: ``(board, score)``."""
    size = board.shape[-1]
    to_left, from_left = (jnp.asarray(m) for m in orientation_maps(size))
    oriented = board.ravel()[to_left[action]].reshape(size, size)
    moved, score = move_left(oriented)
    return moved.ravel()[from_left[action]].reshape(size, size), jnp.sum(score)


def legal_moves(board: Array) -> Array:
    """bool ``(4,)``: which of up, right, down, left would change the board.

    A move is legal iff some line has an empty cell just ahead of a tile in the direction of
    the move, or two equal tiles side by side along it.
    """

    def slides(lines: Array) -> tuple[Array, Array, Array]:
        ahead, behind = lines[:, :-1], lines[:, 1:]
        pair = jnp.any((ahead != 0) & (ahead == behind))
        towards_start = jnp.any((ahead == 0) & (behind != 0))
        towards_end = jnp.any((ahead != 0) & (behind == 0))
        return pair, towards_start, towards_end

    row_pair, left, right = slides(board)
    col_pair, up, down = slides(board.T)
    return jnp.stack([up | col_pair, right | row_pair, down | col_pair, left | row_pair])


def spawn_tile(board: Array, key: PRNGKey) -> Array:
    """Put a 2 (probability 0.9) or a 4 on a uniformly random empty cell.

    The board must have an empty cell. The cell is the argmax of iid uniforms over the empty
    cells (uniform), the value a separate uniform draw: one random call for both."""
    size = board.shape[-1]
    draws = jax.random.uniform(key, (size * size + 1,))
    flat = board.ravel()
    cell = jnp.argmax(jnp.where(flat == 0, draws[:-1], -1.0))
    value = jnp.where(draws[-1] < SPAWN_TWO_PROBABILITY, 1, 2).astype(board.dtype)
    return jnp.where(jnp.arange(size * size) == cell, value, flat).reshape(size, size)


class Game2048(Env):
    """2048 on a ``size x size`` board.

    Spec sheet:
        - **state** (``Game2048State``): ``board`` int32 ``(size, size)`` of exponents (0
          empty, e means tile 2**e); ``reward`` float32 ``()``; ``terminated``, ``truncated``
          and ``last_action_legal`` bool ``()``; ``legal_action_mask`` bool ``(4,)``;
          ``step_count`` and ``score`` (sum of merge rewards so far) int32 ``()``.
        - **action**: int, 0 up, 1 right, 2 down, 3 left (gymnasium-2048's and Jumanji's
          order). ``num_actions == 4``.
        - **reward**: float32, the sum of the values of the tiles created by merges. An
          illegal move (one that changes nothing) and an action outside 0..3 both leave the
          state unchanged apart from ``step_count`` (+1), ``reward`` (0) and
          ``last_action_legal`` (False): no spawn, not terminal.
        - **termination**: after the spawn, no move is legal (no empty cell and no two
          equal orthogonal neighbours). 2048 has no time limit: wrap with ``TimeLimit``.
        - **randomness**: reset draws two spawns, a legal step one, from the given key only.
        - **render**: ``(H, W, 3)`` uint8, default 448x448: the classic colours, tile values
          printed in the tiles, and a score line (``renderers/game2048.py``).
        - **perception text**: rows joined by newlines, cells by ``|``; a cell is `` 2 `` or
          `` - `` (empty).
        - **answer**: the first integer in the last ``<answer>...</answer>`` of a response.
    """

    name = "2048"
    version = 0

    def __init__(self, size: int = 4, image_size: int | tuple[int, int] = 448):
        self.size = check_int_param("size", size, 3, 8)
        self.image_size = resolve_image_size(image_size)
        self.num_actions = 4
        # Exponents never exceed size*size + 1 (every cell full, the largest from a 4-spawn).
        self.max_exponent = self.size * self.size + 1

    def _fields(self, board: Array) -> dict[str, Array]:
        legal = legal_moves(board)
        return dict(board=board, **initial_fields(legal, terminated=~jnp.any(legal)))

    def reset(self, key: PRNGKey) -> Game2048State:
        first, second = jax.random.split(key)
        board = jnp.zeros((self.size, self.size), jnp.int32)
        board = spawn_tile(spawn_tile(board, first), second)
        return Game2048State(**self._fields(board))

    def step(self, state: Game2048State, action: Array | int, key: PRNGKey) -> Game2048State:
        action = check_action(action)
        in_range = (action >= 0) & (action < 4)
        moved, score = move(state.board, jnp.clip(action, 0, 3))
        legal = in_range & jnp.any(moved != state.board)
        board = jnp.where(legal, spawn_tile(moved, key), state.board)
        legal_mask = legal_moves(board)
        gained = jnp.where(legal, score, 0)
        return state.replace(
            board=board,
            reward=gained.astype(jnp.float32),
            terminated=~jnp.any(legal_mask),
            legal_action_mask=legal_mask,
            step_count=state.step_count + 1,
            score=state.score + gained,
            last_action_legal=legal,
        )

    def from_board(self, board: Any) -> Game2048State:
        """A state from a board of exponents (0 empty, e for tile 2**e), score 0.
        Use ``from_tiles`` for a board of tile values."""
        if not isinstance(board, jax.core.Tracer):
            arr = np.asarray(board)
            if arr.shape != (self.size, self.size):
                raise ValueError(f"board must have shape ({self.size}, {self.size}), got {arr.shape}")
            if not (np.issubdtype(arr.dtype, np.integer) or (arr == np.round(arr)).all()):
                raise ValueError(f"board must hold integer exponents, got dtype {arr.dtype}")
            if arr.min() < 0 or arr.max() > self.max_exponent:
                raise ValueError(
                    f"board exponents must be in 0..{self.max_exponent} for size {self.size}, "
                    f"got min {arr.min()} max {arr.max()} (pass tile values to from_tiles instead)"
                )
        return Game2048State(**self._fields(jnp.asarray(board).astype(jnp.int32)))

    def from_tiles(self, tiles: Any) -> Game2048State:
        """A state from a board of tile values (0 empty, else a power of two >= 2)."""
        arr = np.asarray(tiles, dtype=np.int64)
        bad = (arr != 0) & ((arr < 2) | (arr & (arr - 1) != 0))
        if bad.any():
            raise ValueError(f"tile values must be 0 or powers of two >= 2, got {sorted(set(arr[bad].tolist()))}")
        exponents = np.where(arr > 0, np.log2(np.maximum(arr, 1)).round(), 0).astype(np.int32)
        return self.from_board(exponents)

    def describe(self, state: Game2048State) -> str:
        board = np.asarray(state.board)
        if board.ndim != 2:
            raise ValueError(f"describe takes one state, got a board batch of shape {board.shape}; index it first")
        return "\n".join(
            "|".join(" - " if e == 0 else f" {2 ** int(e)} " for e in row) for row in board
        )

    def prompt(self) -> str:
        n = self.size
        return (
            f"You are playing 2048 on a {n}x{n} board, shown in the image. Each tile shows a "
            "power of two; empty cells are blank.\n"
            "A move slides every tile as far as it can go in one direction. Two tiles with the "
            "same value that meet merge into one tile with their sum, and the sum is added to "
            "your score; a tile merges at most once per move. A move that changes nothing is "
            "not allowed. After every move a new 2 or 4 appears on an empty cell.\n"
            "Moves: 0 = up, 1 = right, 2 = down, 3 = left.\n"
            "Goal: score as many points as you can.\n\n"
            "First describe the board inside <perception></perception>: one line per row from "
            "top to bottom, cells separated by |, each cell written as a space, the tile value "
            "and a space (for example ' 2 '), or ' - ' for an empty cell.\n"
            "Then reason about your move inside <think></think>.\n"
            "Finally give the number of your move inside <answer></answer>, for example "
            "<answer>3</answer>."
        )

    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        answer = parsing.last_tag_content(text, "answer")
        if answer is None:
            return UNPARSEABLE
        value = parsing.first_int(answer)
        if value is None:
            return UNPARSEABLE
        # Out-of-range numbers stay out of range: step() treats them as illegal no-ops.
        return parsing.clamp_to_int32(value)

    def format_answer(self, action: int) -> str:
        return f"<answer>{int(action)}</answer>"

    def _make_renderer(self) -> Any:
        from renderers.game2048 import Game2048Renderer

        return Game2048Renderer(self.size, self.image_size, self.max_exponent)
