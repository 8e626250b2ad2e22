"""Sokoban boards to RGB images: brick walls, floor, diamond targets, boxes (green on a
target), the player as a blue disc, and a status line ``Boxes: 1/4  Moves: 12/120``.

The seven cell pictures (one per cell code) and the status glyphs are drawn once into an
atlas; a frame is one gather (``renderers.compose``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from renderers import draw, text
from renderers.compose import Canvas, align_down
from renderers.swap import BACKGROUND, SLASH_TILE, STATUS_TEXT, status_glyph_tiles

FLOOR_COLOR = (222, 214, 196)
GRID_LINE = (200, 190, 170)
BRICK = (158, 76, 52)
MORTAR = (112, 100, 92)
TARGET_COLOR = (205, 40, 40)
BOX_FACE = (176, 120, 62)
BOX_EDGE = (102, 66, 30)
BOX_ON_TARGET_FACE = (70, 170, 86)
BOX_ON_TARGET_EDGE = (30, 100, 44)
PLAYER_COLOR = (40, 90, 220)
PLAYER_EDGE = (15, 30, 90)


def _rect(top: float, left: float, height: float, width: float) -> draw.InsideFn:
    return draw.rounded_rect(top, left, height, width, radius=0.0)


def _floor(pitch: int) -> np.ndarray:
    tile = np.empty((pitch, pitch, 3), np.uint8)
    tile[:] = GRID_LINE
    draw.fill(tile, _rect(0, 0, pitch - 1, pitch - 1), FLOOR_COLOR)
    return tile


def _wall(pitch: int) -> np.ndarray:
    """Two courses of bricks, the upper offset by half a brick."""
    tile = np.empty((pitch, pitch, 3), np.uint8)
    tile[:] = MORTAR
    joint = max(1, pitch // 16)
    course = pitch / 2
    for row in range(2):
        top = row * course + joint / 2
        offset = 0.0 if row else -pitch / 2
        for k in range(3):
            left = offset + k * pitch + joint / 2
            draw.fill(tile, _rect(top, left, course - joint, pitch - joint), BRICK)
    return tile


def _target(tile: np.ndarray) -> None:
    p = tile.shape[0]
    c, h = p / 2, p * 0.4
    diamond = [(c - h, c), (c, c + h), (c + h, c), (c, c - h)]
    draw.fill(tile, draw.convex_polygon(diamond), TARGET_COLOR)
    draw.fill(tile, draw.convex_polygon(diamond, inset=max(1.0, p / 14)), FLOOR_COLOR)


def _box(tile: np.ndarray, face: tuple[int, int, int], edge: tuple[int, int, int]) -> None:
    p = tile.shape[0]
    pad = max(1.0, p * 0.1)
    side = p - 2 * pad
    line = max(1.0, p / 14)
    draw.fill(tile, draw.rounded_rect(pad, pad, side, side, radius=p / 10), edge)
    draw.fill(tile, draw.rounded_rect(pad + line, pad + line, side - 2 * line, side - 2 * line, radius=p / 14), face)
    a, b = pad + line, p - pad - line
    t = line / 2
    for (y0, x0), (y1, x1) in (((a, a), (b, b)), ((a, b), (b, a))):
        # A thin bar from (y0, x0) to (y1, x1): the box's diagonal planks.
        ny, nx = (x1 - x0), -(y1 - y0)
        n = np.hypot(ny, nx)
        ny, nx = ny / n * t, nx / n * t
        bar = [(y0 + ny, x0 + nx), (y1 + ny, x1 + nx), (y1 - ny, x1 - nx), (y0 - ny, x0 - nx)]
        draw.fill(tile, draw.convex_polygon(bar), edge)


def _player(tile: np.ndarray) -> None:
    p = tile.shape[0]
    c = p / 2
    draw.fill(tile, draw.disc(c, c, p * 0.3), PLAYER_EDGE)
    draw.fill(tile, draw.disc(c, c, p * 0.3 - max(1.0, p / 16)), PLAYER_COLOR)


def cell_tiles(pitch: int) -> np.ndarray:
    """``(7, pitch, pitch, 3)``: the picture of each cell code (floor, wall, target, box,
    box on target, player, player on target)."""
    floor = _floor(pitch)
    target = floor.copy()
    _target(target)
    box = floor.copy()
    _box(box, BOX_FACE, BOX_EDGE)
    box_on_target = target.copy()
    _box(box_on_target, BOX_ON_TARGET_FACE, BOX_ON_TARGET_EDGE)
    player = floor.copy()
    _player(player)
    player_on_target = target.copy()
    _player(player_on_target)
    return np.stack([floor, _wall(pitch), target, box, box_on_target, player, player_on_target])


def ratio_glyph_ids(numerator: jax.Array, denominator: jax.Array, num_slots: int) -> jax.Array:
    """Left-aligned glyph ids (``renderers.swap.status_glyph_tiles`` order) of
    ``"{numerator}/{denominator}"``, both non-negative and traced.

    >>> ratio_glyph_ids(jnp.int32(3), jnp.int32(12), 6).tolist()
    [3, 12, 1, 2, 11, 11]
    """
    head = text.number_glyph_ids(numerator, num_slots)
    used = jnp.sum(head != text.BLANK_TILE)
    tail = jnp.concatenate([jnp.full((1,), SLASH_TILE, jnp.int32), text.number_glyph_ids(denominator, num_slots)])
    slots = jnp.arange(num_slots)
    return jnp.where(slots < used, head, tail[jnp.clip(slots - used, 0, num_slots)])


def draw_two_field_status(
    background: np.ndarray,
    status: int,
    margin: int,
    label_pairs: tuple[tuple[str, str], ...],
    left_slots: int,
    right_slots: int,
) -> tuple[int, int, int, int, int]:
    """Draw the labels of a status line ``"{left label}{left field}   {right label}{right
    field}"`` across the top ``status`` rows of ``background`` (in place), at the largest
    text size where both fields fit, trying ``label_pairs`` (long labels first). Fields are
    runs of monospace glyph slots, aligned to 8 pixels where the glyphs are 8 wide or more.
    Returns ``(glyph_width, text_height, text_top, left_field_x, right_field_x)``."""
    W = background.shape[1]
    for left_label, right_label in label_pairs:
        for text_height in range(int(status * 0.6), 4, -1):
            digit_w = text.text_width("0", text_height)
            glyph_w = max(8, 8 * round(digit_w / 8)) if digit_w >= 6 else digit_w
            step = 8 if glyph_w % 8 == 0 else 1
            left_x = -(-(margin + text.text_width(left_label, text_height)) // step) * step
            right_x = align_down(W - margin - right_slots * glyph_w, step)
            right_label_x = right_x - text.text_width(right_label, text_height)
            if digit_w <= glyph_w and right_label_x >= left_x + left_slots * glyph_w + glyph_w // 2:
                text_top = (status - text_height) // 2 + max(1, margin // 2)
                text.draw_text(background, left_label, text_height, STATUS_TEXT, top_left=(text_top, margin))
                text.draw_text(background, right_label, text_height, STATUS_TEXT, top_left=(text_top, right_label_x))
                return glyph_w, text_height, text_top, left_x, right_x
    raise ValueError(f"image width {W} is too narrow for a status line of {left_slots} + {right_slots} glyphs")


class SokobanRenderer:
    """Callable ``state -> (H, W, 3) uint8`` for a ``size x size`` Sokoban board."""

    def __init__(self, size: int, boxes: int, image_size: tuple[int, int], max_steps: int):
        H, W = image_size
        status = max(14, H // 10)
        margin = max(2, min(H, W) // 128)
        pitch = min(W - 2 * margin, H - status - margin) // size
        unit = 8 if pitch >= 16 else 1
        pitch = align_down(pitch, unit)
        if pitch < 6:
            raise ValueError(
                f"image_size {image_size} is too small for a {size}x{size} Sokoban board: cells would be {pitch} "
                f"pixels, at least 6 are needed"
            )
        board_w = size * pitch
        left = align_down((W - board_w) // 2, unit)
        top = status + (H - status - board_w) // 2

        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND

        # "Boxes: 1/4    Moves: 12/120": boxes on target over the board's box count (any
        # board: up to size*size), moves over the step limit.
        self.box_slots = 2 * len(str(size * size)) + 1
        self.moves_digits = len(str(max_steps))
        self.max_steps = max_steps
        self.moves_slots = 2 * self.moves_digits + 1
        glyph_w, text_height, text_top, boxes_x, moves_x = draw_two_field_status(
            background, status, margin, (("Boxes: ", "Moves: "), ("B ", "M ")), self.box_slots, self.moves_slots
        )
        glyphs = status_glyph_tiles(status, glyph_w, text_height, text_top)

        canvas = Canvas(background)
        cell_origins = [(top + r * pitch, left + c * pitch) for r in range(size) for c in range(size)]
        canvas.add_slots("cell", cell_origins, cell_tiles(pitch))
        canvas.add_slots("boxes", [(0, boxes_x + k * glyph_w) for k in range(self.box_slots)], glyphs)
        canvas.add_slots("moves", [(0, moves_x + k * glyph_w) for k in range(self.moves_slots)], glyphs)
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape

    def __call__(self, state: Any) -> jax.Array:
        board = state.board
        on_target = jnp.sum(board == 4)
        total = on_target + jnp.sum(board == 3)
        shown_moves = jnp.clip(state.step_count, 0, 10**self.moves_digits - 1)
        return self.compositor(
            {
                "cell": board.reshape(-1),
                "boxes": ratio_glyph_ids(on_target, total, self.box_slots),
                "moves": ratio_glyph_ids(shown_moves, jnp.int32(self.max_steps), self.moves_slots),
            }
        )
