"""Golden-image comparison: rendered frames must equal committed PNGs pixel for pixel.

Regenerate after an intended change of a picture with ``JAXGYM_UPDATE_GOLDEN=1 pytest ...``
and look at the new PNGs before committing them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_matches_golden(image, name: str) -> None:
    image = np.asarray(image)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, (image.dtype, image.shape)
    path = GOLDEN_DIR / f"{name}.png"
    if os.environ.get("JAXGYM_UPDATE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(exist_ok=True)
        Image.fromarray(image).save(path)
        return
    assert path.exists(), f"no golden image {path}; create it with JAXGYM_UPDATE_GOLDEN=1"
    golden = np.asarray(Image.open(path).convert("RGB"))
    assert golden.shape == image.shape, (golden.shape, image.shape)
    mismatch = np.argwhere(np.any(golden != image, axis=-1))
    assert len(mismatch) == 0, f"{len(mismatch)} pixels differ from {path}, first at {mismatch[:5].tolist()}"
