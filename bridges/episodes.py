"""Multi-turn episodes: a batched play loop, bounded history prompts and exact state groups.

    runner = EpisodeRunner(jaxgym.make("sokoban", size=6, boxes=1, image_size=112), history=2)
    starts, images = StateSampler(runner.env, seed=0).sample(G)          # G start states
    episodes = runner.play(starts, policy, group_size=n, turns=K, key=jax.random.key(0),
                           start_images=images)
    episodes.overall                        # (G * n, K) float32 per-turn rewards, 0 on padding
    episodes.step_groups()                  # (G, n, K) int32 exact step groups, -1 on padding

Episode ``e = g * n + i`` is the ``i``-th of the ``n`` episodes from start state ``g``.
Every turn, the policy gets the live episodes' observations (the board image and
:func:`history_prompt`: the game's instruction and the last ``history`` moves with their
rewards, so the prompt never grows past a bound) and answers one text each; the texts are
scored as :class:`bridges.scoring.GroupScorer` scores them (parsed action, format,
perception against ``env.describe``, the game's shaped reward, the protocol's weights).
Then *all* ``G * n`` episodes are stepped, rendered and hashed in **one** jitted, vmapped
call: a fixed batch shape, so it compiles once; finished episodes are masked (their state
is kept, their turn is padding), and nothing restarts inside an episode. The ``n`` episodes
of a start state share one step key per turn, so equal actions from equal states give equal
next states in random games too (2048's spawns), which is what makes step groups exact.

Step groups (``step`` credit, ``learner.algorithms.step_advantages``): two turns of the
episodes of one start state are in one group exactly when their states are equal, leaf by
leaf, except the two fields that record the move that led there (``reward``,
``last_action_legal``, :data:`TRANSITION_FIELDS`): the game's future depends only on the
rest. :func:`state_hash` hashes those leaves' bits in JAX (inside the turn call);
:func:`exact_state_groups` buckets by hash and then compares the bytes, so a hash collision
can never merge two different states.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import renderers  # noqa: F401  (registers the games' renderers: this module renders boards)
from bridges.protocol import GameProtocol, shape_reward
from bridges.scoring import GroupScorer, response_components, unbatch
from jaxgym import parsing
from jaxgym.core import INVALID_ACTION, Array, Env, PRNGKey, State
from jaxgym.wrappers import tree_select

TRANSITION_FIELDS = ("reward", "last_action_legal")
"""State fields that describe the step that produced a state, not the position: left out of
state identity (two episodes that stand on the same board with the same counters are in the
same state whether their last move was legal or not)."""
MAX_MOVE_CHARS = 64
"""Characters of one move in the history (an answer is a few words or numbers)."""
MAX_TURNS = 10_000
MAX_HISTORY = 1_000


# -- prompts -------------------------------------------------------------------------------


class Move(NamedTuple):
    """One played turn as the history shows it: its index (0-based), the move as text, the
    env's reward for it and whether it was a legal move."""

    turn: int
    move: str
    reward: float
    legal: bool


def move_text(env: Env, action: int) -> str:
    """How the history names a parsed action: the game's own answer text, or what went wrong.

    >>> import jaxgym
    >>> env = jaxgym.make("sokoban", size=6, boxes=1)
    >>> move_text(env, 3), move_text(env, INVALID_ACTION), move_text(env, 9)
    ('left', 'no valid answer', '9 (no such move)')
    """
    action = int(action)
    if action == INVALID_ACTION:
        return "no valid answer"
    if not 0 <= action < env.num_actions:
        return f"{action} (no such move)"
    text = parsing.answer_block(env.format_answer(action)) or str(action)
    return text.strip()[:MAX_MOVE_CHARS]


def history_prompt(instruction: str, moves: Sequence[Move], history: int) -> str:
    """The text beside the board on a turn: ``instruction`` and the last ``history`` moves.

    With no move to show (the first turn, or ``history == 0``) it is ``instruction`` itself,
    so a one-turn episode sees exactly the bandit's prompt. Its length is bounded: at most
    ``history`` lines of at most ``MAX_MOVE_CHARS`` characters of move each.

    >>> print(history_prompt("Play.", [Move(0, "up", -0.1, True), Move(1, "no valid answer", -0.1, False),
    ...                                Move(2, "left", 0.9, True)], history=2))
    Play.
    <BLANKLINE>
    Your last 2 moves in this game (oldest first):
    turn 2: no valid answer, reward -0.1, illegal (nothing changed)
    turn 3: left, reward 0.9
    """
    if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or not 0 <= history <= MAX_HISTORY:
        raise ValueError(f"history={history!r} is out of range; allowed: an int in 0..{MAX_HISTORY}")
    shown = list(moves)[-history:] if history else []
    if not shown:
        return instruction
    lines = [
        f"turn {m.turn + 1}: {m.move[:MAX_MOVE_CHARS]}, reward {float(m.reward):.4g}"
        + ("" if m.legal else ", illegal (nothing changed)")
        for m in shown
    ]
    plural = "s" if len(shown) > 1 else ""
    return f"{instruction}\n\nYour last {len(shown)} move{plural} in this game (oldest first):\n" + "\n".join(lines)


# -- exact state identity --------------------------------------------------------------------


def position(state: State) -> State:
    """``state`` without :data:`TRANSITION_FIELDS` (set to None, so they leave its leaves)."""
    return state.replace(**{name: None for name in TRANSITION_FIELDS})


def _fmix32(x: Array) -> Array:
    """MurmurHash3's 32-bit finaliser (wrapping uint32 arithmetic)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _words(leaf: Array) -> Array:
    """A leaf's bits as a flat uint32 vector (bool and narrow types widened, wide ones split)."""
    leaf = jnp.asarray(leaf).reshape(-1)
    if leaf.dtype == jnp.bool_:
        return leaf.astype(jnp.uint32)
    size = leaf.dtype.itemsize
    if size == 4:
        return jax.lax.bitcast_convert_type(leaf, jnp.uint32)
    if size in (1, 2):
        unsigned = jnp.uint8 if size == 1 else jnp.uint16
        return jax.lax.bitcast_convert_type(leaf, unsigned).astype(jnp.uint32)
    return jax.lax.bitcast_convert_type(leaf, jnp.uint32).reshape(-1)  # 8 bytes: two words each


def state_hash(state: State) -> Array:
    """A 64-bit hash (``(2,)`` uint32) of one state's :func:`position` leaves, bit for bit.
    Pure JAX: vmap it over a batch. Equal positions have equal hashes; unequal ones almost
    never do, and :func:`exact_state_groups` checks the bytes, so a collision is harmless.

    >>> import jaxgym
    >>> env = jaxgym.make("sokoban", size=5, boxes=1)
    >>> state = env.from_board("#####\\n#@$.#\\n#####")
    >>> bool((state_hash(state) == state_hash(state.replace(reward=jnp.float32(5.0)))).all())
    True
    >>> bool((state_hash(state) == state_hash(state.replace(step_count=jnp.int32(1)))).all())
    False
    """
    words = jnp.concatenate([_words(leaf) for leaf in jax.tree_util.tree_leaves(position(state))])
    index = jnp.arange(words.shape[0], dtype=jnp.uint32)
    lanes = [
        jnp.sum(_fmix32(words ^ _fmix32(index * jnp.uint32(seed) + jnp.uint32(seed))), dtype=jnp.uint32)
        for seed in (0x9E3779B9, 0x7F4A7C15)
    ]
    return jnp.stack(lanes)


def _position_bytes(leaves: Sequence[np.ndarray], episode: int, turn: int) -> bytes:
    return b"".join(np.ascontiguousarray(leaf[episode, turn]).tobytes() for leaf in leaves)


def exact_state_groups(states: State, hashes: np.ndarray, mask: np.ndarray, group_size: int) -> np.ndarray:
    """Step group ids: equal positions of the episodes of one start state share an id.

    Args:
        states: host states with leading dims ``(E, T)`` (episode, turn), ``E = G * n``.
        hashes: ``(E, T, 2)`` uint32, :func:`state_hash` of each.
        mask: ``(E, T)`` bool, the turns to group (played turns); others get -1.
        group_size: ``n``; episodes ``g*n .. g*n + n - 1`` share start state ``g``.

    Returns:
        ``(G, n, T)`` int32 ids, ``0, 1, ...`` in order of first appearance (episode-major)
        within each start state, -1 where ``mask`` is False. Two masked turns have one id iff
        their positions are equal leaf by leaf (hash first, then the bytes).
    """
    hashes, mask = np.asarray(hashes), np.asarray(mask, bool)
    if mask.ndim != 2 or hashes.shape != (*mask.shape, 2):
        raise ValueError(f"hashes must have shape (episodes, turns, 2) and mask (episodes, turns); "
                         f"got {hashes.shape} and {mask.shape}")
    episodes, turns = mask.shape
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1 \
            or episodes % group_size:
        raise ValueError(f"group_size={group_size!r} must be an int >= 1 that divides the {episodes} episodes")
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(position(jax.device_get(states)))]
    for leaf in leaves:
        if leaf.shape[:2] != (episodes, turns):
            raise ValueError(f"states must have leading dims (episodes, turns) = {(episodes, turns)}, "
                             f"got a leaf of shape {leaf.shape}")
    ids = np.full((episodes, turns), -1, np.int32)
    for start in range(0, episodes, group_size):
        buckets: dict[tuple[int, int], list[tuple[bytes, int]]] = {}
        next_id = 0
        for e in range(start, start + group_size):
            for t in np.flatnonzero(mask[e]):
                candidates = buckets.setdefault((int(hashes[e, t, 0]), int(hashes[e, t, 1])), [])
                data = _position_bytes(leaves, e, t)
                found = next((gid for other, gid in candidates if other == data), None)
                if found is None:
                    found, next_id = next_id, next_id + 1
                    candidates.append((data, found))
                ids[e, t] = found
    return ids.reshape(episodes // group_size, group_size, turns)


# -- the play loop ---------------------------------------------------------------------------


@dataclass
class Observation:
    """What the policy sees on one turn, for the ``L`` live episodes only.

    Attributes:
        turn: the turn index (0-based).
        episodes: ``(L,)`` int, the episode indices (``g * n + i``) of the live episodes.
        images: ``(L, H, W, 3)`` uint8 JAX array, their boards.
        prompts: ``L`` strings, :func:`history_prompt` of each.
        states: their states, a host (numpy) pytree with leading dim ``L``.
    """

    turn: int
    episodes: np.ndarray
    images: jax.Array
    prompts: list[str]
    states: Any = field(repr=False)


Policy = Callable[[Observation], Sequence[str]]
"""A policy answers one text per live episode (``len(observation.prompts)`` texts)."""


@dataclass
class Episodes:
    """``E = G * n`` played episodes of up to ``K`` turns; per-turn arrays are ``(E, K)`` and
    0 / False / ``INVALID_ACTION`` on padding (turns after an episode ended).

    Attributes:
        group_size: ``n``.
        prompts, responses: ``E`` lists, the prompt and the policy's text of each played turn.
        actions: int32 parsed actions; ``parsed``, ``legal``: bool.
        raw_reward, game, format, perception, overall: float32 reward components as
            ``GroupScorer`` computes them; ``overall`` is the per-turn training reward.
        dones: bool, the episode ended with this turn (terminated or truncated).
        mask: bool, the turn was played.
        lengths: ``(E,)`` int32 turns played.
        states: host pytree with leading dims ``(E, K + 1)``: the state before each turn and
            the last one (a finished episode's state repeats).
        hashes: ``(E, K + 1, 2)`` uint32 :func:`state_hash` of ``states``.
        images: ``K + 1`` JAX arrays ``(E, H, W, 3)`` uint8, the boards of ``states`` per turn
            (None when the runner was asked not to keep them).
        env_calls: jitted env calls made (one start observation plus one per turn played).
    """

    group_size: int
    prompts: list[list[str]]
    responses: list[list[str]]
    actions: np.ndarray
    parsed: np.ndarray
    legal: np.ndarray
    raw_reward: np.ndarray
    game: np.ndarray
    format: np.ndarray
    perception: np.ndarray
    overall: np.ndarray
    dones: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    states: Any = field(repr=False)
    hashes: np.ndarray = field(repr=False)
    images: list[jax.Array] | None = field(default=None, repr=False)
    env_calls: int = 0

    @property
    def turns(self) -> int:
        return int(self.mask.shape[1])

    def grouped(self, values: np.ndarray) -> np.ndarray:
        """``(E, ...)`` -> ``(G, n, ...)``."""
        values = np.asarray(values)
        return values.reshape(-1, self.group_size, *values.shape[1:])

    def step_groups(self) -> np.ndarray:
        """``(G, n, K)`` int32 :func:`exact_state_groups` of the played turns' states."""
        before = jax.tree_util.tree_map(lambda leaf: leaf[:, : self.turns], self.states)
        return exact_state_groups(before, self.hashes[:, : self.turns], self.mask, self.group_size)

    def returns(self) -> np.ndarray:
        """``(E,)`` undiscounted episode returns of ``overall``."""
        return self.overall.sum(axis=1)


@functools.lru_cache(maxsize=64)
def _compiled_turn(env: Env, shaping: Any, group_size: int) -> tuple[Any, Any]:
    """``(observe, turn)``, jitted, shared by runners of one env, shaping and group size.

    ``observe(starts)``: the start states repeated ``group_size`` times, their boards and
    hashes. ``turn(states, live, actions, key, t, fmt, perc, weights)``: every episode
    stepped (the start state's key for turn ``t``), finished ones kept as they were, then
    rendered and hashed."""

    @jax.jit
    def observe(starts: State) -> tuple[State, Array, Array]:
        states = jax.tree_util.tree_map(lambda leaf: jnp.repeat(leaf, group_size, axis=0), starts)
        return states, jax.vmap(env.render)(states), jax.vmap(state_hash)(states)

    @jax.jit
    def turn(states: State, live: Array, actions: Array, key: PRNGKey, t: Array, fmt: Array, perc: Array,
             weights: Array):
        episodes = actions.shape[0]
        keys = jnp.repeat(jax.random.split(jax.random.fold_in(key, t), episodes // group_size), group_size, axis=0)
        stepped = jax.vmap(env.step)(states, actions, keys)
        raw = stepped.reward.astype(jnp.float32)
        game = shape_reward(shaping, raw, stepped.last_action_legal)
        overall = (weights[0] * game + weights[1] * fmt + weights[2] * perc).astype(jnp.float32)
        nxt = jax.vmap(tree_select)(live, stepped, states)
        done = live & (stepped.terminated | stepped.truncated)
        zero = jnp.zeros_like(raw)
        return (nxt, jnp.where(live, raw, zero), jnp.where(live, game, zero), jnp.where(live, overall, zero),
                live & stepped.last_action_legal, done, jax.vmap(env.render)(nxt), jax.vmap(state_hash)(nxt))

    return observe, turn


def _check_count(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is out of range; allowed: an int in {lo}..{hi}")
    return int(value)


class EpisodeRunner:
    """Plays batches of multi-turn episodes (see the module doc).

    ``protocol`` and keyword ``overrides`` set the reward weights and shaping as in
    :class:`bridges.scoring.GroupScorer` (which the runner holds as ``scorer``); ``history``
    is the number of past moves each prompt shows.
    """

    def __init__(self, env: Env, protocol: GameProtocol | None = None, *, history: int = 2, **overrides: Any):
        self.env = env
        self.scorer = GroupScorer(env, protocol, **overrides)
        self.history = _check_count("history", history, 0, MAX_HISTORY)

    def _compiled(self, group_size: int) -> tuple[Any, Any]:
        return _compiled_turn(self.env, self.scorer.protocol.shaping, group_size)

    def play(
        self,
        starts: State,
        policy: Policy,
        *,
        group_size: int,
        turns: int,
        key: PRNGKey,
        keep_images: bool = True,
    ) -> Episodes:
        """Play ``group_size`` episodes of up to ``turns`` turns from each of the ``G`` states
        in ``starts`` (a batch, e.g. from ``StateSampler.sample``; a start that is already
        finished plays no turn). ``key`` seeds the steps. One jitted call renders and hashes
        the starts, then one per turn steps, renders and hashes every episode; the loop stops
        early once every episode has ended."""
        n = _check_count("group_size", group_size, 1, 1 << 20)
        turns = _check_count("turns", turns, 1, MAX_TURNS)
        if not np.ndim(starts.reward):
            raise ValueError("starts must be a batch of states with a leading dim G; "
                             "add one with jax.tree.map(lambda x: x[None], state)")
        observe, turn = self._compiled(n)
        env, protocol = self.env, self.scorer.protocol
        weights = jnp.array([protocol.w_game, protocol.w_format, protocol.w_perception], jnp.float32)

        states, images, hashes = observe(starts)
        env_calls = 1
        host = jax.device_get(states)
        episodes = int(np.shape(host.reward)[0])
        live = ~(np.asarray(host.terminated) | np.asarray(host.truncated))
        instruction = env.prompt()
        history: list[list[Move]] = [[] for _ in range(episodes)]
        prompts: list[list[str]] = [[] for _ in range(episodes)]
        responses: list[list[str]] = [[] for _ in range(episodes)]
        per_turn: dict[str, list[np.ndarray]] = {name: [] for name in (
            "actions", "parsed", "legal", "raw_reward", "game", "format", "perception", "overall", "dones", "mask")}
        all_states, all_hashes, all_images = [host], [np.asarray(hashes)], [images]

        for t in range(turns):
            if not live.any():
                break
            index = np.flatnonzero(live)
            turn_prompts = [history_prompt(instruction, history[e], self.history) for e in index]
            live_states = jax.tree_util.tree_map(lambda leaf, rows=index: leaf[rows], host)
            texts = list(policy(Observation(t, index, images if live.all() else images[index], turn_prompts,
                                            live_states)))
            if len(texts) != len(index):
                raise ValueError(f"the policy answered {len(texts)} texts for {len(index)} live episodes on turn {t}")
            actions = np.full(episodes, INVALID_ACTION, np.int32)
            parsed, fmt, perc = np.zeros(episodes, bool), np.zeros(episodes, np.float32), np.zeros(episodes, np.float32)
            for j, e in enumerate(index):
                truth = env.describe(unbatch(host, int(e)))
                actions[e], parsed[e], fmt[e], perc[e] = response_components(env, texts[j], truth)
                prompts[e].append(turn_prompts[j])
                responses[e].append(texts[j])
            states, raw, game, overall, legal, done, images, hashes = turn(
                states, jnp.asarray(live), jnp.asarray(actions), key, jnp.int32(t), jnp.asarray(fmt),
                jnp.asarray(perc), weights)
            env_calls += 1
            host = jax.device_get(states)
            raw, legal, done = np.asarray(raw), np.asarray(legal), np.asarray(done)
            for e in index:
                history[e].append(Move(t, move_text(env, actions[e]), float(raw[e]), bool(legal[e])))
            for name, values in (("actions", actions), ("parsed", parsed), ("legal", legal), ("raw_reward", raw),
                                 ("game", game), ("format", fmt * live), ("perception", perc * live),
                                 ("overall", overall), ("dones", done), ("mask", live.copy())):
                per_turn[name].append(np.asarray(values))
            all_states.append(host)
            all_hashes.append(np.asarray(hashes))
            all_images.append(images)
            live = live & ~done

        played = len(per_turn["mask"])
        padding = turns - played  # turns never reached because every episode had ended
        columns = {}
        for name, values in per_turn.items():
            stacked = np.stack(values, axis=1) if values else np.zeros((episodes, 0))
            dtype = np.int32 if name == "actions" else bool if name in ("parsed", "legal", "dones", "mask") \
                else np.float32
            fill = INVALID_ACTION if name == "actions" else 0
            columns[name] = np.concatenate(
                [stacked.astype(dtype), np.full((episodes, padding), fill, dtype)], axis=1)
        all_states += [host] * padding
        all_hashes += [all_hashes[-1]] * padding
        all_images += [all_images[-1]] * padding
        return Episodes(
            group_size=n,
            prompts=prompts,
            responses=responses,
            lengths=columns["mask"].sum(axis=1).astype(np.int32),
            states=jax.tree_util.tree_map(lambda *leaves: np.stack(leaves, axis=1), *all_states),
            hashes=np.stack(all_hashes, axis=1),
            images=all_images if keep_images else None,
            env_calls=env_calls,
            **columns,
        )
