"""2048 in pure JAX, on a configurable ``size x size`` board (3..8, default 4).

Rules (``docs/games.md``): a move slides every tile as far as it goes in one
direction, merging equal neighbours pairwise from the leading edge, each tile at most once
per move; a move that changes nothing is illegal; a legal move then spawns a 2 (probability
0.9) or a 4 on a uniformly random empty cell. The game ends when no move is legal.

Every function below is pure and branch-free (selects, no ``lax.cond``), so ``vmap`` over
thousands of boards runs one straight-line program.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

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
    check_board,
    check_int_param,
    initial_fields,
    resolve_image_size,
)
from jaxgym.grid import slide_left
from jaxgym.protocol import EvalPreset, GameProtocol

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


def _oriented_views(board: Array) -> list[Array]:
    """The board seen so that each action (up, right, down, left) moves tiles to column 0."""
    return [board.T, board[:, ::-1], board[::-1, :].T, board]


def _unorient(moved: Array, action: int) -> Array:
    """Inverse of ``_oriented_views(board)[action]``."""
    return [moved.T, moved[:, ::-1], moved.T[::-1, :], moved][action]


def move(board: Array, action: Array) -> tuple[Array, Array]:
    """Apply a move (0 up, 1 right, 2 down, 3 left) without spawning: ``(board, score)``.

    Static views and selects rather than a per-board gather: under ``vmap`` the action
    differs per board, and selecting among four transposed copies is cheaper than gathering.
    """
    views = _oriented_views(board)
    oriented = views[3]
    for a in range(3):
        oriented = jnp.where(action == a, views[a], oriented)
    moved, score = move_left(oriented)
    out = _unorient(moved, 3)
    for a in range(3):
        out = jnp.where(action == a, _unorient(moved, a), out)
    return out, jnp.sum(score)


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


def is_terminal(board: Array) -> Array:
    """No empty cell and no two equal orthogonal neighbours (games.md's definition).

    Equal to "no legal move" on every board a game can reach; they differ only on the
    all-empty board, which is not terminal but has no legal move either.
    """
    full = jnp.all(board != 0)
    pairs = jnp.any(board[:, :-1] == board[:, 1:]) | jnp.any(board[:-1, :] == board[1:, :])
    return full & ~pairs


def spawn_tile(board: Array, key: PRNGKey) -> Array:
    """Put a 2 (probability 0.9) or a 4 on a uniformly random empty cell.

    The board must have an empty cell. Two uniforms decide: the first picks the k-th empty
    cell in row-major order (k uniform over the empty cells), the second the value. Drawing
    two numbers rather than one per cell keeps the RNG, the costliest part of a step, small.
    """
    size = board.shape[-1]
    flat = board.ravel()
    empty = flat == 0
    u = jax.random.uniform(key, (2,))
    k = jnp.floor(u[0] * jnp.sum(empty)).astype(jnp.int32)
    cell = jnp.argmax(jnp.cumsum(empty) > k)
    value = jnp.where(u[1] < SPAWN_TWO_PROBABILITY, 1, 2).astype(board.dtype)
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
    # The paper's: 100 uniformly random actions after reset (training states and the
    # evaluation warm-up), the sign of the merge score as the game reward, the raw merge
    # score summed in evaluation.
    # lmgame-bench (github.com/lmgame-org/GamingAgent @ 996d848,
    # gamingagent/configs/custom_01_2048/config.yaml): max_steps 1000, num_runs 3, on
    # gymnasium_2048's 4x4 board (gamingagent/envs/custom_01_2048/game_env_config.json), from a
    # fresh board.
    protocol = GameProtocol(
        sample_depth=100, sample_policy="uniform", eval_warmup=100, w_format=1.0, w_perception=1.0,
        shaping="sign", eval_score="raw",
        eval_presets=(("lmgame", EvalPreset(runs=3, steps=1000, warmup=0, params={"size": 4})),),
    )
    # Every tile value 2 .. 2**17 in a board row, repeated so that each becomes one token
    # (reading a board is then one decision per cell), the move names, the merge words. The
    # lines are frozen: see ShisenSho.tokenizer_corpus.
    tokenizer_corpus: ClassVar[tuple[str, ...]] = (
        *[" | ".join(f" {2**e} " for e in range(1, 18)) + " | - "] * 24,
        "<perception> 2 | - | 4 | 8 </perception> <think> I move the tiles left. </think> <answer>3</answer>",
        "Moves: 0 = up, 1 = right, 2 = down, 3 = left.",
        " merge",
        " 16 32 64 128 256 512 1024 2048 4096",
    )

    def __init__(self, size: int = 4, image_size: int | tuple[int, int] = 448):
        self.size = check_int_param("size", size, 3, 8)
        self.image_size = resolve_image_size(image_size)
        self.num_actions = 4
        # Exponents never exceed size*size + 1 (every cell full, the largest from a 4-spawn).
        self.max_exponent = self.size * self.size + 1

    def _fields(self, board: Array) -> dict[str, Array]:
        return dict(board=board, **initial_fields(legal_moves(board), terminated=is_terminal(board)))

    def reset(self, key: PRNGKey) -> Game2048State:
        first, second = jax.random.split(key)
        board = jnp.zeros((self.size, self.size), jnp.int32)
        board = spawn_tile(spawn_tile(board, first), second)
        return Game2048State(**self._fields(board))

    def _step(self, state: Game2048State, action: Array, key: PRNGKey) -> tuple[Game2048State, Array]:
        moved, score = move(state.board, action)
        board = spawn_tile(moved, key)
        next_state = state.replace(
            board=board,
            reward=score.astype(jnp.float32),
            terminated=is_terminal(board),
            legal_action_mask=legal_moves(board),
            score=state.score + score,
        )
        return next_state, jnp.any(moved != state.board)

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        """Exponents are those ``from_board`` accepts (see ``Env.field_bounds``)."""
        return {**super().field_bounds(), "board": (0, self.max_exponent)}

    def from_board(self, board: Any) -> Game2048State:
        """A state from a board of exponents (0 empty, e for tile 2**e), score 0.
        Use ``from_tiles`` for a board of tile values."""
        n = self.size
        check_board(
            board, (n, n), 0, self.max_exponent, what="exponents",
            detail=f" for size {n} (pass tile values to from_tiles instead)",
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

    def _describe(self, state: Game2048State) -> str:
        board = np.asarray(state.board)
        return "\n".join("|".join(" - " if e == 0 else f" {2 ** int(e)} " for e in row) for row in board)

    def _prompt(self) -> str:
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
            + parsing.response_format(
                "one line per row from top to bottom, cells separated by |, each cell written as a space, "
                "the tile value and a space (for example ' 2 '), or ' - ' for an empty cell.",
                "the number of your move",
                "3",
            )
        )

    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        answer = parsing.answer_block(text)
        if answer is None:
            return UNPARSEABLE
        value = parsing.first_int(answer)
        if value is None:
            return UNPARSEABLE
        # Out-of-range numbers stay out of range: step() treats them as illegal no-ops.
        return parsing.clamp_to_int32(value)

    def format_answer(self, action: int) -> str:
        return parsing.format_answer(str(int(action)))

    def reasoning_line(self, perception: str, action: int, raw_reward: float) -> str:
        """The move's direction and the merge score it earns.

        >>> Game2048().reasoning_line(" 2 | 2 ", 3, 4.0)
        'Moving left merges for 4 points.'
        """
        return f"Moving {ACTION_NAMES[int(action)]} merges for {int(raw_reward)} points."
