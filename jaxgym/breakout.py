"""Breakout in pure JAX: MinAtar's dynamics on a 10x10 grid, with lives and a serve.

Rules (MinAtar Breakout, Young & Tian 2019, the reference the differential test steps
against; gymnax's ``MinBreakout`` is the JAX port it is compared with): the paddle moves
along the bottom row (row 9); the ball moves one cell along a diagonal per step; it bounces
off the side walls and the top, off bricks (which it removes, +1 each) and off the paddle;
when it reaches the bottom row past the paddle, the ball is lost. On top of MinAtar, as in
the paper's (ALE) Breakout: the game has ``lives`` balls; a ball waits at its serve
position until it is released; losing a ball costs a life; the game ends with no lives or
no bricks left (MinAtar would refill the bricks instead).

Directions: 0 up-left, 1 up-right, 2 down-right, 3 down-left (MinAtar's). Every function
is branch-free (selects and one-hot masks), so ``vmap`` over boards runs one program.
"""

from __future__ import annotations

import re
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
    check_board,
    check_int_param,
    initial_fields,
    resolve_image_size,
)
from jaxgym.protocol import GameProtocol

GRID = 10
PADDLE_ROW = GRID - 1
BRICK_ROWS = (1, 2, 3)
SERVE_ROW = 3
STAY, RELEASE, RIGHT, LEFT = 0, 1, 2, 3
ACTION_NAMES = ("stay", "release", "right", "left")
UP_LEFT, UP_RIGHT, DOWN_RIGHT, DOWN_LEFT = 0, 1, 2, 3
DIRECTION_NAMES = ("up-left", "up-right", "down-right", "down-left")
EMPTY, BRICK, PADDLE, BALL = 0, 1, 2, 3
"""Cell codes of ``board_codes``: a ball adds ``BALL`` to the cell under it (4: ball on a brick)."""
MAX_FRAMES = 4
_ACTION_WORDS = re.compile(r"stay|noop|release|fire|launch|right|left", re.IGNORECASE)
_WORD_ACTIONS = {"stay": STAY, "noop": STAY, "release": RELEASE, "fire": RELEASE, "launch": RELEASE}


@struct.dataclass
class BreakoutState(State):
    """State of one Breakout game (fields of ``jaxgym.core.State`` plus these).

    Attributes:
        ball_y, ball_x: int32 ``()``, the ball's cell (row from the top, column from the left).
        ball_dir: int32 ``()``, 0 up-left, 1 up-right, 2 down-right, 3 down-left.
        last_y, last_x: int32 ``()``, the ball's previous cell (MinAtar's trail channel).
        paddle: int32 ``()``, the paddle's column (it sits in row 9).
        bricks: bool ``(10, 10)``.
        strike: bool ``()``, MinAtar's flag: the ball entered a brick cell last step (a
            second brick right after does not break).
        lives: int32 ``()``, balls left, the one in play included.
        waiting: bool ``()``, the ball waits at its serve position for ``release``.
        past_ball: int32 ``(frames - 1, 2)``, past_paddle: int32 ``(frames - 1,)``,
            past_bricks: bool ``(frames - 1, 10, 10)``: the earlier frames the observation
            shows, oldest first.
    """

    ball_y: Array
    ball_x: Array
    ball_dir: Array
    last_y: Array
    last_x: Array
    paddle: Array
    bricks: Array
    strike: Array
    lives: Array
    waiting: Array
    past_ball: Array
    past_paddle: Array
    past_bricks: Array

    @property
    def board(self) -> Array:
        """int32 ``(..., 10, 10)``: the current frame as cell codes (``board_codes``)."""
        return board_codes(self.ball_y, self.ball_x, self.paddle, self.bricks)


def board_codes(ball_y: Array, ball_x: Array, paddle: Array, bricks: Array) -> Array:
    """int32 ``(..., 10, 10)`` cell codes of a frame: 0 empty, 1 brick, 2 paddle, plus 3
    where the ball is (3 ball, 4 ball on a brick, 5 ball on the paddle). Broadcasts over
    leading batch axes.

    >>> codes = board_codes(jnp.int32(3), jnp.int32(0), jnp.int32(4), jnp.zeros((10, 10), bool).at[1].set(True))
    >>> codes[1, :3].tolist(), int(codes[3, 0]), int(codes[9, 4])
    ([1, 1, 1], 3, 2)
    """
    rows = jnp.arange(GRID)[:, None]
    cols = jnp.arange(GRID)[None, :]
    expand = lambda v: jnp.asarray(v)[..., None, None]
    paddle_cell = (rows == PADDLE_ROW) & (cols == expand(paddle))
    ball_cell = (rows == expand(ball_y)) & (cols == expand(ball_x))
    base = jnp.where(paddle_cell, PADDLE, jnp.where(bricks, BRICK, EMPTY))
    return (base + jnp.where(ball_cell, BALL, 0)).astype(jnp.int32)


def move_paddle(paddle: Array, action: Array) -> Array:
    """The paddle one column right (action 2) or left (3), stopped by the walls."""
    step = jnp.where(action == RIGHT, 1, jnp.where(action == LEFT, -1, 0))
    return jnp.clip(paddle + step, 0, GRID - 1)


def move_ball(
    ball_y: Array, ball_x: Array, ball_dir: Array, paddle: Array, bricks: Array, strike: Array
) -> tuple[Array, Array, Array, Array, Array, Array, Array]:
    """One MinAtar ball step with the paddle already moved to ``paddle``.

    Returns ``(ball_y, ball_x, ball_dir, bricks, strike, broke, missed)``: ``broke`` a
    brick was removed (+1), ``missed`` the ball reached the bottom row past the paddle.
    In MinAtar's order: the side walls reflect the horizontal direction; then the top wall
    reflects the vertical one, or else a brick cell is entered (without ``strike`` it is
    removed and the ball stays on the row it came from, reflected vertically), or else the
    bottom row is reached: the ball bounces back to its row (reflected vertically) if the
    paddle is under the ball's old column, back the way it came if it is under the new one,
    else it is missed. ``strike`` comes back as "the ball entered a brick cell".

    >>> y, x, d, _, _, broke, missed = move_ball(8, 5, DOWN_RIGHT, 6, jnp.zeros((10, 10), bool), False)
    >>> int(y), int(x), DIRECTION_NAMES[int(d)], bool(broke), bool(missed)
    (8, 6, 'up-left', False, False)
    """
    ball_y, ball_x, ball_dir = (jnp.asarray(v, jnp.int32) for v in (ball_y, ball_x, ball_dir))
    dx = jnp.where((ball_dir == UP_RIGHT) | (ball_dir == DOWN_RIGHT), 1, -1)
    dy = jnp.where(ball_dir < DOWN_RIGHT, -1, 1)
    new_x, new_y = ball_x + dx, ball_y + dy
    off_side = (new_x < 0) | (new_x > GRID - 1)
    new_x = jnp.clip(new_x, 0, GRID - 1)
    direction = jnp.where(off_side, ball_dir ^ 1, ball_dir)  # mirror left/right

    off_top = new_y < 0
    new_y = jnp.maximum(new_y, 0)
    direction = jnp.where(off_top, 3 - direction, direction)  # mirror up/down
    cell = (jnp.arange(GRID)[:, None] == new_y) & (jnp.arange(GRID)[None, :] == new_x)
    in_brick = ~off_top & jnp.any(bricks & cell)
    broke = in_brick & ~strike
    bricks = bricks & ~(cell & broke)
    new_y = jnp.where(broke, ball_y, new_y)
    direction = jnp.where(broke, 3 - direction, direction)

    at_bottom = ~off_top & ~in_brick & (new_y == PADDLE_ROW)
    under_old = at_bottom & (ball_x == paddle)
    under_new = at_bottom & ~under_old & (new_x == paddle)
    direction = jnp.where(under_old, 3 - direction, jnp.where(under_new, direction ^ 2, direction))
    new_y = jnp.where(under_old | under_new, ball_y, new_y)
    missed = at_bottom & ~under_old & ~under_new
    return new_y, new_x, direction, bricks, in_brick, broke, missed


def serve(key: PRNGKey) -> tuple[Array, Array, Array]:
    """A serve as MinAtar's reset draws it: ``(row, column, direction)``, the ball at row 3
    of the left wall moving down-right or of the right wall moving down-left, each with
    probability 1/2."""
    right = jax.random.bernoulli(key)
    column = jnp.where(right, GRID - 1, 0).astype(jnp.int32)
    return jnp.int32(SERVE_ROW), column, jnp.where(right, DOWN_LEFT, DOWN_RIGHT).astype(jnp.int32)


def full_bricks() -> Array:
    """bool ``(10, 10)``: MinAtar's starting wall, rows 1..3 full."""
    return jnp.zeros((GRID, GRID), bool).at[BRICK_ROWS[0] : BRICK_ROWS[-1] + 1].set(True)


class Breakout(Env):
    """Breakout (``breakout-v0``): MinAtar's 10x10 dynamics, the paper's four actions, lives.

    Parameters (``jaxgym.make("breakout", ...)``; out-of-range values raise ValueError):
        lives: 1..9 balls (default 5, ALE Breakout's).
        frames: 1..4 frames in the observation (default 2): the last ``frames`` frames side
            by side in one image, oldest on the left, so the ball's direction is visible.
        image_size: int or ``(height, width)``, default 448 (any multiple of 28 works).

    Spec sheet:
        - **state** (``BreakoutState``): ball ``ball_y``, ``ball_x``, ``ball_dir`` and its
          previous cell ``last_y``, ``last_x``; ``paddle`` (column; row 9); ``bricks`` bool
          ``(10, 10)``; ``strike``; ``lives``; ``waiting``; the earlier frames
          ``past_ball``, ``past_paddle``, ``past_bricks`` (all int32 or bool); ``board``
          is a derived int32 ``(10, 10)`` view (``board_codes``). ``reward`` float32,
          ``terminated``/``truncated``/``last_action_legal`` bool, ``legal_action_mask`` bool
          ``(4,)``, ``step_count`` and ``score`` (bricks broken) int32.
        - **action**: 0 stay, 1 release the ball, 2 right, 3 left (the paper's prompt's
          order). MinAtar's actions are no-op, left, right; ``release`` maps onto them as
          follows: while the ball waits at its serve position (after reset and after each
          lost ball) only the paddle moves (stay, right, left) and the ball stays, until
          ``release``, whose step is MinAtar's no-op step with the ball in play (so reset +
          release is MinAtar's reset + no-op); with the ball in play ``release`` is
          MinAtar's no-op (as ALE's FIRE is). All four are legal until the game ends, none
          after; an action outside 0..3 is a no-op with reward 0 (the world does not move).
        - **reward**: float32, +1 per brick broken (MinAtar's). Losing a ball costs a life,
          not reward.
        - **termination**: no lives left or no bricks left. No time limit: wrap with
          ``TimeLimit``.
        - **randomness**: the serve side (``serve``), at reset and after a lost ball, from
          the given key; everything else is deterministic.
        - **render**: ``(H, W, 3)`` uint8, default 448x448: the last ``frames`` frames of the
          10x10 grid side by side (bricks coloured by row, a white ball, a cyan paddle),
          under a status line ``Score: 3  Lives: 5`` (``renderers/breakout.py``).
        - **perception text**: four lines, e.g. ``Paddle: column 4`` / ``Ball: row 3, column
          0, moving down-right`` (or ``..., waiting to be released, then moving
          down-right``) / ``Bricks left: 30`` / ``Lives: 5``.
        - **answer**: the first integer in the last ``<answer>...</answer>``; failing that,
          the first action word there (stay, release/fire, right, left).
    """

    name = "breakout"
    version = 0
    # Our choice (the paper's Breakout never ran): training states after 30 legal random
    # actions (the ball in play, the bricks partly broken), the raw brick reward as the game
    # component (a sign shaping would punish nearly every step of a sparse-reward game), and
    # bricks broken summed in evaluation.
    protocol = GameProtocol(
        sample_depth=30, sample_policy="legal", eval_warmup=0, w_format=1.0, w_perception=1.0,
        shaping="raw", eval_score="raw",
    )

    def __init__(self, lives: int = 5, frames: int = 2, image_size: int | tuple[int, int] = 448):
        self.lives = check_int_param("lives", lives, 1, 9)
        self.frames = check_int_param("frames", frames, 1, MAX_FRAMES)
        self.image_size = resolve_image_size(image_size)
        self.num_actions = 4
        self.size = GRID

    # ---- dynamics ---------------------------------------------------------------------

    def _fields(self, ball: tuple[Array, Array, Array], last: tuple[Array, Array], paddle: Array, bricks: Array,
                lives: Array, waiting: Array) -> dict[str, Any]:
        ball_y, ball_x, ball_dir = (jnp.asarray(v, jnp.int32) for v in ball)
        k = self.frames - 1
        terminated = (jnp.asarray(lives) <= 0) | ~jnp.any(bricks)
        return dict(
            ball_y=ball_y, ball_x=ball_x, ball_dir=ball_dir,
            last_y=jnp.asarray(last[0], jnp.int32), last_x=jnp.asarray(last[1], jnp.int32),
            paddle=jnp.asarray(paddle, jnp.int32), bricks=jnp.asarray(bricks, bool),
            strike=jnp.bool_(False), lives=jnp.asarray(lives, jnp.int32), waiting=jnp.asarray(waiting, bool),
            past_ball=jnp.tile(jnp.stack([ball_y, ball_x]), (k, 1)),
            past_paddle=jnp.full((k,), paddle, jnp.int32),
            past_bricks=jnp.tile(jnp.asarray(bricks, bool), (k, 1, 1)),
            **initial_fields(jnp.broadcast_to(~terminated, (4,)), terminated),
        )

    def reset(self, key: PRNGKey) -> BreakoutState:
        ball = serve(key)
        return BreakoutState(**self._fields(ball, ball[:2], jnp.int32(4), full_bricks(), self.lives, True))

    def _step(self, state: BreakoutState, action: Array, key: PRNGKey) -> tuple[BreakoutState, Array]:
        paddle = move_paddle(state.paddle, action)
        playing = ~state.waiting | (action == RELEASE)
        y, x, d, bricks, strike, broke, missed = move_ball(
            state.ball_y, state.ball_x, state.ball_dir, paddle, state.bricks, state.strike
        )
        keep = lambda moved, held: jnp.where(playing, moved, held)
        y, x, d = keep(y, state.ball_y), keep(x, state.ball_x), keep(d, state.ball_dir)
        last_y, last_x = keep(state.ball_y, state.last_y), keep(state.ball_x, state.last_x)
        bricks, strike = keep(bricks, state.bricks), keep(strike, state.strike)
        lost = playing & missed
        lives = state.lives - lost.astype(jnp.int32)
        terminated = (lives <= 0) | ~jnp.any(bricks)
        # A lost ball with lives left: a new serve waits for release.
        reserve = lost & ~terminated
        sy, sx, sd = serve(key)
        y, x, d = jnp.where(reserve, sy, y), jnp.where(reserve, sx, x), jnp.where(reserve, sd, d)
        last_y, last_x = jnp.where(reserve, sy, last_y), jnp.where(reserve, sx, last_x)
        strike = strike & ~reserve
        waiting = (state.waiting & ~playing) | reserve
        gained = (playing & broke).astype(jnp.int32)
        if self.frames > 1:
            past = dict(
                past_ball=jnp.concatenate([state.past_ball[1:], jnp.stack([state.ball_y, state.ball_x])[None]]),
                past_paddle=jnp.concatenate([state.past_paddle[1:], state.paddle[None]]),
                past_bricks=jnp.concatenate([state.past_bricks[1:], state.bricks[None]]),
            )
        else:
            past = {}
        next_state = state.replace(
            ball_y=y, ball_x=x, ball_dir=d, last_y=last_y, last_x=last_x, paddle=paddle, bricks=bricks,
            strike=strike, lives=lives, waiting=waiting,
            reward=gained.astype(jnp.float32), terminated=terminated,
            legal_action_mask=jnp.broadcast_to(~terminated, (4,)), score=state.score + gained, **past,
        )
        return next_state, ~state.terminated

    # ---- boards from outside ------------------------------------------------------------

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        """Cells on the grid, directions 0..3, lives as ``from_board`` accepts them (0 once the
        last ball is lost; see ``Env.field_bounds``)."""
        cell = (0, GRID - 1)
        return {**super().field_bounds(), "ball_y": cell, "ball_x": cell, "ball_dir": (0, 3), "last_y": cell,
                "last_x": cell, "paddle": cell, "lives": (0, 9), "past_ball": cell, "past_paddle": cell}

    def from_board(
        self, board: Any, ball_dir: int = DOWN_RIGHT, lives: int | None = None, waiting: bool = False
    ) -> BreakoutState:
        """A state for a frame of cell codes (``board_codes``: bricks, one paddle in row 9,
        one ball), the ball moving ``ball_dir`` (its previous cell one step back along it,
        clipped to the grid), ``lives`` (default the game's), score 0, earlier frames equal
        to this one."""
        arr = check_board(board, (GRID, GRID), 0, PADDLE + BALL, what="cell codes")
        if arr is None:
            raise ValueError("from_board needs a host board (the ball and paddle are found on the host)")
        direction = check_int_param("ball_dir", ball_dir, 0, 3)
        lives = self.lives if lives is None else check_int_param("lives", lives, 1, 9)
        if not isinstance(waiting, (bool, np.bool_)):  # "yes" or 0.5 would pass as True
            raise ValueError(f"waiting={waiting!r} must be True or False")
        balls = np.argwhere(arr >= BALL)
        paddles = np.argwhere((arr == PADDLE) | (arr == PADDLE + BALL))
        if len(balls) != 1:
            raise ValueError(f"board must show exactly one ball (code 3, 4 or 5), got {len(balls)}")
        if len(paddles) != 1 or paddles[0][0] != PADDLE_ROW:
            raise ValueError(
                f"board must show exactly one paddle (code 2 or 5) in row {PADDLE_ROW}, got cells {paddles.tolist()}"
            )
        bricks = (arr == BRICK) | (arr == BRICK + BALL)
        (y, x), paddle = balls[0], paddles[0][1]
        dx = 1 if direction in (UP_RIGHT, DOWN_RIGHT) else -1
        dy = -1 if direction < DOWN_RIGHT else 1
        last = (int(np.clip(y - dy, 0, GRID - 1)), int(np.clip(x - dx, 0, GRID - 1)))
        return BreakoutState(**self._fields((int(y), int(x), direction), last, int(paddle), bricks, lives, waiting))

    # ---- text ---------------------------------------------------------------------------

    def _describe(self, state: BreakoutState) -> str:
        y, x, d = int(state.ball_y), int(state.ball_x), DIRECTION_NAMES[int(state.ball_dir)]
        motion = f"waiting to be released, then moving {d}" if bool(state.waiting) else f"moving {d}"
        return (
            f"Paddle: column {int(state.paddle)}\n"
            f"Ball: row {y}, column {x}, {motion}\n"
            f"Bricks left: {int(np.sum(np.asarray(state.bricks)))}\n"
            f"Lives: {int(state.lives)}"
        )

    def _frames_words(self) -> str:
        if self.frames == 1:
            return "The image shows the current frame."
        return (
            f"The image shows the last {self.frames} frames side by side, the oldest on the left and the "
            "current frame on the right, so you can see which way the ball moves."
        )

    def _prompt(self) -> str:
        return (
            f"You are playing Breakout on a {GRID}x{GRID} grid. {self._frames_words()} Rows are counted "
            f"from 0 at the top to {GRID - 1} at the bottom, columns from 0 at the left to {GRID - 1} at the "
            "right. Bricks fill the upper rows, the paddle moves along the bottom row, and the ball moves one "
            "cell diagonally per step, bouncing off the walls, the top, the bricks and the paddle. Each "
            "brick the ball breaks scores a point. If the ball reaches the bottom row past the paddle, "
            "you lose a life and a new ball waits to be released. The game ends when no lives or no "
            "bricks are left.\n"
            "Given the current recent frame, choose an action: 0 = stay, 1 = release the ball, "
            "2 = move right, 3 = move left.\n"
            "Goal: break as many bricks as you can without losing the ball.\n\n"
            + parsing.response_format(
                "four lines, 'Paddle: column C', 'Ball: row R, column C, moving D' (D is up-left, up-right, "
                "down-right or down-left; for a ball not yet released write 'waiting to be released, then "
                "moving D' in place of 'moving D'), 'Bricks left: N' and 'Lives: L', for the current frame.",
                "the number of your action",
                "2",
                subject="the current frame",
            )
        )

    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        answer = parsing.answer_block(text)
        if answer is None:
            return UNPARSEABLE
        value = parsing.first_int(answer)
        if value is not None:
            return parsing.clamp_to_int32(value)  # out of range stays out of range: a no-op
        word = _ACTION_WORDS.search(parsing.normalize(answer))
        if word is None:
            return UNPARSEABLE
        name = word.group().lower()
        return _WORD_ACTIONS.get(name, RIGHT if name == "right" else LEFT)

    def format_answer(self, action: int) -> str:
        return parsing.format_answer(str(int(action)))
