"""XLA workarounds shared by the games and the renderers (private: not part of the API)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def computed_apart(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, computed into buffers of its own instead of being fused into its
    consumers.

    XLA fuses cheap-looking producers into each consumer's loop. That recomputes them per
    element (a tile-id calculation inside a per-pixel gather) or reshapes their loop (a 4-D
    mask computed in flat-index order with div/mod arithmetic): on XLA:CPU either can cost
    3-10x. ``lax.optimization_barrier`` does not stop fusion there; a loop body does. The
    loop runs once (twice only if the inputs' first elements sum past 3e38, which changes
    nothing but the time), and its trip count depends on the data, so XLA cannot unroll it.

    >>> computed_apart(lambda x: x * 2, jnp.arange(3)).tolist()
    [0, 2, 4]
    """
    probe = sum(leaf.reshape(-1)[0].astype(jnp.float32) for leaf in jax.tree.leaves(args))
    trips = 1 + (probe > 3e38).astype(jnp.int32)
    shapes = jax.eval_shape(fn, *args)
    start = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    _, out = jax.lax.while_loop(lambda c: c[0] < trips, lambda c: (c[0] + 1, fn(*args)), (jnp.int32(0), start))
    return out
