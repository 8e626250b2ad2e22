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


def main() -> None:
    import matplotlib

    ttf = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans-Bold.ttf")
    font = ImageFont.truetype(ttf, FONT_PX)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    chars = [chr(c) for c in range(FIRST_CHAR, LAST_CHAR + 1)]
    advances = [round(font.getlength(ch)) for ch in chars]
    sheet = Image.new("L", (sum(advances), line_height), 0)
    draw = ImageDraw.Draw(sheet)
    x = 0
    for ch, adv in zip(chars, advances, strict=True):
        draw.text((x, 0), ch, fill=255, font=font, anchor="la")
        x += adv
    out = os.path.join(os.path.dirname(__file__), "dejavu_sans_bold.npz")
    np.savez_compressed(
        out,
        coverage=np.asarray(sheet, dtype=np.uint8),
        advances=np.asarray(advances, dtype=np.int32),
        first_char=np.int32(FIRST_CHAR),
        ascent=np.int32(ascent),
    )
    print(f"wrote {out}: {sheet.size[0]}x{sheet.size[1]} px, {len(chars)} glyphs")


if __name__ == "__main__":
    main()
