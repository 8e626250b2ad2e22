"""Swap boards to RGB images: checkerboard cells, raised tiles with outlined coloured shapes,
and a status line ``Score: 36  Moves: 12/100``.

Every (kind, checker shade) cell and every status digit is drawn once into an atlas; a frame
is one gather (``renderers.compose``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym.palette import COLOR_RGB
from jaxgym.registry import register_renderer
from renderers import draw, text
from renderers.compose import Canvas, align_down, board_layout

BACKGROUND = draw.PAPER
CELL_SHADES = ((240, 240, 240), (230, 230, 230))  # (row + col) even, odd
GRID_LINE = (200, 200, 200)
SHADOW = (120, 120, 120)
TILE_FACE = (245, 245, 245)
TILE_EDGE = (180, 180, 180)
OUTLINE = (0, 0, 0)
STATUS_TEXT = draw.STATUS_INK

SLASH_TILE = len(text.NUMBER_GLYPHS)
"""Status glyph tiles are ``text.number_tiles`` followed by a slash."""
SCORE_POINTS_PER_MOVE = 200
"""The score field has room for ``max_moves`` moves of this many points each (the mean is
about 8; one move scored at most 162 in 42,000 sampled moves); a larger score shows as all
nines."""


def _rect(top: float, left: float, height: float, width: float) -> draw.InsideFn:
    return draw.rounded_rect(top, left, height, width, radius=0.0)


def cell_tile(color: tuple[int, int, int], shape: str, shade: tuple[int, int, int], pitch: int) -> np.ndarray:
    """The ``pitch x pitch`` picture of one cell: checker shade, grid line, and a raised
    light tile (face, edge, drop shadow) carrying the outlined coloured shape."""
    tile = np.empty((pitch, pitch, 3), np.uint8)
    tile[:] = GRID_LINE
    draw.fill(tile, _rect(1, 1, pitch - 2, pitch - 2), shade)
    pad = max(1, pitch // 20)
    lift = max(1, pitch // 16)
    face = pitch - 2 * pad - lift
    draw.fill(tile, _rect(pad + lift, pad + lift, face, face), SHADOW)
    draw.fill(tile, _rect(pad, pad, face, face), TILE_EDGE)
    draw.fill(tile, _rect(pad + 1, pad + 1, face - 2, face - 2), TILE_FACE)
    face_view = tile[pad : pad + face, pad : pad + face]
    draw.draw_shape(face_view, shape, color, padding=face * 0.15, outline=max(1.0, face / 30), outline_color=OUTLINE)
    return tile


def status_glyph_tiles(height: int, width: int, text_height: int, text_top: int) -> np.ndarray:
    """``(13, height, width, 3)``: the digits, minus and blank of ``text.number_tiles``, then a
    slash on the same baseline."""
    digits = text.number_tiles(height, width, STATUS_TEXT, BACKGROUND, text_height=text_height, text_top=text_top)
    slash = np.empty((1, height, width, 3), np.uint8)
    slash[:] = BACKGROUND
    glyph = text.text_coverage("/", text_height)
    draw.blend(slash[0], glyph, text_top, (width - glyph.shape[1]) // 2, STATUS_TEXT)
    return np.concatenate([digits, slash])


def fraction_glyph_ids(numerator: jax.Array, denominator: int, num_slots: int) -> jax.Array:
    """Left-aligned glyph ids of ``"{numerator}/{denominator}"`` for ``num_slots`` slots
    (``numerator`` >= 0 and short enough to fit).

    >>> fraction_glyph_ids(jnp.int32(12), 100, 8).tolist()
    [1, 2, 12, 1, 0, 0, 11, 11]
    """
    num_digits = len(str(denominator))
    head = text.number_glyph_ids(numerator, num_slots)
    used = jnp.sum(head != text.BLANK_TILE)
    tail = jnp.asarray([SLASH_TILE] + [int(d) for d in str(denominator)], jnp.int32)
    slots = jnp.arange(num_slots)
    from_tail = tail[jnp.clip(slots - used, 0, num_digits)]
    in_tail = (slots >= used) & (slots <= used + num_digits)
    return jnp.where(in_tail, from_tail, head)


class SwapRenderer:
    """Callable ``state -> (H, W, 3) uint8`` for a ``size x size`` Swap board."""

    def __init__(self, size: int, colors: int, shapes: int, image_size: tuple[int, int], max_moves: int):
        H, W = image_size
        margin = max(2, min(H, W) // 64)
        layout = board_layout(
            size, size, image_size, margin=margin, bottom_margin=False, align_narrow_left=True, board_name="Swap"
        )
        status, pitch, top, left = layout.status, layout.pitch, layout.top, layout.left
        board_w = size * pitch

        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND
        cells = [
            cell_tile(COLOR_RGB[k // shapes], draw.SHAPES[k % shapes], shade, pitch)
            for k in range(colors * shapes)
            for shade in CELL_SHADES
        ]
        parity = (np.arange(size)[:, None] + np.arange(size)[None, :]) % 2
        self.parity = parity.ravel().astype(np.int32)

        # Status line "Score: 36    Moves: 12/100": two groups of monospace glyph slots, laid
        # across the board's width (or the image's), at the largest text size that fits.
        self.score_slots = len(str(min(2**31 - 1, SCORE_POINTS_PER_MOVE * max_moves)))
        self.moves_digits = len(str(max_moves))
        self.max_moves = max_moves
        moves_slots = 2 * self.moves_digits + 1  # "{step}/{max}"
        span_left, span_right = (left, left + board_w) if board_w >= 0.8 * W else (margin, W - margin)
        layout = None
        # Long labels first; tiny images fall back to "S" and "M" labels.
        for score_label, moves_label in (("Score: ", "Moves: "), ("S ", "M ")):
            for text_height in range(int(status * 0.6), 4, -1):
                digit_w = text.text_width("0", text_height)
                glyph_w = max(8, 8 * round(digit_w / 8)) if digit_w >= 6 else digit_w
                step = 16 if glyph_w % 16 == 0 else 8 if glyph_w % 8 == 0 else 1
                score_x = -(-(span_left + text.text_width(score_label, text_height)) // step) * step
                moves_x = align_down(span_right - moves_slots * glyph_w, step)
                moves_label_x = moves_x - text.text_width(moves_label, text_height)
                if digit_w <= glyph_w and moves_label_x >= score_x + self.score_slots * glyph_w + glyph_w // 2:
                    layout = (score_label, moves_label, text_height, glyph_w, score_x, moves_x, moves_label_x)
                    break
            if layout is not None:
                break
        if layout is None:
            raise ValueError(f"image_size {image_size} is too narrow for the status line of max_moves={max_moves}")
        score_label, moves_label, text_height, glyph_w, score_x, moves_x, moves_label_x = layout
        text_top = (status - text_height) // 2 + max(1, margin // 2)
        text.draw_text(background, score_label, text_height, STATUS_TEXT, top_left=(text_top, span_left))
        text.draw_text(background, moves_label, text_height, STATUS_TEXT, top_left=(text_top, moves_label_x))
        glyphs = status_glyph_tiles(status, glyph_w, text_height, text_top)

        canvas = Canvas(background)
        cell_origins = [(top + r * pitch, left + c * pitch) for r in range(size) for c in range(size)]
        canvas.add_slots("cell", cell_origins, np.stack(cells))
        canvas.add_slots("score", [(0, score_x + k * glyph_w) for k in range(self.score_slots)], glyphs)
        canvas.add_slots("moves", [(0, moves_x + k * glyph_w) for k in range(moves_slots)], glyphs)
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape

    def __call__(self, state: Any) -> jax.Array:
        shown_score = jnp.minimum(state.score, min(10**self.score_slots - 1, 2**31 - 1))
        shown_moves = jnp.clip(state.step_count, 0, 10**self.moves_digits - 1)
        return self.compositor(
            {
                "cell": state.board.reshape(-1) * 2 + self.parity,
                "score": text.number_glyph_ids(shown_score, self.score_slots),
                "moves": fraction_glyph_ids(shown_moves, self.max_moves, 2 * self.moves_digits + 1),
            }
        )


register_renderer("swap", lambda env: SwapRenderer(env.size, env.colors, env.shapes, env.image_size, env.max_moves))
