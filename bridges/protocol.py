"""The per-game training and evaluation protocol, as the bridges read it.

Every game declares its own protocol (``jaxgym.protocol.GameProtocol``, the game class's
``protocol`` attribute, recorded by ``jaxgym.register``): how training states are sampled,
how the reward components are weighted and shaped, how an evaluation run is scored, and
what a random policy may type as an answer. :func:`protocol_for` looks it up by game name,
so a new game needs no entry here. A game without one gets :data:`GENERIC`, which works
for any ``jaxgym.Env``.

>>> import jaxgym
>>> p = protocol_for(jaxgym.make("2048"))
>>> p.sample_depth, p.sample_policy, p.eval_warmup, p.w_perception, p.shaping, p.eval_score
(100, 'uniform', 100, 1.0, 'sign', 'raw')
>>> protocol_for(jaxgym.make("2048")).replace(w_perception=0.5).w_perception
0.5

Evaluation presets (:func:`eval_preset`): ``"paper"`` (10 runs of 100 steps, the game's
warm-up) and ``"lmgame"`` (lmgame-bench's settings, declared by the games it has: 2048 and
Candy Crush, whose board is Swap's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from jaxgym import registry
from jaxgym.core import Env
from jaxgym.protocol import (
    EVAL_SCORES,
    GENERIC,
    SAMPLE_POLICIES,
    SHAPINGS,
    EvalPreset,
    GameProtocol,
    Shaping,
    random_cell_pairs,
    shape_reward,
)

__all__ = [
    "EVAL_PROTOCOLS",
    "EVAL_SCORES",
    "GENERIC",
    "SAMPLE_POLICIES",
    "SHAPINGS",
    "EvalPreset",
    "GameProtocol",
    "Shaping",
    "eval_preset",
    "known_games",
    "parse_game_params",
    "protocol_for",
    "random_cell_pairs",
    "shape_reward",
]


def known_games() -> list[str]:
    """Names of the registered games that declare a protocol (others get :data:`GENERIC`)."""
    return registry.games_with_protocol()


def protocol_for(env: Env | str) -> GameProtocol:
    """The protocol ``env``'s game declares (``env`` an ``Env``, wrapped or not, or a bare game
    name), else :data:`GENERIC`. A game that is not registered may still declare one on its
    class (``protocol = GameProtocol(...)``)."""
    name = env if isinstance(env, str) else env.name
    found = registry.protocol_of(name)
    if found is None and not isinstance(env, str):
        unwrapped = getattr(env, "unwrapped", env)
        found = getattr(type(unwrapped), "protocol", None)
    return found if found is not None else GENERIC


# -- evaluation presets ---------------------------------------------------------------------


FROM_THE_GAMES = "from the games"
"""An :data:`EVAL_PROTOCOLS` entry whose presets each game declares (``GameProtocol.eval_presets``)."""

EVAL_PROTOCOLS: dict[str, EvalPreset | str] = {
    # The paper's avg@10: 10 runs of 100 steps after the game's warm-up, default boards.
    "paper": EvalPreset(runs=10, steps=100),
    # lmgame-bench's settings (github.com/lmgame-org/GamingAgent @ 996d848), for the games that
    # declare one (their sources are cited beside them).
    "lmgame": FROM_THE_GAMES,
}
"""Named evaluation protocols: one preset for every game, or each game's own."""


def _game_presets(protocol: str) -> dict[str, EvalPreset]:
    found = {}
    for name in registry.registered_names():
        declared = dict(protocol_for(name).eval_presets)
        if protocol in declared:
            found[name] = declared[protocol]
    return found


def eval_preset(protocol: str, game: str) -> EvalPreset:
    """The evaluation preset of ``game`` (a bare or versioned id) under ``protocol``.

    >>> eval_preset("lmgame", "swap").params["colors"], eval_preset("lmgame", "2048-v0").steps
    (4, 1000)
    >>> eval_preset("paper", "shisensho").runs
    10
    """
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is unknown; allowed: {sorted(EVAL_PROTOCOLS)}")
    preset = EVAL_PROTOCOLS[protocol]
    if isinstance(preset, EvalPreset):
        return preset
    presets = _game_presets(protocol)
    name = registry.game_name(game)
    if name not in presets:
        raise ValueError(f"protocol {protocol!r} has no setting for game {game!r}; it covers {sorted(presets)}")
    return presets[name]


def parse_game_params(items: Sequence[str]) -> dict[str, Any]:
    """Game parameters from command-line ``--param name=value`` items; each value is JSON where
    it parses (``size=6`` -> 6), else the string (``dataset=patterns``).

    >>> parse_game_params(["size=6", "dataset=patterns"])
    {'size': 6, 'dataset': 'patterns'}
    """
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param {item!r} must look like name=value, e.g. --param size=6")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params
