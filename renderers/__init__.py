"""Pure-JAX renderers: game states to RGB uint8 images, one atlas gather per frame."""
