"""The batching engine behind ``bridges.serve``: every session's state in one device pool,
resets and steps gathered within a short window and run as one jitted, vmapped call.

Sessions own a slot (an index into the pool, whose arrays have a leading dim of
``max_sessions + 1``; the last slot is scratch that padding rows write to). Requests wait at most
``window_ms`` (or until every open session has one pending) and then run together, padded to
the next of a few fixed bucket sizes, so the number of compiled shapes is fixed whatever the
traffic. Device work runs on one worker thread (the pool is updated in place, donated); the
host side of a batch (``env.describe``, PNG encoding) runs on a small thread pool, never on the
event loop. ``serial=True`` is the one-session-at-a-time mode the benchmark compares with: every
request runs alone through the size-1 call, as an OpenEnv environment does today.

Rewards are the training reward (``bridges.scoring``): an answer text is parsed with the game's
parser (unparseable: ``INVALID_ACTION``, the game's penalised no-op), its ``format`` and
``perception`` components are checked against the board it answered, the ``game`` component is
the protocol's shaping of the env reward, and ``overall`` their weighted sum. An ``action_id``
step is scored by the ``game`` component alone.

Use (``tests/test_serve_engine.py`` runs it)::

    engine = BatchEngine(jaxgym.make("2048"), max_sessions=64)
    slot = engine.allocate()
    observed = await engine.reset(slot, seed=0)         # Observed: PNG bytes, perception, legal actions
    observed = await engine.step(slot, answer="<answer>left</answer>")
    engine.release(slot)
"""

from __future__ import annotations

import asyncio
import io
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import renderers  # noqa: F401  (registers the games' renderers: this module renders boards)
from bridges.protocol import protocol_for, shape_reward
from bridges.scoring import format_ok, parse_action, perception_ok, unbatch
from jaxgym.core import Env, host_actions

DEFAULT_BUCKETS = (1, 4, 16, 64, 256, 1024)
MAX_SEED = 2**31 - 1  # int32 seeds: jax.random.key(seed) under jit, x64 off
RESTART_NOTE = ("sessions live in the server's memory: a server restart (or an idle timeout) loses them, "
                "so connect again and send reset")


class SessionError(RuntimeError):
    """A request the session cannot serve (no episode, episode over, capacity); the message says
    what to do. The server sends it to the client as an error, never crashes on it."""


@dataclass
class Observed:
    """One observation, host side: what ``bridges.serve.app`` turns into an OpenEnv Observation."""

    image_png: bytes
    image_shape: tuple[int, int, int]
    perception: str
    legal_actions: list[int]
    step_count: int
    score: int
    done: bool
    reward: float | None
    components: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Slot:
    has_episode: bool = False
    done: bool = False
    perception: str = ""  # the board the next answer is about: its perception component's truth
    seed: int | None = None


@dataclass
class _Request:
    slot: int
    future: asyncio.Future
    info: _Slot
    seed: int = 0
    action: int = 0
    fmt: float = 0.0
    perc: float = 0.0
    weights: tuple[float, float, float] = (1.0, 0.0, 0.0)
    answered: bool = False
    parsed: bool = True


def bucket_sizes(max_sessions: int, buckets: tuple[int, ...] = DEFAULT_BUCKETS) -> tuple[int, ...]:
    """The padded batch sizes used for ``max_sessions`` sessions: ``buckets`` up to the first one
    that holds them all.

    >>> bucket_sizes(100)
    (1, 4, 16, 64, 256)
    >>> bucket_sizes(3, (1, 8))
    (1, 8)
    """
    sizes = tuple(sorted(set(buckets)))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"buckets must be positive sizes, got {buckets!r}")
    kept = [b for b in sizes if b < max_sessions]
    kept.append(next((b for b in sizes if b >= max_sessions), max_sessions))
    return tuple(kept)


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 image; level 1 is zlib's fastest (boards are flat
    colours, so it costs little size)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


class BatchEngine:
    """Holds every session's game in one device pool and steps them in batches (module doc).

    Args:
        env: the game (``jaxgym.make(...)``).
        max_sessions: slots in the pool; ``allocate`` raises ``SessionError`` past it.
        window_ms: how long the first request of a batch waits for others.
        buckets: candidate padded batch sizes (see :func:`bucket_sizes`).
        serial: one request per call, no gathering (the benchmark's baseline).
        encode_threads: threads for ``describe`` and PNG encoding.
        png_level: zlib level of the PNGs (0-9).
    """

    def __init__(self, env: Env, *, max_sessions: int, window_ms: float = 2.0,
                 buckets: tuple[int, ...] = DEFAULT_BUCKETS, serial: bool = False,
                 encode_threads: int = 2, png_level: int = 1):
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be an int >= 1, got {max_sessions!r}")
        if window_ms < 0:
            raise ValueError(f"window_ms must be >= 0, got {window_ms!r}")
        self.env = env
        self.max_sessions = max_sessions
        self.window_s = window_ms / 1000.0
        self.serial = serial
        self.buckets = (1,) if serial else bucket_sizes(max_sessions, buckets)
        self.png_level = png_level
        self.protocol = protocol_for(env)
        self.batches_run = 0  # device calls so far (tests and the benchmark read it)
        self._slots: dict[int, _Slot] = {}
        self._free = list(range(max_sessions - 1, -1, -1))
        self._lock = threading.Lock()
        self._device = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-device")
        self._host = ThreadPoolExecutor(max_workers=max(1, encode_threads), thread_name_prefix="serve-encode")
        self._pending: dict[str, list[_Request]] = {"reset": [], "step": []}
        self._timer: asyncio.TimerHandle | None = None

        scratch = max_sessions  # padding rows read and write this extra slot
        self._scratch = scratch
        keys = jax.random.split(jax.random.key(0), max_sessions + 1)
        self._pool = jax.vmap(env.reset)(keys)
        self._keys = jax.random.key_data(keys)
        self._reset_fn = jax.jit(self._reset_batch, donate_argnums=(0, 1))
        self._step_fn = jax.jit(self._step_batch, donate_argnums=(0,))

    # -- slots ----------------------------------------------------------------------------------

    def allocate(self) -> int:
        """A free slot for a new session; ``SessionError`` when all ``max_sessions`` are taken."""
        with self._lock:
            if not self._free:
                raise SessionError(f"the server is at capacity ({self.max_sessions} sessions, --max-sessions): "
                                   "close a session or retry later")
            slot = self._free.pop()
            self._slots[slot] = _Slot()
            return slot

    def release(self, slot: int) -> None:
        """Give a slot back (idempotent); its board stays in the pool until the next reset overwrites it."""
        with self._lock:
            if self._slots.pop(slot, None) is not None:
                self._free.append(slot)

    @property
    def active_sessions(self) -> int:
        return len(self._slots)

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def slot_info(self, slot: int) -> _Slot:
        info = self._slots.get(slot)
        if info is None:
            raise SessionError(f"session slot {slot} is not open; {RESTART_NOTE}")
        return info

    # -- requests -------------------------------------------------------------------------------

    async def reset(self, slot: int, seed: int | None = None) -> Observed:
        """A new game in ``slot``; ``seed`` gives the board of ``env.reset(jax.random.key(seed))``."""
        info = self.slot_info(slot)
        if seed is None:
            seed = secrets.randbelow(MAX_SEED + 1)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
            raise SessionError(f"seed must be an int in [0, {MAX_SEED}], got {seed!r}")
        info.seed = int(seed)
        request = _Request(slot, asyncio.get_running_loop().create_future(), info, seed=int(seed))
        return await self._submit("reset", request)

    async def step(self, slot: int, *, answer: str | None = None, action_id: int | None = None) -> Observed:
        """One move: ``action_id`` (a flat action) if given, else the game's parse of ``answer``."""
        info = self.slot_info(slot)
        if not info.has_episode:
            raise SessionError(f"this session has no episode: send reset first ({RESTART_NOTE})")
        if info.done:
            raise SessionError("the episode is over (done was true): send reset to start another")
        request = _Request(slot, asyncio.get_running_loop().create_future(), info)
        if action_id is not None:
            request.action = int(host_actions(np.asarray([action_id]))[0])
        else:
            text = answer if answer is not None else ""
            request.action, request.parsed = parse_action(self.env, text)
            request.fmt = float(format_ok(text))
            request.perc = float(perception_ok(text, info.perception))
            p = self.protocol
            request.weights = (p.w_game, p.w_format, p.w_perception)
            request.answered = True
        return await self._submit("step", request)

    async def _submit(self, kind: str, request: _Request) -> Observed:
        pending = self._pending[kind]
        pending.append(request)
        waiting = len(self._pending["reset"]) + len(self._pending["step"])
        if self.serial or len(pending) >= self.buckets[-1] or waiting >= self.active_sessions or self.window_s == 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._flush)
        return await request.future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        limit = self.buckets[-1]
        for kind, pending in self._pending.items():
            while pending:
                batch, pending[:] = pending[:limit], pending[limit:]
                asyncio.ensure_future(self._run(kind, batch))

    async def _run(self, kind: str, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        try:
            device_out = await loop.run_in_executor(self._device, self._device_call, kind, batch)
            chunks = np.array_split(np.arange(len(batch)), min(len(batch), self._host._max_workers))
            parts = await asyncio.gather(*(
                loop.run_in_executor(self._host, self._host_side, kind, batch, device_out, chunk)
                for chunk in chunks if len(chunk)))
        except Exception as error:  # a failed batch fails its requests, not the server
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        for part in parts:
            for index, observed in part:
                request = batch[index]
                info = request.info  # a closed session's slot may hold a new session by now: update only its own
                info.has_episode, info.done, info.perception = True, observed.done, observed.perception
                if not request.future.done():
                    request.future.set_result(observed)

    # -- device side (one worker thread) --------------------------------------------------------

    def _bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def _device_call(self, kind: str, batch: list[_Request]) -> dict[str, Any]:
        size = self._bucket(len(batch))
        idx = np.full(size, self._scratch, np.int32)
        idx[: len(batch)] = [r.slot for r in batch]
        if kind == "reset":
            seeds = np.zeros(size, np.int32)
            seeds[: len(batch)] = [r.seed for r in batch]
            self._pool, self._keys, states, images = self._reset_fn(self._pool, self._keys, idx, seeds)
            extra: dict[str, Any] = {}
        else:
            actions = np.zeros(size, np.int32)
            fmt = np.zeros(size, np.float32)
            perc = np.zeros(size, np.float32)
            weights = np.zeros((size, 3), np.float32)
            for i, r in enumerate(batch):
                actions[i], fmt[i], perc[i], weights[i] = r.action, r.fmt, r.perc, r.weights
            self._pool, states, images, raw, game, overall = self._step_fn(
                self._pool, self._keys, idx, actions, fmt, perc, weights)
            extra = {"raw": raw, "game": game, "overall": overall}
        self.batches_run += 1
        return jax.device_get({"states": states, "images": images, **extra})

    def _reset_batch(self, pool: Any, keys: jax.Array, idx: jax.Array, seeds: jax.Array):
        episode_keys = jax.vmap(jax.random.key)(seeds)
        key_data = jax.random.key_data(episode_keys)
        states = jax.vmap(self.env.reset)(episode_keys)
        images = jax.vmap(self.env.render)(states)
        pool = jax.tree.map(lambda p, s: p.at[idx].set(s), pool, states)
        return pool, keys.at[idx].set(key_data), states, images

    def _step_batch(self, pool: Any, keys: jax.Array, idx: jax.Array, actions: jax.Array,
                    fmt: jax.Array, perc: jax.Array, weights: jax.Array):
        states = jax.tree.map(lambda p: p[idx], pool)
        # Each step's key is the episode's key folded with its step number: the same seed and the
        # same moves replay the same game, whatever else the batch held.
        step_keys = jax.vmap(jax.random.fold_in)(jax.random.wrap_key_data(keys[idx]), states.step_count)
        nxt = jax.vmap(self.env.step)(states, actions, step_keys)
        raw = nxt.reward.astype(jnp.float32)
        game = shape_reward(self.protocol.shaping, raw, nxt.last_action_legal)
        overall = weights[:, 0] * game + weights[:, 1] * fmt + weights[:, 2] * perc
        images = jax.vmap(self.env.render)(nxt)
        pool = jax.tree.map(lambda p, s: p.at[idx].set(s), pool, nxt)
        return pool, nxt, images, raw, game, overall

    def warmup(self) -> None:
        """Compile every bucket's reset and step now, so no client waits for a compile."""
        for size in self.buckets:
            idx = np.full(size, self._scratch, np.int32)
            zeros = np.zeros(size, np.float32)
            self._pool, self._keys, *_ = self._reset_fn(self._pool, self._keys, idx, np.zeros(size, np.int32))
            self._pool, *_ = self._step_fn(self._pool, self._keys, idx, np.zeros(size, np.int32), zeros, zeros,
                                           np.zeros((size, 3), np.float32))
        jax.block_until_ready(self._pool)

    # -- host side (thread pool) ----------------------------------------------------------------

    def _host_side(self, kind: str, batch: list[_Request], out: dict[str, Any], chunk: np.ndarray):
        results = []
        states = out["states"]
        for i in chunk.tolist():
            state = unbatch(states, i)
            done = bool(state.terminated) or bool(state.truncated)
            components: dict[str, Any] = {}
            reward = None
            if kind == "step":
                request = batch[i]
                reward = float(out["overall"][i])
                components = {"raw_reward": float(out["raw"][i]), "game": float(out["game"][i]),
                              "overall": reward, "legal": bool(state.last_action_legal),
                              "parsed": request.parsed, "action": request.action}
                if request.answered:
                    components.update(format=request.fmt, perception=request.perc)
                else:
                    components.update(format=None, perception=None)
            results.append((i, Observed(
                image_png=encode_png(out["images"][i], self.png_level),
                image_shape=tuple(int(d) for d in out["images"][i].shape),
                perception=self.env.describe(state),
                legal_actions=np.flatnonzero(state.legal_action_mask).tolist(),
                step_count=int(state.step_count),
                score=int(state.score),
                done=done,
                reward=reward,
                components=components,
            )))
        return results

    def close(self) -> None:
        """Stop the worker threads (pending batches finish first)."""
        self._device.shutdown(wait=True)
        self._host.shutdown(wait=True)
