"""GRPO algorithm functions against hand-computed values, and split invariance."""

from __future__ import annotations

import math

import pytest
import torch

from learner import algorithms as alg


def test_group_advantages_hand_computed():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 2.0]])
    # Group 0: mean 0.5, unbiased std sqrt(1/3); group 1: mean 2, unbiased std sqrt(2/3).
    expected = torch.tensor([
        [0.5, -0.5, -0.5, 0.5],
        [-1.0, 0.0, 1.0, 0.0],
    ]) / torch.tensor([[math.sqrt(1 / 3) + 1e-6], [math.sqrt(2 / 3) + 1e-6]])
    torch.testing.assert_close(alg.group_advantages(rewards), expected)
    # Biased std: 0.5 and sqrt(1/2).
    biased = torch.tensor([[0.5, -0.5, -0.5, 0.5], [-1.0, 0.0, 1.0, 0.0]]) / torch.tensor(
        [[0.5 + 1e-6], [math.sqrt(0.5) + 1e-6]])
    torch.testing.assert_close(alg.group_advantages(rewards, unbiased=False), biased)
    # No std normalisation: the mean baseline only.
    torch.testing.assert_close(alg.group_advantages(rewards, std_normalize=False),
                               torch.tensor([[0.5, -0.5, -0.5, 0.5], [-1.0, 0.0, 1.0, 0.0]]))
    # A larger eps shrinks the advantages: 0.5 / (sqrt(1/3) + 0.5).
    assert alg.group_advantages(rewards, eps=0.5)[0, 0].item() == pytest.approx(0.5 / (math.sqrt(1 / 3) + 0.5))


def test_zero_variance_and_singleton_groups_get_exactly_zero():
    # 0.1 three times: r - mean is a rounding error, not an advantage.
    rewards = torch.tensor([[0.1, 0.1, 0.1], [-1.0, -1.0, -1.0], [0.0, 1.0, 1.0]])
    adv = alg.group_advantages(rewards)
    assert torch.equal(adv[:2], torch.zeros(2, 3))
    assert adv[2].abs().min() > 0
    assert alg.zero_variance_groups(rewards).tolist() == [True, True, False]
    single = torch.tensor([[3.0], [-2.0]])
    assert torch.equal(alg.group_advantages(single), torch.zeros(2, 1))
    assert torch.equal(alg.group_advantages(single, std_normalize=False), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="groups, group_size"):
        alg.group_advantages(torch.zeros(4))


def _loss_and_grad(ratio: float, advantage: float, **kw) -> tuple[float, float, dict]:
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, info = alg.policy_loss(logp, torch.zeros(1, 1), torch.tensor([advantage]), **kw)
    loss.sum().backward()
    return loss.item(), logp.grad.item(), {k: v.item() for k, v in info.items()}


def test_clipping_at_both_bounds():
    # A > 0, ratio above 1 + clip_high: loss -A * 1.2, no gradient.
    loss, grad, info = _loss_and_grad(1.5, 2.0)
    assert loss == pytest.approx(-2.4) and grad == 0.0 and info["clipped_high"] == 1.0
    # A > 0, ratio below 1 - clip_low: the unclipped term is the max, gradient flows.
    loss, grad, info = _loss_and_grad(0.5, 2.0)
    assert loss == pytest.approx(-1.0) and grad == pytest.approx(-2.0 * 0.5) and info["clipped_low"] == 0.0
    # A < 0, ratio below 1 - clip_low: loss -A * 0.8, no gradient.
    loss, grad, info = _loss_and_grad(0.5, -1.0)
    assert loss == pytest.approx(0.8) and grad == 0.0 and info["clipped_low"] == 1.0
    # A < 0, ratio above 1 + clip_high: unclipped (pessimistic) term, gradient flows.
    loss, grad, info = _loss_and_grad(1.5, -1.0)
    assert loss == pytest.approx(1.5) and grad == pytest.approx(1.5) and info["clipped_high"] == 0.0
    # Inside the trust region: -A r with gradient -A r.
    loss, grad, info = _loss_and_grad(1.1, 1.0)
    assert loss == pytest.approx(-1.1) and grad == pytest.approx(-1.1)
    assert info["clipped_low"] == info["clipped_high"] == info["dual_clipped"] == 0.0


def test_separate_low_and_high_clip_and_dual_clip():
    # clip-higher: 1.25 is inside [0.8, 1.28] ...
    loss, grad, info = _loss_and_grad(1.25, 1.0, clip_low=0.2, clip_high=0.28)
    assert loss == pytest.approx(-1.25) and grad != 0.0 and info["clipped_high"] == 0.0
    # ... 1.3 is clipped at 1.28, and the lower bound stays 0.8.
    loss, grad, info = _loss_and_grad(1.3, 1.0, clip_low=0.2, clip_high=0.28)
    assert loss == pytest.approx(-1.28) and grad == 0.0 and info["clipped_high"] == 1.0
    loss, _, info = _loss_and_grad(0.7, -1.0, clip_low=0.2, clip_high=0.28)
    assert loss == pytest.approx(0.8) and info["clipped_low"] == 1.0
    # Dual clip c = 3: a negative advantage with ratio 5 costs at most 3|A|, no gradient.
    loss, grad, info = _loss_and_grad(5.0, -2.0, dual_clip=3.0)
    assert loss == pytest.approx(6.0) and grad == 0.0 and info["dual_clipped"] == 1.0
    # Below c it is the ordinary pessimistic term; positive advantages are never dual-clipped.
    loss, grad, info = _loss_and_grad(2.0, -2.0, dual_clip=3.0)
    assert loss == pytest.approx(4.0) and grad == pytest.approx(4.0) and info["dual_clipped"] == 0.0
    loss, _, info = _loss_and_grad(5.0, 2.0, dual_clip=3.0)
    assert loss == pytest.approx(-2.4) and info["dual_clipped"] == 0.0
    with pytest.raises(ValueError, match="dual_clip=0.5"):
        _loss_and_grad(1.0, 1.0, dual_clip=0.5)


def test_kl_estimators():
    logp = torch.tensor([0.0, -1.0, -20.0, -0.3])
    ref = torch.tensor([-1.0, -1.0, 0.0, -2.0])
    diff = logp - ref
    torch.testing.assert_close(alg.kl_estimate(logp, ref, "k1"), diff)
    torch.testing.assert_close(alg.kl_estimate(logp, ref, "k2"), 0.5 * diff**2)
    k3 = alg.kl_estimate(logp, ref, "k3")
    assert k3[0].item() == pytest.approx(math.exp(-1) + 1 - 1)
    assert k3[1].item() == 0.0
    assert k3[2].item() == 10.0  # exp(20) - 21 clamped
    assert k3[3].item() == pytest.approx(math.exp(-1.7) + 1.7 - 1, rel=1e-5)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(10_000, generator=gen) * 5, torch.randn(10_000, generator=gen) * 5
    assert (alg.kl_estimate(a, b, "k3") >= 0).all()
    with pytest.raises(ValueError, match="'k4'"):
        alg.kl_estimate(a, b, "k4")


def test_aggregation_modes_hand_computed():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    counts = mask.sum(-1)
    assert alg.loss_normalizer(counts, "token-mean") == 4.0
    assert alg.aggregate(values, mask, "token-mean", 4.0).item() == pytest.approx(10 / 4)
    assert alg.loss_normalizer(counts, "seq-mean-token-mean") == 2.0
    assert alg.aggregate(values, mask, "seq-mean-token-mean", 2.0).item() == pytest.approx((2.0 + 4.0) / 2)
    assert alg.loss_normalizer(counts, "token-mean", world_size=2) == 2.0
    with pytest.raises(ValueError, match="'mean'"):
        alg.loss_normalizer(counts, "mean")


def _random_batch(seed: int, rows: int = 7, width: int = 9):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (rows,), generator=gen)
    lengths[2] = 0  # a sequence with no loss-bearing token (e.g. a padding row)
    mask = (torch.arange(width)[None] < lengths[:, None]).float()
    logp = (-torch.rand(rows, width, generator=gen) * 3).requires_grad_(True)
    old = logp.detach() + torch.randn(rows, width, generator=gen) * 0.3  # ratios on both sides of the clip
    ref = logp.detach() + torch.randn(rows, width, generator=gen) * 0.5
    adv = torch.randn(rows, generator=gen)
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_loss_and_gradient_do_not_depend_on_the_split(mode):
    logp, old, ref, adv, mask = _random_batch(0)
    kw = dict(aggregation=mode, ref_logp=None, kl_coef=0.05, kl_estimator="k3", clip_low=0.2, clip_high=0.28)

    def loss_of(rows, normalizer):
        # Each micro-batch is trimmed to its own longest response, as the trainer collates it.
        width = max(int(mask[rows].sum(-1).max()), 1)
        return alg.grpo_loss(logp[rows, :width], old[rows, :width], adv[rows], mask[rows, :width],
                             normalizer=normalizer, **{**kw, "ref_logp": ref[rows, :width]})[0]

    every = list(range(7))
    whole = loss_of(every, alg.loss_normalizer(mask.sum(-1), mode))
    (whole_grad,) = torch.autograd.grad(whole, logp)

    # Micro-batches on one rank: the losses (and so the gradients) add up.
    normalizer = alg.loss_normalizer(mask.sum(-1), mode)
    parts = [loss_of(rows, normalizer) for rows in ([0, 1], [2, 3, 4], [5, 6])]
    micro = sum(parts)
    (micro_grad,) = torch.autograd.grad(micro, logp)
    torch.testing.assert_close(micro, whole)
    torch.testing.assert_close(micro_grad, whole_grad)

    # Two data-parallel ranks: each rank's normaliser comes from an all-reduce; gradients are averaged.
    ranks = ([0, 1, 2], [3, 4, 5, 6])
    local_counts = [mask[rows].sum(-1) for rows in ranks]

    def all_reduce_sum(_local, counts=local_counts):
        per_rank = [c.sum() if mode == "token-mean" else (c > 0).sum() for c in counts]
        return torch.stack(per_rank).sum().reshape(1).double()

    rank_grads, rank_losses = [], []
    for rows, counts in zip(ranks, local_counts, strict=True):
        norm = alg.loss_normalizer(counts, mode, world_size=2, all_reduce_sum=all_reduce_sum)
        loss = loss_of(rows, norm)
        rank_losses.append(loss)
        rank_grads.append(torch.autograd.grad(loss, logp)[0])
    torch.testing.assert_close(sum(rank_losses) / 2, whole)
    torch.testing.assert_close(sum(rank_grads) / 2, whole_grad)
    assert whole_grad.abs().sum() > 0


def test_grpo_loss_needs_reference_only_with_kl():
    logp, old, _, adv, mask = _random_batch(1)
    loss, sums = alg.grpo_loss(logp, old, adv, mask, normalizer=float(mask.sum()))
    assert torch.isfinite(loss) and "kl" not in sums and sums["tokens"] == mask.sum().item()
    with pytest.raises(ValueError, match="kl_coef=0.1"):
        alg.grpo_loss(logp, old, adv, mask, normalizer=1.0, kl_coef=0.1)
