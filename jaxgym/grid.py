"""Board mechanics shared by the grid games (pure JAX, branch-free, vmappable)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxgym.core import Array


def slide_left(rows: Array) -> Array:
    """Compact the non-zero cells of each row (last axis) to the left, keeping their order.

    2048 slides tiles with it; Swap lets tiles fall by sliding each column towards its bottom.

    >>> slide_left(jnp.array([0, 1, 0, 1])).tolist()
    [1, 1, 0, 0]
    """
    n = rows.shape[-1]
    occupied = rows != 0
    target = jnp.cumsum(occupied, axis=-1) - 1
    moves_to = (target[..., :, None] == jnp.arange(n)) & occupied[..., :, None]
    return jnp.sum(jnp.where(moves_to, rows[..., :, None], 0), axis=-2)
