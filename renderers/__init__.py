"""Pure-JAX renderers: game states to RGB uint8 images, one atlas gather per frame."""
from renderers import breakout, game2048, shisensho, sokoban, swap, tetris  # noqa: F401  (each registers its renderer for its game)
