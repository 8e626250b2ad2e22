"""Sokoban in pure JAX: push every box onto a target, on a ``size x size`` room (default
10x10 with 4 boxes, the Boxoban setting of DeepMind, gym-sokoban and Jumanji).

Rules: the player moves one cell up, right, down or left. Walking into a wall, or into a box
whose far side is a wall or another box, does nothing; walking into a box with a free cell
behind it pushes the box one cell. The level is solved when every box stands on a target.
Cells off the board count as walls, so boards without a wall border are safe too.

Levels are generated in JAX the way gym-sokoban and Boxoban do it, by *reverse play*: carve
a room by a random walk, put every box on a target and the player on a free cell, then walk
the player randomly for ``reverse_steps`` steps, *pulling* the box behind it whenever there
is one. Every reverse step is undone by one legal forward move, so the reversed walk is a
solution: every generated level is solvable by construction.

Every function below is pure and branch-free (selects, bounded ``lax.while_loop``), so
``vmap`` over thousands of boards runs one program.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

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
from jaxgym.protocol import GameProtocol

# Cell codes of ``SokobanState.board``, one per character of the XSB / Boxoban text format.
FLOOR, WALL, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = range(7)
CELL_CHARS = "-#.$*@+"
"""``CELL_CHARS[code]`` is the XSB character of a cell code (``-`` is floor; the loader also
reads a space or ``_`` as floor)."""
CELL_NAMES = ("floor", "wall", "target", "box", "box on target", "player", "player on target")

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
ACTION_NAMES = ("up", "right", "down", "left")
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)
"""``(d_row, d_col)`` of each action, Jumanji's and gym-sokoban's order."""

BOX_ON_TARGET_REWARD = 1.0
"""Reward for each box pushed onto a target (the same amount is lost for pushing one off)."""
SOLVED_BONUS = 10.0
"""Reward added on a step after which every box is on a target."""
STEP_COST = -0.1
"""Reward added on every step, legal or not (an illegal move earns only this)."""

MAX_ATTEMPTS = 16
"""Room/placement draws per reset before ``fallback_level`` is used (a draw fails when the
carved room has too few free cells, or when the reverse walk left every box on a target).
Measured in ``tests/test_sokoban.py``: at the defaults almost every first draw succeeds."""

_CARVE_PATTERNS = np.array(
    [
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
        [[0, 0, 0], [1, 1, 0], [0, 1, 0]],
        [[0, 0, 0], [1, 1, 0], [1, 1, 0]],
        [[0, 0, 0], [0, 1, 1], [0, 1, 0]],
        [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    ],
    bool,
)
"""3x3 stamps the room-carving walk clears around its position (straight pieces, corners,
a 2x2 block, a single cell)."""
TURN_PROBABILITY = 0.35
"""Chance that the carving walk picks a new random direction at a step."""


@struct.dataclass
class SokobanState(State):
    """State of one Sokoban level (fields of ``jaxgym.core.State`` plus the board).

    Attributes:
        board: int32 ``(size, size)`` of cell codes: 0 floor, 1 wall, 2 target, 3 box,
            4 box on a target, 5 player, 6 player on a target (``CELL_CHARS`` gives their
            XSB characters ``-#.$*@+``). Exactly one player cell.
    """

    board: Array


# --- the board as layers -------------------------------------------------------------------


def encode(walls: Array, targets: Array, boxes: Array, player: Array) -> Array:
    """Cell codes from boolean layers (boxes and the player never on a wall).

    >>> encode(*(jnp.array([v]) for v in (False, True, True, False))).tolist()
    [4]
    """
    on_target = targets.astype(jnp.int32)
    return jnp.where(
        walls, WALL, jnp.where(boxes, BOX + on_target, jnp.where(player, PLAYER + on_target, TARGET * on_target))
    ).astype(jnp.int32)


def decode(board: Array) -> tuple[Array, Array, Array, Array]:
    """``(walls, targets, boxes, player)`` boolean layers of a board of cell codes."""
    walls = board == WALL
    targets = (board == TARGET) | (board == BOX_ON_TARGET) | (board == PLAYER_ON_TARGET)
    boxes = (board == BOX) | (board == BOX_ON_TARGET)
    player = board >= PLAYER
    return walls, targets, boxes, player


def boxes_on_targets(board: Array) -> Array:
    """Number of boxes standing on a target (int32)."""
    return jnp.sum(board == BOX_ON_TARGET).astype(jnp.int32)


def is_solved(board: Array) -> Array:
    """True when no box is off a target (a board without boxes counts as solved)."""
    return ~jnp.any(board == BOX)


def player_position(board: Array) -> Array:
    """``(row, col)`` int32 of the player."""
    flat = jnp.argmax((board >= PLAYER).reshape(-1)).astype(jnp.int32)
    return jnp.stack([flat // board.shape[1], flat % board.shape[1]])


# --- moves ---------------------------------------------------------------------------------


def _cells_ahead(board: Array, position: Array) -> tuple[Array, Array]:
    """Flat indices (-1 off the board) and codes (off the board: WALL) of the cells one and
    two steps from ``position`` in each direction: two ``(4, 2)`` arrays, ``[:, k]`` being
    ``k + 1`` steps away."""
    rows, cols = board.shape
    steps = jnp.asarray(MOVES)[:, None, :] * jnp.arange(1, 3)[None, :, None]  # (4, 2, 2)
    cells = position[None, None, :] + steps
    inside = (cells[..., 0] >= 0) & (cells[..., 0] < rows) & (cells[..., 1] >= 0) & (cells[..., 1] < cols)
    flat = jnp.where(inside, cells[..., 0] * cols + cells[..., 1], -1)
    codes = jnp.where(inside, board.reshape(-1)[jnp.clip(flat, 0, rows * cols - 1)], WALL)
    return flat, codes


def legal_moves(board: Array) -> Array:
    """bool ``(4,)``: which of up, right, down, left moves the player (walks or pushes).

    >>> board = jnp.array([[1, 1, 1, 1], [1, 5, 3, 0], [1, 1, 1, 1]])
    >>> legal_moves(board).tolist()
    [False, True, False, False]
    """
    return _legal_at(_cells_ahead(board, player_position(board))[1])


def _legal_at(codes: Array) -> Array:
    """``legal_moves`` from the codes of ``_cells_ahead`` of the player's position."""
    blocked = (codes == WALL) | (codes == BOX) | (codes == BOX_ON_TARGET)
    box_ahead = (codes[:, 0] == BOX) | (codes[:, 0] == BOX_ON_TARGET)
    return (codes[:, 0] != WALL) & (~box_ahead | ~blocked[:, 1])


def move(board: Array, action: Array) -> tuple[Array, Array]:
    """``(board, legal)`` after the player moves in direction ``action`` (0..3; anything
    else, or a blocked move, leaves the board unchanged with ``legal`` False).

    >>> board, legal = move(jnp.array([[1, 1, 1, 1, 1], [1, 5, 3, 2, 1], [1, 1, 1, 1, 1]]), RIGHT)
    >>> board.tolist()[1], bool(legal)
    ([1, 0, 5, 4, 1], True)
    """
    board, legal, _ = _move_from(board, player_position(board), action)
    return board, legal


def _move_from(board: Array, position: Array, action: Array) -> tuple[Array, Array, Array]:
    """``move`` for the player at ``position``: ``(board, legal, new position)``. The step
    passes the new position on to the next legal mask, which saves a second search of the
    board for the player."""
    action = jnp.asarray(action, jnp.int32)
    in_range = (action >= 0) & (action < 4)
    flat, codes = _cells_ahead(board, position)
    direction = jnp.clip(action, 0, 3)
    legal = in_range & _legal_at(codes)[direction]
    ahead, beyond = flat[direction, 0], flat[direction, 1]
    ahead_code, beyond_code = codes[direction, 0], codes[direction, 1]
    pushes = legal & ((ahead_code == BOX) | (ahead_code == BOX_ON_TARGET))
    # A move changes at most three cells: the one the player leaves, the one it enters and,
    # on a push, the one the box enters. Rewriting those three by compares on the flat cell
    # index is elementwise with scalars, which XLA fuses with whatever reads the board next
    # (decoding every layer and encoding them back made ``move`` about twice as slow).
    ahead_on_target = (ahead_code == TARGET) | (ahead_code == BOX_ON_TARGET)
    cell = jnp.arange(board.size).reshape(board.shape)
    here = position[0] * board.shape[1] + position[1]
    new_board = jnp.where(
        legal & (cell == here),
        jnp.where(board == PLAYER_ON_TARGET, TARGET, FLOOR),
        jnp.where(
            legal & (cell == ahead),
            PLAYER + ahead_on_target.astype(jnp.int32),
            jnp.where(pushes & (cell == beyond), BOX + (beyond_code == TARGET).astype(jnp.int32), board),
        ),
    ).astype(jnp.int32)
    new_position = jnp.where(legal, position + jnp.asarray(MOVES)[direction], position)
    return new_board, legal, new_position


def step_reward(before: Array, after: Array) -> Array:
    """float32 reward of a step from board ``before`` to board ``after``: ``BOX_ON_TARGET_REWARD``
    per box gained on a target (minus per box lost), ``SOLVED_BONUS`` if ``after`` is solved,
    plus ``STEP_COST`` (the numbers of gym-sokoban and Jumanji's dense reward)."""
    gained = boxes_on_targets(after) - boxes_on_targets(before)
    points = (gained * BOX_ON_TARGET_REWARD + is_solved(after) * SOLVED_BONUS).astype(jnp.float32)
    return points + jnp.float32(STEP_COST)


# --- level generation ----------------------------------------------------------------------


def carve_room(key: PRNGKey, size: int, carve_steps: int) -> Array:
    """bool ``(size, size)`` floor of a room carved by a random walk over the interior
    (the outermost ring always stays wall): at each step the walk turns with probability
    ``TURN_PROBABILITY``, moves one cell (staying inside), and clears a random 3x3 stamp of
    ``_CARVE_PATTERNS`` around itself."""
    start_key, turn_key, dir_key, stamp_key = jax.random.split(key, 4)
    start = jax.random.randint(start_key, (2,), 1, size - 1)
    turns = jax.random.bernoulli(turn_key, TURN_PROBABILITY, (carve_steps,))
    directions = jax.random.randint(dir_key, (carve_steps,), 0, 4)
    stamps = jax.random.randint(stamp_key, (carve_steps,), 0, len(_CARVE_PATTERNS))
    rows = jnp.arange(size)[:, None]
    cols = jnp.arange(size)[None, :]
    interior = (rows >= 1) & (rows < size - 1) & (cols >= 1) & (cols < size - 1)
    patterns = jnp.asarray(_CARVE_PATTERNS)

    def walk(carry: tuple[Array, Array, Array], draw: tuple[Array, Array, Array]) -> tuple[Any, None]:
        floor, position, direction = carry
        turn, new_direction, stamp = draw
        direction = jnp.where(turn, new_direction, direction)
        position = jnp.clip(position + jnp.asarray(MOVES)[direction], 1, size - 2)
        dr, dc = rows - position[0] + 1, cols - position[1] + 1
        near = (dr >= 0) & (dr < 3) & (dc >= 0) & (dc < 3)
        stamped = near & patterns[stamp][jnp.clip(dr, 0, 2), jnp.clip(dc, 0, 2)]
        return (floor | (stamped & interior), position, direction), None

    first = (rows == start[0]) & (cols == start[1])
    (floor, _, _), _ = lax.scan(walk, (first, start, directions[0]), (turns, directions, stamps))
    return floor


def _pick_cells(key: PRNGKey, allowed: Array, count: int) -> Array:
    """Flat indices of ``count`` distinct uniformly random cells where ``allowed`` (arbitrary
    cells if fewer are allowed: the caller checks the count)."""
    priority = jnp.where(allowed.reshape(-1), jax.random.uniform(key, (allowed.size,)), -1.0)
    return lax.top_k(priority, count)[1].astype(jnp.int32)


PULL_WEIGHT = 4.0
"""How much likelier the reverse walk picks a move that pulls a box than one that does not."""


def reverse_play(key: PRNGKey, floor: Array, boxes: Array, player: Array, steps: int) -> tuple[Array, Array, Array]:
    """``(boxes, player, pulls)`` after ``steps`` random reverse moves. A reverse move steps the
    player to a free neighbour (floor without a box), pulling the box that stood on its other
    side, if any, into the cell it left; each is undone by one legal forward move. The
    direction is drawn among the free ones, a pulling move ``PULL_WEIGHT`` times likelier
    than a plain one (so few steps are wasted and boxes travel); with no free neighbour the
    player stays."""
    size = floor.shape[0]
    cell = jnp.arange(floor.size).reshape(floor.shape)
    moves = jnp.asarray(MOVES)

    def pull(carry: tuple[Array, Array, Array], step_key: PRNGKey) -> tuple[tuple[Array, Array, Array], None]:
        boxes, position, pulls_so_far = carry
        # Floor is interior-only, so dest and behind are on the board whenever they matter.
        dest = jnp.clip(position[None, :] + moves, 0, size - 1)
        behind = jnp.clip(position[None, :] - moves, 0, size - 1)
        free = floor[dest[:, 0], dest[:, 1]] & ~boxes[dest[:, 0], dest[:, 1]]
        pulls = free & boxes[behind[:, 0], behind[:, 1]]
        weights = jnp.where(free, jnp.where(pulls, PULL_WEIGHT, 1.0), 0.0)
        direction = jax.random.categorical(step_key, jnp.log(jnp.maximum(weights, 1e-30)))
        moved = free[direction]
        pulled = pulls[direction]
        here = position[0] * size + position[1]
        behind_flat = behind[direction, 0] * size + behind[direction, 1]
        boxes = jnp.where(pulled, (boxes & (cell != behind_flat)) | (cell == here), boxes)
        return (boxes, jnp.where(moved, dest[direction], position), pulls_so_far + pulled), None

    start = jnp.stack([player // size, player % size]).astype(jnp.int32)
    carry = (boxes, start, jnp.int32(0))
    (boxes, position, pulls), _ = lax.scan(pull, carry, jax.random.split(key, steps))
    return boxes, (cell == position[0] * size + position[1]), pulls


REVERSE_WALKS = 8
"""Reverse walks tried from each placement; the level keeps the one that leaves the most
boxes off their targets (ties: the most pulls), as gym-sokoban keeps its best-scoring walk."""


def generate_candidate(key: PRNGKey, size: int, boxes: int, reverse_steps: int) -> tuple[Array, Array]:
    """``(board, ok)``: one draw of room, placement and reverse walks. ``ok`` is False when
    the room had fewer than ``boxes + 1`` free cells, or the level is solved already or by
    a single move (so a fresh level never ends at its first step)."""
    room_key, place_key, walk_key = jax.random.split(key, 3)
    floor = carve_room(room_key, size, carve_steps=int(1.5 * 2 * size))
    picked = _pick_cells(place_key, floor, boxes + 1)
    cell = jnp.arange(size * size).reshape(size, size)
    targets = jnp.any(cell[..., None] == picked[:boxes], axis=-1)
    walks = jax.vmap(reverse_play, in_axes=(0, None, None, None, None))
    walk_keys = jax.random.split(walk_key, REVERSE_WALKS)
    box_layers, player_layers, pulls = walks(walk_keys, floor, targets, picked[boxes], reverse_steps)
    off_target = jnp.sum(box_layers & ~targets, axis=(1, 2))
    best = jnp.argmax(off_target * (reverse_steps + 1) + pulls)
    board = encode(~floor, targets, box_layers[best], player_layers[best])
    one_move = jax.vmap(lambda action: is_solved(move(board, action)[0]))(jnp.arange(4))
    ok = (jnp.sum(floor) >= boxes + 1) & ~is_solved(board) & ~jnp.any(one_move)
    return board, ok


def fallback_level(size: int, boxes: int) -> np.ndarray:
    """A fixed solvable level that no single move solves (boxes in row 2 under targets in
    row 1, the player in the bottom-right corner, the rest of the interior free: walk under
    each box and push it up once).

    >>> print("\\n".join("".join(CELL_CHARS[c] for c in row) for row in fallback_level(5, 2)))
    #####
    #..-#
    #$$-#
    #--@#
    #####
    """
    board = np.full((size, size), FLOOR, np.int32)
    board[[0, -1], :] = WALL
    board[:, [0, -1]] = WALL
    board[1, 1 : 1 + boxes] = TARGET
    board[2, 1 : 1 + boxes] = BOX
    board[size - 2, size - 2] = PLAYER
    return board


def generate_level(key: PRNGKey, size: int, boxes: int, reverse_steps: int) -> Array:
    """A solvable, unsolved level: the first successful ``generate_candidate`` of up to
    ``MAX_ATTEMPTS`` draws (draw ``i`` uses ``fold_in(key, i)``), else ``fallback_level``."""

    def pending(carry: tuple[Array, Array, Array]) -> Array:
        attempt, _, ok = carry
        return ~ok & (attempt < MAX_ATTEMPTS)

    def draw(carry: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        attempt, _, _ = carry
        board, ok = generate_candidate(jax.random.fold_in(key, attempt), size, boxes, reverse_steps)
        return attempt + 1, board, ok

    empty = jnp.zeros((size, size), jnp.int32)
    _, board, ok = lax.while_loop(pending, draw, (jnp.int32(0), empty, jnp.bool_(False)))
    return jnp.where(ok, board, jnp.asarray(fallback_level(size, boxes)))


# --- text levels ---------------------------------------------------------------------------

_CHAR_CODES = {ch: code for code, ch in enumerate(CELL_CHARS)} | {" ": FLOOR, "_": FLOOR}


def parse_level(text: str) -> np.ndarray:
    """A board of cell codes from one level in XSB / Boxoban text (``#`` wall, ``.`` target,
    ``$`` box, ``*`` box on target, ``@`` player, ``+`` player on target, space ``-`` or
    ``_`` floor). Short rows are padded with floor; a bad character raises ValueError.

    >>> parse_level("#####\\n#@$.#\\n#####")[1].tolist()
    [1, 5, 3, 2, 1]
    """
    lines = [line.rstrip("\n\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise ValueError("level text has no rows")
    width = max(len(line) for line in lines)
    board = np.full((len(lines), width), FLOOR, np.int32)
    for r, line in enumerate(lines):
        for c, ch in enumerate(line):
            if ch not in _CHAR_CODES:
                allowed = "'#.$*@+', space, '-', '_'"
                raise ValueError(f"level row {r} has character {ch!r} at column {c}; allowed: {allowed}")
            board[r, c] = _CHAR_CODES[ch]
    return board


def load_boxoban(text: str) -> list[np.ndarray]:
    """Every level of a Boxoban-format file (levels after ``; <number>`` header lines,
    separated by blank lines), as boards of cell codes, in file order."""
    if not isinstance(text, str):
        raise ValueError(f"load_boxoban takes the file's text (a str), got {type(text).__name__}; "
                         f"decode bytes first, e.g. data.decode('ascii'), or pass Path(...).read_text()")
    levels, current = [], []
    for line in text.split("\n"):
        if line.startswith(";"):
            if any(row.strip() for row in current):
                levels.append(parse_level("\n".join(current)))
            current = []
        else:
            current.append(line)
    if any(row.strip() for row in current):
        levels.append(parse_level("\n".join(current)))
    return levels


_DIRECTION_OR_INT = re.compile(r"\b(?:up|right|down|left)\b|[-+]?[0-9]+")


@jax.jit
def _fresh_state(board: Array) -> SokobanState:
    """A state (no moves yet) for a board; jitted, since ``from_board`` runs eagerly, where
    every op would compile on its own."""
    state = SokobanState(board=board, **initial_fields(legal_moves(board), terminated=is_solved(board)))
    return state.replace(score=boxes_on_targets(board))


class Sokoban(Env):
    """Sokoban on a ``size x size`` board with ``boxes`` boxes and as many targets.

    Parameters (``jaxgym.make("sokoban", ...)``; out-of-range values raise ValueError):
        size: board side including the outer wall ring, 5..16 (default 10, Boxoban's).
        boxes: 1..size-2 boxes (default 4, Boxoban's and Jumanji's).
        reverse_steps: 2..1000 reverse moves of the generator, the difficulty knob (default
            None: ``int(1.7 * 2 * size)``, gym-sokoban's 34 for 10x10). Fewer steps leave
            boxes nearer their targets.
        max_steps: 1..10**6, steps until ``truncated`` (default 120, gym-sokoban's and
            Jumanji's time limit).
        level_pool: 0..100_000 (default 0: a fresh level every reset). ``N > 0``: ``N``
            levels are generated once, when the env is made (``generate_level`` with the keys
            ``jax.random.split(jax.random.key(pool_seed), N)``), and ``reset`` draws one of
            them uniformly, as Boxoban's fixed level sets are used. A reset is then one
            gather: under ``vmap`` the generator's retry loop runs as long as the slowest
            board's, and an auto-reset batch pays it on almost every step.
        pool_seed: the seed of the pool's levels (default 0).
        image_size: int or ``(height, width)``, default 448.

    Spec sheet:
        - **state** (``SokobanState``): ``board`` int32 ``(size, size)`` of cell codes
          (0 floor, 1 wall, 2 target, 3 box, 4 box on target, 5 player, 6 player on target;
          XSB characters ``CELL_CHARS = "-#.$*@+"``); ``reward`` float32 ``()``;
          ``terminated``, ``truncated``, ``last_action_legal`` bool ``()``;
          ``legal_action_mask`` bool ``(4,)``; ``step_count`` int32 ``()`` (actions taken,
          legal or not); ``score`` int32 ``()``: boxes on targets now (the status line's
          ``On target: 2``).
        - **action**: int 0 up, 1 right, 2 down, 3 left (Jumanji's and gym-sokoban's order).
          A move is legal when the player walks onto a free cell or pushes a box onto one.
        - **reward**: float32, ``+1`` per box pushed onto a target (``-1`` per box pushed
          off one), ``+10`` when every box is on a target after the step, and ``-0.1`` on
          every step (``BOX_ON_TARGET_REWARD``, ``SOLVED_BONUS``, ``STEP_COST``: the numbers
          of gym-sokoban and of Jumanji's ``DenseReward``). An illegal move (blocked, or an
          action outside 0..3, ``INVALID_ACTION`` included) is a no-op that costs the step
          cost, as in both: only ``step_count``, ``reward``, ``last_action_legal`` (False)
          and ``truncated`` change. This is the raw reward; training shaping belongs to
          the bridges.
        - **termination**: every box is on a target. ``truncated`` is set once
          ``step_count`` reaches ``max_steps``. Stepping on afterwards keeps working: a legal
          move that leaves the level solved earns the bonus again, as in both references;
          an illegal one is the no-op (-0.1), where Jumanji pays the bonus again.
        - **randomness**: only ``reset`` draws (``generate_level``, or a uniform index into
          the ``level_pool``): a room carved by a
          random walk, targets with their boxes and the player on uniform distinct free
          cells, then ``reverse_steps`` reverse moves pulling boxes. Up to ``MAX_ATTEMPTS``
          draws, then the fixed ``fallback_level``: every fresh level is solvable, and
          not solved by its first move. ``step`` ignores its key (the game is deterministic).
        - **render**: ``(H, W, 3)`` uint8, default 448x448: brick walls, floor, targets as
          outlined diamonds, brown boxes (green on a target), the player as a blue disc,
          and a status line ``On target: 1  Moves: 12`` (``renderers/sokoban.py``).
        - **perception text**: one line per row, top to bottom, one XSB character per cell
          (``#`` wall, ``-`` floor, ``.`` target, ``$`` box, ``*`` box on target, ``@``
          player, ``+`` player on target), no separators.
        - **answer**: ``<answer>up</answer>`` (or right, down, left; or the number 0..3),
          case-insensitive, the first direction word or integer of the last answer block
          counts; other integers parse to an illegal move.
    """

    name = "sokoban"
    version = 0
    invalid_action_reward = float(np.float32(STEP_COST))  # the float32 reward a no-op gets, exactly
    # Fresh levels (they are drawn per reset); the documented dense reward as the game
    # component (its sign would score every plain walk -1); evaluation sums the raw reward.
    protocol = GameProtocol(
        sample_depth=0,
        sample_policy="legal",
        eval_warmup=0,
        w_format=1.0,
        w_perception=1.0,
        shaping="raw",
        eval_score="raw",
    )

    def __init__(
        self,
        size: int = 10,
        boxes: int = 4,
        reverse_steps: int | None = None,
        max_steps: int = 120,
        level_pool: int = 0,
        pool_seed: int = 0,
        image_size: int | tuple[int, int] = 448,
    ):
        self.size = check_int_param("size", size, 5, 16)
        self.boxes = check_int_param("boxes", boxes, 1, self.size - 2)
        if reverse_steps is None:
            reverse_steps = int(1.7 * 2 * self.size)
        self.reverse_steps = check_int_param("reverse_steps", reverse_steps, 2, 1000)
        self.max_steps = check_int_param("max_steps", max_steps, 1, 10**6)
        self.step_limit = self.max_steps
        self.image_size = resolve_image_size(image_size)
        self.num_actions = 4
        self.level_pool = check_int_param("level_pool", level_pool, 0, 100_000)
        self.pool_seed = check_int_param("pool_seed", pool_seed, 0, 2**31 - 1)
        self.pool: np.ndarray | None = None
        """int32 ``(level_pool, size, size)``: the pool's levels (None without a pool), read-only."""
        if self.level_pool:
            keys = jax.random.split(jax.random.key(self.pool_seed), self.level_pool)
            generate = jax.vmap(lambda k: generate_level(k, self.size, self.boxes, self.reverse_steps))
            with jax.ensure_compile_time_eval():  # made eagerly, even when the env is made inside a trace
                self.pool = np.asarray(jax.jit(generate)(keys))
                fresh = jax.jit(jax.vmap(_fresh_state))(self.pool)
            # The fresh state of every level, made once: a reset gathers it whole instead of
            # recomputing the mask, "solved" and the score from the board; an auto-reset batch
            # resets on almost every step. Read-only, so the two cannot drift apart.
            self._pool_states: SokobanState = jax.tree.map(np.asarray, fresh)
            self.pool.flags.writeable = False

    def _state(self, board: Array) -> SokobanState:
        return _fresh_state(board)

    def reset(self, key: PRNGKey) -> SokobanState:
        if self.pool is None:
            return self._state(generate_level(key, self.size, self.boxes, self.reverse_steps))
        index = jax.random.randint(key, (), 0, self.level_pool)
        return jax.tree.map(lambda levels: jnp.asarray(levels)[index], self._pool_states)

    def _step(self, state: SokobanState, action: Array, key: PRNGKey) -> tuple[SokobanState, Array]:
        del key  # deterministic: the key is part of the API only
        board, legal, position = _move_from(state.board, player_position(state.board), action)
        moved = state.replace(
            board=board,
            reward=step_reward(state.board, board),
            terminated=is_solved(board),
            legal_action_mask=_legal_at(_cells_ahead(board, position)[1]),
            score=boxes_on_targets(board),
        )
        return moved, legal

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        """Cell codes as ``from_board`` accepts them; the score counts boxes on targets (see ``Env.field_bounds``)."""
        return {**super().field_bounds(), "board": (FLOOR, PLAYER_ON_TARGET), "score": (0, self.size * self.size)}

    def from_board(self, board: Any) -> SokobanState:
        """A state for a level: a ``(size, size)`` array of cell codes, or XSB / Boxoban
        text (``parse_level``), which may be smaller than ``size`` (it is padded with wall
        on the right and bottom). Checked: codes 0..6, exactly one player, at least one
        box, as many boxes as targets."""
        if isinstance(board, str):
            parsed = parse_level(board)
            if parsed.shape[0] > self.size or parsed.shape[1] > self.size:
                raise ValueError(f"level of {parsed.shape[0]}x{parsed.shape[1]} cells does not fit size={self.size}")
            board = np.full((self.size, self.size), WALL, np.int32)
            board[: parsed.shape[0], : parsed.shape[1]] = parsed
        arr = check_board(board, (self.size, self.size), FLOOR, PLAYER_ON_TARGET, what="cell codes")
        if arr is not None:
            players = int(np.sum(arr >= PLAYER))
            if players != 1:
                raise ValueError(f"board must have exactly one player (code 5 or 6), got {players}")
            num_boxes = int(np.sum((arr == BOX) | (arr == BOX_ON_TARGET)))
            num_targets = int(np.sum((arr == TARGET) | (arr == BOX_ON_TARGET) | (arr == PLAYER_ON_TARGET)))
            if num_boxes == 0 or num_boxes != num_targets:
                raise ValueError(
                    f"board must have at least one box and as many targets as boxes, got "
                    f"{num_boxes} boxes and {num_targets} targets"
                )
        return self._state(jnp.asarray(board).astype(jnp.int32))

    def _describe(self, state: SokobanState) -> str:
        board = np.asarray(state.board)
        return "\n".join("".join(CELL_CHARS[int(c)] for c in row) for row in board)

    def _prompt(self) -> str:
        n = self.size
        return (
            f"You are playing Sokoban on the {n}x{n} board shown in the image. You are the "
            "blue disc. Walls are brick, targets are outlined diamonds on the floor, boxes are "
            "brown squares (green when they stand on a target).\n"
            "Each move takes you one cell up, right, down or left. Walking into a box pushes it "
            "one cell further in the same direction, but only if the cell behind it is free "
            "(no wall, no other box). You cannot pull boxes, and walls and blocked boxes stop "
            "you (the move is wasted).\n"
            "Goal: push every box onto a target. Each box you put on a target scores a point, "
            "solving the level scores 10, and every move costs 0.1.\n\n"
            + parsing.response_format(
                "one line per row from top to bottom, one character per cell with no separators: "
                "# wall, - floor, . target, $ box, * box on a target, @ you, + you on a target.",
                "your move, one of up, right, down, left,",
                "left",
            )
        )

    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        """The first direction word (up, right, down, left, any case) or integer of the last
        ``<answer>`` block; integers outside 0..3 are illegal moves."""
        answer = parsing.answer_block(text)
        if answer is None:
            return UNPARSEABLE
        match = _DIRECTION_OR_INT.search(parsing.normalize(answer).lower())
        if match is None:
            return UNPARSEABLE
        token = match.group()
        if token in ACTION_NAMES:
            return ACTION_NAMES.index(token)
        return parsing.clamp_to_int32(parsing.ints(token, 1)[0])

    def format_answer(self, action: int) -> str:
        action = int(action)
        return parsing.format_answer(ACTION_NAMES[action] if 0 <= action < 4 else str(action))
