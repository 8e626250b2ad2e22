"""bridges.serve.engine: the batching engine behind the OpenEnv server (needs only JAX)."""

from __future__ import annotations

import asyncio
import io

import jax
import numpy as np
import pytest
from PIL import Image

import jaxgym
from bridges.scoring import GroupScorer
from bridges.serve.engine import BatchEngine, SessionError, bucket_sizes
from jaxgym.core import INVALID_ACTION

GAME = dict(size=4, colors=4, shapes=2, copies=2, image_size=128)  # a small Shisen-Sho: fast compiles


@pytest.fixture(scope="module")
def engine():
    engine = BatchEngine(jaxgym.make("shisensho", **GAME), max_sessions=8, window_ms=50.0, buckets=(1, 8))
    yield engine
    engine.close()


def run(coro):
    return asyncio.run(coro)


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_bucket_sizes_cover_max_sessions_with_a_fixed_set():
    assert bucket_sizes(1024) == (1, 4, 16, 64, 256, 1024)
    assert bucket_sizes(5) == (1, 4, 16)
    with pytest.raises(ValueError, match="buckets"):
        bucket_sizes(4, ())


@pytest.mark.slow  # compiles the batched reset/step/render
def test_same_seed_gives_the_board_of_env_reset(engine):
    env = engine.env

    async def go():
        slots = [engine.allocate() for _ in range(3)]
        observed = await asyncio.gather(*(engine.reset(s, seed=seed) for s, seed in zip(slots, (7, 7, 123))))
        for s in slots:
            engine.release(s)
        return observed

    a, b, c = run(go())
    want = env.reset(jax.random.key(7))
    np.testing.assert_array_equal(png_pixels(a.image_png), np.asarray(env.render(want)))
    assert a.perception == env.describe(want) == b.perception
    assert a.legal_actions == np.flatnonzero(np.asarray(want.legal_action_mask)).tolist()
    assert c.perception == env.describe(env.reset(jax.random.key(123)))


@pytest.mark.slow  # compiles the batched reset/step/render
def test_concurrent_steps_run_as_one_device_call_and_score_like_bridges_scoring(engine):
    env = engine.env
    seeds = list(range(5))

    async def go():
        slots = [engine.allocate() for _ in seeds]
        firsts = await asyncio.gather(*(engine.reset(s, seed=seed) for s, seed in zip(slots, seeds)))
        before = engine.batches_run
        responses = [f"<perception>{f.perception}</perception><think>t</think>{env.format_answer(f.legal_actions[0])}"
                     for f in firsts]
        responses[1] = "no answer here"
        afters = await asyncio.gather(*(engine.step(s, answer=r) for s, r in zip(slots, responses)))
        calls = engine.batches_run - before
        for s in slots:
            engine.release(s)
        return responses, afters, calls

    responses, afters, calls = run(go())
    assert calls == 1  # five sessions' steps met in one vmapped call
    states = jax.vmap(env.reset)(jax.vmap(jax.random.key)(np.asarray(seeds, np.int32)))
    want = GroupScorer(env).score(states, [[r] for r in responses], jax.random.key(0))
    for i, after in enumerate(afters):
        for name in ("game", "format", "perception", "overall", "raw_reward"):
            assert after.components[name] == pytest.approx(float(getattr(want, name)[i, 0])), (i, name)
        assert after.reward == pytest.approx(float(want.overall[i, 0]))
    assert afters[1].components["parsed"] is False and afters[1].components["action"] == INVALID_ACTION
    assert afters[1].components["legal"] is False and afters[1].step_count == 1
    assert afters[0].components["legal"] is True and afters[0].perception != afters[1].perception


@pytest.mark.slow  # compiles the batched reset/step/render
def test_action_ids_step_the_game_and_no_new_shapes_compile(engine):
    env = engine.env

    async def go():
        slot = engine.allocate()
        first = await engine.reset(slot, seed=3)
        after = await engine.step(slot, action_id=first.legal_actions[0])
        engine.release(slot)
        return first, after

    first, after = run(go())
    want = env.step(env.reset(jax.random.key(3)), first.legal_actions[0], jax.random.key(0))
    assert after.perception == env.describe(want) and after.components["format"] is None
    assert after.reward == pytest.approx(float(want.reward > 0) * 2 - 1)  # Shisen-Sho's sign shaping
    assert engine._step_fn._cache_size() <= len(engine.buckets)
    assert engine._reset_fn._cache_size() <= len(engine.buckets)


@pytest.mark.slow  # compiles the batched reset/step/render
def test_serial_mode_runs_every_request_alone():
    serial = BatchEngine(jaxgym.make("shisensho", **GAME), max_sessions=4, serial=True)

    async def go():
        slots = [serial.allocate() for _ in range(4)]
        await asyncio.gather(*(serial.reset(s, seed=s) for s in slots))
        return serial.batches_run

    try:
        assert run(go()) == 4
    finally:
        serial.close()


@pytest.mark.slow  # compiles the batched reset/step/render
def test_bad_requests_are_session_errors_and_slots_come_back(engine):
    async def go():
        slots = [engine.allocate() for _ in range(engine.max_sessions)]
        with pytest.raises(SessionError, match="capacity"):
            engine.allocate()
        with pytest.raises(SessionError, match="send reset first"):
            await engine.step(slots[0], answer="<answer>1 1 1 2</answer>")
        with pytest.raises(SessionError, match="seed"):
            await engine.reset(slots[0], seed=-1)
        for s in slots:
            engine.release(s)
        engine.release(slots[0])  # twice is harmless
        with pytest.raises(SessionError, match="restart"):
            await engine.step(slots[0], answer="x")

    run(go())
    assert engine.free_slots == engine.max_sessions and engine.active_sessions == 0
