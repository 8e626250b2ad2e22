"""2048 boards to RGB images: the classic colours, tile values and a score line.

Tiles (one per exponent) and score digits are drawn once into an atlas; a frame is one
gather (``renderers.compose``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxgym.registry import register_renderer
from renderers import draw, text
from renderers.compose import Canvas, board_layout

BACKGROUND = (250, 248, 238)
BOARD = (186, 172, 160)
EMPTY = (204, 193, 178)
DARK_TEXT = (119, 110, 101)
LIGHT_TEXT = (249, 246, 242)
SCORE_TEXT = (119, 110, 101)
TILE_COLORS = {
    1: (238, 228, 218),
    2: (237, 224, 200),
    3: (242, 177, 121),
    4: (245, 149, 99),
    5: (246, 124, 95),
    6: (246, 94, 59),
    7: (237, 207, 114),
    8: (237, 204, 97),
    9: (237, 200, 80),
    10: (237, 197, 63),
    11: (237, 194, 46),
}
BEYOND_2048 = (60, 58, 50)
SCORE_SLOTS = 11  # any int32


def _aligned(value: int, unit: int) -> int:
    return max(unit, (value // unit) * unit)


def cell_tile(exponent: int, pitch: int, gap: int) -> np.ndarray:
    """The ``pitch x pitch`` picture of one cell: board-coloured gutter, rounded cell, value."""
    tile = np.empty((pitch, pitch, 3), np.uint8)
    tile[:] = BOARD
    inner = pitch - gap
    color = EMPTY if exponent == 0 else TILE_COLORS.get(exponent, BEYOND_2048)
    draw.fill(tile, draw.rounded_rect(gap / 2, gap / 2, inner, inner, radius=max(1.0, pitch / 24)), color)
    if exponent > 0:
        label = str(2**exponent)
        ink = DARK_TEXT if exponent <= 2 else LIGHT_TEXT
        height = int(inner * (0.42 if len(label) <= 2 else 0.36 if len(label) == 3 else 0.3))
        text.draw_text(tile, label, height, ink, center=(pitch // 2, pitch // 2), max_width=int(inner * 0.86))
    return tile


class Game2048Renderer:
    """Callable ``state -> (H, W, 3) uint8`` for a ``size x size`` board."""

    def __init__(self, size: int, image_size: tuple[int, int], max_exponent: int):
        H, W = image_size
        margin = max(2, min(H, W) // 32)
        layout = board_layout(size, size, image_size, margin=margin, units=((64, 16), (24, 8)), min_pitch=8)
        status, pitch, top, left = layout.status, layout.pitch, layout.top, layout.left
        gap = max(2, pitch // 10) // 2 * 2
        self.gap, self.pitch, self.board_origin = gap, pitch, (top, left)

        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND
        side = size * pitch + gap
        draw.fill(background, draw.rounded_rect(top - gap / 2, left - gap / 2, side, side, radius=pitch / 16), BOARD)

        text_height = int(status * 0.62)
        label = "Score: "
        label_x = max(left, margin)
        draw_y = (status - text_height) // 2 + max(1, margin // 2)
        text.draw_text(background, label, text_height, SCORE_TEXT, top_left=(draw_y, label_x))
        glyph_w = _aligned(int(text_height * 0.7), 8 if text_height >= 16 else 1)
        digits_x = label_x + text.text_width(label, text_height)
        digits_x = -(-digits_x // glyph_w) * glyph_w if glyph_w >= 8 else digits_x
        self.score_slots = max(1, min(SCORE_SLOTS, (W - digits_x) // glyph_w))
        digit_tiles = text.number_tiles(
            status, glyph_w, SCORE_TEXT, BACKGROUND, text_height=text_height, text_top=draw_y
        )

        cells = np.stack([cell_tile(e, pitch, gap) for e in range(max_exponent + 1)])
        canvas = Canvas(background)
        canvas.add_slots("cell", [(top + r * pitch, left + c * pitch) for r in range(size) for c in range(size)], cells)
        canvas.add_slots("score", [(0, digits_x + k * glyph_w) for k in range(self.score_slots)], digit_tiles)
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape

    def __call__(self, state: Any) -> jax.Array:
        return self.compositor(
            {"cell": state.board.reshape(-1), "score": text.number_glyph_ids(state.score, self.score_slots)}
        )


register_renderer("2048", lambda env: Game2048Renderer(env.size, env.image_size, env.max_exponent))
