"""Shisen-Sho boards to RGB images: white cells on a light grey grid, a status line.

Both games draw through one renderer: each cell slot shows one atlas tile, either a coloured
shape (``draw.draw_shape``) or an image scaled into the cell with exact integer area
weights (``draw.resize_area``). The atlas holds the empty cell, then one tile per kind (or
per (class, image) of the image game); a frame is one gather (``renderers.compose``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym.palette import COLOR_RGB
from jaxgym.registry import register_renderer
from renderers import draw, text
from renderers.compose import Canvas, add_status_counters, board_layout

BACKGROUND = draw.PAPER
CELL = (255, 255, 255)
GRID = (200, 200, 200)
INK = (0, 0, 0)
STATUS_TEXT = (40, 40, 40)
SHAPE_PADDING = 0.16
"""Padding around a shape, as a fraction of the cell's inner side."""


class Layout:
    """Whole-pixel geometry of a ``size x size`` board in an ``(H, W)`` image.

    Cell pitch and the board's left edge are multiples of 16 where the image allows, so the
    compositor copies 16-pixel segments (see ``renderers.compose``)."""

    def __init__(self, size: int, image_size: tuple[int, int]):
        H, W = image_size
        geometry = board_layout(size, size, image_size, margin=max(2, min(H, W) // 112))
        self.status, self.pitch, self.unit = geometry.status, geometry.pitch, geometry.unit
        self.top, self.left = geometry.top, geometry.left
        self.gap = max(2, self.pitch // 16) // 2 * 2
        self.inner = self.pitch - self.gap
        self.size = size

    def cell_origins(self) -> list[tuple[int, int]]:
        p = self.pitch
        return [(self.top + r * p, self.left + c * p) for r in range(self.size) for c in range(self.size)]

    def blank_cell(self) -> np.ndarray:
        """A ``pitch x pitch`` empty cell: white inside, half a grid line on every side."""
        tile = np.empty((self.pitch, self.pitch, 3), np.uint8)
        tile[:] = GRID
        g = self.gap // 2
        tile[g : g + self.inner, g : g + self.inner] = CELL
        return tile


def shape_tiles(layout: Layout, colors: int, shapes: int) -> np.ndarray:
    """``(1 + colors * shapes, pitch, pitch, 3)``: the empty cell, then kind ``k`` at ``k``
    (colour ``(k - 1) // shapes``, shape ``(k - 1) % shapes``)."""
    blank = layout.blank_cell()
    tiles = [blank]
    padding = max(1.0, layout.inner * SHAPE_PADDING) + layout.gap / 2
    outline = max(1.0, layout.pitch / 40)
    for color in COLOR_RGB[:colors]:
        for shape in draw.SHAPES[:shapes]:
            tile = blank.copy()
            draw.draw_shape(tile, shape, color, padding=padding, outline=outline, outline_color=INK)
            tiles.append(tile)
    return np.stack(tiles)


def image_tiles(layout: Layout, images: np.ndarray) -> np.ndarray:
    """``(1 + classes * images, pitch, pitch, 3)``: the empty cell, then image ``i`` of
    class ``c`` at ``1 + c * images + i``, area-resampled into the cell."""
    classes, per_class = images.shape[:2]
    border = max(1, layout.pitch // 32)
    side = layout.inner - 2 * border
    scaled = draw.resize_area(images.reshape(-1, *images.shape[2:]), side, side)
    blank = layout.blank_cell()
    tiles = np.repeat(blank[None], 1 + classes * per_class, axis=0)
    at = layout.gap // 2 + border
    tiles[1:, at : at + side, at : at + side] = scaled
    return tiles


class ShisenShoRenderer:
    """Callable ``state -> (H, W, 3) uint8`` for either Shisen-Sho game."""

    def __init__(self, size: int, image_size: tuple[int, int], cell_tiles: np.ndarray, images_per_class: int | None):
        H, W = image_size
        layout = Layout(size, image_size)
        self.layout = layout
        self.images_per_class = images_per_class
        background = np.empty((H, W, 3), np.uint8)
        background[:] = BACKGROUND
        # The outer half of the board's border line; cells bring the inner half.
        g, side = layout.gap // 2, size * layout.pitch
        background[layout.top - g : layout.top + side + g, layout.left - g : layout.left + side + g] = GRID

        counters = (("score", len(str(size * size // 2))), ("tiles", len(str(size * size))))
        canvas = Canvas(background)
        add_status_counters(
            canvas, counters, (("Score: ", "Tiles left: "), ("Score ", "Tiles ")),
            left=layout.left, unit=layout.unit, ink=STATUS_TEXT, paper=BACKGROUND,
        )
        self.counters = counters
        canvas.add_slots("cell", layout.cell_origins(), cell_tiles)
        self.compositor = canvas.build()
        self.image_shape = self.compositor.image_shape

    @classmethod
    def for_shapes(cls, env: Any) -> ShisenShoRenderer:
        layout = Layout(env.size, env.image_size)
        return cls(env.size, env.image_size, shape_tiles(layout, env.colors, env.shapes), None)

    @classmethod
    def for_images(cls, env: Any) -> ShisenShoRenderer:
        layout = Layout(env.size, env.image_size)
        return cls(env.size, env.image_size, image_tiles(layout, env.tiles.images), env.images_per_class)

    def tile_ids(self, state: Any) -> jax.Array:
        board = state.board.reshape(-1)
        if self.images_per_class is None:
            return board
        picture = jnp.clip(state.picture.reshape(-1), 0, self.images_per_class - 1)
        return jnp.where(board > 0, 1 + (board - 1) * self.images_per_class + picture, 0)

    def __call__(self, state: Any) -> jax.Array:
        values = {"score": state.score, "tiles": jnp.sum(state.board != 0, dtype=jnp.int32)}
        ids = {name: text.number_glyph_ids(values[name], slots) for name, slots in self.counters}
        return self.compositor({"cell": self.tile_ids(state), **ids})


register_renderer("shisensho", ShisenShoRenderer.for_shapes)
register_renderer("shisensho-images", ShisenShoRenderer.for_images)
