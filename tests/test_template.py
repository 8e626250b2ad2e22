"""The game template (jaxgym/core.py, registry, parsing, protocol), checked for every
registered game: the penalised no-op, the describe batch guard, renderers found through
their registration, protocols registered with their games, one answer format."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgym
from bridges import scoring
from bridges.protocol import GENERIC, known_games, protocol_for
from jaxgym import parsing, registry
from jaxgym.core import INVALID_ACTION

GAMES = jaxgym.registered_names()


@pytest.fixture(scope="module", params=GAMES)
def env(request):
    return jaxgym.make(request.param, image_size=112)


def assert_penalised_noop(env, state, after, action) -> None:
    """``after`` is ``state`` stepped by the no-op: one more step, not legal, the invalid
    reward, and every other field but ``truncated`` (when the game has a step limit) as it was."""
    assert int(after.step_count) == int(state.step_count) + 1
    assert not bool(after.last_action_legal)
    assert float(after.reward) == env.invalid_action_reward
    changed = {"step_count", "last_action_legal", "reward"} | ({"truncated"} if env.step_limit else set())
    for field in type(state).__dataclass_fields__:
        if field not in changed:
            np.testing.assert_array_equal(getattr(after, field), getattr(state, field),
                                          err_msg=f"{field} after action {action}")


@pytest.mark.slow  # a compile per game (2-12 s each)
def test_out_of_range_actions_are_the_penalised_noop(env):
    state = env.reset(jax.random.key(0))
    for action in (INVALID_ACTION, env.num_actions, np.iinfo(np.int32).max, np.int64(2**40)):
        assert_penalised_noop(env, state, env.step(state, action, jax.random.key(1)), action)


@pytest.mark.slow  # a compile per game (2-12 s each)
def test_illegal_moves_are_the_penalised_noop(env):
    """In-range moves the legal mask rules out change nothing but the template's fields,
    whether ``Env.step`` selects the old value back or the game's ``_step`` claims
    (``unchanged_when_illegal``) that it returns it unchanged."""
    step = jax.jit(env.step)
    state, key, checked = env.reset(jax.random.key(3)), jax.random.key(4), 0
    for _ in range(6):
        illegal = np.flatnonzero(~np.asarray(state.legal_action_mask))
        for action in np.random.default_rng(checked).permutation(illegal)[:8]:
            assert_penalised_noop(env, state, step(state, jnp.int32(action), key), action)
            checked += 1
        legal = np.flatnonzero(np.asarray(state.legal_action_mask))
        if legal.size == 0 or bool(state.terminated):
            break
        key, sub = jax.random.split(key)
        state = step(state, jnp.int32(legal[len(legal) // 2]), sub)
    if env.unchanged_when_illegal:
        assert checked > 0, "no illegal move was found to check the game's unchanged_when_illegal claim on"


@pytest.mark.slow  # a compile per game (2-12 s each)
def test_describe_refuses_a_batch(env):
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="one state"):
        env.describe(states)
    assert env.describe(jax.tree.map(lambda x: x[0], states))


def test_every_paper_game_registers_its_protocol():
    assert {"2048", "shisensho", "shisensho-images", "swap"} <= set(known_games())
    assert protocol_for("shisensho").w_perception == 0.0 and protocol_for("shisensho-images").w_perception == 1.0
    assert protocol_for("swap").sample_depth == 0 and protocol_for("shisensho").sample_depth == 250
    wrapped = jaxgym.TimeLimit(jaxgym.make("2048"), max_steps=5)
    assert protocol_for(wrapped) is protocol_for("2048-v0")
    assert protocol_for("no-such-game") is GENERIC


@pytest.mark.slow  # a reset compile per game (2-4 s each)
def test_prompts_and_scorer_share_one_answer_format(env):
    assert scoring.FORMAT_TAGS == parsing.FORMAT_TAGS
    prompt = env.prompt()
    for tag in parsing.FORMAT_TAGS:
        assert f"<{tag}></{tag}>" in prompt
    state = env.reset(jax.random.key(2))
    action = int(jnp.argmax(state.legal_action_mask))
    answer = env.format_answer(action)
    assert parsing.answer_block(answer) is not None and env.parse_answer(answer) == action


def test_check_board_names_the_offending_value():
    with pytest.raises(ValueError, match=r"shape \(2, 2\), got \(3,\)"):
        jaxgym.core.check_board(np.zeros(3), (2, 2), 0, 1, what="kinds")
    with pytest.raises(ValueError, match="integer kinds, got dtype float64"):
        jaxgym.core.check_board(np.full((2, 2), 0.5), (2, 2), 0, 1, what="kinds")
    with pytest.raises(ValueError, match="integer kinds"):
        jaxgym.core.check_board(np.zeros((2, 2)), (2, 2), 0, 1, what="kinds", whole_floats=False)
    assert jaxgym.core.check_board(np.ones((2, 2)), (2, 2), 0, 1, what="kinds").shape == (2, 2)
    seen = []
    jax.jit(lambda b: seen.append(jaxgym.core.check_board(b, (2, 2), 0, 1, what="kinds")) or b)(np.zeros(3))
    assert seen == [None]  # a traced board passes unchecked


def test_a_game_without_a_renderer_says_how_to_register_one():
    class Bare(jaxgym.Game2048):
        pass

    assert registry.renderer_factory(Bare()) is registry.renderer_factory(jaxgym.make("2048"))

    class Unrendered(jaxgym.Game2048):
        name = "unrendered"

        def _make_renderer(self):
            return registry.renderer_factory(self)(self)

    # A subclass inherits its base game's renderer; only a game with no registered ancestor fails.
    assert Unrendered().render(Unrendered().reset(jax.random.key(0))).shape == (448, 448, 3)
    with pytest.raises(ValueError, match="register_renderer"):
        registry.renderer_factory(object())
