"""Multi-turn play through TRL's ``environment_factory``: the model moves with a tool call and
sees the next board.

    from bridges.rewards.trl_env import GameEnvironment
    GRPOTrainer(model, train_dataset=ds.select_columns(["prompt", "answer"]),
                environment_factory=GameEnvironment, args=GRPOConfig(max_tool_calling_iterations=8, ...))

TRL 1.16 (``trl/trainer/grpo_trainer.py``) builds one instance per rollout, calls
``reset(**row)`` and appends what it returns to the user's turn, exposes the public methods
(here :meth:`GameEnvironment.move`) as tools, appends a tool's result as a ``tool`` message
(a list of content parts may carry images: ``_tool_call_loop`` collects them for the VLM), and
adds ``get_reward()`` as a reward (weight 1, logged under the class name). ``reset`` starts
from the row's exported state (``answer``, see ``bridges.export``); the board comes back as an
image (``observation="image"``, the default) or as its perception text
(:class:`TextGameEnvironment`, for models or TRL setups without images in later turns). Use a
dataset without an ``images`` column: the first board comes from ``reset``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

import renderers  # noqa: F401  (registers the games' renderers: this module renders boards)
from bridges.export import load_state, parse_ground_truth
from bridges.protocol import protocol_for, shape_reward
from bridges.scoring import parse_action
from jaxgym.core import Env


@functools.lru_cache(maxsize=32)
def compiled_play(env: Env) -> tuple[Any, Any]:
    """``(step, render)`` of ``env`` jitted, once per game (``bridges.export.env_for`` hands out
    one env per game and parameters): eager, every ``move`` re-dispatched each op (0.5 s a
    move); jitted, a move is one compiled call."""
    return jax.jit(env.step), jax.jit(env.render)


class GameEnvironment:
    """One game played from an exported state; ``move`` is the model's tool.

    ``get_reward`` is the sum of the game components (the protocol's shaping, e.g. +1/-1 per
    move) over the moves made; a rollout that never moves gets the invalid-move reward once.
    """

    observation = "image"

    def __init__(self) -> None:
        self.env: Any = None
        self.state: Any = None
        self.moves = 0
        self.total = 0.0

    def _board(self, note: str) -> list[dict[str, Any]]:
        from bridges.torch_io import images_to_pil

        if self.observation == "text":
            return [{"type": "text", "text": f"{note}\nThe board:\n{self.env.describe(jax.device_get(self.state))}"}]
        (image,) = images_to_pil(compiled_play(self.env)[1](self.state))
        return [{"type": "image", "image": image}, {"type": "text", "text": note}]

    def reset(self, answer: str | None = None, **row: Any) -> list[dict[str, Any]]:
        """Start from the row's exported state; returns the board and the game's rules."""
        if answer is None:
            raise ValueError("GameEnvironment needs the dataset's 'answer' column (a bridges.export dataset)")
        truth = parse_ground_truth(answer)
        self.env, self.state = load_state(truth)
        self.key = jax.random.key(int(truth["score_seed"]))
        self.moves, self.total = 0, 0.0
        note = (f"{self.env.prompt()}\nPlay by calling the move tool with your answer, e.g. "
                f"{self.env.format_answer(0)}; it returns the next board.")
        return self._board(note)

    def move(self, answer: str) -> list[dict[str, Any]]:
        """Make one move in the game.

        Args:
            answer: the move, written as the game's answer, e.g. "<answer>3</answer>".

        Returns:
            The next board and what the move scored.
        """
        if self.state is None:
            raise RuntimeError("call reset() before move()")
        action, parsed = parse_action(self.env, answer)
        self.key, key = jax.random.split(self.key)
        step, _ = compiled_play(self.env)
        # Clamped on the host: jit would wrap an action outside int32 into a legal one.
        info = np.iinfo(np.int32)
        self.state = step(self.state, np.int32(min(max(action, info.min), info.max)), key)
        game = float(shape_reward(protocol_for(self.env).shaping, self.state.reward, self.state.last_action_legal))
        self.moves += 1
        self.total += game
        status = "legal" if bool(self.state.last_action_legal) else ("unreadable" if not parsed else "illegal")
        over = " The game is over." if bool(self.state.terminated) else ""
        return self._board(f"Move {self.moves}: {status}, reward {float(self.state.reward):g}.{over}")

    def get_reward(self) -> float:
        """The summed game reward of this rollout's moves."""
        if self.env is None:
            raise RuntimeError("get_reward() before reset(): TRL calls reset(**row) first; call it with a row of a "
                               "bridges.export dataset")
        if self.moves == 0:
            return float(shape_reward(protocol_for(self.env).shaping, -1.0, False))
        return self.total


class TextGameEnvironment(GameEnvironment):
    """:class:`GameEnvironment` whose boards are the perception text instead of images."""

    observation = "text"
