"""Teacher policies and the cold-start target text for any jaxgym game.

A teacher picks an action for each state of a batch; :func:`target_text` writes the
response a perfect student of that teacher gives under the response protocol: the exact
perception block (``env.describe``), a one-line reasoning, and the teacher's answer.

    teacher = Teacher(env, "legal-random")
    actions, raw = teacher.act(states, key)                       # (B,) int32, (B,) float32
    texts = [target_text(env, unbatch(host, b), int(a), float(r)) for b, (a, r) in ...]

Teachers (``TEACHERS``):
    ``expert``: the legal action with the highest immediate raw reward, ties broken
        uniformly at random. 2048: the best merge; Shisen-Sho (both kinds): a connectable
        pair (all score 1); Swap: the highest-scoring swap.
    ``legal-random``: uniform over the legal actions (2048: any move that changes the board,
        merging or not; the tile games: any connectable pair, which is as good as ``expert``).
    ``same-kind``: tile games only: two distinct cells holding the same kind, connectable
        or not (the weak tile-game teacher: RL can surpass it by learning which pairs connect).
    ``first-same-kind``: tile games only: the first tile in reading order and a uniformly
        random other tile of its kind, connectable or not.
    ``first-next``: tile games only: the first tile in reading order and the next tile of
        its kind in reading order, connectable or not. Both read the board in the order
        the perception block writes it, so the pair they name is one a small student can
        find in its own perception text (a pair anywhere on the board, as ``same-kind``
        names, is one it only learned to guess); both are weak teachers that RL can
        surpass (Shisen-Sho 4x4, 4 of 8 colours, 0-6 random matches: 66% and 80% of their
        pairs connect, against 62% for ``same-kind``; some connectable pair exists on
        every one of these boards).
    ``random``: uniform over all flat actions (mostly invalid moves in the tile games).

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

TEACHERS = ("expert", "legal-random", "same-kind", "first-same-kind", "first-next", "random")
PAIR_TEACHERS = ("same-kind", "first-same-kind", "first-next")
DIRECTIONS_2048 = ("up", "right", "down", "left")


def _same_kind_mask(env: Env, state: State) -> jax.Array:
    """``(num_actions,)`` bool: the two cells of the pair hold the same non-empty kind."""
    board = state.board.reshape(-1)
    cells = env.size * env.size
    first = jnp.repeat(board, cells)
    second = jnp.tile(board, cells)
    distinct = ~jnp.eye(cells, dtype=bool).reshape(-1)
    return (first == second) & (first > 0) & distinct


def _first_tile_mask(env: Env, state: State, next_only: bool) -> jax.Array:
    """``(num_actions,)`` bool: pairs whose first cell is the first tile in reading order and
    whose second holds its kind: any other such cell, or (``next_only``) the next one."""
    board = state.board.reshape(-1)
    cells = env.size * env.size
    index = jnp.arange(cells)
    first = jnp.argmax(board > 0)
    partners = (board == board[first]) & (board > 0) & (index != first)
    if next_only:
        partners = index == jnp.argmax(partners & (index > first))
    return ((index == first)[:, None] & partners[None, :]).reshape(-1)


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
        elif teacher == "same-kind":
            allowed = _same_kind_mask(env, state)
        elif teacher in ("first-same-kind", "first-next"):
            allowed = _first_tile_mask(env, state, next_only=teacher == "first-next")
        else:
            allowed = jnp.ones_like(legal)
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
        if name not in TEACHERS:
            raise ValueError(f"teacher={name!r} is unknown; allowed: {', '.join(TEACHERS)}")
        if name in PAIR_TEACHERS and env.name not in ("shisensho", "shisensho-images"):
            raise ValueError(f"teacher={name!r} is for the Shisen-Sho games, not {env.name!r}; use expert, "
                             f"legal-random or random")
        self.env, self.name = env, name

    def act(self, states: State, key: PRNGKey) -> tuple[np.ndarray, np.ndarray]:
        """``(actions, raw_rewards)`` for a batch of states: ``(B,)`` int32 and ``(B,)`` float32
        (the raw reward the chosen action earns from its state)."""
        actions, raw = _compiled_teacher(self.env, self.name)(states, key)
        return np.asarray(actions), np.asarray(raw)


def board_cells(perception: str) -> list[list[str]]:
    """The cells of a perception text, trimmed: rows split on newlines, cells on ``|``.

    >>> board_cells(" 2 | - \\n - | 4 ")
    [['2', '-'], ['-', '4']]
    """
    return [[cell.strip() for cell in row.split("|")] for row in perception.strip("\n").split("\n")]


def reasoning_line(env: Env, perception: str, action: int, raw_reward: float) -> str:
    """One short sentence about the move: 2048 names the direction and its merge score; the
    pair games name the two cells and what they hold (read from ``perception``).

    >>> import jaxgym
    >>> reasoning_line(jaxgym.make("2048"), " 2 | 2 ", 3, 4.0)
    'Moving left merges for 4 points.'
    """
    if env.name == "2048":
        return f"Moving {DIRECTIONS_2048[int(action)]} merges for {int(raw_reward)} points."
    if hasattr(env, "action_to_pair"):
        r1, c1, r2, c2 = (int(v) for v in env.action_to_pair(int(action)))
        cells = board_cells(perception)

        def cell(r: int, c: int) -> str:
            return cells[r][c] if 0 <= r < len(cells) and 0 <= c < len(cells[r]) else "outside"

        return f"({r1}, {c1}) is {cell(r1, c1)} and ({r2}, {c2}) is {cell(r2, c2)}."
    return f"I play action {int(action)}."


def target_text(env: Env, state: State, action: int, raw_reward: float) -> str:
    """The full cold-start response for one (host-side, unbatched) ``state``: exact perception,
    a reasoning line, the answer."""
    perception = env.describe(state)
    think = reasoning_line(env, perception, action, raw_reward)
    return f"<perception>\n{perception}\n</perception>\n<think>{think}</think>\n{env.format_answer(int(action))}"
