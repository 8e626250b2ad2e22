"""Frame composition from a pre-rendered tile atlas with a single gather.

A game's picture is a static background with rectangular *slots* on it (board cells, the
digits of a score). Each slot shows one of a few pre-rendered tiles (uint8 images drawn once,
on the host, when the renderer is built). Per frame, only the tile index of each slot
depends on the state.

Every image row is cut into horizontal *segments* of ``segment_width`` pixels, the widest
width that divides the canvas width and every slot's left edge and width. The background
and every tile are stored in one atlas of such segments, and a frame is::

    segment_base = tile_base[tile_of_slot]              # (num_slots,), tiny
    frame = atlas[segment_base[slot_map] + local]       # one gather of H * W / sw segments

where ``slot_map`` and ``local`` are static ``(H, W / sw)`` index maps. The gather reads whole
segments and writes the frame in its final memory order, so no transpose or per-pixel
arithmetic follows it, and under ``vmap`` the static maps are shared by the batch.

    >>> import numpy as np
    >>> bg = np.zeros((4, 8, 3), np.uint8)
    >>> tiles = np.stack([np.full((2, 4, 3), v, np.uint8) for v in (10, 20)])
    >>> frame = Canvas(bg).add_slots("cell", [(1, 4)], tiles).build()
    >>> frame({"cell": np.array([1])})[:, :, 0].tolist()
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 20, 20, 20, 20], [0, 0, 0, 0, 20, 20, 20, 20], [0, 0, 0, 0, 0, 0, 0, 0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym._xla import computed_apart

SEGMENT_WIDTHS = (32, 16, 8, 4, 2, 1)


@dataclass(frozen=True)
class _SlotGroup:
    name: str
    origins: np.ndarray  # (n, 2) int, top-left (y, x) of each slot
    tiles: np.ndarray  # (T, h, w, 3) uint8


class Canvas:
    """Host-side builder: a background plus named groups of same-sized slots."""

    def __init__(self, background: np.ndarray):
        background = np.asarray(background)
        if background.dtype != np.uint8 or background.ndim != 3 or background.shape[2] != 3:
            raise ValueError(f"background must be (H, W, 3) uint8, got {background.shape} {background.dtype}")
        self.background = background
        self.groups: list[_SlotGroup] = []

    def add_slots(self, name: str, origins: Sequence[tuple[int, int]], tiles: np.ndarray) -> Canvas:
        """Add slots at ``origins`` (top-left ``(y, x)``), each showing one of ``tiles``."""
        tiles = np.asarray(tiles)
        origins_arr = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[3] != 3:
            raise ValueError(f"tiles of {name!r} must be (T, h, w, 3) uint8, got {tiles.shape} {tiles.dtype}")
        h, w = tiles.shape[1:3]
        H, W = self.background.shape[:2]
        for y, x in origins_arr:
            if y < 0 or x < 0 or y + h > H or x + w > W:
                raise ValueError(f"slot {name!r} at ({y}, {x}) of size {h}x{w} leaves the {H}x{W} canvas")
        if any(g.name == name for g in self.groups):
            raise ValueError(f"slot group {name!r} added twice")
        self.groups.append(_SlotGroup(name, origins_arr, tiles))
        return self

    def build(self) -> Compositor:
        return Compositor(self.background, self.groups)


class Compositor:
    """``frame = compositor({group: tile ids})``: jit- and vmap-able, uint8 out."""

    def __init__(self, background: np.ndarray, groups: Sequence[_SlotGroup]):
        H, W = background.shape[:2]
        edges = [W] + [int(v) for g in groups for v in (*g.origins[:, 1], g.tiles.shape[2])]
        sw = next(s for s in SEGMENT_WIDTHS if all(e % s == 0 for e in edges))
        self.image_shape = (H, W, 3)
        self.segment_width = sw
        self.group_names = [g.name for g in groups]
        self.group_sizes = {g.name: len(g.origins) for g in groups}
        self.num_tiles = {g.name: len(g.tiles) for g in groups}

        segs_per_row = W // sw
        rows = np.arange(H)[:, None]
        cols = np.arange(segs_per_row)[None, :]
        # Slot 0 is the background; group slots follow in order.
        slot_map = np.zeros((H, segs_per_row), np.int32)
        local = (rows * segs_per_row + cols).astype(np.int64)
        atlas_parts = [background.reshape(H * segs_per_row, sw * 3)]
        tile_base_parts = [np.zeros(1, np.int64)]
        tile_stride = [0]
        next_slot, next_segment = 1, H * segs_per_row
        for g in groups:
            T, h, w, _ = g.tiles.shape
            tile_segs = h * (w // sw)
            for y, x in g.origins:
                region = (slice(y, y + h), slice(x // sw, (x + w) // sw))
                if np.any(slot_map[region] != 0):
                    raise ValueError(f"slot of {g.name!r} at ({y}, {x}) overlaps another slot")
                slot_map[region] = next_slot
                local[region] = rows[:h] * (w // sw) + np.arange(w // sw)[None, :]
                next_slot += 1
            atlas_parts.append(g.tiles.reshape(T * tile_segs, sw * 3))
            tile_base_parts.append(np.full(1, next_segment, np.int64))
            tile_stride.append(tile_segs)
            next_segment += T * tile_segs
        if next_segment >= 2**31:
            raise ValueError(f"atlas of {next_segment} segments is too large for int32 indexing")
        # NumPy, not jnp: the renderer may first be built inside a trace, and device arrays
        # made there would leak as tracers. They become constants of each compiled frame.
        self.atlas = np.concatenate(atlas_parts)
        self.slot_map = slot_map
        self.local = local.astype(np.int32)
        self._group_base = [int(b[0]) for b in tile_base_parts[1:]]
        self._group_stride = tile_stride[1:]
        self.atlas_bytes = int(self.atlas.size)

    def __call__(self, tile_ids: Mapping[str, jax.Array]) -> jax.Array:
        missing = set(self.group_names) - set(tile_ids)
        if missing:
            raise ValueError(f"tile ids missing for slot groups {sorted(missing)}")
        bases = [jnp.zeros((1,), jnp.int32)]
        for name, base, stride in zip(self.group_names, self._group_base, self._group_stride, strict=True):
            ids = jnp.asarray(tile_ids[name]).astype(jnp.int32).reshape(self.group_sizes[name])
            ids = jnp.clip(ids, 0, self.num_tiles[name] - 1)
            bases.append(base + ids * stride)
        # Computed apart: fused into the gather (XLA:CPU does so for unbatched frames, and drops
        # an optimization_barrier), the tile-id arithmetic behind the slot bases (the digits of
        # a score) runs once per copied segment: measured 335 -> 38 us per 448x448 2048 frame at
        # batch 1 in a scan.
        segment_base = computed_apart(jnp.concatenate, bases)
        index = segment_base[jnp.asarray(self.slot_map)] + jnp.asarray(self.local)
        segments = jnp.asarray(self.atlas).at[index].get(mode="promise_in_bounds")
        return segments.reshape(self.image_shape)


def grid_origins(top: int, left: int, rows: int, cols: int, pitch_y: int, pitch_x: int) -> list[tuple[int, int]]:
    """Top-left corners of a ``rows x cols`` grid of slots, row-major."""
    return [(top + r * pitch_y, left + c * pitch_x) for r in range(rows) for c in range(cols)]


def align_down(value: int, multiple: int) -> int:
    return (value // multiple) * multiple


def lcm(*values: int) -> int:
    return math.lcm(*values)


def status_height(image_height: int) -> int:
    """Height of the status line band at the top of every game's picture."""
    return max(14, image_height // 10)


@dataclass(frozen=True)
class BoardLayout:
    """Whole-pixel geometry of a grid of ``rows x cols`` square cells under a status line.

    Attributes:
        status: height of the status band at the top (``status_height``).
        pitch: cell side in pixels, a multiple of ``unit``.
        unit: the alignment (16, 8 or 1 pixels) that lets the compositor copy wide segments.
        top, left: the grid's top-left pixel.
    """

    rows: int
    cols: int
    status: int
    pitch: int
    unit: int
    top: int
    left: int

    def cell_origins(self) -> list[tuple[int, int]]:
        """Top-left corners of the cells, row-major."""
        return grid_origins(self.top, self.left, self.rows, self.cols, self.pitch, self.pitch)


def board_layout(
    rows: int,
    cols: int,
    image_size: tuple[int, int],
    *,
    margin: int,
    units: Sequence[tuple[int, int]] = ((32, 16), (16, 8)),
    min_pitch: int = 10,
    bottom_margin: bool = True,
    align_narrow_left: bool = False,
    board_name: str = "",
) -> BoardLayout:
    """The layout every board game shares: a status band on top (``status_height``), the
    grid centred below it with ``margin`` pixels to the image's sides (and to its bottom if
    ``bottom_margin``), its cell pitch the largest that fits, rounded down to the first
    ``unit`` of ``units`` (``(min_pitch_for_unit, unit)`` pairs) it reaches, else 1, and its
    left edge aligned down to that unit (when the centred edge is narrower than one unit,
    to 0 if ``align_narrow_left``, else kept). Raises ValueError naming the image size when
    cells would be smaller than ``min_pitch``.

    >>> board_layout(4, 4, (448, 448), margin=4)
    BoardLayout(rows=4, cols=4, status=44, pitch=96, unit=16, top=54, left=32)
    """
    H, W = image_size
    status = status_height(H)
    avail_h = H - status - (2 if bottom_margin else 1) * margin
    pitch = min((W - 2 * margin) // cols, avail_h // rows)
    unit = next((u for threshold, u in units if pitch >= threshold), 1)
    aligned = align_down(pitch, unit)
    if aligned < min_pitch:
        raise ValueError(
            f"image_size {image_size} is too small for a {rows}x{cols} {board_name + ' ' if board_name else ''}board: "
            f"cells would be {pitch} pixels, at least {min_pitch} are needed"
        )
    left = (W - cols * aligned) // 2
    if left >= unit or align_narrow_left:
        left = align_down(left, unit)
    top = status + (H - status - rows * aligned) // 2
    return BoardLayout(rows, cols, status, aligned, unit, top, left)


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def add_status_counters(
    canvas: Canvas,
    counters: Sequence[tuple[str, int]],
    label_sets: Sequence[Sequence[str]],
    *,
    left: int,
    unit: int,
    ink: tuple[int, int, int],
    paper: tuple[int, int, int],
) -> None:
    """Lay out a status line of labelled counters (``"Score: 12  Tiles left: 24"``) in the
    status band of ``canvas`` (``status_height`` of its background): labels are drawn into
    the background, each counter's digits become a slot group named after it with
    ``slots`` monospace digit slots (fill them with ``text.number_glyph_ids``).

    ``counters`` are ``(group name, slots)``; ``label_sets`` are the counters' labels from
    the roomiest to the shortest. The line starts at ``left`` (at least 2 pixels in); digit
    slots are as wide as the widest digit, rounded up to 16 or 8 pixels when ``unit``
    allows and that wastes little, so the compositor copies wide segments. The first
    layout that fits the width wins: the first label set with two blank digits between
    counters, then with one, then the shortest labels with one. Raises ValueError when none
    fits."""
    from renderers import text  # text draws with renderers.draw; compose stays free of fonts otherwise

    background = canvas.background
    H, W = background.shape[:2]
    status = status_height(H)
    text_height = max(7, int(status * 0.5))
    text_top = (status - text_height) // 2 + max(1, status // 16)
    digit = max(text.text_width(d, text_height) for d in "0123456789")
    units = [u for u in (16, 8) if u <= unit] + [1]
    glyph_w = next(_round_up(digit, u) for u in units if _round_up(digit, u) - digit <= max(2, digit // 4))
    attempts = [(label_sets[0], 2), (label_sets[0], 1), (label_sets[-1], 1)]
    for labels, spacing in attempts:
        placed, x = [], max(left, 2)
        for (name, slots), label in zip(counters, labels, strict=True):
            digits_x = _round_up(x + text.text_width(label, text_height), glyph_w)
            placed.append((label, x, name, slots, digits_x))
            x = digits_x + (slots + spacing) * glyph_w
        if x - spacing * glyph_w <= W:
            break
    else:
        raise ValueError(f"image_size {(H, W)} is too narrow for the status line")
    digit_tiles = text.number_tiles(status, glyph_w, ink, paper, text_height=text_height, text_top=text_top)
    for label, label_x, name, slots, digits_x in placed:
        text.draw_text(background, label, text_height, ink, top_left=(text_top, label_x))
        canvas.add_slots(name, [(0, digits_x + k * glyph_w) for k in range(slots)], digit_tiles)
