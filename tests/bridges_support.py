"""Shared helpers of the bridges and evaluator tests: every registered game, small images."""

from __future__ import annotations

import functools

import jax

import jaxgym

GAMES = jaxgym.registered_games()
SMALL_IMAGES = (64, 96, 128, 160, 192, 256, 448)


@functools.cache
def small_env(game_id: str) -> jaxgym.Env:
    """The game at its default rules with the smallest image size its renderer accepts
    (cached: one compile per test module)."""
    error = None
    for side in SMALL_IMAGES:
        try:
            env = jaxgym.make(game_id, image_size=side)
            _ = env._renderer  # builds the renderer, which rejects sizes too small for the board
            return env
        except ValueError as too_small:
            error = too_small
    raise error


def leaves_equal(a, b) -> bool:
    """True if two pytrees have identical leaves (values, shapes and dtypes)."""
    import numpy as np

    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).shape == np.asarray(y).shape
        and np.asarray(x).dtype == np.asarray(y).dtype
        and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb, strict=True)
    )
