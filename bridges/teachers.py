"""Teacher policies and the cold-start target text for any jaxgym game.

A teacher picks an action for each state of a batch; :func:`target_text` writes the
response a perfect student of that teacher gives under the response protocol: the exact
perception block (``env.describe``), a one-line reasoning, and the teacher's answer.

    teacher = Teacher(env, "legal-random")
    actions, raw = teacher.act(states, key)                       # (B,) int32, (B,) float32
    texts = [target_text(env, unbatch(host, b), int(a), float(r)) for b, (a, r) in ...]

Teachers: every game has ``TEACHERS``, and a game may add its own (``env.teachers``, each
defined by ``env.teacher_mask``; the Shisen-Sho games' pair teachers, for one):
    ``expert``: the legal action with the highest immediate raw reward, ties broken
        uniformly at random.
    ``legal-random``: uniform over the legal actions.
    ``random``: uniform over all flat actions (mostly invalid moves in the tile games).
    a game's own: uniform over the actions ``env.teacher_mask(name, state)`` allows.

The reasoning line is the game's too (``env.reasoning_line``), so nothing here names a game.

Every teacher evaluates all ``env.num_actions`` actions of a state in one jitted
``vmap(step)``; for Shisen-Sho 6x6 that is 1296 steps per state (~a millisecond each batch
of a few states on these CPUs).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym.core import Env, PRNGKey, State
from jaxgym.parsing import board_cells

__all__ = ["TEACHERS", "Teacher", "board_cells", "reasoning_line", "target_text", "teacher_names"]

TEACHERS = ("expert", "legal-random", "random")
"""The teachers of every game; ``teacher_names(env)`` adds the game's own."""


def teacher_names(env: Env) -> tuple[str, ...]:
    """Every teacher ``env`` offers: :data:`TEACHERS` and then the game's own."""
    return TEACHERS + tuple(env.teachers)


@functools.lru_cache(maxsize=32)
def _compiled_teacher(env: Env, teacher: str) -> Any:
    actions = jnp.arange(env.num_actions, dtype=jnp.int32)

    def one(state: State, key: PRNGKey) -> tuple[jax.Array, jax.Array]:
        step_key, pick_key = jax.random.split(key)
        stepped = jax.vmap(env.step, in_axes=(None, 0, None))(state, actions, step_key)
        raw = stepped.reward.astype(jnp.float32)
        legal = stepped.last_action_legal
        if teacher == "expert":
            allowed = legal & (raw >= jnp.max(jnp.where(legal, raw, -jnp.inf)))
        elif teacher == "legal-random":
            allowed = legal
        elif teacher == "random":
            allowed = jnp.ones_like(legal)
        else:
            allowed = env.teacher_mask(teacher, state)
        allowed = allowed | ~jnp.any(allowed)  # nothing allowed (no legal move): any action
        choice = jax.random.categorical(pick_key, jnp.where(allowed, 0.0, -jnp.inf)).astype(jnp.int32)
        return choice, raw[choice]

    @jax.jit
    def act(states: State, key: PRNGKey) -> tuple[jax.Array, jax.Array]:
        batch = states.reward.shape[0]
        return jax.vmap(one)(states, jax.random.split(key, batch))

    return act


class Teacher:
    """A named teacher policy for ``env`` (see module doc)."""

    def __init__(self, env: Env, name: str = "expert"):
        allowed = teacher_names(env)
        if name not in allowed:
            raise ValueError(f"teacher={name!r} is unknown for game {env.name!r}; allowed: {', '.join(allowed)}")
        self.env, self.name = env, name

    def act(self, states: State, key: PRNGKey) -> tuple[np.ndarray, np.ndarray]:
        """``(actions, raw_rewards)`` for a batch of states: ``(B,)`` int32 and ``(B,)`` float32
        (the raw reward the chosen action earns from its state)."""
        actions, raw = _compiled_teacher(self.env, self.name)(states, key)
        return np.asarray(actions), np.asarray(raw)


def reasoning_line(env: Env, perception: str, action: int, raw_reward: float) -> str:
    """The game's one-line reasoning about ``action`` (``env.reasoning_line``): what a
    cold-start target writes inside ``<think>``.

    >>> import jaxgym
    >>> reasoning_line(jaxgym.make("2048"), " 2 | 2 ", 3, 4.0)
    'Moving left merges for 4 points.'
    """
    return env.reasoning_line(perception, action, raw_reward)


def target_text(env: Env, state: State, action: int, raw_reward: float) -> str:
    """The full cold-start response for one (host-side, unbatched) ``state``: exact perception,
    a reasoning line, the answer."""
    perception = env.describe(state)
    think = reasoning_line(env, perception, action, raw_reward)
    return f"<perception>\n{perception}\n</perception>\n<think>{think}</think>\n{env.format_answer(int(action))}"
