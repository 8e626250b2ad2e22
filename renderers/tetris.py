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

from jaxgym.tetris import PIECE_SHAPES
from renderers import draw, text
from renderers.compose import Canvas, align_down
from renderers.sokoban import draw_two_field_status
from renderers.swap import BACKGROUND, STATUS_TEXT

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
        status = max(14, H // 10)
        margin = max(2, min(H, W) // 64)
        # The well and a 4-cell preview (plus a one-cell gap) share the width.
        pitch = min((H - status - margin) // rows, (W - 2 * margin) // (cols + 5))
        unit = 8 if pitch >= 16 else 1
        pitch = align_down(pitch, unit)
        if pitch < 4:
            raise ValueError(
                f"image_size {image_size} is too small for a {rows}x{cols} Tetris well: cells would be {pitch} "
                f"pixels, at least 4 are needed"
            )
        total_w = (cols + 5) * pitch
        left = align_down((W - total_w) // 2, unit)
        top = status + (H - status - rows * pitch) // 2
        preview_left = left + (cols + 1) * pitch
        self.rows, self.cols = rows, cols

        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND
        glyph_w, text_height, text_top, score_x, lines_x = draw_two_field_status(
            background, status, margin, (("Score: ", "Lines: "), ("S ", "L ")), SCORE_SLOTS, 6
        )
        label_h = max(5, min(text_height, pitch))
        text.draw_text(background, "Piece", label_h, STATUS_TEXT, top_left=(top, preview_left))
        glyphs = text.number_tiles(status, glyph_w, STATUS_TEXT, BACKGROUND, text_height=text_height, text_top=text_top)
        preview_top = top + label_h + max(2, pitch // 2)

        canvas = Canvas(background)
        canvas.add_slots(
            "cell", [(top + r * pitch, left + c * pitch) for r in range(rows) for c in range(cols)], cell_tiles(pitch)
        )
        canvas.add_slots(
            "preview",
            [(preview_top + r * pitch, preview_left + c * pitch) for r in range(4) for c in range(4)],
            cell_tiles(pitch),
        )
        canvas.add_slots("score", [(0, score_x + k * glyph_w) for k in range(SCORE_SLOTS)], glyphs)
        canvas.add_slots("lines", [(0, lines_x + k * glyph_w) for k in range(6)], glyphs)
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape
        self.previews = (PIECE_SHAPES[:, 0].reshape(7, 16) * np.arange(1, 8)[:, None]).astype(np.int32)

    def __call__(self, state: Any) -> jax.Array:
        return self.compositor(
            {
                "cell": state.board.reshape(-1),
                "preview": jnp.asarray(self.previews)[state.piece],
                "score": text.number_glyph_ids(state.score, SCORE_SLOTS),
                "lines": text.number_glyph_ids(jnp.minimum(state.lines, 999_999), 6),
            }
        )
