"""The OpenEnv side of ``bridges.serve``: Action/Observation models, the per-session
``Environment`` (a thin handle onto the shared :class:`~bridges.serve.engine.BatchEngine`), built by
:func:`openenv_classes` on first use (so this module imports without openenv-core), and the
FastAPI app from ``openenv``'s own ``create_app``. Needs ``pip install -e ".[serve]"``.

OpenEnv makes one ``Environment`` per WebSocket session (``/ws``); here each one owns a slot in the
engine's device pool and awaits the engine from ``reset_async``/``step_async``, so all sessions'
moves meet in one vmapped call. The stateless HTTP ``/reset`` and ``/step`` make a fresh
environment per request (OpenEnv's design): ``/reset`` works, ``/step`` has no episode and says so.
"""

import base64
import functools
from types import SimpleNamespace
from typing import Any

from bridges.serve.engine import BatchEngine, Observed, SessionError

MAX_ANSWER_CHARS = 65_536
"""Longest answer text accepted (a model's whole reply); longer is a validation error."""


@functools.cache
def openenv_classes() -> SimpleNamespace:
    """``GameAction``, ``observation_class`` and ``GameEnvironment``, built on first use: openenv-core
    is imported here, so ``bridges.serve`` (and the test suite's doctest collection) imports without it."""
    try:
        from fastapi import HTTPException
        from openenv.core.env_server.http_server import create_app
        from openenv.core.env_server.interfaces import Environment
        from openenv.core.env_server.types import Action, ConcurrencyConfig, EnvironmentMetadata, Observation, State
        from pydantic import Field, StrictInt, model_validator
    except ImportError as error:  # pragma: no cover - the message is the point
        raise ImportError(f"bridges.serve needs openenv-core: pip install -e \".[serve]\" ({error})") from error

    class GameAction(Action):
        """A move: the model's reply text (parsed with the game's parser) or a flat action id.

        ``answer`` is the one required field of the schema, so a client that sends the raw reply as
        that field (verifiers' OpenEnv taskset) needs no glue; ``{"action_id": 3}`` alone is accepted
        too (``answer`` is then ignored).
        """

        answer: str = Field(..., max_length=MAX_ANSWER_CHARS,
                            description="The model's reply, e.g. '<perception>...</perception><think>...</think>"
                                        "<answer>...</answer>'; unparseable text is the game's penalised no-op")
        action_id: StrictInt | None = Field(default=None, description="A flat action index (overrides answer)")

        @model_validator(mode="before")
        @classmethod
        def _answer_optional_with_action_id(cls, data: Any) -> Any:
            if isinstance(data, dict) and "answer" not in data and data.get("action_id") is not None:
                return {**data, "answer": ""}
            return data


    def observation_class(image_shape: tuple[int, int, int]) -> type[Observation]:
        """The Observation model of a game whose boards are ``image_shape`` (stated in the schema)."""
        height, width, _ = image_shape

        class GameObservation(Observation):
            """One board: the image, the prompt, the perception text and the legal moves."""

            image_png: str = Field(default="", description=f"The board as a base64 PNG, {height}x{width} RGB "
                                                           "(height x width x 3, uint8)")
            image_shape: list[int] = Field(default_factory=lambda: [height, width, 3],
                                           description="[height, width, 3] of the decoded image")
            prompt: str = Field(default="", description="The game's instruction shown beside the board")
            perception: str = Field(default="", description="The exact perception text of the board (the "
                                                            "perception reward's ground truth)")
            legal_actions: list[int] = Field(default_factory=list,
                                             description="The legal-action mask in sparse form: the flat actions "
                                                         "that are legal now (mask[i] is True iff i is listed)")
            num_actions: int = Field(default=0, description="Length of the legal-action mask")
            step_count: int = Field(default=0, description="Moves taken in this episode")
            score: int = Field(default=0, description="The game's running score")
            reward_components: dict[str, Any] = Field(
                default_factory=dict, description="The step's reward components (bridges.scoring): game, format, "
                                                  "perception, overall (= reward), raw_reward, legal, parsed, action; "
                                                  "also in metadata, which OpenEnv's wire format leaves out")

        return GameObservation


    class GameEnvironment(Environment):
        """One OpenEnv session: a slot in the shared engine (allocated at reset, freed on close)."""

        SUPPORTS_CONCURRENT_SESSIONS = True
        # One shared thread creates and closes sessions (OpenEnv otherwise starts a thread per session).
        REQUIRES_SINGLE_THREAD_EXECUTOR = True

        def __init__(self, engine: BatchEngine, observation_cls: type[Observation],
                     idle_timeout_s: float | None = None):
            super().__init__()
            self._engine = engine
            self._observation_cls = observation_cls
            self._idle_timeout_s = idle_timeout_s
            self._slot: int | None = None
            self._closed = False
            self._state = State(episode_id=None, step_count=0)
            self._seed: int | None = None

        def _observation(self, observed: Observed) -> Observation:
            env = self._engine.env
            self._state = State(episode_id=self._state.episode_id, step_count=observed.step_count,
                                game=env.id, seed=self._seed, score=observed.score)
            return self._observation_cls(
                image_png=base64.b64encode(observed.image_png).decode("ascii"),
                image_shape=list(observed.image_shape),
                prompt=env.prompt(),
                perception=observed.perception,
                legal_actions=observed.legal_actions,
                num_actions=env.num_actions,
                step_count=observed.step_count,
                score=observed.score,
                done=observed.done,
                reward=observed.reward,
                reward_components=observed.components,
                metadata={"game": env.id, "reward_components": observed.components},
            )

        def _check_open(self) -> None:
            if self._closed:
                why = f"idle for over {self._idle_timeout_s} s" if self._idle_timeout_s else "closed"
                raise HTTPException(status_code=409, detail=f"this session was {why} and its slot freed: "
                                                            "connect again and send reset")

        async def reset_async(self, seed: int | None = None, episode_id: str | None = None,
                              **kwargs: Any) -> Observation:
            self._check_open()
            try:
                if self._slot is None:
                    self._slot = self._engine.allocate()
                observed = await self._engine.reset(self._slot, seed=seed)
                self._seed = self._engine.slot_info(self._slot).seed
            except SessionError as error:
                raise HTTPException(status_code=409, detail=str(error)) from error
            self._state = State(episode_id=episode_id, step_count=0)
            return self._observation(observed)

        async def step_async(self, action: GameAction, timeout_s: float | None = None, **kwargs: Any) -> Observation:
            self._check_open()
            if not isinstance(action, GameAction):
                raise HTTPException(status_code=422, detail=f"expected a GameAction, got {type(action).__name__}")
            try:
                if self._slot is None:
                    raise SessionError("this session has no episode: send reset first (the HTTP /step endpoint "
                                       "is stateless in OpenEnv; play over the /ws WebSocket session). Sessions "
                                       "live in the server's memory: a server restart loses them")
                observed = await self._engine.step(self._slot, answer=action.answer, action_id=action.action_id)
            except SessionError as error:
                raise HTTPException(status_code=409, detail=str(error)) from error
            return self._observation(observed)

        def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> Observation:
            raise NotImplementedError("GameEnvironment is async: OpenEnv's server calls reset_async")

        def step(self, action: Action, timeout_s: float | None = None, **kwargs: Any) -> Observation:
            raise NotImplementedError("GameEnvironment is async: OpenEnv's server calls step_async")

        @property
        def state(self) -> State:
            return self._state

        def get_metadata(self) -> EnvironmentMetadata:
            env = self._engine.env
            return EnvironmentMetadata(name=f"jaxgym/{env.id}",
                                       description=f"jaxgym {env.name}: a visual puzzle; the board is a PNG, "
                                                   "the action is the model's reply text",
                                       version=str(env.version))

        def close(self) -> None:
            self._closed = True
            if self._slot is not None:
                self._engine.release(self._slot)
                self._slot = None
    return SimpleNamespace(GameAction=GameAction, observation_class=observation_class, GameEnvironment=GameEnvironment,
                           create_app=create_app, ConcurrencyConfig=ConcurrencyConfig)


def build_app(engine: BatchEngine, idle_timeout_s: float | None = None) -> Any:
    """The FastAPI app (OpenEnv's ``create_app``) serving ``engine``'s game, plus ``GET /capacity``."""
    oe = openenv_classes()
    observation_cls = oe.observation_class(engine.env.image_shape)
    factory = functools.partial(oe.GameEnvironment, engine, observation_cls, idle_timeout_s)
    concurrency = oe.ConcurrencyConfig(max_concurrent_envs=engine.max_sessions, session_timeout=idle_timeout_s)
    app = oe.create_app(factory, oe.GameAction, observation_cls, env_name=engine.env.id,
                        concurrency_config=concurrency)

    @app.get("/capacity", tags=["Health"], summary="Open sessions and free slots")
    def capacity() -> dict[str, int]:
        return {"active_sessions": engine.active_sessions, "free_slots": engine.free_slots,
                "max_sessions": engine.max_sessions, "batches_run": engine.batches_run}

    return app
