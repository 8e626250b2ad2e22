"""Sokoban boards to RGB images: brick walls, floor, diamond targets, boxes (green on a
target), the player as a blue disc, and a status line ``On target: 1  Moves: 12``.

The seven cell pictures (one per cell code) and the status glyphs are drawn once into an
atlas; a frame is one gather (``renderers.compose``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym.registry import register_renderer
from renderers import draw, text
from renderers.compose import Canvas, add_status_counters, board_layout

BACKGROUND = draw.PAPER
STATUS_TEXT = draw.STATUS_INK

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


class SokobanRenderer:
    """Callable ``state -> (H, W, 3) uint8`` for a ``size x size`` Sokoban board."""

    def __init__(self, size: int, image_size: tuple[int, int], max_steps: int):
        H, W = image_size
        margin = max(2, min(H, W) // 128)
        layout = board_layout(
            size, size, image_size, margin=margin, units=((16, 8),), min_pitch=6, board_name="Sokoban"
        )
        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND
        canvas = Canvas(background)
        canvas.add_slots("cell", layout.cell_origins(), cell_tiles(layout.pitch))
        # "On target: 1  Moves: 17": boxes on targets (any board: up to size*size), moves.
        self.box_slots = len(str(size * size))
        self.moves_slots = len(str(max_steps))
        add_status_counters(
            canvas,
            [("boxes", self.box_slots), ("moves", self.moves_slots)],
            [("On target: ", "Moves: "), ("T ", "M ")],
            left=margin,
            unit=layout.unit,
            ink=STATUS_TEXT,
            paper=BACKGROUND,
        )
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape

    def __call__(self, state: Any) -> jax.Array:
        board = state.board
        shown_moves = jnp.clip(state.step_count, 0, 10**self.moves_slots - 1)
        return self.compositor(
            {
                "cell": board.reshape(-1),
                "boxes": text.number_glyph_ids(jnp.sum(board == 4), self.box_slots),
                "moves": text.number_glyph_ids(shown_moves, self.moves_slots),
            }
        )


register_renderer("sokoban", lambda env: SokobanRenderer(env.size, env.image_size, env.max_steps))
