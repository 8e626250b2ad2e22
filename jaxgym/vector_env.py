"""Any jaxgym game as a ``gymnasium.vector.VectorEnv`` (needs ``pip install gymnasium``).

    import jaxgym, renderers                            # renderers registers the games' pictures
    venv = jaxgym.make_vec("2048", num_envs=64, max_steps=500)
    obs, info = venv.reset(seed=0)                      # obs: (64, 448, 448, 3) uint8
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())

The whole batch steps and renders in one jitted, vmapped call; observations come back as
NumPy arrays. Episodes reset in the same step (gymnasium's ``AutoresetMode.SAME_STEP``): the
observation of a finished sub-env is its next episode's first frame, and the finished
episode's last frame is in ``info["final_obs"]`` where ``info["_final_obs"]`` is True.
``info["legal_action_mask"]`` carries every sub-env's legal actions.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import numpy as np
from gymnasium.vector import AutoresetMode

from jaxgym.core import Env, check_int_param, host_actions
from jaxgym.registry import make
from jaxgym.wrappers import AutoReset, TimeLimit

OBSERVATION_MODES = ("image", "board")


class GymnasiumVectorEnv(gymnasium.vector.VectorEnv):
    """``num_envs`` copies of a jaxgym game behind gymnasium's vector-env API.

    Args:
        game: a registered game id, or an ``Env`` instance.
        num_envs: batch size.
        observation: ``"image"`` (rendered RGB uint8 frames) or ``"board"`` (the state's
            ``board`` array).
        max_steps: optional time limit per episode (sets ``truncated``).
        **params: game parameters for ``jaxgym.make``.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

    def __init__(
        self,
        game: str | Env,
        num_envs: int,
        *,
        observation: str = "image",
        max_steps: int | None = None,
        **params: Any,
    ):
        self.num_envs = check_int_param("num_envs", num_envs, 1)
        if observation not in OBSERVATION_MODES:
            raise ValueError(f"observation={observation!r} is not one of {OBSERVATION_MODES}")
        env = game if isinstance(game, Env) else make(game, **params)
        if max_steps is not None:
            env = TimeLimit(env, max_steps)
        self.env = env
        self.render_mode = "rgb_array"
        self._observation = observation

        def observe(state):
            return jax.vmap(env.render)(state) if observation == "image" else state.board

        def reset(key):
            state = jax.vmap(env.reset)(jax.random.split(key, self.num_envs))
            return state, observe(state)

        restarting = AutoReset(env)  # the one auto-reset; gymnasium's SAME_STEP mode is what it does

        def step(state, actions, key):
            step_key, reset_key = jax.random.split(key)
            selected, stepped = restarting.step_batch_and_restart(
                state, actions, jax.random.split(step_key, self.num_envs), jax.random.split(reset_key, self.num_envs)
            )
            done = stepped.terminated | stepped.truncated
            return selected, stepped, observe(selected), done

        self._reset = jax.jit(reset)
        self._step = jax.jit(step)
        self._observe = jax.jit(observe)
        self._render_batch = jax.jit(jax.vmap(env.render))
        self._key = jax.random.key(0)
        self._state = None

        example = jax.eval_shape(lambda k: reset(k)[1], jax.random.key(0))
        single_obs = gymnasium.spaces.Box(
            low=0,
            high=255 if observation == "image" else np.iinfo(np.int32).max,
            shape=example.shape[1:],
            dtype=np.dtype(example.dtype),
        )
        self.single_observation_space = single_obs
        self.observation_space = gymnasium.vector.utils.batch_space(single_obs, self.num_envs)
        self.single_action_space = gymnasium.spaces.Discrete(env.num_actions)
        self.action_space = gymnasium.spaces.MultiDiscrete(np.full(self.num_envs, env.num_actions))

    def _info(self, state: Any) -> dict[str, Any]:
        return {
            "legal_action_mask": np.asarray(state.legal_action_mask),
            "score": np.asarray(state.score),
            "last_action_legal": np.asarray(state.last_action_legal),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._key = jax.random.key(seed)
        self._key, key = jax.random.split(self._key)
        self._state, obs = self._reset(key)
        return np.asarray(obs), self._info(self._state)

    def step(self, actions: Any):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions must be an integer array of shape ({self.num_envs},), got {actions.dtype} {actions.shape}"
            )
        self._key, key = jax.random.split(self._key)
        # Clamped on the host: jnp.asarray(..., jnp.int32) would wrap 2**40 + 3 into action 3.
        self._state, stepped, obs, done = self._step(self._state, host_actions(actions), key)
        info = self._info(stepped)
        done = np.asarray(done)
        if done.any():
            info["final_obs"] = np.asarray(self._observe(stepped))
            info["_final_obs"] = done
        return (
            np.asarray(obs),
            np.asarray(stepped.reward),
            np.asarray(stepped.terminated),
            np.asarray(stepped.truncated),
            info,
        )

    def render(self) -> np.ndarray | None:
        if self._state is None:
            return None
        return np.asarray(self._render_batch(self._state))
