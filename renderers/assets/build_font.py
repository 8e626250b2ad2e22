"""Rasterise the glyph sheet that every renderer draws text with.

Run once by a maintainer (needs matplotlib, which ships the DejaVu fonts):

    python renderers/assets/build_font.py

The output, ``dejavu_sans_bold.npz``, is committed. Renderers read glyph coverage from it and
scale it with exact integer arithmetic, so every machine draws identical pixels whatever its
FreeType or Pillow version.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FIRST_CHAR, LAST_CHAR = 32, 126
FONT_PX = 96
PAD = 16


def main() -> None:
    import matplotlib

    ttf = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans-Bold.ttf")
    font = ImageFont.truetype(ttf, FONT_PX)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    chars = [chr(c) for c in range(FIRST_CHAR, LAST_CHAR + 1)]
    advances = [round(font.getlength(ch)) for ch in chars]
    # Each glyph gets its own slot, padded on both sides, so ink that overhangs the advance
    # (the hook of a j, the tail of a bold f) is kept and never bleeds into a neighbour.
    slot_widths = [adv + 2 * PAD for adv in advances]
    slot_starts = np.concatenate([[0], np.cumsum(slot_widths)[:-1]])
    sheet = np.zeros((line_height, sum(slot_widths)), np.uint8)
    for ch, start, width in zip(chars, slot_starts, slot_widths):
        glyph = Image.new("L", (width, line_height), 0)
        ImageDraw.Draw(glyph).text((PAD, 0), ch, fill=255, font=font, anchor="la")
        sheet[:, start : start + width] = np.asarray(glyph)
    out = os.path.join(os.path.dirname(__file__), "dejavu_sans_bold.npz")
    np.savez_compressed(
        out,
        coverage=sheet,
        advances=np.asarray(advances, dtype=np.int32),
        slot_starts=slot_starts.astype(np.int32),
        pad=np.int32(PAD),
        first_char=np.int32(FIRST_CHAR),
        ascent=np.int32(ascent),
    )
    print(f"wrote {out}: {sheet.shape[1]}x{sheet.shape[0]} px, {len(chars)} glyphs")


if __name__ == "__main__":
    main()
