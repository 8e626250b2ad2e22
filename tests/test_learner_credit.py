"""Multi-turn credit (discounted returns, ``episode`` and ``step`` advantages) on hand-made
trajectories, against numbers computed by hand (with ``statistics``, not the code under test)."""

from __future__ import annotations

import statistics

import pytest
import torch

from learner import algorithms as alg

GAMMA = 0.9
EPS = 1e-6
# Two start states, three episodes each, up to three turns. Start 0: episode 0 plays three
# turns, episode 1 two (its padded third reward, 5, must be ignored), episode 2 one.
REWARDS = torch.tensor([
    [[1.0, 0.0, 2.0], [0.0, 1.0, 5.0], [1.0, 1.0, 1.0]],
    [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
])
MASK = torch.tensor([
    [[1, 1, 1], [1, 1, 0], [1, 0, 0]],
    [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
])
# Step groups: every turn 0 saw its start state (id 0 in both starts: ids are local to the
# start state, so start 1's id 0 must not mix with start 0's); in start 0, episodes 0 and 1
# reached the same state at turn 1; every other turn is alone in its group. -1 is padding.
STEP_GROUPS = torch.tensor([
    [[0, 1, 2], [0, 1, -1], [0, -1, -1]],
    [[0, 1, 2], [0, 3, 4], [0, 5, 6]],
])
# By hand, R_t = r_t + 0.9 R_{t+1}: start 0: episode 0: R2 = 2, R1 = 1.8, R0 = 1 + 1.62 = 2.62;
# episode 1: R1 = 1, R0 = 0.9; episode 2: R0 = 1. Start 1: episode 1: R0 = 3, the rest 0.
RETURNS = torch.tensor([
    [[2.62, 1.8, 2.0], [0.9, 1.0, 0.0], [1.0, 0.0, 0.0]],
    [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
])


def standardized(values: list[float]) -> list[float]:
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return [(v - mean) / (std + EPS) for v in values]


def test_discounted_returns_by_hand():
    torch.testing.assert_close(alg.discounted_returns(REWARDS, MASK, GAMMA), RETURNS)
    # gamma 1: suffix sums of the played rewards; gamma 0: the rewards themselves.
    torch.testing.assert_close(alg.discounted_returns(REWARDS, MASK, 1.0)[0],
                               torch.tensor([[3.0, 2.0, 2.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(alg.discounted_returns(REWARDS, MASK, 0.0), REWARDS * MASK)


def test_episode_advantages_by_hand():
    advantages = alg.episode_advantages(RETURNS, MASK)
    start0 = standardized([2.62, 0.9, 1.0])
    expected = torch.tensor([
        [[start0[0]] * 3, [start0[1]] * 2 + [0.0], [start0[2], 0.0, 0.0]],
        [[v] * 3 for v in standardized([0.0, 3.0, 0.0])],
    ])
    torch.testing.assert_close(advantages, expected)


def test_step_advantages_by_hand():
    advantages = alg.step_advantages(RETURNS, STEP_GROUPS, MASK)
    turn0_start0 = standardized([2.62, 0.9, 1.0])
    turn1_start0 = standardized([1.8, 1.0])  # +-0.4 / sqrt(0.32)
    turn0_start1 = standardized([0.0, 3.0, 0.0])
    expected = torch.tensor([
        [[turn0_start0[0], turn1_start0[0], 0.0], [turn0_start0[1], turn1_start0[1], 0.0], [turn0_start0[2], 0, 0]],
        [[turn0_start1[0], 0.0, 0.0], [turn0_start1[1], 0.0, 0.0], [turn0_start1[2], 0.0, 0.0]],
    ])
    torch.testing.assert_close(advantages, expected)
    assert turn1_start0[0] == pytest.approx(0.4 / 0.32**0.5, rel=1e-5)


def test_step_credit_is_episode_plus_weighted_step():
    episode = alg.episode_advantages(RETURNS, MASK)
    step = alg.step_advantages(RETURNS, STEP_GROUPS, MASK)
    for weight in (0.0, 0.5, 1.0):
        combined = alg.step_credit_advantages(RETURNS, STEP_GROUPS, MASK, step_weight=weight)
        torch.testing.assert_close(combined, episode + weight * step)
    # A singleton step group adds nothing: start 0, episode 0, turn 2 keeps the episode advantage.
    combined = alg.step_credit_advantages(RETURNS, STEP_GROUPS, MASK)
    assert combined[0, 0, 2].item() == pytest.approx(standardized([2.62, 0.9, 1.0])[0])


def test_one_turn_is_the_bandit():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 2.0]])[..., None]
    mask = torch.ones_like(rewards)
    returns = alg.discounted_returns(rewards, mask, GAMMA)
    bandit = alg.group_advantages(rewards[..., 0])[..., None]
    torch.testing.assert_close(alg.episode_advantages(returns, mask), bandit)
    # With one turn, every step group is the start state's group: the step term equals it.
    ids = torch.zeros_like(rewards, dtype=torch.long)
    torch.testing.assert_close(alg.step_credit_advantages(returns, ids, mask, step_weight=1.0), 2 * bandit)


def test_std_options_follow_group_advantages():
    advantages = alg.step_advantages(RETURNS, STEP_GROUPS, MASK, std_normalize=False)
    assert advantages[0, 0, 1].item() == pytest.approx(0.4)
    biased = alg.step_advantages(RETURNS, STEP_GROUPS, MASK, unbiased=False)
    assert biased[0, 0, 1].item() == pytest.approx(0.4 / (0.4 + EPS))


def test_step_group_coverage():
    # 15 played turns; shared groups: start 0's turn-0 trio and turn-1 pair, start 1's turn-0 trio.
    assert alg.step_group_coverage(STEP_GROUPS, MASK) == pytest.approx((5 + 3) / 15)
    assert alg.step_group_coverage(STEP_GROUPS, torch.zeros_like(MASK)) == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="gamma=1.5"):
        alg.discounted_returns(REWARDS, MASK, 1.5)
    with pytest.raises(ValueError, match="prefix"):
        alg.discounted_returns(REWARDS, torch.tensor([[[1, 0, 1]] * 3] * 2), GAMMA)
    with pytest.raises(ValueError, match="shape"):
        alg.discounted_returns(REWARDS, MASK[..., :2], GAMMA)
    with pytest.raises(ValueError, match=">= 0 on every played turn"):
        alg.step_advantages(RETURNS, torch.full_like(STEP_GROUPS, -1), MASK)
    with pytest.raises(ValueError, match="step_weight=-1"):
        alg.step_credit_advantages(RETURNS, STEP_GROUPS, MASK, step_weight=-1)
    with pytest.raises(ValueError, match="groups, group_size, turns"):
        alg.episode_advantages(RETURNS[0], MASK[0])
