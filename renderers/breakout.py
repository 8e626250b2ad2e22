"""Breakout frames to RGB images: the last ``frames`` frames of the 10x10 grid side by side,
bricks coloured by row, a white ball, a cyan paddle, and a status line ``Score: 3  Lives: 5``.

Every (row, cell code) tile and every status digit is drawn once into an atlas; a frame is
one gather (``renderers.compose``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym.breakout import GRID, board_codes
from jaxgym.registry import register_renderer
from renderers import draw, text
from renderers.compose import Canvas, add_status_counters, board_layout

BACKGROUND = (12, 12, 20)
GRID_LINE = (34, 34, 46)
EMPTY = (20, 20, 30)
SEPARATOR = (110, 110, 120)
BRICK_COLORS = {1: (200, 72, 72), 2: (198, 108, 58), 3: (180, 160, 50)}
OTHER_BRICK = (120, 120, 170)
PADDLE = (70, 170, 230)
BALL = (250, 250, 250)
STATUS_TEXT = (235, 235, 235)
CODES = 6  # jaxgym.breakout.board_codes: 0 empty, 1 brick, 2 paddle, + 3 with the ball


def cell_tile(row: int, code: int, pitch: int) -> np.ndarray:
    """The ``pitch x pitch`` picture of a cell of grid row ``row`` holding ``code``."""
    tile = np.empty((pitch, pitch, 3), np.uint8)
    tile[:] = GRID_LINE
    tile[1:, 1:] = EMPTY
    base, ball = code % 3, code >= 3
    inset = max(1, pitch // 12)
    if base == 1:
        color = BRICK_COLORS.get(row, OTHER_BRICK)
        brick = draw.rounded_rect(inset + 1, inset, pitch - 2 * inset - 1, pitch - inset, radius=pitch / 10)
        draw.fill(tile, brick, color)
    elif base == 2:
        draw.fill(tile, draw.rounded_rect(pitch * 0.2, 0.5, pitch * 0.45, pitch - 1.0, radius=pitch / 6), PADDLE)
    if ball:
        draw.fill(tile, draw.disc(pitch / 2, pitch / 2, pitch * 0.3), BALL)
    return tile


class BreakoutRenderer:
    """Callable ``state -> (H, W, 3) uint8`` showing the last ``frames`` frames."""

    def __init__(self, frames: int, image_size: tuple[int, int]):
        H, W = image_size
        cols = frames * GRID + (frames - 1)  # a one-cell gap between frames
        # Cells are flat colour, a ball and a bar: 3 pixels still show them (56 px, one frame).
        layout = board_layout(
            GRID, cols, image_size, margin=max(2, min(H, W) // 56), min_pitch=3, board_name="Breakout"
        )
        self.frames = frames
        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND
        pitch = layout.pitch
        line = max(1, pitch // 8)
        for j in range(1, frames):
            x = layout.left + (j * (GRID + 1) - 1) * pitch + (pitch - line) // 2
            background[layout.top : layout.top + GRID * pitch, x : x + line] = SEPARATOR
        canvas = Canvas(background)
        add_status_counters(
            canvas, (("score", 2), ("lives", 1)), (("Score: ", "Lives: "), ("S ", "L ")),
            left=layout.left, unit=layout.unit, ink=STATUS_TEXT, paper=BACKGROUND,
        )
        tiles = np.stack([cell_tile(row, code, pitch) for row in range(GRID) for code in range(CODES)])
        origins = [
            (layout.top + r * pitch, layout.left + (j * (GRID + 1) + c) * pitch)
            for j in range(frames)
            for r in range(GRID)
            for c in range(GRID)
        ]
        canvas.add_slots("cell", origins, tiles)
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape
        self.row_base = (np.arange(GRID)[:, None] * CODES).astype(np.int32)

    def __call__(self, state: Any) -> jax.Array:
        past = board_codes(state.past_ball[:, 0], state.past_ball[:, 1], state.past_paddle, state.past_bricks)
        frames = jnp.concatenate([past, state.board[None]])  # (frames, 10, 10), oldest first
        return self.compositor(
            {
                "cell": (frames + self.row_base).reshape(-1),
                "score": text.number_glyph_ids(state.score, 2),
                "lives": text.number_glyph_ids(state.lives, 1),
            }
        )


register_renderer("breakout", lambda env: BreakoutRenderer(env.frames, env.image_size))
