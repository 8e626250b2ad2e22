"""Group scoring: B states and B x n responses to B x n reward components.

    scorer = GroupScorer(env)                                 # the paper's weights for env.name
    scores = scorer.score(states, responses, key)             # responses: B lists of n strings
    scores.overall                                            # (B, n) float32

Per response (``docs/games.md``, "The response protocol and rewards"):
    - ``game``: the shaped env reward of the parsed action; an unparseable response takes
      ``INVALID_ACTION``, i.e. the game's invalid-move outcome;
    - ``format``: 1 if ``<perception>``, ``<think>`` and ``<answer>`` pairs are all present;
    - ``perception``: 1 if the last ``<perception>`` block equals ``env.describe(state)``,
      both trimmed of surrounding whitespace;
    - ``overall = w_game * game + w_format * format + w_perception * perception``.

Parsing and the perception comparison run on the host (strings); stepping, shaping and the
weighted sum run in one jitted call: ``vmap`` over the B states of ``vmap`` over the n
actions with the state broadcast (never copied n times on the host). The n responses to one
state share one step key, so two responses that name the same action get the same outcome
(next state included) and the group's rewards differ only by what the model chose.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bridges.protocol import GameProtocol, protocol_for, shape_reward
from jaxgym import parsing
from jaxgym.core import INVALID_ACTION, UNPARSEABLE, Env, PRNGKey, State

FORMAT_TAGS = parsing.FORMAT_TAGS


@dataclass
class GroupScores:
    """Reward components of B x n responses; every array is ``(B, n)``.

    Attributes:
        actions: int32 parsed flat action (``INVALID_ACTION`` where unparseable).
        parsed: bool, False where the response was ``"unparseable"``.
        raw_reward: float32 env reward of the parsed action.
        game: float32 shaped game reward.
        format: float32, 1 if the ``<perception>``, ``<think>`` and ``<answer>`` pairs are present.
        perception: float32, 1 if the perception block equals the ground truth (trimmed).
        overall: float32 ``w_game * game + w_format * format + w_perception * perception``.
        legal: bool, whether the parsed action was a legal move.
        next_states: the stepped states, a pytree with leading dims ``(B, n)`` (JAX arrays).
        perception_truths: B strings, ``env.describe`` of each state: what ``perception``
            compared the responses with (logs and rollout dumps show it; None from a scorer
            that has no board, like the tests' text-reward stand-in).
    """

    actions: np.ndarray
    parsed: np.ndarray
    raw_reward: np.ndarray
    game: np.ndarray
    format: np.ndarray
    perception: np.ndarray
    overall: np.ndarray
    legal: np.ndarray = field(default=None)  # type: ignore[assignment]
    next_states: Any = field(default=None, repr=False)
    perception_truths: list[str] | None = field(default=None, repr=False)

    def means(self) -> dict[str, float]:
        """Batch means of the components, for logging."""
        names = ("raw_reward", "game", "format", "perception", "overall", "parsed", "legal")
        return {name: float(np.mean(getattr(self, name))) for name in names if getattr(self, name) is not None}


def format_ok(response: object) -> bool:
    """True if the response has all three tag pairs (``<perception>``, ``<think>``, ``<answer>``).

    >>> format_ok("<perception>x</perception><think>y</think><answer>1</answer>")
    True
    >>> format_ok("<think>y</think><answer>1</answer>")
    False
    """
    return all(parsing.has_tag_pair(response, tag) for tag in FORMAT_TAGS)


def perception_ok(response: object, truth: str) -> bool:
    """True if the response's last ``<perception>`` block equals ``truth``, both trimmed.

    >>> perception_ok("<perception>\\n 2 | - \\n</perception>", " 2 | - ")
    True
    >>> perception_ok("<perception> 2 | 2 </perception>", " 2 | - ")
    False
    """
    block = parsing.last_tag_content(response, parsing.PERCEPTION_TAG)
    return block is not None and block.strip() == truth.strip()


def parse_action(env: Env, response: object) -> tuple[int, bool]:
    """``(flat action, parsed)``: unparseable text becomes ``(INVALID_ACTION, False)``."""
    action = env.parse_answer(response) if isinstance(response, str) else UNPARSEABLE
    if isinstance(action, str):
        return INVALID_ACTION, False
    return int(action), True


def response_components(env: Env, response: object, truth: str) -> tuple[int, bool, float, float]:
    """The host-side part of scoring one response: ``(action, parsed, format, perception)``,
    with ``truth`` the ``env.describe`` of the state it answers."""
    action, parsed = parse_action(env, response)
    return action, parsed, float(format_ok(response)), float(perception_ok(response, truth))


def unbatch(states: State, index: int) -> State:
    """State ``index`` of a host-side (numpy) batch, for ``env.describe``."""
    return jax.tree_util.tree_map(lambda x: x[index], states)


@functools.lru_cache(maxsize=64)
def _compiled_scorer(env: Env, shaping: Any) -> Any:
    """The jitted group step, shared by scorers of one env and shaping (the weights are
    arguments, so changing them never recompiles)."""
    def per_state(state: State, actions: jax.Array, key: PRNGKey) -> State:
        return jax.vmap(env.step, in_axes=(None, 0, None))(state, actions, key)

    @jax.jit
    def step(states: State, actions: jax.Array, keys: jax.Array, fmt: jax.Array, perc: jax.Array, weights: jax.Array):
        nxt = jax.vmap(per_state)(states, actions, keys)
        raw = nxt.reward.astype(jnp.float32)
        game = shape_reward(shaping, raw, nxt.last_action_legal)
        overall = weights[0] * game + weights[1] * fmt + weights[2] * perc
        return nxt, raw, game, overall.astype(jnp.float32), nxt.last_action_legal

    return step


class GroupScorer:
    """Scores groups of responses against their states (see module doc).

    ``protocol`` defaults to the paper's for ``env.name``; keyword ``overrides`` replace its
    fields (``w_format``, ``w_perception``, ``w_game``, ``shaping``), e.g.
    ``GroupScorer(env, w_perception=0.0, shaping="raw")``.
    """

    def __init__(self, env: Env, protocol: GameProtocol | None = None, **overrides: Any):
        self.env = env
        self.protocol = (protocol or protocol_for(env)).replace(**overrides)

    @property
    def _step_fn(self) -> Any:
        return _compiled_scorer(self.env, self.protocol.shaping)

    def score(self, states: State, responses: Sequence[Sequence[str]], key: PRNGKey) -> GroupScores:
        """Score ``responses[b][i]`` against ``states[b]`` (a batch with leading dim B).

        ``responses`` must be B sequences of the same length n. ``key`` seeds the steps:
        state b is stepped with ``jax.random.split(key, B)[b]`` for all its n responses.
        The input states are not modified.
        """
        batch = int(np.shape(states.reward)[0]) if np.ndim(states.reward) else None
        if batch is None:
            raise ValueError(
                "states must be a batch with a leading dim B; add one with jax.tree.map(lambda x: x[None], state)"
            )
        if isinstance(responses, str) or len(responses) != batch:
            raise ValueError(f"responses must be {batch} sequences (one per state), got {type(responses).__name__} "
                             f"of length {len(responses)}")
        sizes = {len(group) if not isinstance(group, str) else -1 for group in responses}
        if len(sizes) != 1 or -1 in sizes or 0 in sizes:
            raise ValueError(f"every state needs the same number n >= 1 of responses (a list of strings); got sizes "
                             f"{sorted(len(g) if not isinstance(g, str) else 'a bare string' for g in responses)}")
        (n,) = sizes

        host_states = jax.device_get(states)
        truths = [self.env.describe(unbatch(host_states, b)) for b in range(batch)]
        actions = np.empty((batch, n), np.int32)
        parsed = np.empty((batch, n), bool)
        fmt = np.empty((batch, n), np.float32)
        perc = np.empty((batch, n), np.float32)
        for b, group in enumerate(responses):
            for i, response in enumerate(group):
                actions[b, i], parsed[b, i], fmt[b, i], perc[b, i] = response_components(self.env, response, truths[b])

        keys = jax.random.split(key, batch)
        p = self.protocol
        weights = jnp.array([p.w_game, p.w_format, p.w_perception], jnp.float32)
        nxt, raw, game, overall, legal = self._step_fn(
            states, jnp.asarray(actions), keys, jnp.asarray(fmt), jnp.asarray(perc), weights
        )
        return GroupScores(
            actions=actions,
            parsed=parsed,
            raw_reward=np.asarray(raw),
            game=np.asarray(game),
            format=fmt,
            perception=perc,
            overall=np.asarray(overall),
            legal=np.asarray(legal),
            next_states=nxt,
            perception_truths=truths,
        )
