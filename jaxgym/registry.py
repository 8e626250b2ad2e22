"""The registry of games: ``make("2048", size=4)`` and friends, their protocols, the
corpus their words give a tokenizer, and the one reading of a game id.

A game id is a bare name (``"2048"``, the newest rule version) or a versioned id
(``"2048-v0"``); :func:`split_game_id` is the one place that takes an id apart, and every
layer above asks it (or :func:`game_name`) rather than splitting by hand.

Renderers are not registered here but in ``jaxgym.core`` (``register_renderer``, re-exported
below), beside ``Env.render`` that reads them: the games' layer never imports the layer of
the renderers above it, and ``import renderers`` registers every built-in game's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from jaxgym.core import PROMPT_STYLES, VERSION_MARK, Env, has_renderer, register_renderer, renderer_factory

__all__ = [
    "game_name", "games_with_protocol", "make", "protocol_of", "register", "register_renderer",
    "registered_games", "registered_names", "renderer_factory", "split_game_id", "tokenizer_corpus",
]

_REGISTRY: dict[str, dict[int, Callable[..., Env]]] = {}
_PROTOCOLS: dict[str, Any] = {}


def split_game_id(game_id: str) -> tuple[str, int | None]:
    """``(name, version)`` of a game id; ``version`` is None for a bare name.

    >>> split_game_id("2048-v0"), split_game_id("shisensho-images"), split_game_id("a-v-b")
    (('2048', 0), ('shisensho-images', None), ('a-v-b', None))
    """
    name, sep, version = game_id.rpartition(VERSION_MARK)
    if sep and version.isdigit():
        return name, int(version)
    return game_id, None


def game_name(game_id: str) -> str:
    """The bare name of a game id (``"2048-v0"`` -> ``"2048"``; a bare name as it is).

    >>> game_name("swap-v0"), game_name("swap")
    ('swap', 'swap')
    """
    return split_game_id(game_id)[0]


def _check_bare(name: str) -> None:
    if VERSION_MARK in name:
        raise ValueError(f"register the bare game name, not a versioned id: {name!r}")


def register(name: str, version: int, factory: Callable[..., Env], protocol: Any = None) -> None:
    """Register ``factory(**params) -> Env`` as game ``name`` at rule version ``version``.

    ``protocol`` (a ``jaxgym.protocol.GameProtocol``) is how the bridges sample, shape and
    score the game; by default the factory's ``protocol`` attribute (a game class declares
    it), else the bridges use ``GENERIC``."""
    _check_bare(name)
    versions = _REGISTRY.setdefault(name, {})
    if version in versions:
        raise ValueError(f"game {name!r} version {version} is already registered")
    versions[version] = factory
    protocol = protocol if protocol is not None else getattr(factory, "protocol", None)
    if protocol is not None:
        _PROTOCOLS[name] = protocol


def protocol_of(name: str) -> Any:
    """The protocol registered with game ``name`` (a bare or versioned id), or None."""
    return _PROTOCOLS.get(game_name(name))


def games_with_protocol() -> list[str]:
    """Bare names of the registered games that declare a protocol."""
    return sorted(_PROTOCOLS)


def registered_games() -> list[str]:
    """The versioned ids of every registered game, e.g. ``["2048-v0", ...]``."""
    return sorted(f"{name}{VERSION_MARK}{v}" for name, versions in _REGISTRY.items() for v in versions)


def registered_names() -> list[str]:
    """The bare names of every registered game, e.g. ``["2048", "breakout", ...]``."""
    return sorted(_REGISTRY)


def tokenizer_corpus() -> list[str]:
    """The lines every registered game gives a tokenizer (``Env.tokenizer_corpus``), in
    registration order; a tuple that several games share (a game class and its subclass)
    counts once, so a game registered twice does not weigh its words twice."""
    seen: list[tuple[str, ...]] = []
    for versions in _REGISTRY.values():
        for factory in versions.values():
            corpus = tuple(getattr(factory, "tokenizer_corpus", ()))
            if corpus and corpus not in seen:
                seen.append(corpus)
    return [line for corpus in seen for line in corpus]


def make(game_id: str, **params: Any) -> Env:
    """Build a game by id: a bare name (``"2048"``, the newest rule version) or a versioned
    id (``"2048-v0"``). Unknown ids and invalid parameters raise ``ValueError`` naming the
    offending value and what is allowed, an ``image_size`` too small to draw the board included.

    Every game also takes ``prompt``: the style of ``env.prompt()``, ``"game"`` (the default,
    the game's full instruction) or ``"brief"`` (one line naming the game; see
    ``Env.prompt_style``)."""
    if not isinstance(game_id, str):
        raise ValueError(f"game id must be a string, got {game_id!r}; registered: {registered_games()}")
    name, version = split_game_id(game_id)
    if name not in _REGISTRY:
        raise ValueError(f"unknown game {game_id!r}; registered games: {', '.join(registered_games())}")
    versions = _REGISTRY[name]
    if version is None:
        version = max(versions)
    if version not in versions:
        raise ValueError(
            f"game {name!r} has no version {version}; available: "
            f"{', '.join(f'{name}{VERSION_MARK}{v}' for v in sorted(versions))}"
        )
    factory = versions[version]
    allowed = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ] + ["prompt"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for game {name!r}; allowed: {allowed}")
    prompt_style = params.pop("prompt", "game")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt={prompt_style!r} is unknown for game {name!r}; allowed: {', '.join(PROMPT_STYLES)}")
    env = factory(**params)
    env.prompt_style = prompt_style
    if "image_size" in params and has_renderer(env):
        # An explicit size may be too small for the board, which only the renderer can tell: build
        # it now (render() would build it anyway) so the error comes from make, not the first render.
        # Without `import renderers` no renderer is registered yet, and render() says so.
        _ = env._renderer
    return env
