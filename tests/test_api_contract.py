"""The env API contract, checked for every registered game: compile once, jit+vmap shapes
and dtypes, determinism per key, wrappers, answer round trips and hostile answer text."""

from __future__ import annotations

import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgym
from jaxgym.core import INVALID_ACTION, UNPARSEABLE

GAMES = jaxgym.registered_names()
IMAGE = 112  # small frames keep the batch-1024 render checks quick


@pytest.fixture(scope="module", params=GAMES)
def env(request):
    return jaxgym.make(request.param, image_size=IMAGE)


def random_legal(key, mask):
    return jax.random.categorical(key, jnp.where(mask, 0.0, -1e9)).astype(jnp.int32)


@pytest.mark.slow
def test_reset_and_step_compile_once(env):
    # chex counts traces per source code: games sharing a class would share a counter.
    chex.clear_trace_counter()
    reset = jax.jit(chex.assert_max_traces(env.reset, n=1))
    step = jax.jit(chex.assert_max_traces(env.step, n=1))
    state = reset(jax.random.key(0))
    for i in range(4):
        state = reset(jax.random.key(i)) if state.terminated else state
        action = random_legal(jax.random.key(100 + i), state.legal_action_mask)
        state = step(state, action, jax.random.key(200 + i))
    state = step(state, jnp.int32(INVALID_ACTION), jax.random.key(9))  # invalid actions share the program
    assert not bool(state.last_action_legal)


@pytest.mark.parametrize("batch", [1, 1024])
@pytest.mark.slow
def test_jit_vmap_shapes_and_dtypes(env, batch):
    keys = jax.random.split(jax.random.key(1), batch)
    states = jax.jit(jax.vmap(env.reset))(keys)
    actions = jax.vmap(random_legal)(keys, states.legal_action_mask)
    states = jax.jit(jax.vmap(env.step))(states, actions, keys)
    chex.assert_shape(states.reward, (batch,))
    chex.assert_type(states.reward, jnp.float32)
    for flag in (states.terminated, states.truncated, states.last_action_legal):
        chex.assert_shape(flag, (batch,))
        chex.assert_type(flag, jnp.bool_)
    chex.assert_shape(states.legal_action_mask, (batch, env.num_actions))
    chex.assert_type(states.legal_action_mask, jnp.bool_)
    chex.assert_type(states.step_count, jnp.int32)
    chex.assert_type(states.score, jnp.int32)
    assert bool(jnp.all(states.step_count == 1))
    assert bool(jnp.all(states.last_action_legal)), "a legal action was not accepted"
    images = jax.jit(jax.vmap(env.render))(states)
    chex.assert_shape(images, (batch, IMAGE, IMAGE, 3))
    chex.assert_type(images, jnp.uint8)


@pytest.mark.slow
def test_same_key_same_result(env):
    def rollout(key):
        state = env.reset(key)
        for k in jax.random.split(key, 5):
            a_key, s_key = jax.random.split(k)
            state = env.step(state, random_legal(a_key, state.legal_action_mask), s_key)
        return state, env.render(state)

    run = jax.jit(rollout)
    first, second = run(jax.random.key(3)), run(jax.random.key(3))
    chex.assert_trees_all_equal(first, second)
    other = run(jax.random.key(4))
    assert not np.array_equal(first[0].board, other[0].board)


@pytest.mark.slow
def test_fresh_boards_are_never_terminal(env):
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(5), 512))
    assert not bool(jnp.any(states.terminated))
    assert bool(jnp.all(jnp.any(states.legal_action_mask, axis=-1)))


@pytest.mark.slow
def test_vmapped_render_equals_single_render(env):
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(6), 3))
    batch = jax.jit(jax.vmap(env.render))(states)
    for i in range(3):
        single = env.render(jax.tree_util.tree_map(lambda x, i=i: x[i], states))
        assert np.array_equal(batch[i], single)


@pytest.mark.slow
def test_time_limit_truncates_and_auto_reset_restarts(env):
    wrapped = jaxgym.AutoReset(jaxgym.TimeLimit(env, max_steps=3))
    step = jax.jit(wrapped.step)
    state = wrapped.reset(jax.random.key(7))
    seen_truncation = False
    for t in range(7):
        action = random_legal(jax.random.key(t), state.legal_action_mask)
        state = step(state, action, jax.random.key(50 + t))
        if bool(state.truncated):
            seen_truncation = True
            assert int(state.step_count) == 0, "auto-reset should hand back a fresh board"
    assert seen_truncation
    assert wrapped.id == env.id and wrapped.num_actions == env.num_actions


@pytest.mark.slow
def test_auto_reset_step_batch_equals_vmapped_step(env):
    # Half the boards start a step later, so some steps end no episode (the cond skips the
    # resets), some end a few, and every step must match the per-board select exactly.
    wrapped = jaxgym.AutoReset(jaxgym.TimeLimit(env, max_steps=4))
    states = jax.vmap(wrapped.reset)(jax.random.split(jax.random.key(3), 8))
    states = states.replace(step_count=jnp.repeat(jnp.array([0, 1], jnp.int32), 4))
    batch_step, vmapped_step = jax.jit(wrapped.step_batch), jax.jit(jax.vmap(wrapped.step))
    assert "cond" in str(
        jax.make_jaxpr(wrapped.step_batch)(states, jnp.zeros(8, jnp.int32), jax.random.split(jax.random.key(0), 8))
    )
    ended_per_step = []
    for t in range(6):
        keys = jax.random.split(jax.random.key(100 + t), 8)
        actions = jax.vmap(random_legal)(keys, states.legal_action_mask)
        expected, states = vmapped_step(states, actions, keys), batch_step(states, actions, keys)
        chex.assert_trees_all_equal(states, expected)
        ended_per_step.append(int(jnp.sum(states.terminated | states.truncated)))
    assert 0 in ended_per_step and any(0 < n < 8 for n in ended_per_step)


def test_format_answer_round_trips(env):
    rng = np.random.default_rng(0)
    for action in rng.choice(env.num_actions, size=min(64, env.num_actions), replace=False):
        assert env.parse_answer(env.format_answer(int(action))) == int(action)


def test_format_answer_of_the_invalid_action_is_a_well_formed_answer_that_parses_back(env):
    # The contract of Env.format_answer: INVALID_ACTION, which parsers return for an answer
    # naming no move, is written back as such an answer, never raised on nor made a real move.
    text = env.format_answer(INVALID_ACTION)
    assert text.startswith("<answer>") and text.endswith("</answer>"), text
    assert env.parse_answer(text) == INVALID_ACTION
    assert env.parse_answer(f"<think>no move</think>{text}") == INVALID_ACTION


HOSTILE = [
    "",
    None,
    12,
    b"<answer>1</answer>",
    "<answer>",
    "</answer><answer>",
    "<answer>\x00\x01</answer>",
    "<answer>🙂</answer>",
    "<answer>" + "9" * 100_000 + "</answer>",
    "<answer>" * 100_000,
    "<answer>(" + "1," * 200_000 + ")</answer>",
    "x" * 1_000_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.slow
def test_hostile_answers_parse_quickly_to_a_defined_outcome(env, text):
    t0 = time.perf_counter()
    result = env.parse_answer(text)
    assert time.perf_counter() - t0 < 1.0
    assert result == UNPARSEABLE or isinstance(result, int)
    if isinstance(result, int) and not 0 <= result < env.num_actions:
        state = env.reset(jax.random.key(0))
        out = env.step(state, result, jax.random.key(1))
        assert not bool(out.last_action_legal)
        chex.assert_trees_all_equal(out.board, state.board)


@pytest.mark.slow
def test_prompt_and_describe_are_text(env):
    prompt = env.prompt()
    assert isinstance(prompt, str) and "<answer>" in prompt and "<perception>" in prompt
    state = env.reset(jax.random.key(0))
    text = env.describe(state)
    assert isinstance(text, str) and text and text == text.strip("\n")
    if env.name != "breakout":  # the grid games' texts are one line per board row; Breakout's four facts
        assert text.count("\n") == np.asarray(state.board).shape[0] - 1


@pytest.mark.slow
@pytest.mark.parametrize("game", GAMES)
def test_a_brief_prompt_names_the_game_in_one_line_and_changes_nothing_else(game):
    full, brief = jaxgym.make(game, image_size=IMAGE), jaxgym.make(game, image_size=IMAGE, prompt="brief")
    assert full.prompt_style == "game" and brief.prompt_style == "brief"
    assert "\n" not in brief.prompt() and game in brief.prompt()
    assert len(brief.prompt()) < len(full.prompt()) / 5
    assert jaxgym.make(game, image_size=IMAGE, prompt="game").prompt() == full.prompt()
    state = brief.reset(jax.random.key(0))
    chex.assert_trees_all_equal(state, full.reset(jax.random.key(0)))
    assert brief.describe(state) == full.describe(state)
    assert np.array_equal(np.asarray(brief.render(state)), np.asarray(full.render(state)))


def test_an_unknown_prompt_style_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"prompt='short' is unknown .*allowed: game, brief"):
        jaxgym.make("2048", prompt="short")


@pytest.mark.slow
def test_make_vec_gymnasium_adapter(env):
    venv = jaxgym.make_vec(env.name, 4, max_steps=2, image_size=IMAGE)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, IMAGE, IMAGE, 3) and obs.dtype == np.uint8
    assert venv.observation_space.contains(obs)
    assert info["legal_action_mask"].shape == (4, env.num_actions)
    obs2, _ = venv.reset(seed=0)
    assert np.array_equal(obs, obs2), "same seed, same boards"
    actions = np.array([np.flatnonzero(m)[0] for m in info["legal_action_mask"]])
    obs, reward, terminated, truncated, info = venv.step(actions)
    assert reward.dtype == np.float32 and terminated.dtype == np.bool_
    actions = np.array([np.flatnonzero(m)[0] if m.any() else 0 for m in info["legal_action_mask"]])
    obs, reward, terminated, truncated, info = venv.step(actions)
    assert np.all(terminated | truncated), "max_steps=2 ends every episode at the second step"
    assert info["_final_obs"].all() and info["final_obs"].shape == obs.shape
    assert not np.asarray(venv._state.step_count).any(), "every ended episode restarts on a fresh board"
    with pytest.raises(ValueError, match="actions must be"):
        venv.step(np.zeros(3, np.int64))
