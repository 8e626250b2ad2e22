"""Group scoring: B states x n responses -> reward components, checked against env.step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bridges.protocol import protocol_for
from bridges.sampler import StateSampler
from bridges.scoring import GroupScorer, format_ok, perception_ok, unbatch
from jaxgym import INVALID_ACTION
from tests.bridges_support import GAMES, leaves_equal, small_env

B, N = 16, 5  # the sampler tests draw the same batch: one compile per game


@pytest.fixture(scope="module", params=GAMES)
def batch(request):
    env = small_env(request.param)
    states, _ = StateSampler(env, mode="legal", depth=4, seed=11).sample(B)
    return env, states


def full_response(env, state, action: int, perception: str | None = None) -> str:
    truth = env.describe(state) if perception is None else perception
    return f"<perception>\n{truth}\n</perception>\n<think>try it</think>\n{env.format_answer(action)}"


def mixed_responses(env, states, rng):
    """Per state: a legal action, an illegal or random one, an unparseable text, a bare
    answer without the other tags, and a response whose perception describes another board."""
    responses, expected_actions = [], []
    for b in range(B):
        state = unbatch(states, b)
        legal = np.flatnonzero(np.asarray(state.legal_action_mask))
        illegal = np.flatnonzero(~np.asarray(state.legal_action_mask))
        a_legal = int(rng.choice(legal))
        a_other = int(rng.choice(illegal)) if len(illegal) else int(rng.integers(env.num_actions))
        a_bare = int(rng.integers(env.num_actions))
        other_board = env.describe(unbatch(states, (b + 1) % B))
        group = [
            full_response(env, state, a_legal),
            full_response(env, state, a_other),
            "<perception>x</perception><think>no answer here</think>",
            env.format_answer(a_bare),
            full_response(env, state, a_legal, perception=other_board),
        ]
        responses.append(group)
        expected_actions.append([a_legal, a_other, INVALID_ACTION, a_bare, a_legal])
    return responses, np.array(expected_actions, np.int32)


@pytest.mark.slow
def test_rewards_equal_per_state_env_step(batch):
    env, states = batch
    before = jax.device_get(states)
    responses, expected_actions = mixed_responses(env, states, np.random.default_rng(0))
    key = jax.random.key(3)
    scores = GroupScorer(env).score(states, responses, key)

    np.testing.assert_array_equal(scores.actions, expected_actions)
    np.testing.assert_array_equal(scores.parsed, expected_actions != INVALID_ACTION)
    np.testing.assert_array_equal(scores.format, np.tile([1, 1, 0, 0, 1], (B, 1)))
    step = jax.jit(env.step)
    keys = jax.random.split(key, B)
    for b in range(B):
        for i in range(N):
            oracle = step(unbatch(states, b), jnp.int32(expected_actions[b, i]), keys[b])
            assert scores.raw_reward[b, i] == float(oracle.reward)
            assert scores.legal[b, i] == bool(oracle.last_action_legal)
            assert leaves_equal(unbatch(unbatch(scores.next_states, b), i), oracle)
    # The legal action is legal, the unparseable one took the invalid-move outcome.
    assert scores.legal[:, 0].all() and not scores.legal[:, 2].any()
    # Perception: exact ground truth accepted (with surrounding whitespace), other boards rejected.
    truths = [env.describe(unbatch(states, b)) for b in range(B)]
    truths_differ = np.array([truths[b] != truths[(b + 1) % B] for b in range(B)])
    np.testing.assert_array_equal(scores.perception[:, 0], 1)
    np.testing.assert_array_equal(scores.perception[:, 4], ~truths_differ)
    # The game's protocol: its weights and shaping (sign for the paper's games).
    protocol = protocol_for(env)
    np.testing.assert_array_equal(scores.game, np.asarray(protocol.shape_reward(scores.raw_reward, scores.legal)))
    expected = scores.game + protocol.w_format * scores.format + protocol.w_perception * scores.perception
    np.testing.assert_allclose(scores.overall, expected, rtol=0, atol=1e-6)
    # The input states are unchanged.
    assert leaves_equal(before, states)


@pytest.mark.slow
def test_the_same_action_n_times_gives_n_identical_outcomes(batch):
    env, states = batch
    rng = np.random.default_rng(1)
    responses = []
    for b in range(B):
        action = int(rng.choice(np.flatnonzero(np.asarray(states.legal_action_mask[b]))))
        responses.append([full_response(env, unbatch(states, b), action)] * N)
    scores = GroupScorer(env).score(states, responses, jax.random.key(0))
    for name in ("actions", "raw_reward", "game", "format", "perception", "overall", "legal"):
        values = getattr(scores, name)
        assert values.shape == (B, N)
        assert (values == values[:, :1]).all(), name
    for leaf in jax.tree_util.tree_leaves(scores.next_states):
        leaf = np.asarray(leaf)
        assert leaf.shape[:2] == (B, N)
        assert (leaf == leaf[:, :1]).all()


def log_bonus(raw, legal):
    return jnp.where(legal, jnp.log1p(jnp.maximum(raw, 0.0)), -2.0)


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_weights_are_applied(batch):
    env, states = batch
    responses, _ = mixed_responses(env, states, np.random.default_rng(2))
    s = GroupScorer(env, w_format=0.5, w_perception=2.0, w_game=3.0).score(states, responses, jax.random.key(4))
    # The game's own shaping (sign for the paper's games; Breakout and Sokoban raw, Tetris legal).
    game = np.asarray(protocol_for(env).shape_reward(s.raw_reward, s.legal))
    if protocol_for(env).shaping == "sign":
        np.testing.assert_array_equal(game, np.where(s.raw_reward > 0, 1.0, -1.0))
    np.testing.assert_array_equal(s.game, game)
    np.testing.assert_allclose(s.overall, 3.0 * game + 0.5 * s.format + 2.0 * s.perception, rtol=1e-6)
    assert s.format.any() and s.perception.any() and (~s.legal).any()


@pytest.mark.slow
def test_custom_shaping_is_applied():
    env = small_env("2048")
    states, _ = StateSampler(env, mode="legal", depth=4, seed=11).sample(B)
    responses, _ = mixed_responses(env, states, np.random.default_rng(2))
    s = GroupScorer(env, w_format=0.5, w_perception=2.0, w_game=3.0, shaping=log_bonus).score(
        states, responses, jax.random.key(4)
    )
    game = np.where(s.legal, np.log1p(np.maximum(s.raw_reward, 0.0)), -2.0)
    np.testing.assert_allclose(s.game, game, rtol=1e-6)
    np.testing.assert_allclose(s.overall, 3.0 * game + 0.5 * s.format + 2.0 * s.perception, rtol=1e-6)
    assert s.format.any() and s.perception.any() and (~s.legal).any()


@pytest.mark.parametrize(
    "shaping, expected",
    [
        ("sign", [-1, -1, 1, -1, 1, -1]),
        ("raw", [-1, 0, 4, 0, 1, -1]),
        ("legal", [-1, 1, 1, -1, 1, 1]),
    ],
)
def test_named_shapings(shaping, expected):
    protocol = protocol_for("2048").replace(shaping=shaping)
    raw = jnp.array([-1.0, 0.0, 4.0, 0.0, 1.0, -1.0])
    legal = jnp.array([False, True, True, False, True, True])
    np.testing.assert_array_equal(np.asarray(protocol.shape_reward(raw, legal)), expected)


# Two games in the fast tier; the others compile their samplers for seconds each (the full tier).
@pytest.mark.parametrize("game_id", [g if g in ("2048-v0", "shisensho-v0") else pytest.param(g, marks=pytest.mark.slow)
                                     for g in GAMES])
def test_perception_check_accepts_only_the_exact_board(game_id):
    env = small_env(game_id)
    states, _ = StateSampler(env, mode="legal", depth=4, seed=12).sample(B)
    truth = env.describe(unbatch(states, 0))
    for padded in (truth, f"  {truth}  ", f"\n\n{truth}\n", f"\t{truth}\r\n"):
        assert perception_ok(f"<perception>{padded}</perception><answer>0</answer>", truth)
    others = {env.describe(unbatch(states, b)) for b in range(1, B)} - {truth}
    assert others, "the sampled boards should not all be the same"
    mutations = {
        truth.rstrip()[:-1],                # the last cell cut short
        truth + "\n" + truth.split("\n")[0],  # an extra row
        truth.replace("\n", " ", 1),        # two rows joined
        truth.upper() if truth.upper() != truth else truth + "x",
    }
    for wrong in others | mutations:
        assert wrong.strip() != truth.strip()
        assert not perception_ok(f"<perception>{wrong}</perception>", truth)
    assert not perception_ok("no block", truth)
    assert not perception_ok(None, truth)


@pytest.mark.parametrize(
    "text, ok",
    [
        ("<perception>a</perception><think>b</think><answer>1</answer>", True),
        ("<ANSWER>1</ANSWER><Think>b</Think><perception>a</perception>", True),
        ("<perception>a</perception><think>b</think><answer>1", False),
        ("<perception></perception><think></think><answer></answer>", True),
        ("</perception><perception><think>b</think><answer>1</answer>", False),
        ("", False),
    ],
)
def test_format_component(text, ok):
    assert format_ok(text) is ok


@pytest.mark.slow
def test_bad_response_shapes_raise(batch):
    env, states = batch
    scorer = GroupScorer(env)
    with pytest.raises(ValueError, match="one per state"):
        scorer.score(states, [["a"]] * (B - 1), jax.random.key(0))
    with pytest.raises(ValueError, match="same number"):
        scorer.score(states, [["a"]] * (B - 1) + [["a", "b"]], jax.random.key(0))
    with pytest.raises(ValueError, match="same number"):
        scorer.score(states, ["a"] * B, jax.random.key(0))
    with pytest.raises(ValueError, match="unknown protocol field"):
        GroupScorer(env, w_fromat=1.0)
    with pytest.raises(ValueError, match="shaping"):
        GroupScorer(env, shaping="square")
