"""Batches of training states: reset, then random play, in one jitted call.

    sampler = StateSampler(jaxgym.make("2048"), seed=0)      # the paper's sampling
    states, images = sampler.sample(128)                     # (128, ...) states, (128, H, W, 3) uint8

Modes:
    ``"paper"``: the game's protocol (``bridges.protocol``): 2048 100 uniformly random
        actions, Shisen-Sho 250 uniformly random pair actions, Swap fresh boards.
        ``depth`` overrides the protocol's depth.
    ``"uniform"``: ``depth`` actions uniform over all ``env.num_actions`` flat actions
        (illegal ones are the game's penalised no-ops).
    ``"legal"``: ``depth`` actions uniform over the legal actions.
    ``"random-depth"``: legal random play to a depth drawn per board uniformly from
        ``0..depth``, for a mix of early and late positions.

Boards that end during random play (terminated, or truncated by a ``TimeLimit``) restart
from a fresh ``reset`` (``jaxgym.wrappers.AutoReset``, the one auto-reset) and go on with the
remaining actions, so a sampled state is never a
finished game: a finished game has no legal move and teaches nothing. The returned states
are clean: ``reward`` 0, ``last_action_legal`` True, ``terminated``/``truncated`` False;
``step_count`` counts the actions since the board's last reset, and ``score`` the score
since then (2048's status line shows it).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import renderers  # noqa: F401  (registers the games' renderers: this module renders boards)
from bridges.protocol import protocol_for
from jaxgym.core import Array, Env, PRNGKey, State
from jaxgym.wrappers import AutoReset, tree_select

MODES = ("paper", "uniform", "legal", "random-depth")
MAX_DEPTH = 100_000


def random_action(state: State, key: PRNGKey, policy: str, num_actions: int) -> Array:
    """One random flat action (int32) for one state: ``"uniform"`` over all actions or
    ``"legal"`` over the legal ones (uniform over all where none is legal)."""
    if policy == "uniform":
        return jax.random.randint(key, (), 0, num_actions, dtype=jnp.int32)
    mask = state.legal_action_mask
    logits = jnp.where(mask | ~jnp.any(mask), 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


def random_play(
    env: Env, state: State, key: PRNGKey, steps: int, policy: str, depth: Array | None = None
) -> State:
    """``steps`` random actions on one state, restarting boards that end (see module doc).

    With ``depth`` (int32 scalar), only the first ``depth`` of the ``steps`` actions are
    taken. Traceable; vmap it for a batch."""

    def body(carry: State, xs: tuple[PRNGKey, Array]) -> tuple[State, None]:
        step_key, t = xs
        action_key, env_key, reset_key = jax.random.split(step_key, 3)
        action = random_action(carry, action_key, policy, env.num_actions)
        nxt, _ = restarting.step_and_restart(carry, action, env_key, reset_key)
        if depth is not None:
            nxt = tree_select(t < depth, nxt, carry)
        return nxt, None

    restarting = AutoReset(env)

    if steps == 0:
        return state
    xs = (jax.random.split(key, steps), jnp.arange(steps, dtype=jnp.int32))
    state, _ = jax.lax.scan(body, state, xs)
    return state


def clean(state: State) -> State:
    """Clear the per-step flags of a sampled state (see module doc)."""
    return state.replace(
        reward=jnp.zeros_like(state.reward),
        terminated=jnp.zeros_like(state.terminated),
        truncated=jnp.zeros_like(state.truncated),
        last_action_legal=jnp.ones_like(state.last_action_legal),
    )


@functools.lru_cache(maxsize=64)
def _compiled_sampler(env: Env, depth: int, policy: str, random_depth: bool) -> Any:
    """The jitted ``(key, batch_size) -> (states, images)``, shared by samplers of one env."""

    def one(key: PRNGKey) -> State:
        reset_key, depth_key, play_key = jax.random.split(key, 3)
        state = env.reset(reset_key)
        target = jax.random.randint(depth_key, (), 0, depth + 1, dtype=jnp.int32) if random_depth else None
        return clean(random_play(env, state, play_key, depth, policy, target))

    @functools.partial(jax.jit, static_argnums=1)
    def sample(key: PRNGKey, batch_size: int) -> tuple[State, Array]:
        states = jax.vmap(one)(jax.random.split(key, batch_size))
        return states, jax.vmap(env.render)(states)

    return sample


class StateSampler:
    """Seeded batches of training states and their rendered images (see module doc).

    Each :meth:`sample` is one jitted call (compiled once per batch size) and advances an
    internal JAX key; :meth:`state_dict`/:meth:`load_state_dict` save and restore it, so a
    resumed run draws exactly the states it would have drawn.

    >>> import jaxgym
    >>> sampler = StateSampler(jaxgym.make("2048", image_size=64), seed=0)
    >>> states, images = sampler.sample(8)
    >>> states.board.shape, images.shape, images.dtype.name
    ((8, 4, 4), (8, 64, 64, 3), 'uint8')
    >>> bool(states.terminated.any()), int(states.step_count.max()) <= 100
    (False, True)
    """

    def __init__(self, env: Env, *, depth: int | None = None, mode: str = "paper", seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        protocol = protocol_for(env)
        if depth is None:
            if mode != "paper":
                raise ValueError(f"mode={mode!r} needs a depth (an int in 0..{MAX_DEPTH})")
            depth = protocol.sample_depth
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth={depth!r} is out of range; allowed: an int in 0..{MAX_DEPTH}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.env = env
        self.mode = mode
        self.depth = int(depth)
        self.seed = int(seed)
        self.policy = protocol.sample_policy if mode == "paper" else "uniform" if mode == "uniform" else "legal"
        self._key = jax.random.key(self.seed)
        self.batches_drawn = 0

    @property
    def _sample_fn(self) -> Any:
        return _compiled_sampler(self.env, self.depth, self.policy, self.mode == "random-depth")

    def sample(self, batch_size: int) -> tuple[State, jax.Array]:
        """``(states, images)``: states with leading dim ``batch_size``, images
        ``(batch_size, H, W, 3)`` uint8 (both JAX arrays; see ``bridges.torch_io``)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is out of range; allowed: an int >= 1")
        self._key, key = jax.random.split(self._key)
        self.batches_drawn += 1
        return self._sample_fn(key, int(batch_size))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the JAX key (as uint32 data) and the configuration."""
        return {
            "game": self.env.id,
            "mode": self.mode,
            "depth": self.depth,
            "seed": self.seed,
            "batches_drawn": self.batches_drawn,
            "key": np.asarray(jax.random.key_data(self._key)).tolist(),
            "key_impl": str(jax.random.key_impl(self._key)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; a different game, mode or depth raises
        ValueError, since the resumed states would come from another distribution."""
        for name in ("game", "mode", "depth"):
            mine = self.env.id if name == "game" else getattr(self, name)
            if state.get(name) != mine:
                raise ValueError(
                    f"cannot resume: the saved sampler has {name}={state.get(name)!r}, this one {mine!r}; "
                    f"build the sampler with the saved settings"
                )
        impl = state.get("key_impl")
        self._key = jax.random.wrap_key_data(jnp.asarray(state["key"], jnp.uint32), impl=impl)
        self.seed = int(state.get("seed", self.seed))
        self.batches_drawn = int(state.get("batches_drawn", 0))
