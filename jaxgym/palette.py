"""The colour palette and shape catalogue of the tile games (Shisen-Sho; Swap uses the
first four colours and three shapes).

Names are what perception texts print; RGB triples are what renderers paint, and
``renderers.draw.draw_shape`` draws the shapes by these names. Both live in the game layer
because the perception texts name them and the game layer imports no renderer.
"""

from __future__ import annotations

COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("Red", (255, 0, 0)),
    ("Green", (0, 255, 0)),
    ("Blue", (0, 0, 255)),
    ("Yellow", (255, 255, 0)),
    ("Magenta", (255, 0, 255)),
    ("Cyan", (0, 255, 255)),
    ("Maroon", (128, 0, 0)),
    ("Dark green", (0, 128, 0)),
    ("Navy", (0, 0, 128)),
    ("Olive", (128, 128, 0)),
    ("Purple", (128, 0, 128)),
    ("Teal", (0, 128, 128)),
    ("Orange", (255, 165, 0)),
    ("Brown", (139, 69, 19)),
    ("Steel blue", (70, 130, 180)),
    ("Pink", (219, 112, 147)),
)
"""``(name, (r, g, b))`` in palette order; a game with ``colors=n`` uses the first ``n``."""

COLOR_NAMES: tuple[str, ...] = tuple(name for name, _ in COLORS)
COLOR_RGB: tuple[tuple[int, int, int], ...] = tuple(rgb for _, rgb in COLORS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
"""Shape names in palette order. The "star" is drawn as an X of two thick diagonals."""
