"""GRPO for jaxgym games: a :class:`learner.run.Run` whose step is the policy-gradient one.

Each step, on every data-parallel rank:

1. **sample**: ``states_per_step / world`` training states and their rendered boards
   (``bridges.sampler.StateSampler``: one jitted call);
2. **rollout**: ``group_size`` responses per board from the rollout engine;
3. **score**: every response's action stepped from its own state
   (``bridges.scoring.GroupScorer``): game, format and perception rewards;
4. **advantages**: group-normalised rewards (optionally dropping zero-variance groups);
5. **old log-probs**: recomputed by the training model (a separate no-grad pass only when
   a batch feeds more than one update; with one update they equal the detached current
   log-probs exactly); the gap to the rollout engine's log-probs is logged;
6. **reference log-probs** when ``kl_coef > 0``;
7. **update**: ``updates_per_step`` optimizer steps (times ``ppo_epochs``), each over its
   mini-batch in micro-batches, loss aggregated over the global mini-batch;
8. **log**: metrics line, rollout dump every ``dump_every`` steps, checkpoints (the Run's).

Steps 1-4 are the bandit's collection (:meth:`GRPOTrainer.optimize_step`); steps 5-7 are
:meth:`GRPOTrainer.policy_update`, which takes any list of :class:`Rollout` (each naming its
row of an encoded prompt batch), so a subclass that collects otherwise (whole episodes, one
prompt per turn) writes its own ``optimize_step`` and reuses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner import algorithms
from learner.batching import EncodedPrompts, collate
from learner.config import TrainConfig
from learner.engine import all_reduce_max, all_reduce_sum
from learner.measures import paper_measures
from learner.run import Run, StepTimer, chunks, perception_truths
from learner.runlog import dump_rollouts

REWARD_KEYS = ("overall", "game", "format", "perception", "raw_reward")


@dataclass
class Rollout:
    """One training sequence: row ``state`` of the step's encoded prompts followed by ``tokens``."""

    state: int
    tokens: list[int]
    advantage: float
    rollout_logprobs: list[float]
    weight: float = 1.0  # 0 for padding rows that keep data-parallel ranks in step
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None


def _split_even(items: list[Any], parts: int) -> list[list[Any]]:
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


class GRPOTrainer(Run):
    """GRPO on single moves: a group of responses per board, each scored by one game step.
    Built like every :class:`learner.run.Run` (``scorer``: custom rewards in place of the game's)."""

    PROGRESS_NAME = "GRPO"
    CURVE_KEYS = ("reward/overall", "reward/game", "reward/format", "reward/perception", "P_acc", "eval/game")
    """What ``reward_curve.png`` plots (keys of metrics.jsonl)."""

    def __init__(self, config: TrainConfig, *, scorer: Any = None, echo: Callable[[str], None] = print):
        self._last_eval_game: float | None = None
        self._dump: dict[str, Any] | None = None
        super().__init__(config, scorer=scorer, echo=echo)

    def uses_reference(self) -> bool:
        return self.config.kl_coef > 0

    def build(self) -> None:
        # The scorer now, not at the first step: a game it cannot score is refused before the run starts.
        _ = self.scorer

    # -- one step ------------------------------------------------------------------------------

    def optimize_step(self, timer: StepTimer) -> dict[str, Any]:
        """Sample states, roll out ``group_size`` responses per board, score them, update."""
        import jax

        from bridges.torch_io import images_to_numpy

        config = self.config
        n = config.group_size
        with timer("sample"):
            states, images = self.sampler.sample(self.local_states)
            boards = images_to_numpy(images)
        with timer("prepare"):
            # Each board goes through the image processor once per step: the rollout engine
            # starts from this encoding (HF) and the updates train on it.
            prompt_texts, prompts = self.encode_boards(boards)
        with timer("rollout"):
            self.wake_rollout(timer)
            generation = self.rollout.generate(prompt_texts, boards, n, self.sampling, encoded=prompts)
            self.rollout.sleep()
        with timer("score"):
            responses = [[generation.texts[i * n + j] for j in range(n)] for i in range(self.local_states)]
            self.step_key, key = jax.random.split(self.step_key)
            scores = self.scorer.score(states, responses, key)
            rewards = torch.tensor(np.array(scores.overall, dtype=np.float32))
            advantages = algorithms.group_advantages(
                rewards, std_normalize=config.advantage_std_normalize, eps=config.advantage_eps
            )
        with timer("prepare"):
            keep = torch.ones(self.local_states, dtype=torch.bool)
            if config.drop_zero_variance_groups:
                keep = ~algorithms.zero_variance_groups(rewards)
            rollouts = [
                Rollout(i, generation.token_ids[i * n + j], float(advantages[i, j]), generation.logprobs[i * n + j])
                for i in range(self.local_states) if keep[i] for j in range(n)
            ]
            rollouts = self._balance_ranks(rollouts, generation)
        update_metrics = self.policy_update(prompts, rollouts, timer)

        lengths = np.array([len(t) for t in generation.token_ids])
        metrics: dict[str, Any] = {}
        for key in REWARD_KEYS:
            metrics[f"reward/{key}"] = float(np.mean(getattr(scores, key)))
        metrics.update(self._measures(states, responses, scores))
        metrics.update({
            "parsed_fraction": float(np.mean(scores.parsed)),
            "response_length/mean": float(lengths.mean()),
            "response_length/max": int(lengths.max()),
            "response_finished_fraction": float(np.mean(generation.finished)) if generation.finished else 0.0,
            "zero_variance_group_fraction": float(algorithms.zero_variance_groups(rewards).float().mean()),
            "advantage/abs_mean": float(advantages.abs().mean()),
            "lr": self.engine.lr,
            **update_metrics,
        })
        self._dump = dict(images=boards, prompt=prompt_texts[0], states=states, responses=responses, scores=scores,
                          advantages=advantages.numpy())
        return metrics

    def policy_update(self, prompts: EncodedPrompts, rollouts: list[Rollout], timer: StepTimer) -> dict[str, float]:
        """The clipped policy-gradient update on ``rollouts`` (rows of ``prompts``): old and
        reference log-probs where needed, then ``updates_per_step`` optimizer steps (times
        ``ppo_epochs``). Returns the update's metrics (zero steps for an empty batch)."""
        config = self.config
        if not rollouts:
            return {"optimizer_steps": 0, "sequences_trained": 0}
        separate_old = config.recompute_old_logprobs or config.updates_per_step * config.ppo_epochs > 1
        if separate_old:
            with timer("old_logprobs"):
                self._fill_logprobs(prompts, rollouts, "old")
        if config.kl_coef > 0:
            with timer("ref_logprobs"):
                self._fill_logprobs(prompts, rollouts, "ref")
        with timer("update"):
            update_metrics = self._update(prompts, rollouts, use_stored_old=separate_old)
        self.weights_changed()
        return update_metrics

    def reduce_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return self._with_r_acc(super().reduce_metrics(metrics))

    def write_dump(self, directory: Path) -> None:
        dump, config = self._dump, self.config
        if dump is None:
            return
        dump_rollouts(
            directory, images=dump["images"], prompt=dump["prompt"],
            perception=perception_truths(self.env, dump["states"], dump["scores"])[: config.dump_groups],
            responses=dump["responses"], scores=dump["scores"], advantages=dump["advantages"],
            groups=config.dump_groups,
        )

    def _measures(self, states: Any, responses: list[list[str]], scores: Any) -> dict[str, float]:
        """The paper's measures of a step's rollouts: P_acc, R_acc = P(raw reward > 0 |
        perception exact), cell accuracy, legal and positive-reward fractions."""
        measured = paper_measures(scores, responses, perception_truths(self.env, states, scores))
        # R_acc is a ratio: ranks average its numerator (the share with an exact perception and a
        # positive reward) and P_acc, and it is formed after that (see _with_r_acc).
        exact_and_positive = measured["P_acc"] * (measured["R_acc"] if measured["P_acc"] > 0 else 0.0)
        return {"P_acc": measured["P_acc"], "P_and_positive": exact_and_positive,
                "cell_accuracy": measured["cell_accuracy"], "legal_fraction": measured["legal"],
                "positive_fraction": measured["positive"]}

    @staticmethod
    def _with_r_acc(metrics: dict[str, Any]) -> dict[str, Any]:
        """Add ``R_acc = P(raw reward > 0 | perception exact)`` where some perception was exact."""
        if metrics.get("P_acc", 0.0) > 0:
            metrics["R_acc"] = metrics["P_and_positive"] / metrics["P_acc"]
        return metrics


    def _balance_ranks(self, rollouts: list[Rollout], generation: Any) -> list[Rollout]:
        """Pad this rank's rollouts with zero-weight copies up to the largest count on any rank,
        so that every rank runs the same number of micro-batches (ZeRO-3 needs it)."""
        if self.world_size == 1:
            return rollouts
        target = all_reduce_max(len(rollouts))
        filler = Rollout(0, generation.token_ids[0], 0.0, generation.logprobs[0], weight=0.0)
        return rollouts + [dataclasses.replace(filler) for _ in range(target - len(rollouts))]

    def _batch(self, prompts: EncodedPrompts, rollouts: list[Rollout]) -> Any:
        return collate(prompts, [r.state for r in rollouts], [r.tokens for r in rollouts],
                       pad_token_id=self.pad_token_id)

    @torch.no_grad()
    def _fill_logprobs(self, prompts: EncodedPrompts, rollouts: list[Rollout], which: str) -> None:
        for chunk in chunks(rollouts, self.config.logprob_micro_batch_size):
            batch = self._batch(prompts, chunk)
            if which == "old":
                logp, _ = self.engine.logprobs(batch)
            else:
                logp = self.engine.reference_logprobs(batch)
            for row, rollout in enumerate(chunk):
                setattr(rollout, f"{which}_logprobs", logp[row, : len(rollout.tokens)].detach().cpu())

    @staticmethod
    def _padded(rows: list[torch.Tensor], width: int) -> torch.Tensor:
        out = torch.zeros(len(rows), width)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def _update(self, prompts: EncodedPrompts, rollouts: list[Rollout], *, use_stored_old: bool) -> dict[str, float]:
        config = self.config
        sums: dict[str, float] = {}
        grad_norms: list[float] = []
        rollout_gap = [0.0, 0.0]  # sum |rollout - trainer| log-prob, max
        for _epoch in range(config.ppo_epochs):
            for mini in _split_even(rollouts, config.updates_per_step):
                counts = torch.tensor([len(r.tokens) * r.weight for r in mini])
                normalizer = algorithms.loss_normalizer(counts, config.loss_aggregation, world_size=self.world_size,
                                                        all_reduce_sum=all_reduce_sum)
                micro_batches = chunks(mini, config.micro_batch_size)
                for index, micro in enumerate(micro_batches):
                    batch = self._batch(prompts, micro)
                    logp, entropy = self.engine.logprobs(batch, with_entropy=True)
                    width = logp.shape[1]
                    mask = batch.response_mask.to(logp.device) * torch.tensor(
                        [r.weight for r in micro], device=logp.device)[:, None]
                    old = (self._padded([r.old_logprobs for r in micro], width).to(logp.device)
                           if use_stored_old else logp.detach())
                    ref = (self._padded([r.ref_logprobs for r in micro], width).to(logp.device)
                           if config.kl_coef > 0 else None)
                    advantages = torch.tensor([r.advantage for r in micro], device=logp.device)
                    loss, micro_sums = algorithms.grpo_loss(
                        logp, old, advantages, mask, normalizer=normalizer, aggregation=config.loss_aggregation,
                        ref_logp=ref, kl_coef=config.kl_coef, kl_estimator=config.kl_estimator,
                        clip_low=config.clip_low, clip_high=config.clip_high, dual_clip=config.dual_clip,
                    )
                    self.engine.backward(loss, last=index == len(micro_batches) - 1)
                    micro_sums["entropy"] = float((entropy.detach() * mask).sum())
                    if _epoch == 0:
                        rollout = self._padded([torch.tensor(r.rollout_logprobs) for r in micro], width)
                        gap = ((rollout.to(logp.device) - old).abs() * mask)
                        rollout_gap[0] += float(gap.sum())
                        rollout_gap[1] = max(rollout_gap[1], float(gap.max()) if gap.numel() else 0.0)
                    for k, v in micro_sums.items():
                        sums[k] = sums.get(k, 0.0) + v
                grad_norms.append(self.engine.step())
        tokens = max(sums.get("tokens", 0.0), 1.0)
        first_epoch_tokens = tokens / config.ppo_epochs
        metrics = {
            "loss/policy": sums.get("pg_loss", 0.0) / tokens,
            "entropy": sums.get("entropy", 0.0) / tokens,
            "clip_fraction/low": sums.get("clipped_low", 0.0) / tokens,
            "clip_fraction/high": sums.get("clipped_high", 0.0) / tokens,
            "clip_fraction/dual": sums.get("dual_clipped", 0.0) / tokens,
            "ratio/mean": sums.get("ratio", 0.0) / tokens,
            "rollout_logprob_gap/mean": rollout_gap[0] / first_epoch_tokens,
            "rollout_logprob_gap/max": rollout_gap[1],
            "grad_norm": float(np.mean(grad_norms)) if grad_norms else float("nan"),
            "optimizer_steps": len(grad_norms),
            "sequences_trained": sum(r.weight > 0 for r in rollouts),
        }
        if config.kl_coef > 0:
            metrics["kl"] = sums.get("kl", 0.0) / tokens
        return metrics

    # -- how the run shows itself ----------------------------------------------------------

    def progress_postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        postfix = {"reward": f"{metrics['reward/overall']:.3f}", "game": f"{metrics['reward/game']:.3f}",
                   "len": f"{metrics['response_length/mean']:.0f}"}
        if "eval/game" in metrics:
            self._last_eval_game = metrics["eval/game"]
        if self._last_eval_game is not None:
            postfix["greedy_game"] = f"{self._last_eval_game:.3f}"
        return postfix

    def batch_description(self) -> str:
        config = self.config
        return (f"{config.states_per_step} states x {config.group_size} responses per step "
                f"(rollouts: {config.rollout_engine})")
