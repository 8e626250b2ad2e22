"""GRPO as short pure-torch functions.

Shapes: ``G`` groups (states) of ``n`` responses each; ``B`` sequences in a (micro-)batch,
``T`` response positions (right-padded). ``mask`` is the response mask, 1 on generated
tokens (the end-of-turn token included) and 0 on padding.

A step's loss is ``policy_loss + kl_coef * kl``, each aggregated over the *global* batch
(every micro-batch of every data-parallel rank) by :func:`aggregate` with the normaliser
from :func:`loss_normalizer`. Summing the micro-batch losses on a rank and averaging the
gradients over ranks (what DeepSpeed does) then gives exactly the gradient of the whole
batch processed at once, whatever the split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

# The options of this maths, by name: learner.config offers them on the command line. torch
# is imported inside the functions, so that reading these names (a command line) needs no torch.
AggregationMode = Literal["token-mean", "seq-mean-token-mean"]
KLEstimator = Literal["k1", "k2", "k3"]
AGGREGATION_MODES: tuple[str, ...] = get_args(AggregationMode)
KL_ESTIMATORS: tuple[str, ...] = get_args(KLEstimator)
LOG_RATIO_CLAMP = 20.0
K3_CLAMP = 10.0


def group_advantages(
    rewards: torch.Tensor, *, std_normalize: bool = True, eps: float = 1e-6, unbiased: bool = True
) -> torch.Tensor:
    """GRPO outcome advantages ``(r - mean_group) / (std_group + eps)``.

    Args:
        rewards: ``(G, n)`` float, the rewards of the ``n`` responses to each of ``G`` states.
        std_normalize: divide by the group's standard deviation (GRPO); ``False`` keeps only
            the mean baseline (Dr. GRPO).
        eps: added to the standard deviation.
        unbiased: Bessel-corrected (``n - 1``) standard deviation, as in the paper.

    Returns:
        ``(G, n)`` advantages. A group whose rewards are all equal (zero variance, including
        a singleton group) gets exactly 0, not the rounding error of ``r - mean``.

    >>> import torch
    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    tensor([[ 0.8660, -0.8660, -0.8660,  0.8660],
            [ 0.0000,  0.0000,  0.0000,  0.0000]])
    """
    import torch

    if rewards.ndim != 2:
        raise ValueError(f"rewards must have shape (groups, group_size), got {tuple(rewards.shape)}")
    rewards = rewards.float()
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if std_normalize and rewards.shape[1] > 1:
        std = rewards.std(dim=1, keepdim=True, correction=1 if unbiased else 0)
        centered = centered / (std + eps)
    return torch.where(zero_variance_groups(rewards)[:, None], torch.zeros_like(centered), centered)


def zero_variance_groups(rewards: torch.Tensor) -> torch.Tensor:
    """``(G,)`` bool: groups whose ``n`` rewards are all equal (their advantages are all 0).

    >>> import torch
    >>> zero_variance_groups(torch.tensor([[1.0, 1.0], [0.0, 1.0], [3.0, 3.0]])).tolist()
    [True, False, True]
    """
    return (rewards == rewards[:, :1]).all(dim=1)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate loss per token (PPO, with DAPO's separate upper bound and
    optionally dual-clip PPO's bound for negative advantages).

    Args:
        logp: ``(B, T)`` log-probs of the response tokens under the policy being trained.
        old_logp: ``(B, T)`` the same under the policy that generated them.
        advantages: ``(B,)`` per sequence or ``(B, T)`` per token.
        clip_low, clip_high: the ratio is clipped to ``[1 - clip_low, 1 + clip_high]``.
        dual_clip: ``c > 1``: for negative advantages the loss is at most ``-A * c``.

    Returns:
        ``(B, T)`` token losses ``max(-A r, -A clip(r))`` (then dual-clipped), and ``(B, T)``
        float indicators of where the gradient was cut: ``clipped_low`` (A < 0 and
        ``r < 1 - clip_low``), ``clipped_high`` (A > 0 and ``r > 1 + clip_high``),
        ``dual_clipped`` (A < 0 and ``r > c``), and the ``ratio`` itself.

    >>> import torch
    >>> loss, info = policy_loss(torch.log(torch.tensor([[1.5, 0.5]])), torch.zeros(1, 2),
    ...                          torch.tensor([1.0]))
    >>> loss.tolist(), info["clipped_high"].tolist()
    ([[-1.2000000476837158, -0.5]], [[1.0, 0.0]])
    """
    import torch

    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip_low={clip_low}, clip_high={clip_high}: clip ranges must be >= 0")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip={dual_clip} must be > 1 (or None to disable it)")
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    advantages = advantages.to(logp.dtype)
    log_ratio = torch.clamp(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    negative = advantages < 0
    info = {
        "ratio": ratio.detach(),
        "clipped_low": (negative & (ratio < 1.0 - clip_low)).float(),
        "clipped_high": ((advantages > 0) & (ratio > 1.0 + clip_high)).float(),
    }
    if dual_clip is not None:
        bound = -advantages * dual_clip
        dual = negative & (loss > bound)
        loss = torch.where(dual, bound.expand_as(loss), loss)
        info["dual_clipped"] = dual.float()
    else:
        info["dual_clipped"] = torch.zeros_like(loss)
    return loss, info


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy.

    ``k1 = logp - ref_logp`` (unbiased, can be negative); ``k2 = (logp - ref_logp)^2 / 2``;
    ``k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1`` (unbiased and >= 0, "low_var_kl"),
    clamped to ``[-10, 10]`` as in the paper's trainer.

    Args:
        logp, ref_logp: ``(B, T)``.

    Returns:
        ``(B, T)``.

    >>> import torch
    >>> [round(v, 4) for v in kl_estimate(torch.tensor([0.0, -1.0]), torch.tensor([-1.0, -1.0]), "k3").tolist()]
    [0.3679, 0.0]
    """
    import torch

    log_ratio = torch.clamp(logp - ref_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        return torch.clamp(torch.exp(-log_ratio) + log_ratio - 1.0, -K3_CLAMP, K3_CLAMP)
    raise ValueError(f"kl estimator {estimator!r} is not supported; allowed: {', '.join(KL_ESTIMATORS)}")


def loss_normalizer(
    token_counts: torch.Tensor | Sequence[float],
    mode: AggregationMode,
    *,
    world_size: int = 1,
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """The denominator that makes :func:`aggregate` a mean over the global batch.

    Args:
        token_counts: ``(S,)`` loss-bearing response tokens of each of this rank's
            sequences in the optimizer step (``mask.sum(-1)`` over all its micro-batches).
        mode: ``"token-mean"`` (the number of response tokens) or ``"seq-mean-token-mean"``
            (the number of sequences with at least one token).
        world_size: data-parallel ranks; their gradients are *averaged*, so each rank's
            share is scaled up by ``world_size``.
        all_reduce_sum: sums a tensor over the ranks (``None``: a single rank).

    Returns:
        ``max(global_count, 1) / world_size``.

    >>> import torch
    >>> loss_normalizer(torch.tensor([3.0, 0.0, 2.0]), "token-mean"), loss_normalizer([3, 0, 2], "seq-mean-token-mean")
    (5.0, 2.0)
    """
    import torch

    if mode not in AGGREGATION_MODES:
        raise ValueError(f"loss aggregation {mode!r} is not supported; allowed: {', '.join(AGGREGATION_MODES)}")
    counts = torch.as_tensor(token_counts, dtype=torch.float64)
    count = counts.sum() if mode == "token-mean" else (counts > 0).sum().to(torch.float64)
    total = count.reshape(1)
    if all_reduce_sum is not None:
        total = all_reduce_sum(total)
    return max(float(total.item()), 1.0) / world_size


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: AggregationMode, normalizer: float) -> torch.Tensor:
    """This micro-batch's share of the global mean of ``values`` (``(B, T)``) over ``mask``.

    ``token-mean``: ``sum(values * mask) / normalizer``, every token of the global batch
    weighted equally (DAPO). ``seq-mean-token-mean``: each sequence's token mean, summed,
    divided by ``normalizer``: every sequence weighted equally (the original GRPO).

    >>> import torch
    >>> v, m = torch.tensor([[1.0, 3.0], [5.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    >>> float(aggregate(v, m, "token-mean", 3.0)), float(aggregate(v, m, "seq-mean-token-mean", 2.0))
    (3.0, 3.5)
    """
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        return (values * mask).sum() / normalizer
    if mode == "seq-mean-token-mean":
        per_sequence = (values * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
        return per_sequence.sum() / normalizer
    raise ValueError(f"loss aggregation {mode!r} is not supported; allowed: {', '.join(AGGREGATION_MODES)}")


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float,
    aggregation: AggregationMode = "token-mean",
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: KLEstimator = "k3",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch's share of the GRPO loss ``policy_loss + kl_coef * kl``.

    Args:
        logp, old_logp, ref_logp: ``(B, T)``; ``ref_logp`` is needed iff ``kl_coef > 0``.
        advantages: ``(B,)``.
        mask: ``(B, T)`` response mask.
        normalizer: from :func:`loss_normalizer` over the whole step's batch.

    Returns:
        The scalar loss to back-propagate, and masked *sums* over this micro-batch's tokens
        (``tokens``, ``pg_loss``, ``kl``, ``clipped_low``, ``clipped_high``, ``dual_clipped``,
        ``ratio``) to be added up over micro-batches and divided by the token count.
    """
    token_loss, info = policy_loss(
        logp, old_logp, advantages, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip
    )
    pg = aggregate(token_loss, mask, aggregation, normalizer)
    maskf = mask.to(token_loss.dtype)
    sums = {
        "tokens": float(maskf.sum()),
        "pg_loss": float((token_loss.detach() * maskf).sum()),
        **{k: float((v * maskf).sum()) for k, v in info.items()},
    }
    loss = pg
    if kl_coef > 0:
        if ref_logp is None:
            raise ValueError(f"kl_coef={kl_coef} needs reference log-probs (ref_logp)")
        kl = kl_estimate(logp, ref_logp, kl_estimator)
        loss = loss + kl_coef * aggregate(kl, mask, aggregation, normalizer)
        sums["kl"] = float((kl.detach() * maskf).sum())
    return loss, sums


# -- multi-turn credit -----------------------------------------------------------------------
#
# Shapes: ``G`` start states, ``n`` episodes from each, ``K`` turns (right-padded: an episode
# that ended after ``L < K`` turns has ``turn_mask`` 1 on turns ``0..L-1`` and 0 after).
# ``rewards`` are the per-turn rewards (0 on padding). The bandit is ``K = 1``: there the
# episode advantage is exactly :func:`group_advantages` of the rewards.


def _check_turn_mask(values: torch.Tensor, turn_mask: torch.Tensor) -> torch.Tensor:
    """``turn_mask`` as bool, checked: the shape of ``values`` and a prefix of played turns."""

    if values.ndim < 1 or turn_mask.shape != values.shape:
        raise ValueError(f"turn_mask must have the shape of the rewards {tuple(values.shape)}, "
                         f"got {tuple(turn_mask.shape)}")
    mask = turn_mask.bool()
    if (mask[..., 1:] & ~mask[..., :-1]).any():
        raise ValueError("turn_mask must be a prefix of played turns (1s then 0s along the last dim); "
                         "a played turn follows a padded one")
    return mask


def discounted_returns(rewards: torch.Tensor, turn_mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Per-turn discounted returns ``R_t = r_t + gamma * R_{t+1}`` of padded episodes.

    Args:
        rewards: ``(..., K)`` float, the reward of each turn.
        turn_mask: ``(..., K)``, 1 on played turns (a prefix), 0 on padding; the return
            stops at an episode's last played turn (its rewards past it are ignored).
        gamma: discount in ``[0, 1]``.

    Returns:
        ``(..., K)`` float32 returns, 0 on padding.

    >>> import torch

    >>> discounted_returns(torch.tensor([[1.0, 2.0, 4.0], [1.0, 5.0, 9.0]]),
    ...                    torch.tensor([[1, 1, 1], [1, 1, 0]]), gamma=0.5)
    tensor([[3.0000, 4.0000, 4.0000],
            [3.5000, 5.0000, 0.0000]])
    """
    import torch

    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma={gamma} is out of range; allowed: 0 <= gamma <= 1")
    mask = _check_turn_mask(rewards, turn_mask)
    played = torch.where(mask, rewards.float(), torch.zeros((), dtype=torch.float32))
    returns = torch.zeros_like(played)
    running = torch.zeros_like(played[..., 0])
    for t in range(played.shape[-1] - 1, -1, -1):
        running = played[..., t] + gamma * running
        returns[..., t] = running
    return torch.where(mask, returns, torch.zeros_like(returns))


def episode_advantages(
    returns: torch.Tensor,
    turn_mask: torch.Tensor,
    *,
    std_normalize: bool = True,
    eps: float = 1e-6,
    unbiased: bool = True,
) -> torch.Tensor:
    """``episode`` credit: GRPO over the ``n`` episodes of each start state, every played
    turn getting its episode's advantage ``(R - mean_group) / (std_group + eps)``, with
    ``R = returns[..., 0]`` the episode's discounted return (the std convention of
    :func:`group_advantages`, whose zero-variance rule applies too).

    Args:
        returns: ``(G, n, K)`` from :func:`discounted_returns`.
        turn_mask: ``(G, n, K)``.

    Returns:
        ``(G, n, K)``, 0 on padding.

    >>> import torch

    >>> returns = torch.tensor([[[2.0, 1.0], [0.0, 0.0]]])
    >>> episode_advantages(returns, torch.tensor([[[1, 1], [1, 0]]]))
    tensor([[[ 0.7071,  0.7071],
             [-0.7071,  0.0000]]])
    """
    import torch

    if returns.ndim != 3:
        raise ValueError(f"returns must have shape (groups, group_size, turns), got {tuple(returns.shape)}")
    mask = _check_turn_mask(returns, turn_mask)
    per_episode = group_advantages(returns[..., 0], std_normalize=std_normalize, eps=eps, unbiased=unbiased)
    return torch.where(mask, per_episode[..., None].expand_as(returns), torch.zeros((), dtype=per_episode.dtype))


def step_advantages(
    returns: torch.Tensor,
    step_groups: torch.Tensor,
    turn_mask: torch.Tensor,
    *,
    std_normalize: bool = True,
    eps: float = 1e-6,
    unbiased: bool = True,
) -> torch.Tensor:
    """The step-level advantage of GiGPO with exact state identity: within one start state's
    ``n`` episodes, the played turns whose states are equal form a step group (ids from
    ``bridges.episodes.exact_state_groups``), and each turn's discounted return is compared
    with its step group's: ``(R_t - mean_step_group) / (std_step_group + eps)``, the std
    convention of :func:`group_advantages`. A step group whose returns are all equal, a
    singleton included, gives exactly 0: a state that only one episode reached says nothing
    about which action was better there.

    Args:
        returns: ``(G, n, K)`` from :func:`discounted_returns`.
        step_groups: ``(G, n, K)`` int, the step group id of each turn, local to its start
            state (``0..``; two turns of different start states never share a group); any
            value on padding (ignored).
        turn_mask: ``(G, n, K)``.

    Returns:
        ``(G, n, K)``, 0 on padding.

    >>> import torch

    >>> returns = torch.tensor([[[3.0, 1.0], [1.0, 0.0], [2.0, 2.0]]])
    >>> ids = torch.tensor([[[0, 1], [0, 2], [0, 3]]])  # every turn 0 saw the start state
    >>> step_advantages(returns, ids, torch.ones(1, 3, 2))
    tensor([[[ 1.0000,  0.0000],
             [-1.0000,  0.0000],
             [ 0.0000,  0.0000]]])
    """
    import torch

    if returns.ndim != 3 or step_groups.shape != returns.shape:
        raise ValueError(f"returns and step_groups must both have shape (groups, group_size, turns), "
                         f"got {tuple(returns.shape)} and {tuple(step_groups.shape)}")
    mask = _check_turn_mask(returns, turn_mask)
    ids = step_groups.long()
    if ((ids < 0) & mask).any():
        raise ValueError("step_groups must be >= 0 on every played turn (padding may hold any value)")
    groups, size, turns = returns.shape
    # One flat id per (start state, step group); padded turns go to a spare bucket.
    span = int(ids[mask].max()) + 1 if mask.any() else 1
    flat = torch.where(mask, ids + span * torch.arange(groups)[:, None, None], groups * span).reshape(-1)
    values = torch.where(mask, returns.float(), torch.zeros((), dtype=torch.float32)).reshape(-1)
    buckets = groups * span + 1
    count = torch.zeros(buckets).index_add_(0, flat, torch.ones_like(values))
    mean = torch.zeros(buckets).index_add_(0, flat, values) / count.clamp(min=1.0)
    centered = values - mean[flat]
    if std_normalize:
        squares = torch.zeros(buckets).index_add_(0, flat, centered.square())
        dof = (count - 1.0) if unbiased else count
        std = torch.sqrt(squares / dof.clamp(min=1.0))
        centered = centered / (std[flat] + eps)
    # Exactly 0 where the step group's returns are all equal (singletons included).
    high = torch.full((buckets,), -torch.inf).scatter_reduce(0, flat, values, "amax")
    low = torch.full((buckets,), torch.inf).scatter_reduce(0, flat, values, "amin")
    constant = (high == low)[flat]
    advantages = torch.where(constant, torch.zeros_like(centered), centered).reshape(groups, size, turns)
    return torch.where(mask, advantages, torch.zeros_like(advantages))


def step_credit_advantages(
    returns: torch.Tensor,
    step_groups: torch.Tensor,
    turn_mask: torch.Tensor,
    *,
    step_weight: float = 1.0,
    std_normalize: bool = True,
    eps: float = 1e-6,
    unbiased: bool = True,
) -> torch.Tensor:
    """``step`` credit: :func:`episode_advantages` ``+ step_weight *`` :func:`step_advantages`
    (GiGPO's sum with its ``step_advantage_w``, default 1). A turn whose state no other
    episode of its group reached gets the episode advantage alone.

    Args:
        returns, step_groups, turn_mask: ``(G, n, K)``, as in :func:`step_advantages`.
        step_weight: the weight of the step-level term (``>= 0``; 0 is ``episode`` credit).

    Returns:
        ``(G, n, K)``, 0 on padding.

    >>> import torch

    >>> returns = torch.tensor([[[3.0, 1.0], [1.0, 0.0]]])
    >>> step_credit_advantages(returns, torch.tensor([[[0, 1], [0, 2]]]), torch.ones(1, 2, 2), step_weight=0.5)
    tensor([[[ 1.0607,  0.7071],
             [-1.0607, -0.7071]]])
    """

    if step_weight < 0:
        raise ValueError(f"step_weight={step_weight} must be >= 0")
    options = dict(std_normalize=std_normalize, eps=eps, unbiased=unbiased)
    episode = episode_advantages(returns, turn_mask, **options)
    if step_weight == 0:
        return episode
    return episode + step_weight * step_advantages(returns, step_groups, turn_mask, **options)


def step_group_coverage(step_groups: torch.Tensor, turn_mask: torch.Tensor) -> float:
    """The share of played turns whose step group has another member (a log metric: how
    often ``step`` credit has something to compare). Ids are local to the first dim.

    >>> import torch

    >>> step_group_coverage(torch.tensor([[[0, 1], [0, 2]]]), torch.ones(1, 2, 2))
    0.5
    """
    import torch

    mask = turn_mask.bool()
    played = int(mask.sum())
    if played == 0:
        return 0.0
    found = 0
    for ids, valid in zip(step_groups, mask):
        _, inverse, counts = torch.unique(ids[valid], return_inverse=True, return_counts=True)
        found += int((counts[inverse] > 1).sum())
    return found / played
