"""Wrappers for RL loops: a time limit and auto-reset, both branch-free under ``vmap``.

    env = AutoReset(TimeLimit(jaxgym.make("2048"), max_steps=500))
    step = jax.jit(jax.vmap(env.step))      # finished boards restart in place

Neither wrapper adds state fields, so wrapped and bare envs share one state type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from jaxgym.core import Array, Env, PRNGKey, State, check_int_param


class Wrapper(Env):
    """Delegates every method to ``env``; subclasses override what they change."""

    def __init__(self, env: Env):
        self.env = env

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.env.name

    @property
    def version(self) -> int:  # type: ignore[override]
        return self.env.version

    @property
    def num_actions(self) -> int:  # type: ignore[override]
        return self.env.num_actions

    @property
    def image_size(self) -> tuple[int, int]:  # type: ignore[override]
        return self.env.image_size

    @property
    def prompt_style(self) -> str:  # type: ignore[override]
        return self.env.prompt_style

    @property
    def unwrapped(self) -> Env:
        return self.env.unwrapped if isinstance(self.env, Wrapper) else self.env

    def __getattr__(self, attr: str) -> Any:
        # Game-specific helpers (action codecs, palettes) stay reachable through wrappers.
        if attr == "env":
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def reset(self, key: PRNGKey) -> State:
        return self.env.reset(key)

    def step(self, state: State, action: Array | int, key: PRNGKey) -> State:
        return self.env.step(state, action, key)

    def from_board(self, board: Any) -> State:
        return self.env.from_board(board)

    def describe(self, state: State) -> str:
        return self.env.describe(state)

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        return self.env.field_bounds()

    def check_fields(self, fields: dict[str, Any]) -> None:
        self.env.check_fields(fields)

    def prompt(self) -> str:
        return self.env.prompt()

    def _prompt(self) -> str:
        return self.env._prompt()

    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        return self.env.parse_answer(text)

    def format_answer(self, action: int) -> str:
        return self.env.format_answer(action)

    def _make_renderer(self) -> Any:
        return self.env._renderer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.env!r}>"


class TimeLimit(Wrapper):
    """Sets ``truncated`` once ``step_count`` reaches ``max_steps`` (and the game is not over)."""

    def __init__(self, env: Env, max_steps: int):
        super().__init__(env)
        self.max_steps = check_int_param("max_steps", max_steps, 1)

    def step(self, state: State, action: Array | int, key: PRNGKey) -> State:
        state = self.env.step(state, action, key)
        out_of_time = (state.step_count >= self.max_steps) & ~state.terminated
        return state.replace(truncated=state.truncated | out_of_time)


def tree_select(pred: Array, on_true: Any, on_false: Any) -> Any:
    """``on_true`` where ``pred`` else ``on_false``, leaf by leaf (``jnp.where``): the branch-free
    choice between two pytrees of one structure that every auto-reset here is built on."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class AutoReset(Wrapper):
    """Restarts finished episodes inside ``step``, with selects rather than ``lax.cond``.

    When a step ends an episode, the returned state is a fresh board that still reports
    that step's ``reward``, ``terminated``, ``truncated`` and ``last_action_legal``, so an RL
    loop sees the episode's last transition. The next ``step`` clears those flags before
    acting on the fresh board. Fresh boards are never terminal in any jaxgym game.

    Under ``vmap`` the reset is computed for every board each step and selected where
    needed, which keeps one compiled program. ``step_batch`` steps a whole batch with the
    same result and computes the resets only on steps where some board finished: use it
    for an RL loop's batched step when resets are costly (Shisen-Sho, Swap) and batches are
    small enough that most steps finish no board.
    """

    def step(self, state: State, action: Array | int, key: PRNGKey) -> State:
        step_key, reset_key = jax.random.split(key)
        return self.step_and_restart(state, action, step_key, reset_key)[0]

    def step_and_restart(
        self, state: State, action: Array | int, step_key: PRNGKey, reset_key: PRNGKey
    ) -> tuple[State, State]:
        """``(restarted, stepped)``: ``step``'s result and the state the step itself reached
        (the finished episode's last state where it ended), with the step's and the reset's
        keys given apart, for loops that derive their own keys (``bridges.sampler``)."""
        stepped = self.env.step(_clear_episode_end(state), action, step_key)
        return tree_select(_episode_ended(stepped), self._restart(stepped, reset_key), stepped), stepped

    def step_batch(self, states: State, actions: Array, keys: PRNGKey) -> State:
        """``jax.vmap(self.step)(states, actions, keys)``, equal bit for bit, for a batch along
        the leading axis. The resets sit in one ``lax.cond`` on the whole batch, outside
        ``vmap``, so a step where no board finished computes none of them.

        >>> import jaxgym
        >>> env = AutoReset(jaxgym.make("2048"))
        >>> keys = jax.random.split(jax.random.key(0), 8)
        >>> states = jax.vmap(env.reset)(keys)
        >>> stepped = jax.jit(env.step_batch)(states, jnp.zeros(8, jnp.int32), keys)
        >>> stepped.board.shape
        (8, 4, 4)
        """
        split = jax.vmap(jax.random.split)(keys)
        return self.step_batch_and_restart(states, actions, split[:, 0], split[:, 1])[0]

    def step_batch_and_restart(
        self, states: State, actions: Array, step_keys: PRNGKey, reset_keys: PRNGKey
    ) -> tuple[State, State]:
        """``step_and_restart`` for a batch, the resets computed only on steps where some
        board finished (as in ``step_batch``): ``(restarted, stepped)``. The gymnasium vector
        env reports the finished episodes' last frames from ``stepped``."""
        stepped = jax.vmap(self.env.step)(jax.vmap(_clear_episode_end)(states), actions, step_keys)
        ended = jax.vmap(_episode_ended)(stepped)
        restarted = restart_where(ended, stepped, lambda stepped: jax.vmap(self._restart)(stepped, reset_keys))
        return restarted, stepped

    def _restart(self, stepped: State, reset_key: PRNGKey) -> State:
        """A fresh board reporting ``stepped``'s end-of-step fields."""
        return self.env.reset(reset_key).replace(
            reward=stepped.reward,
            terminated=stepped.terminated,
            truncated=stepped.truncated,
            last_action_legal=stepped.last_action_legal,
        )


def restart_where(ended: Array, states: State, fresh: Callable[[State], State]) -> State:
    """``states`` (a batch along the leading axis) with each board where ``ended`` replaced by
    that board of ``fresh(states)``. ``fresh`` runs inside one ``lax.cond`` on the whole batch
    (not under ``vmap``, where a cond would compute both sides), so a step that ended no
    episode computes no fresh boards."""

    def restart(states: State) -> State:
        return jax.vmap(tree_select)(ended, fresh(states), states)

    return jax.lax.cond(jnp.any(ended), restart, lambda states: states, states)


def _episode_ended(state: State) -> Array:
    return state.terminated | state.truncated


def _clear_episode_end(state: State) -> State:
    # A state that ended last step is already a fresh board carrying the old flags.
    return state.replace(terminated=jnp.zeros_like(state.terminated), truncated=jnp.zeros_like(state.truncated))
