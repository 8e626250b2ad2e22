"""The registries: games (``make("2048", size=4)`` and friends), their protocols, and
their renderers.

The layers import one way: games and text (``jaxgym``) -> renderers -> bridges -> learner.
A game therefore never imports its renderer. A renderer module registers itself for a game
name (:func:`register_renderer`, at import), and ``env.render`` finds it here. So that
``import jaxgym`` alone is enough to render, the first lookup that misses imports the
renderer plug-in packages named in :data:`RENDERER_PACKAGES` (``renderers``, whose
``__init__`` imports every game's renderer module): a late, by-name import of a package
that depends on this one, the one place the game layer names a layer above it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from jaxgym.core import PROMPT_STYLES, Env

_REGISTRY: dict[str, dict[int, Callable[..., Env]]] = {}
_PROTOCOLS: dict[str, Any] = {}
_RENDERERS: dict[str, Callable[[Any], Callable[[Any], Any]]] = {}

RENDERER_PACKAGES: list[str] = ["renderers"]
"""Packages imported, once, when a game's renderer is not registered yet."""
_imported_renderer_packages: set[str] = set()


def register(name: str, version: int, factory: Callable[..., Env], protocol: Any = None) -> None:
    """Register ``factory(**params) -> Env`` as game ``name`` at rule version ``version``.

    ``protocol`` (a ``jaxgym.protocol.GameProtocol``) is how the bridges sample, shape and
    score the game; by default the factory's ``protocol`` attribute (a game class declares
    it), else the bridges use ``GENERIC``."""
    if "-v" in name:
        raise ValueError(f"register the bare game name, not a versioned id: {name!r}")
    versions = _REGISTRY.setdefault(name, {})
    if version in versions:
        raise ValueError(f"game {name!r} version {version} is already registered")
    versions[version] = factory
    protocol = protocol if protocol is not None else getattr(factory, "protocol", None)
    if protocol is not None:
        _PROTOCOLS[name] = protocol


def protocol_of(name: str) -> Any:
    """The protocol registered with game ``name`` (a bare or versioned id), or None."""
    return _PROTOCOLS.get(_split_id(name)[0])


def games_with_protocol() -> list[str]:
    """Bare names of the registered games that declare a protocol."""
    return sorted(_PROTOCOLS)


def register_renderer(name: str, factory: Callable[[Any], Callable[[Any], Any]]) -> None:
    """Register ``factory(env) -> renderer`` (a callable ``state -> (H, W, 3) uint8``) for
    game ``name``. Renderer modules call it at import; registering a name again replaces
    the factory (a user's own look for a game)."""
    if "-v" in name:
        raise ValueError(f"register the bare game name, not a versioned id: {name!r}")
    _RENDERERS[name] = factory


def renderer_factory(env: Any) -> Callable[[Any], Callable[[Any], Any]]:
    """The renderer factory of ``env``'s game: registered for its name, or else for the name
    of a game class it derives from. Imports :data:`RENDERER_PACKAGES` on the first miss."""
    names = [getattr(cls, "name", None) for cls in type(env).__mro__]
    names = [n for n in names if isinstance(n, str)]
    for attempt in range(2):
        for name in names:
            if name in _RENDERERS:
                return _RENDERERS[name]
        if attempt == 0:
            for package in RENDERER_PACKAGES:
                if package not in _imported_renderer_packages:
                    importlib.import_module(package)
                    _imported_renderer_packages.add(package)
    raise ValueError(
        f"no renderer is registered for game {names[0] if names else type(env).__name__!r}; register one with "
        f"jaxgym.registry.register_renderer(name, factory) (renderers for: {', '.join(sorted(_RENDERERS))})"
    )


def registered_games() -> list[str]:
    """The versioned ids of every registered game, e.g. ``["2048-v0", ...]``."""
    return sorted(f"{name}-v{v}" for name, versions in _REGISTRY.items() for v in versions)


def _split_id(game_id: str) -> tuple[str, int | None]:
    name, sep, version = game_id.rpartition("-v")
    if sep and version.isdigit():
        return name, int(version)
    return game_id, None


def make(game_id: str, **params: Any) -> Env:
    """Build a game by id: a bare name (``"2048"``, the newest rule version) or a versioned
    id (``"2048-v0"``). Unknown ids and invalid parameters raise ``ValueError`` naming the
    offending value and what is allowed, an ``image_size`` too small to draw the board included.

    Every game also takes ``prompt``: the style of ``env.prompt()``, ``"game"`` (the default,
    the game's full instruction) or ``"brief"`` (one line naming the game; see
    ``Env.prompt_style``)."""
    if not isinstance(game_id, str):
        raise ValueError(f"game id must be a string, got {game_id!r}; registered: {registered_games()}")
    name, version = _split_id(game_id)
    if name not in _REGISTRY:
        raise ValueError(f"unknown game {game_id!r}; registered games: {', '.join(registered_games())}")
    versions = _REGISTRY[name]
    if version is None:
        version = max(versions)
    if version not in versions:
        raise ValueError(
            f"game {name!r} has no version {version}; available: {', '.join(f'{name}-v{v}' for v in sorted(versions))}"
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
    if "image_size" in params:
        # An explicit size may be too small for the board, which only the renderer can tell: build
        # it now (render() would build it anyway) so the error comes from make, not the first render.
        _ = env._renderer
    return env


def make_vec(game_id: str, num_envs: int, **kwargs: Any) -> Any:
    """A ``gymnasium.vector.VectorEnv`` of ``num_envs`` copies of a game (needs gymnasium);
    see ``jaxgym.vector_env.GymnasiumVectorEnv`` for the keyword arguments."""
    from jaxgym.vector_env import GymnasiumVectorEnv

    return GymnasiumVectorEnv(game_id, num_envs, **kwargs)
