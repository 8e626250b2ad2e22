"""Host-side drawing for building tile atlases: anti-aliased shapes in exact integer math.

These run once per renderer, in NumPy, never per frame. Shapes are sampled on a regular
``SUPERSAMPLE x SUPERSAMPLE`` grid inside every pixel; coverage is the count of samples
inside, so the pixels are the same on every machine.

The shapes of the tile games are drawn here once (``draw_shape``, by the names of the
catalogue ``jaxgym.palette.SHAPES``): the Shisen-Sho and Swap renderers both draw from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxgym.palette import SHAPES

PAPER = (255, 255, 255)
"""The white page behind the light games' boards (Shisen-Sho, Swap, Sokoban, Tetris)."""
STATUS_INK = (30, 30, 30)
"""The near-black of the status lines on that page (Swap, Sokoban, Tetris)."""

SUPERSAMPLE = 4
InsideFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

OUTLINED_SHAPES = frozenset({"circle", "square", "triangle", "diamond"})


def coverage(inside: InsideFn, height: int, width: int) -> np.ndarray:
    """uint8 ``(height, width)`` coverage (0..255) of the region where ``inside(y, x)``."""
    s = SUPERSAMPLE
    offsets = (np.arange(s) + 0.5) / s
    ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)
    hits = inside(ys[:, None], xs[None, :]).astype(np.int64)
    counts = hits.reshape(height, s, width, s).sum(axis=(1, 3))
    return ((counts * 255 * 2 + s * s) // (2 * s * s)).astype(np.uint8)


def blend(image: np.ndarray, cover: np.ndarray, top: int, left: int, color: Sequence[int]) -> None:
    """Paint ``color`` onto uint8 ``image`` in place where ``cover`` (0..255) says, with
    ``cover``'s top-left at ``(top, left)``, clipped to the image; exact integer blending."""
    H, W = image.shape[:2]
    h, w = cover.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, H), min(left + w, W)
    if y0 >= y1 or x0 >= x1:
        return
    a = cover[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.int64)[..., None]
    dst = image[y0:y1, x0:x1].astype(np.int64)
    src = np.asarray(color, np.int64)[None, None, :]
    image[y0:y1, x0:x1] = ((dst * (255 - a) + src * a + 127) // 255).astype(np.uint8)


def fill(image: np.ndarray, inside: InsideFn, color: Sequence[int]) -> None:
    """Paint the region ``inside`` (in image pixel coordinates) onto ``image`` in place."""
    blend(image, coverage(inside, *image.shape[:2]), 0, 0, color)


def disc(cy: float, cx: float, radius: float) -> InsideFn:
    return lambda y, x: (y - cy) ** 2 + (x - cx) ** 2 <= radius**2


def convex_polygon(vertices: Sequence[tuple[float, float]], inset: float = 0.0) -> InsideFn:
    """Inside test of a convex polygon given as ``(y, x)`` vertices in either winding,
    shrunk by ``inset`` pixels on every edge (an exact uniform-width border).

    >>> square = [(1, 1), (1, 3), (3, 3), (3, 1)]
    >>> [bool(convex_polygon(v)(2.0, 2.0)) for v in (square, square[::-1])]
    [True, True]
    >>> bool(convex_polygon(square)(0.5, 2.0)), bool(convex_polygon(square, inset=0.6)(1.5, 2.0))
    (False, False)
    """
    v = np.asarray(vertices, np.float64)
    nxt = np.roll(v, -1, axis=0)
    edge = nxt - v
    # Orient so the interior is on the positive side of every edge normal.
    area2 = np.sum(v[:, 1] * nxt[:, 0] - nxt[:, 1] * v[:, 0])
    sign = -1.0 if area2 > 0 else 1.0
    lengths = np.hypot(edge[:, 0], edge[:, 1])

    def inside(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        result = np.ones(np.broadcast(y, x).shape, bool)
        for (vy, vx), (ey, ex), length in zip(v, edge, lengths, strict=True):
            # Signed distance of (y, x) from the edge's line, positive inside.
            dist = sign * ((x - vx) * ey - (y - vy) * ex) / length
            result &= dist >= inset
        return result

    return inside


def union(*parts: InsideFn) -> InsideFn:
    def inside(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = parts[0](y, x)
        for p in parts[1:]:
            out = out | p(y, x)
        return out

    return inside


def rounded_rect(top: float, left: float, height: float, width: float, radius: float) -> InsideFn:
    r = min(radius, height / 2, width / 2)

    def inside(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        cy = np.clip(y, top + r, top + height - r)
        cx = np.clip(x, left + r, left + width - r)
        in_box = (y >= top) & (y <= top + height) & (x >= left) & (x <= left + width)
        return in_box & ((y - cy) ** 2 + (x - cx) ** 2 <= r**2)

    return inside


def _shape_region(shape: str, cy: float, cx: float, half: float, inset: float) -> InsideFn:
    """The region of ``shape`` centred at ``(cy, cx)`` inside a ``2*half`` square."""
    h = half
    if shape == "circle":
        return disc(cy, cx, h - inset)
    if shape == "square":
        s = h * 0.86
        return convex_polygon([(cy - s, cx - s), (cy - s, cx + s), (cy + s, cx + s), (cy + s, cx - s)], inset)
    if shape == "triangle":
        return convex_polygon([(cy - h, cx), (cy + h * 0.8, cx + h), (cy + h * 0.8, cx - h)], inset)
    if shape == "diamond":
        return convex_polygon([(cy - h, cx), (cy, cx + h), (cy + h, cx), (cy, cx - h)], inset)
    if shape == "cross":
        t = h * 0.36
        return union(
            convex_polygon([(cy - h, cx - t), (cy - h, cx + t), (cy + h, cx + t), (cy + h, cx - t)], inset),
            convex_polygon([(cy - t, cx - h), (cy - t, cx + h), (cy + t, cx + h), (cy + t, cx - h)], inset),
        )
    if shape == "star":
        # An X: two bars along the diagonals, each of half-thickness t.
        t = h * 0.26
        d = t / np.sqrt(2.0)
        a = h * 0.92
        bar1 = [(cy - a - d, cx - a + d), (cy - a + d, cx - a - d), (cy + a + d, cx + a - d), (cy + a - d, cx + a + d)]
        bar2 = [(cy - a - d, cx + a - d), (cy + a - d, cx - a - d), (cy + a + d, cx - a + d), (cy - a + d, cx + a + d)]
        return union(convex_polygon(bar1, inset), convex_polygon(bar2, inset))
    raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")


def draw_shape(
    tile: np.ndarray,
    shape: str,
    color: Sequence[int],
    *,
    padding: float,
    outline: float,
    outline_color: Sequence[int] = (0, 0, 0),
) -> None:
    """Draw ``shape`` filled with ``color`` centred in ``tile`` (uint8, in place), leaving
    ``padding`` pixels to the tile's edges. Circle, square, triangle and diamond get an
    ``outline`` pixels wide border; the cross and the X are drawn without one."""
    h, w = tile.shape[:2]
    cy, cx = h / 2, w / 2
    half = min(h, w) / 2 - padding
    if half <= 1:
        raise ValueError(f"tile {h}x{w} is too small for padding {padding}")
    if shape in OUTLINED_SHAPES and outline > 0:
        fill(tile, _shape_region(shape, cy, cx, half, 0.0), outline_color)
        fill(tile, _shape_region(shape, cy, cx, half, outline), color)
    else:
        fill(tile, _shape_region(shape, cy, cx, half, 0.0), color)


def area_weights(src: int, dst: int) -> np.ndarray:
    """Integer ``(dst, src)`` matrix of overlaps between output and input pixels, in units
    where one input pixel is ``dst`` long and one output pixel ``src`` long (rows sum to src)."""
    out_lo = np.arange(dst)[:, None] * src
    in_lo = np.arange(src)[None, :] * dst
    overlap = np.minimum(out_lo + src, in_lo + dst) - np.maximum(out_lo, in_lo)
    return np.clip(overlap, 0, None).astype(np.int64)


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-resample uint8 images exactly (integer arithmetic, round half up), up or down.

    ``image`` is a 2-D map ``(h, w)`` or images ``(..., h, w, channels)``:

    >>> resize_area(np.array([[0, 255], [255, 255]], np.uint8), 1, 1).tolist()
    [[191]]
    >>> resize_area(np.zeros((2, 3, 3, 3), np.uint8), 4, 5).shape
    (2, 4, 5, 3)
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim < 2:
        raise ValueError(f"resize_area takes uint8 maps or images, got {image.shape} {image.dtype}")
    pixels = np.moveaxis(image, -1, 0) if image.ndim >= 3 else image
    h0, w0 = pixels.shape[-2:]
    wy, wx = area_weights(h0, height), area_weights(w0, width)
    # Every partial sum is an integer below 2**53, so float64 matmuls are exact here.
    total = np.rint(wy.astype(np.float64) @ pixels.astype(np.float64) @ wx.T.astype(np.float64)).astype(np.int64)
    denom = h0 * w0
    out = ((total * 2 + denom) // (2 * denom)).astype(np.uint8)
    return np.moveaxis(out, 0, -1) if image.ndim >= 3 else out
