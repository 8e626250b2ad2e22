"""jaxgym: visual puzzle games for training and evaluating vision-language models with RL.

Every game is a set of pure JAX functions (reset, step, legal mask, render) over a state
pytree, so thousands of boards step and render in one jitted, vmapped call::

    import jax, jaxgym
    env = jaxgym.make("2048")
    state = env.reset(jax.random.key(0))
    state = env.step(state, 3, jax.random.key(1))
    image = env.render(state)            # (448, 448, 3) uint8
"""

import importlib.util

from jaxgym.breakout import Breakout
from jaxgym.core import INVALID_ACTION, UNPARSEABLE, Env, State
from jaxgym.game2048 import Game2048
from jaxgym.protocol import GameProtocol
from jaxgym.registry import make, make_vec, register, register_renderer, registered_games
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
    "make",
    "make_vec",
    "register",
    "register_renderer",
    "registered_games",
]
__version__ = "0.1.0"
