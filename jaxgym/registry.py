"""The game registry: ``make("2048", size=4)`` and friends."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from jaxgym.core import Env

_REGISTRY: dict[str, dict[int, Callable[..., Env]]] = {}


def register(name: str, version: int, factory: Callable[..., Env]) -> None:
    """Register ``factory(**params) -> Env`` as game ``name`` at rule version ``version``."""
    if "-v" in name:
        raise ValueError(f"register the bare game name, not a versioned id: {name!r}")
    versions = _REGISTRY.setdefault(name, {})
    if version in versions:
        raise ValueError(f"game {name!r} version {version} is already registered")
    versions[version] = factory


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
    offending value and what is allowed, an ``image_size`` too small to draw the board included."""
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
    ]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for game {name!r}; allowed: {allowed}")
    env = factory(**params)
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
