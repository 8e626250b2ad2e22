"""Wrappers for RL loops: a time limit and auto-reset, both branch-free under ``vmap``.

    env = AutoReset(TimeLimit(jaxgym.make("2048"), max_steps=500))
    step = jax.jit(jax.vmap(env.step))      # finished boards restart in place

Neither wrapper adds state fields, so wrapped and bare envs share one state type.
"""

from __future__ import annotations

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

    def prompt(self) -> str:
        return self.env.prompt()

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


def _select(pred: Array, on_true: State, on_false: State) -> State:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class AutoReset(Wrapper):
    """Restarts finished episodes inside ``step``, with selects rather than ``lax.cond``.

    When a step ends an episode, the returned state is a fresh board that still reports
    that step's ``reward``, ``terminated``, ``truncated`` and ``last_action_legal``, so an RL
    loop sees the episode's last transition. The next ``step`` clears those flags before
    acting on the fresh board. Fresh boards are never terminal in any jaxgym game.

    Under ``vmap`` the reset is computed for every board each step and selected where
    needed: cheap for every current game, and it keeps one compiled program.
    """

    def step(self, state: State, action: Array | int, key: PRNGKey) -> State:
        step_key, reset_key = jax.random.split(key)
        # A state that ended last step is already a fresh board carrying the old flags.
        state = state.replace(terminated=jnp.zeros_like(state.terminated), truncated=jnp.zeros_like(state.truncated))
        stepped = self.env.step(state, action, step_key)
        fresh = self.env.reset(reset_key).replace(
            reward=stepped.reward,
            terminated=stepped.terminated,
            truncated=stepped.truncated,
            last_action_legal=stepped.last_action_legal,
        )
        return _select(stepped.terminated | stepped.truncated, fresh, stepped)
