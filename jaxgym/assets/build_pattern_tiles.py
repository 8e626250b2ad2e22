"""Build ``pattern_tiles.npz``: the embedded image classes of image-tile Shisen-Sho.

Run ``python jaxgym/assets/build_pattern_tiles.py`` to rebuild it. Ten texture classes, each
drawn 8 times with its own colours, scale, angle and phase, at 32x32 (CIFAR-10's size),
anti-aliased by 4x4 supersampling. Everything is generated here from a fixed seed, so the
images carry no third-party licence. The committed file is what the game loads: rendering
never depends on this script's floating point.
"""

from __future__ import annotations

import os

import numpy as np

CLASS_NAMES = ("stripes", "checkers", "dots", "rings", "waves", "bricks", "spiral", "gradient", "speckles", "zigzag")
IMAGES_PER_CLASS = 8
SIDE = 32
SUPERSAMPLE = 4
SEED = 20250519

# Ink and paper colours with strong contrast between the members of each pair.
DARK = [(20, 40, 120), (120, 20, 30), (20, 90, 40), (70, 30, 110), (30, 30, 30), (140, 70, 10), (0, 100, 110)]
LIGHT = [(250, 230, 120), (240, 240, 235), (170, 230, 250), (250, 190, 200), (200, 245, 180), (255, 200, 140)]


def _coords() -> tuple[np.ndarray, np.ndarray]:
    """Supersampled pixel-centre coordinates ``(y, x)`` in [0, 1)."""
    n = SIDE * SUPERSAMPLE
    t = (np.arange(n) + 0.5) / n
    y, x = np.meshgrid(t, t, indexing="ij")
    return y, x


def _rotate(y: np.ndarray, x: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    y0, x0 = y - 0.5, x - 0.5
    return c * y0 - s * x0, s * y0 + c * x0


def _pattern(name: str, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage in [0, 1] on the supersampled grid."""
    y, x = _coords()
    angle = rng.uniform(0, np.pi)
    if name == "stripes":
        u, _ = _rotate(y, x, rng.choice([0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]) + rng.uniform(-0.15, 0.15))
        period = rng.uniform(0.18, 0.3)
        return ((u / period + rng.uniform()) % 1.0 < 0.5).astype(float)
    if name == "checkers":
        u, v = _rotate(y, x, rng.choice([0, np.pi / 4]))
        cell = rng.uniform(0.14, 0.25)
        return ((np.floor(u / cell + rng.uniform()) + np.floor(v / cell + rng.uniform())) % 2).astype(float)
    if name == "dots":
        u, v = _rotate(y, x, angle)
        pitch = rng.uniform(0.22, 0.32)
        fu, fv = (u / pitch + rng.uniform()) % 1.0 - 0.5, (v / pitch + rng.uniform()) % 1.0 - 0.5
        return (fu**2 + fv**2 < rng.uniform(0.22, 0.3) ** 2).astype(float)
    if name == "rings":
        cy, cx = rng.uniform(0.3, 0.7, size=2)
        r = np.hypot(y - cy, x - cx)
        return ((r / rng.uniform(0.1, 0.15)) % 1.0 < 0.5).astype(float)
    if name == "waves":
        u, v = _rotate(y, x, angle)
        period = rng.uniform(0.22, 0.3)
        bend = rng.uniform(0.06, 0.1) * np.sin(2 * np.pi * v / rng.uniform(0.35, 0.55))
        return (((u + bend) / period + rng.uniform()) % 1.0 < 0.5).astype(float)
    if name == "bricks":
        u, v = _rotate(y, x, rng.choice([0, np.pi / 2]))
        h = rng.uniform(0.15, 0.22)
        w = h * rng.uniform(1.8, 2.4)
        row = np.floor(u / h + rng.uniform())
        fu = (u / h + rng.uniform()) % 1.0
        fv = ((v + (row % 2) * w / 2) / w) % 1.0
        mortar = 0.05  # about 1.6 pixels, horizontal and vertical alike
        return ((fu > mortar / h) & (fv > mortar / w)).astype(float)
    if name == "spiral":
        cy, cx = rng.uniform(0.4, 0.6, size=2)
        r = np.hypot(y - cy, x - cx)
        theta = np.arctan2(y - cy, x - cx)
        arms = rng.choice([1, 2])
        turn = rng.uniform(0.16, 0.24)
        return (((r / turn - arms * theta / (2 * np.pi) + rng.uniform()) % 1.0) < 0.5).astype(float)
    if name == "gradient":
        u, _ = _rotate(y, x, angle)
        return np.clip(u / 0.75 + 0.5, 0.0, 1.0)
    if name == "speckles":
        grain = rng.choice([2, 3, 4])
        n = SIDE // grain + 1
        noise = rng.uniform(size=(n, n)) < rng.uniform(0.35, 0.5)
        idx = (np.arange(SIDE * SUPERSAMPLE) // (SUPERSAMPLE * grain)).clip(0, n - 1)
        return noise[idx[:, None], idx[None, :]].astype(float)
    if name == "zigzag":
        u, v = _rotate(y, x, rng.choice([0, np.pi / 2]) + rng.uniform(-0.1, 0.1))
        period = rng.uniform(0.22, 0.3)
        tooth = rng.uniform(0.25, 0.35)
        tri = np.abs((v / tooth + rng.uniform()) % 1.0 - 0.5) * 2 * rng.uniform(0.1, 0.16)
        return (((u + tri) / period + rng.uniform()) % 1.0 < 0.5).astype(float)
    raise ValueError(name)


def build() -> tuple[np.ndarray, tuple[str, ...]]:
    rng = np.random.default_rng(SEED)
    images = np.empty((len(CLASS_NAMES), IMAGES_PER_CLASS, SIDE, SIDE, 3), np.uint8)
    s = SUPERSAMPLE
    for c, name in enumerate(CLASS_NAMES):
        for i in range(IMAGES_PER_CLASS):
            ink = np.asarray(DARK[rng.integers(len(DARK))], float)
            paper = np.asarray(LIGHT[rng.integers(len(LIGHT))], float)
            if rng.uniform() < 0.5:
                ink, paper = paper, ink
            cover = _pattern(name, rng).reshape(SIDE, s, SIDE, s).mean(axis=(1, 3))[..., None]
            images[c, i] = np.round(paper + (ink - paper) * cover).clip(0, 255).astype(np.uint8)
    return images, CLASS_NAMES


def main() -> None:
    images, names = build()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pattern_tiles.npz")
    np.savez_compressed(path, images=images, class_names=np.asarray(names))
    print(f"wrote {path}: {images.shape}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
