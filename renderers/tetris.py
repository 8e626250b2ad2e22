"""Tetris wells to RGB images: a dark well with cells coloured by piece kind, the current
piece in a preview box at the right, and a status line ``Score: 140  Lines: 3``.

The eight cell pictures (empty, seven piece colours) and the status digits are drawn once
into an atlas; a frame is one gather (``renderers.compose``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym.registry import register_renderer
from jaxgym.tetris import PIECE_SHAPES
from renderers import draw, text
from renderers.compose import Canvas, add_status_counters, board_layout, grid_origins

BACKGROUND = draw.PAPER
STATUS_TEXT = draw.STATUS_INK
WELL = (28, 28, 36)
GRID_LINE = (48, 48, 60)
PIECE_COLORS = (
    (0, 200, 220),  # I cyan
    (235, 205, 0),  # O yellow
    (150, 60, 200),  # T purple
    (60, 190, 60),  # S green
    (220, 50, 50),  # Z red
    (40, 80, 220),  # J blue
    (240, 140, 20),  # L orange
)
"""The usual guideline colours of the seven pieces, in ``jaxgym.tetris.PIECE_NAMES`` order."""
SCORE_SLOTS = 10  # any non-negative int32
LINES_SLOTS = 6


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v * factor)))) for v in color)  # type: ignore[return-value]


def _rect(top: float, left: float, height: float, width: float) -> draw.InsideFn:
    return draw.rounded_rect(top, left, height, width, radius=0.0)


def cell_tiles(pitch: int) -> np.ndarray:
    """``(8, pitch, pitch, 3)``: an empty well cell, then a bevelled block per piece kind."""
    tiles = np.empty((8, pitch, pitch, 3), np.uint8)
    tiles[:] = GRID_LINE
    draw.fill(tiles[0], _rect(0, 0, pitch - 1, pitch - 1), WELL)
    bevel = max(1, pitch // 8)
    for k, color in enumerate(PIECE_COLORS, start=1):
        draw.fill(tiles[k], _rect(0, 0, pitch - 1, pitch - 1), _shade(color, 0.6))
        draw.fill(tiles[k], _rect(0, 0, pitch - 1 - bevel, pitch - 1 - bevel), _shade(color, 1.25))
        draw.fill(tiles[k], _rect(bevel, bevel, pitch - 1 - 2 * bevel, pitch - 1 - 2 * bevel), color)
    return tiles


class TetrisRenderer:
    """Callable ``state -> (H, W, 3) uint8`` for a ``rows x cols`` well."""

    def __init__(self, rows: int, cols: int, image_size: tuple[int, int]):
        H, W = image_size
        margin = max(2, min(H, W) // 64)
        # The well, a one-cell gap and a 4-cell preview share one grid's geometry.
        layout = board_layout(
            rows, cols + 5, image_size, margin=margin, units=((16, 8),), min_pitch=4, board_name="Tetris"
        )
        pitch, top, left = layout.pitch, layout.top, layout.left
        preview_left = left + (cols + 1) * pitch
        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND
        label_h = max(5, min(int(layout.status * 0.5), pitch))
        text.draw_text(background, "Piece", label_h, STATUS_TEXT, top_left=(top, preview_left))
        preview_top = top + label_h + max(2, pitch // 2)

        canvas = Canvas(background)
        tiles = cell_tiles(pitch)
        canvas.add_slots("cell", grid_origins(top, left, rows, cols, pitch, pitch), tiles)
        canvas.add_slots("preview", grid_origins(preview_top, preview_left, 4, 4, pitch, pitch), tiles)
        add_status_counters(
            canvas,
            [("score", SCORE_SLOTS), ("lines", LINES_SLOTS)],
            [("Score: ", "Lines: "), ("S ", "L ")],
            left=margin,
            unit=layout.unit,
            ink=STATUS_TEXT,
            paper=BACKGROUND,
        )
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape
        self.previews = (PIECE_SHAPES[:, 0].reshape(7, 16) * np.arange(1, 8)[:, None]).astype(np.int32)

    def __call__(self, state: Any) -> jax.Array:
        return self.compositor(
            {
                "cell": state.board.reshape(-1),
                "preview": jnp.asarray(self.previews)[state.piece],
                "score": text.number_glyph_ids(state.score, SCORE_SLOTS),
                "lines": text.number_glyph_ids(jnp.minimum(state.lines, 10**LINES_SLOTS - 1), LINES_SLOTS),
            }
        )


register_renderer("tetris", lambda env: TetrisRenderer(env.rows, env.cols, env.image_size))
