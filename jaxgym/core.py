"""The functional environment API that every jaxgym game implements.

An :class:`Env` is a bundle of pure functions over an immutable state pytree::

    env = jaxgym.make("2048", size=4)
    state = env.reset(key)                  # one board; jax.vmap(env.reset)(keys) for a batch
    state = env.step(state, action, key)    # reward, flags and the next legal mask live in state
    image = env.render(state)               # (H, W, 3) uint8, pure JAX
    text = env.describe(state)              # the exact perception text (host side, one state)

A game implements the per-game parts only: ``reset``, the transition ``_step`` (the template
``Env.step`` does the bookkeeping every game shares), ``from_board`` (with
:func:`check_board`), ``_describe``, ``prompt``, ``parse_answer`` and ``format_answer``. What
the layers above need to know of a game comes from hooks with working defaults here (its own
teachers, the reasoning line of a cold-start target, the words a small tokenizer learns;
``docs/architecture-games.md``), so that no module above names a game. Its
renderer registers itself (:func:`register_renderer`, at the import of ``renderers``). See
``docs/adding-a-game.md``.

The env object holds only static configuration (board size, palette, image size), so its
bound methods can be passed to ``jax.jit``/``jax.vmap`` directly. All randomness comes from
the explicit ``key`` arguments: the state carries no hidden RNG, so a planner that steps a
copy of the state learns nothing about future spawns it could not compute itself.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = jax.Array
PRNGKey = jax.Array

UNPARSEABLE: Literal["unparseable"] = "unparseable"
"""What ``Env.parse_answer`` returns for text without a well-formed answer."""

INVALID_ACTION = -1
"""A flat action that no game accepts: stepping it is the game's penalised no-op. Parsers
return it for well-formed answers that name cells outside the board, so that such answers
are never wrapped into another cell."""


@struct.dataclass
class State:
    """Fields that every game's state has (a game's state class adds its board).

    Attributes:
        reward: float32 ``()``, the reward of the step that produced this state (0 after reset).
        terminated: bool ``()``, the game is over (no legal move, or the board is cleared).
        truncated: bool ``()``, the episode was cut by a time limit (see ``TimeLimit``).
        legal_action_mask: bool ``(num_actions,)``, which flat actions are legal now.
        step_count: int32 ``()``, actions taken since reset, legal or not.
        score: int32 ``()``, the game's running score, as its status line shows it.
        last_action_legal: bool ``()``, whether the action that produced this state was a
            legal move (True after reset). Illegal actions are penalised no-ops.
    """

    reward: Array
    terminated: Array
    truncated: Array
    legal_action_mask: Array
    step_count: Array
    score: Array
    last_action_legal: Array


def initial_fields(legal_action_mask: Array, terminated: Array | bool = False) -> dict[str, Array]:
    """The shared ``State`` fields of a freshly reset (or user-supplied) board."""
    return dict(
        reward=jnp.float32(0.0),
        terminated=jnp.asarray(terminated, dtype=jnp.bool_),
        truncated=jnp.bool_(False),
        legal_action_mask=legal_action_mask,
        step_count=jnp.int32(0),
        score=jnp.int32(0),
        last_action_legal=jnp.bool_(True),
    )


def host_actions(actions: Any) -> np.ndarray:
    """Host integer actions as int32, values outside int32 clamped to its ends (which no
    game accepts, so they stay penalised no-ops) instead of wrapping into legal indices.

    Call it on host actions before they cross a jit boundary: with x64 off (JAX's default)
    ``jax.jit`` narrows a 64-bit integer to int32 by wrapping *before* the jitted function
    runs, so ``jax.jit(env.step)(s, np.int64(2**40 + 3), k)`` plays action 3 and no code
    inside ``step`` can tell. ``env.step`` unjitted, ``GymnasiumVectorEnv.step`` and the
    evaluator clamp this way; for your own jitted step pass ``host_actions(a)``, an int32
    value, or a Python int (which JAX refuses with an ``OverflowError`` when it is too big).

    >>> int(host_actions(np.int64(2**40 + 3))), host_actions([1, -2**40]).tolist()
    (2147483647, [1, -2147483648])
    """
    values = np.asarray(actions)
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"actions must be integers (flat action indices), got dtype {values.dtype}")
    info = np.iinfo(np.int32)
    if values.dtype.itemsize >= 4 and values.size and (values.max() > info.max or values.min() < info.min):
        values = np.clip(values, info.min, info.max)
    return np.asarray(values, dtype=np.int32)


def check_action(action: Any) -> Array:
    """Return ``action`` as an int32 scalar array, or raise if it is not an integer scalar.

    Called at trace time, so a float action fails with a clear message instead of being
    silently truncated deep inside a gather. Integers outside the int32 range are clamped,
    so they stay invalid instead of wrapping into a legal index.
    """
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer, np.ndarray, jax.Array)):
        raise TypeError(
            f"action must be an integer (a flat action index), got {action!r} of type {type(action).__name__}"
        )
    if isinstance(action, int):
        return jnp.int32(min(max(action, lo), hi))
    if not jnp.issubdtype(action.dtype, jnp.integer):
        raise TypeError(
            f"action must have an integer dtype, got dtype {action.dtype}; cast it with "
            f".astype(jnp.int32) if it holds whole numbers"
        )
    if np.shape(action) != ():
        raise ValueError(
            f"env.step takes one scalar action per state, got shape {np.shape(action)}; "
            f"use jax.vmap(env.step) for a batch of states"
        )
    if isinstance(action, (np.integer, np.ndarray)):  # host value: clamp before JAX narrows it
        return jnp.asarray(host_actions(action))
    info = jnp.iinfo(action.dtype)
    if info.bits > 32 or (info.bits == 32 and info.min == 0):
        action = jnp.clip(action, max(lo, info.min), min(hi, info.max))
    return action.astype(jnp.int32)


def check_int_param(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """Validate an integer game parameter, raising ValueError that names value and range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={value} is out of range; allowed: {allowed}")
    return int(value)


VERSION_MARK = "-v"
"""What joins a game's name and rule version in its id (``"2048-v0"``); read ids with
``jaxgym.registry.split_game_id``."""

RendererFactory = Callable[[Any], Callable[[Any], Any]]
"""``factory(env) -> renderer``, a renderer being a callable ``state -> (H, W, 3) uint8``."""
_RENDERERS: dict[str, RendererFactory] = {}


def register_renderer(name: str, factory: RendererFactory) -> None:
    """Register ``factory(env) -> renderer`` (a callable ``state -> (H, W, 3) uint8``) for
    game ``name``. Renderer modules call it at import (``import renderers`` registers every
    game's); registering a name again replaces the factory (a user's own look for a game).

    The registry of renderers lives here, beside ``Env.render`` that reads it, because the
    games' layer may not import the renderers' layer above it: a renderer registers itself,
    the game never names it."""
    if VERSION_MARK in name:
        raise ValueError(f"register the bare game name, not a versioned id: {name!r}")
    _RENDERERS[name] = factory


def _game_names(env: Any) -> list[str]:
    return [n for n in (getattr(cls, "name", None) for cls in type(env).__mro__) if isinstance(n, str)]


def has_renderer(env: Any) -> bool:
    """Whether a renderer is registered for ``env``'s game (or a game class it derives from)."""
    return any(name in _RENDERERS for name in _game_names(env))


def renderer_factory(env: Any) -> RendererFactory:
    """The renderer factory of ``env``'s game: registered for its name, or else for the name
    of a game class it derives from; ValueError naming the game and the fix if none is."""
    names = _game_names(env)
    for name in names:
        if name in _RENDERERS:
            return _RENDERERS[name]
    game = names[0] if names else type(env).__name__
    registered = ", ".join(sorted(_RENDERERS)) or "none yet"
    raise ValueError(
        f"no renderer is registered for game {game!r} (renderers for: {registered}); `import renderers` "
        f"registers the built-in games' renderers (the game layer never imports the layer above it), and "
        f"jaxgym.register_renderer(name, factory) registers your own"
    )


PROMPT_STYLES = ("game", "brief")
"""The instruction styles of ``Env.prompt`` (``jaxgym.make``'s ``prompt`` parameter)."""


class Env(abc.ABC):
    """Base class of the games. Subclasses set ``name``, ``version`` and ``num_actions``.

    ``version`` is bumped whenever a rule changes, so results quote ``env.id`` (for example
    ``"2048-v0"``) and stay comparable.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    num_actions: int
    image_size: tuple[int, int]

    @property
    def id(self) -> str:
        """The versioned game id, ``"{name}-v{version}"``."""
        return f"{self.name}{VERSION_MARK}{self.version}"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of ``render``'s output: ``(height, width, 3)``."""
        return (*self.image_size, 3)

    @abc.abstractmethod
    def reset(self, key: PRNGKey) -> State:
        """A fresh game drawn with ``key``."""

    invalid_action_reward: ClassVar[float] = 0.0
    """The reward of an illegal or out-of-range action (a penalised no-op)."""
    step_limit: int | None = None
    """If set, ``truncated`` is ``step_count >= step_limit`` after every step (the game's own
    episode length, e.g. Swap's ``max_moves``); None leaves ``truncated`` as it was."""
    unchanged_when_illegal: ClassVar[tuple[str, ...]] = ()
    """State fields that the game's ``_step`` already returns as they were when its move is
    illegal (Shisen-Sho: the board, and the ``size**4`` legal mask recomputed from it).
    ``step`` skips their select: on a large mask the select costs about as much as computing
    the mask. ``tests/test_template.py`` checks the claim for every game."""
    protocol: ClassVar[Any] = None
    """The game's ``jaxgym.protocol.GameProtocol`` (sampling, shaping, evaluation scoring);
    ``jaxgym.register`` records it and the bridges read it. None: the bridges' ``GENERIC``."""
    teachers: ClassVar[tuple[str, ...]] = ()
    """Names of the game's own teacher policies, offered by ``bridges.teachers.Teacher``
    beside the ones every game has (``expert``, ``legal-random``, ``random``); each is
    defined by :meth:`teacher_mask`. None by default."""
    tokenizer_corpus: ClassVar[tuple[str, ...]] = ()
    """Lines in the game's own words (perception cells, answers, its prompt's terms) from
    which a tokenizer trained for small models (``learner.models.build_tiny_tokenizer``)
    learns its merges: a word that occurs often becomes one token. A line counts as often as
    it is repeated; a line starting with a space keeps the space on its first word, as
    inside a sentence. Games that share the same tuple (a class and its subclass) add it
    once. Empty by default: byte-level BPE still spells every word, in more tokens."""

    def teacher_mask(self, teacher: str, state: State) -> Array:
        """``(num_actions,)`` bool: the actions teacher ``teacher`` (one of :attr:`teachers`)
        picks from, uniformly, in one (unbatched) ``state``. Traceable (the teachers
        ``vmap`` it); an all-False mask lets the teacher pick any action. The base game has
        no teacher of its own."""
        raise ValueError(
            f"teacher={teacher!r} is not one of {self.name!r}'s own teachers; it has "
            f"{', '.join(self.teachers) or 'none'}"
        )

    def reasoning_line(self, perception: str, action: int, raw_reward: float) -> str:
        """The one short sentence a cold-start target writes inside ``<think>`` before it
        answers ``action`` (in range), a move that earns ``raw_reward`` from the board that
        ``perception`` (``describe``'s text) shows. It should state a fact of that board the
        move depends on, so that a student must read the board to write it; the default only
        names the action.

        >>> import jaxgym
        >>> jaxgym.make("tetris").reasoning_line("", 5, 0.0)
        'I play action 5.'
        """
        return f"I play action {int(action)}."

    def step(self, state: State, action: Array | int, key: PRNGKey) -> State:
        """Apply one flat integer action. Illegal or out-of-range actions are defined,
        penalised no-ops (see the game's docstring); they never raise under ``jit``.

        The template around every game's transition ``_step``: the action is checked
        (:func:`check_action`) and range-tested; ``_step`` sees an in-range action (0 in
        place of an out-of-range one) and says whether it was a legal move; an illegal
        move's result is replaced by the unchanged state with reward
        ``invalid_action_reward`` (selects, no branch); ``step_count`` grows by one and
        ``last_action_legal`` is set either way, and ``truncated`` follows ``step_limit``.

        Actions are int32. A 64-bit host integer outside int32 is clamped here when ``step``
        runs unjitted, but ``jax.jit(env.step)`` receives it already wrapped by JAX (x64
        off): clamp host actions with :func:`host_actions` before they cross a jit boundary."""
        action = check_action(action)
        in_range = (action >= 0) & (action < self.num_actions)
        moved, legal = self._step(state, jnp.where(in_range, action, 0), key)
        legal = in_range & legal
        noop = state.replace(reward=jnp.float32(self.invalid_action_reward))
        out = moved.replace(**{
            name: jax.tree.map(lambda new, old: jnp.where(legal, new, old), getattr(moved, name), getattr(noop, name))
            for name in type(state).__dataclass_fields__ if name not in self.unchanged_when_illegal
        })
        step_count = state.step_count + 1
        out = out.replace(step_count=step_count, last_action_legal=legal)
        if self.step_limit is not None:
            out = out.replace(truncated=step_count >= self.step_limit)
        return out

    def _step(self, state: State, action: Array, key: PRNGKey) -> tuple[State, Array]:
        """The game's transition for an in-range action: ``(next_state, legal)``.

        ``next_state`` sets the game's fields, ``reward``, ``terminated``,
        ``legal_action_mask`` and ``score``; it only counts where ``legal`` (bool ``()``) is
        True, so it need not be meaningful for an illegal move. ``step_count``,
        ``last_action_legal`` and the no-op are the template's (``Env.step``)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither step nor _step")

    @abc.abstractmethod
    def from_board(self, board: Any) -> State:
        """A state for a given board array (tests, puzzles, users' own positions)."""

    def describe(self, state: State) -> str:
        """The exact perception text of one (unbatched) state; a batch of states raises."""
        count = np.shape(state.step_count)
        if count != ():
            raise ValueError(
                f"describe takes one state, got a batch of states (step_count shape {count}); index it first"
            )
        return self._describe(state)

    def _describe(self, state: State) -> str:
        """The perception text of one state (``describe`` has checked it is one)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither describe nor _describe")

    prompt_style: str = "game"
    """Which instruction :meth:`prompt` gives (``jaxgym.make(..., prompt=...)``, one of
    ``PROMPT_STYLES``): ``"game"``, the game's full rules and answer format (the paper's
    protocol); ``"brief"``, one short line naming the game, for small models trained from
    scratch, which cannot read the rules and for which the game's instruction (~500 tokens
    of a tiny tokenizer, against ~100 for the board and the answer) is most of every
    sequence's cost."""

    def prompt(self) -> str:
        """The instruction shown to a model beside the rendered board (see ``prompt_style``)."""
        if self.prompt_style == "brief":
            return f"Play {self.name}: describe the board, reason, answer."
        return self._prompt()

    @abc.abstractmethod
    def _prompt(self) -> str:
        """The game's full instruction: its rules, the perception form and the answer form."""

    @abc.abstractmethod
    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        """The flat action named by a model's response, or ``UNPARSEABLE``. Never raises.

        A well-formed answer naming a move that does not exist (a cell off the board, a
        direction out of range) parses to an action that ``step`` treats as illegal."""

    @abc.abstractmethod
    def format_answer(self, action: int) -> str:
        """The ``<answer>...</answer>`` text that ``parse_answer`` maps back to ``action``.

        The contract, for every game (``tests/test_api_contract.py`` checks it for each
        registered one):

        - ``0 <= action < num_actions``: the game's canonical answer for the move, and
          ``parse_answer(format_answer(action)) == action``.
        - ``action == INVALID_ACTION``: a well-formed answer in the game's own answer form
          that names no move, and ``parse_answer`` maps it back to ``INVALID_ACTION``
          (2048: ``<answer>-1</answer>``; the pair games: ``<answer>(-1, -1) (-1, -1)</answer>``).
          Never an exception, never a real move. Why: ``INVALID_ACTION`` is a value every
          parser returns (a well-formed answer naming a cell off the board) and every
          ``step`` accepts (the penalised no-op), so the code between a parser and a log,
          a replay or a cold-start target holds it like any other action and writes it
          back; raising there turns a defined outcome into a crash halfway through an
          evaluation, and writing some real move instead would be a silent wrong answer.
          Spelt in the game's own form with off-board numbers, it stays what it was: a
          well-formed answer that names no move.
        - any other integer outside the range: what the game's parser would read as the same
          out-of-range number where it keeps such numbers (2048, Sokoban, Breakout: the
          number itself), else a ``ValueError`` naming the value and the range.
        """

    def _make_renderer(self) -> Any:
        """Build the game's renderer (a callable ``state -> (H, W, 3) uint8``): the factory
        registered for the game (:func:`register_renderer`; ``import renderers`` registers
        the built-in games')."""
        return renderer_factory(self)(self)

    @functools.cached_property
    def _renderer(self) -> Any:
        # The first render() may run inside jit: build the atlas arrays eagerly, so that
        # they are concrete constants and no tracer leaks into the cached renderer.
        with jax.ensure_compile_time_eval():
            return self._make_renderer()

    def render(self, state: State) -> Array:
        """The board as an ``(H, W, 3)`` uint8 image. Pure JAX: jit- and vmap-able."""
        return self._renderer(state)

    def field_bounds(self) -> dict[str, tuple[int, int]]:
        """Inclusive ``(lo, hi)`` value ranges of the state's integer fields, for checking
        states from outside (``check_fields``; ``bridges.export.load_state``). A game adds its
        own fields' ranges to these, from the same attributes its ``from_board`` checks."""
        top = int(np.iinfo(np.int32).max)
        return {"step_count": (0, top), "score": (0, top)}

    def check_fields(self, fields: dict[str, Any]) -> None:
        """Raise ValueError naming the field and the value unless every field of a host state
        (``{name: array}``) has the dtype kind and value range the game can produce: integer
        fields within :meth:`field_bounds`, bool fields bool, float fields finite.

        >>> import jaxgym
        >>> jaxgym.make("2048").check_fields({"board": np.full((4, 4), -1)})
        Traceback (most recent call last):
        ...
        ValueError: state field 'board' values must be in 0..17, got min -1 max -1
        """
        bounds = self.field_bounds()
        for name, value in fields.items():
            arr = np.asarray(value)
            if arr.dtype.kind == "b":
                continue
            if arr.dtype.kind == "f":
                if not np.isfinite(arr).all():
                    raise ValueError(f"state field {name!r} must be finite, got {arr.reshape(-1)[:8].tolist()}")
                continue
            if name not in bounds:
                raise ValueError(f"state field {name!r} has no known range in {self.id}; it cannot be checked")
            lo, hi = bounds[name]
            check_board(arr, arr.shape, lo, hi, what="values", whole_floats=False, label=f"state field {name!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


def resolve_image_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """Validate an image size given as one int (square) or ``(height, width)``."""
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        hw = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image_size)
    ):
        hw = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"image_size must be an int or a (height, width) pair, got {image_size!r}")
    for v in hw:
        if not 56 <= v <= 4096:
            raise ValueError(f"image_size={image_size!r} is out of range; each side must be in 56..4096 pixels")
    return hw


def check_board(
    board: Any,
    shape: tuple[int, ...],
    lo: int,
    hi: int,
    *,
    what: str,
    detail: str = "",
    whole_floats: bool = True,
    label: str = "board",
) -> np.ndarray | None:
    """Validate a host board given to ``from_board``; a traced board (under ``jit``/``vmap``)
    passes unchecked and gives None, a host one comes back as a NumPy array.

    Raises ValueError naming the offending value: a wrong shape, a non-integer dtype (whole
    floats pass when ``whole_floats``; strings, objects and bools never), or a value outside
    ``lo..hi`` (``what`` names the values, ``detail`` follows the range in the message,
    ``label`` names the array).

    >>> check_board([[0, 3]], (1, 2), 0, 2, what="kinds")
    Traceback (most recent call last):
    ...
    ValueError: board kinds must be in 0..2, got min 0 max 3
    """
    if isinstance(board, jax.core.Tracer):
        return None
    arr = np.asarray(board)
    if arr.shape != tuple(shape):
        raise ValueError(f"{label} must have shape {tuple(shape)}, got {arr.shape}")
    # Strings, objects and bools are refused before any arithmetic touches them (np.round of
    # a string array raises deep inside NumPy; True would pass as 1).
    integer = arr.dtype.kind in "iu"
    whole = whole_floats and arr.dtype.kind == "f" and bool(np.isfinite(arr).all()) and (arr == np.round(arr)).all()
    if not integer and not whole:
        raise ValueError(f"{label} must hold integer {what}, got dtype {arr.dtype}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{label} {what} must be in {lo}..{hi}{detail}, got min {arr.min()} max {arr.max()}")
    return arr
