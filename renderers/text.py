"""Text for renderers: host-side glyph drawing for atlases, and digits of numbers in JAX.

Glyphs come from ``assets/dejavu_sans_bold.npz`` (DejaVu Sans Bold rasterised once at 96 px,
see ``assets/build_font.py``) and are scaled with exact integer area weights, so the same
text gives the same pixels on every machine.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from renderers.draw import blend, resize_area

_FONT_PATH = os.path.join(os.path.dirname(__file__), "assets", "dejavu_sans_bold.npz")

NUMBER_GLYPHS = "0123456789- "
"""Tile order of ``number_tiles``: digit d is tile d, then minus, then blank."""
MINUS_TILE, BLANK_TILE = 10, 11


@functools.lru_cache(maxsize=1)
def _font() -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    with np.load(_FONT_PATH) as data:
        coverage = data["coverage"]
        advances = data["advances"].astype(np.int64)
        slot_starts = data["slot_starts"].astype(np.int64)
        pad = int(data["pad"])
        first = int(data["first_char"])
    return coverage, advances, slot_starts, pad, first


def _resize_coverage(coverage: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-resample a uint8 coverage map exactly (integer arithmetic, round half up)."""
    return resize_area(coverage, height, width)


def text_coverage(text: str, height: int) -> np.ndarray:
    """Coverage (0..255) of ``text`` set in a line ``height`` pixels tall, ``(height, width)``.

    Glyphs advance by their widths and overlap where their ink overhangs (kept, combined by
    maximum); the width spans the advances and any overhang at either end.
    """
    coverage, advances, slot_starts, pad, first = _font()
    codes = [ord(c) - first for c in text]
    for c, code in zip(text, codes, strict=True):
        if not 0 <= code < len(advances):
            raise ValueError(f"character {c!r} is not in the renderer's font (printable ASCII only)")
    if not codes:
        return np.zeros((height, 0), np.uint8)
    total = int(sum(advances[k] for k in codes))
    line = np.zeros((coverage.shape[0], total + 2 * pad), np.uint8)
    pen = 0
    for k in codes:
        slot = coverage[:, slot_starts[k] : slot_starts[k] + advances[k] + 2 * pad]
        np.maximum(line[:, pen : pen + slot.shape[1]], slot, out=line[:, pen : pen + slot.shape[1]])
        pen += int(advances[k])
    inked = np.nonzero(line.any(axis=0))[0]
    left = min(pad, int(inked[0])) if len(inked) else pad
    right = max(pad + total, int(inked[-1]) + 1) if len(inked) else pad + total
    line = line[:, left:right]
    width = max(1, round(line.shape[1] * height / coverage.shape[0]))
    return _resize_coverage(line, height, width)


def text_width(text: str, height: int) -> int:
    """Width in pixels of ``text`` drawn ``height`` pixels tall."""
    return text_coverage(text, height).shape[1]


def draw_text(
    image: np.ndarray,
    text: str,
    height: int,
    color: tuple[int, int, int],
    *,
    center: tuple[int, int] | None = None,
    top_left: tuple[int, int] | None = None,
    max_width: int | None = None,
) -> None:
    """Draw ``text`` onto ``image`` in place, its ink centred on ``center=(y, x)``, or with
    its line box (ascender to descender) at ``top_left``.

    With ``max_width``, the text shrinks until it fits that many pixels."""
    coverage = text_coverage(text, height)
    while max_width is not None and coverage.shape[1] > max_width and height > 4:
        height -= 1
        coverage = text_coverage(text, height)
    h, w = coverage.shape
    if center is not None:
        # Centre the ink, not the line box: the box carries the descender space below.
        rows = np.nonzero(coverage.any(axis=1))[0]
        cols = np.nonzero(coverage.any(axis=0))[0]
        if len(rows) == 0:
            return
        top = center[0] - (int(rows[0]) + int(rows[-1]) + 1) // 2
        left = center[1] - (int(cols[0]) + int(cols[-1]) + 1) // 2
    elif top_left is not None:
        top, left = top_left
    else:
        raise ValueError("draw_text needs center or top_left")
    blend(image, coverage, top, left, color)


def number_tiles(
    height: int,
    width: int,
    fg: tuple[int, int, int],
    bg: tuple[int, int, int],
    *,
    text_height: int,
    text_top: int,
) -> np.ndarray:
    """``(12, height, width, 3)`` uint8 slot tiles for the glyphs of ``NUMBER_GLYPHS``: each
    glyph set ``text_height`` tall from row ``text_top`` (so it shares the baseline of a label
    drawn with ``draw_text(..., text_height, top_left=(text_top, x))``), centred across the
    slot's ``width``, shrunk if wider than the slot."""
    tiles = np.empty((len(NUMBER_GLYPHS), height, width, 3), np.uint8)
    tiles[:] = np.asarray(bg, np.uint8)
    for i, ch in enumerate(NUMBER_GLYPHS):
        if ch == " ":
            continue
        glyph = text_coverage(ch, text_height)
        if glyph.shape[1] > width:
            glyph = _resize_coverage(glyph, glyph.shape[0], width)
        blend(tiles[i], glyph, text_top, (width - glyph.shape[1]) // 2, fg)
    return tiles


def number_glyph_ids(value: jax.Array, num_slots: int) -> jax.Array:
    """Left-aligned decimal glyph ids of an integer for ``num_slots`` monospace slots.

    Pure JAX and branch-free. Ids index ``number_tiles``: digits, then ``MINUS_TILE`` and
    ``BLANK_TILE`` for unused slots. A number too long for the slots shows its leading
    digits, so give enough slots (11 hold any int32).

        >>> number_glyph_ids(jnp.int32(-42), 5).tolist()
        [10, 4, 2, 11, 11]
    """
    value = jnp.asarray(value).astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    negative = value < 0
    # abs(int32 min) overflows; treat it as int32 max, one unit off, never a crash.
    magnitude = jnp.where(value == jnp.iinfo(value.dtype).min, jnp.iinfo(value.dtype).max, jnp.abs(value))
    max_digits = len(str(jnp.iinfo(value.dtype).max))
    powers = jnp.asarray([10**k for k in range(max_digits)], value.dtype)
    num_digits = 1 + jnp.sum(magnitude >= powers[1:])
    slots = jnp.arange(num_slots)
    digit_pos = slots - negative.astype(jnp.int32)  # index among the digits, most significant first
    exponent = jnp.clip(num_digits - 1 - digit_pos, 0, max_digits - 1)
    digits = (magnitude // powers[exponent]) % 10
    is_digit = (digit_pos >= 0) & (digit_pos < num_digits)
    ids = jnp.where(is_digit, digits, BLANK_TILE)
    ids = jnp.where(negative & (slots == 0), MINUS_TILE, ids)
    return ids.astype(jnp.int32)
