"""jaxgym: visual puzzle games for training and evaluating vision-language models with RL.

Every game is a set of pure JAX functions (reset, step, legal mask, render) over a state
pytree, so thousands of boards step and render in one jitted, vmapped call::

    import jax, jaxgym
    import renderers                     # registers every game's renderer (the layer above)
    env = jaxgym.make("2048")
    state = env.reset(jax.random.key(0))
    state = env.step(state, 3, jax.random.key(1))
    image = env.render(state)            # (448, 448, 3) uint8
"""

import importlib.util
from typing import Any

from jaxgym.breakout import Breakout
from jaxgym.core import INVALID_ACTION, UNPARSEABLE, Env, State
from jaxgym.game2048 import Game2048
from jaxgym.protocol import GameProtocol
from jaxgym.registry import (
    game_name,
    make,
    register,
    register_renderer,
    registered_games,
    registered_names,
    split_game_id,
)
from jaxgym.shisensho import ShisenSho, ShisenShoImages
from jaxgym.sokoban import Sokoban
from jaxgym.swap import Swap
from jaxgym.tetris import Tetris
from jaxgym.wrappers import AutoReset, TimeLimit, Wrapper

register("2048", 0, Game2048)
register("shisensho", 0, ShisenSho)
register("shisensho-images", 0, ShisenShoImages)
register("swap", 0, Swap)
register("breakout", 0, Breakout)
register("sokoban", 0, Sokoban)
register("tetris", 0, Tetris)


def make_vec(game_id: str, num_envs: int, **kwargs: Any) -> Any:
    """A ``gymnasium.vector.VectorEnv`` of ``num_envs`` copies of a game (needs gymnasium);
    see ``jaxgym.vector_env.GymnasiumVectorEnv`` for the keyword arguments."""
    from jaxgym.vector_env import GymnasiumVectorEnv  # gymnasium is optional: imported on use

    return GymnasiumVectorEnv(game_id, num_envs, **kwargs)


if importlib.util.find_spec("gymnasium") is not None:  # gymnasium.make("jaxgym/<id>"); jaxgym needs no gymnasium
    from jaxgym.gym_env import register_envs as _register_gymnasium_envs

    _register_gymnasium_envs()

__all__ = [
    "INVALID_ACTION",
    "UNPARSEABLE",
    "AutoReset",
    "Breakout",
    "Env",
    "Game2048",
    "GameProtocol",
    "ShisenSho",
    "ShisenShoImages",
    "Sokoban",
    "State",
    "Swap",
    "Tetris",
    "TimeLimit",
    "Wrapper",
    "game_name",
    "make",
    "make_vec",
    "register",
    "register_renderer",
    "registered_games",
    "registered_names",
    "split_game_id",
]
__version__ = "0.1.0"
