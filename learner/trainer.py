"""The GRPO loop for jaxgym games.

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
8. **log**: metrics line, rollout dump every ``dump_every`` steps, checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner import algorithms
from learner import checkpoint as ckpt
from learner.batching import EncodedPrompts, chat_prompt, collate, encode_prompts, format_token_budget
from learner.config import TrainConfig, check_resume_config, saved_run_config
from learner.engine import TrainingEngine, all_reduce, all_reduce_max, all_reduce_sum, init_distributed
from learner.measures import paper_measures
from learner.models import COLD_START, TINY, TINY_PRESETS, load_policy, shipped_cold_start, vision_tower
from learner.rollout import HFRolloutEngine, SamplingParams, VLLMRolloutEngine
from learner.runlog import MetricsLog, dump_rollouts, plot_reward_curve, read_metrics, truncate_logs

CHECKPOINTS = ckpt.CHECKPOINTS
REWARD_KEYS = ("overall", "game", "format", "perception", "raw_reward")
EVAL_SEED_OFFSET = 7_777_777  # held-out evaluation states come from a sampler seeded far from training's


def held_out_sampler(env: Any, sample_mode: str, sample_depth: int, seed: int) -> Any:
    """The sampler of a run's held-out evaluation states (``sample_depth`` -1: the game's
    default), seeded ``EVAL_SEED_OFFSET`` away from the run's training sampler."""
    from bridges.sampler import StateSampler

    return StateSampler(env, depth=None if sample_depth < 0 else sample_depth, mode=sample_mode,
                        seed=seed + EVAL_SEED_OFFSET)


SUMMED_METRICS = ("sequences_trained",)  # counts add up over ranks; everything else is averaged


@dataclass
class Rollout:
    """One training sequence: the ``state``'s prompt followed by ``tokens``."""

    state: int
    tokens: list[int]
    advantage: float
    rollout_logprobs: list[float]
    weight: float = 1.0  # 0 for padding rows that keep data-parallel ranks in step
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _perception_truths(env: Any, states: Any, scores: Any) -> list[str]:
    """Each state's perception truth: the scorer's (``GroupScores.perception_truths``),
    described here only for a scorer that returns none (a text-reward stand-in)."""
    if getattr(scores, "perception_truths", None) is not None:
        return list(scores.perception_truths)
    import jax

    from bridges.scoring import unbatch

    host = jax.device_get(states)
    return [env.describe(unbatch(host, b)) for b in range(int(np.shape(host.reward)[0]))]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _split_even(items: list[Any], parts: int) -> list[list[Any]]:
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _holds_a_run(run_dir: Path) -> str:
    return (f"run_dir={str(run_dir)!r} already holds a run (metrics.jsonl); continue it with --resume {run_dir} or "
            f"choose another run_dir")


def _remove_if_empty(directory: Path) -> None:
    """At exit: a default run directory that a failed start left empty goes (rmdir fails on any other)."""
    try:
        directory.rmdir()
    except OSError:
        pass


class GRPOTrainer:
    """Builds everything a run needs from a :class:`TrainConfig` and runs the loop.

    Args:
        config: the run's configuration.
        scorer: replaces the game's ``GroupScorer`` (anything with ``score(states,
            responses, key)`` returning ``GroupScores``-like arrays); for custom rewards.
        echo: where rank 0's messages go.
    """

    def __init__(self, config: TrainConfig, *, scorer: Any = None, echo: Callable[[str], None] = print):
        import jax

        import jaxgym
        from bridges.protocol import protocol_for
        from bridges.sampler import StateSampler
        from bridges.scoring import GroupScorer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no tokenizer threads fighting for the cores
        self.rank, self.local_rank, self.world_size = init_distributed()
        config, note = resolve_cold_start(config)
        if config.resume:  # before anything is built from it: the run's own settings, or a clear refusal
            saved = saved_run_config(config.resume)
            if config.max_response_tokens == 0:  # "what the format needs" was resolved and saved by the run
                config = dataclasses.replace(config, max_response_tokens=saved.get("max_response_tokens", 0))
            check_resume_config(saved, config, source=config.resume,
                                resolve=lambda base: resolve_cold_start(base)[0])
        self.config = config.validate(self.world_size)
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        self.echo = echo if self.rank == 0 else (lambda _: None)
        if note:
            self.echo(note)
        self.env = jaxgym.make(config.game, **config.game_params)
        self.protocol = protocol_for(self.env)
        self.local_states = config.states_per_step // self.world_size
        self.run_dir = self._resolve_run_dir()
        self.echo(f"Run directory: {self.run_dir.resolve()}")

        seed = config.seed * 1_000_003 + self.rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.sampler = StateSampler(
            self.env, depth=None if config.sample_depth < 0 else config.sample_depth, mode=config.sample_mode,
            seed=seed,
        )
        overrides = {k: v for k, v in (("w_format", config.w_format), ("w_perception", config.w_perception))
                     if v is not None}
        self.scorer = scorer if scorer is not None else GroupScorer(self.env, **overrides)
        self.score_key = jax.random.key(seed + 7919)

        if config.model in TINY_PRESETS:
            self.echo("Using the built-in tiny random-weight Qwen2.5-VL (no download; it produces gibberish and "
                      "exists to smoke-test the pipeline). Train a real model with --model "
                      "Qwen/Qwen2.5-VL-3B-Instruct (a hub id) or --model /path/to/checkpoint.")
        dtype = "bf16" if config.precision == "bf16" else "fp32"
        extra = {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
        policy, self.processor = load_policy(config.model, dtype=dtype, seed=config.seed, **extra)
        reference = copy.deepcopy(policy) if config.kl_coef > 0 else None
        if config.freeze_vision_tower:
            vision_tower(policy).requires_grad_(False)
        self.engine = TrainingEngine(
            policy,
            zero_stage=config.zero_stage,
            precision=config.precision,
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_eps,
            warmup_steps=config.warmup_steps,
            total_steps=config.lr_schedule_steps or config.steps,
            min_lr_ratio=config.min_lr_ratio,
            grad_clip=config.grad_clip,
            gradient_checkpointing=config.gradient_checkpointing,
            temperature=config.temperature,
            chunk_tokens=config.logprob_chunk_tokens,
            reference=reference,
        )
        if config.max_response_tokens == 0:  # what the game's perception + reasoning + answer format needs
            config = self.config = dataclasses.replace(
                config, max_response_tokens=format_token_budget(self.env, self.processor.tokenizer))
        self.pad_token_id = self.processor.tokenizer.pad_token_id
        self.prompt_text = self.env.prompt()
        self.sampling = SamplingParams(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
                                       max_new_tokens=config.max_response_tokens)
        self.rollout = self._rollout_engine()
        self.step = 0
        self._rollout_stale = False
        if config.resume:
            self.resume(config.resume)
            self._rollout_stale = not self.rollout.shares_training_weights  # built from the initial weights
        self.metrics = None
        if self.rank == 0:
            # A named directory is created only now, so a start that fails leaves no empty run directory
            # behind; its metrics.jsonl is claimed atomically: of two runs started into it, one gets it.
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not config.resume:
                from bridges.rundirs import claim_file

                try:
                    claim_file(self.run_dir / "metrics.jsonl")
                except FileExistsError:
                    raise ValueError(_holds_a_run(self.run_dir)) from None
            if config.resume:  # a crash after the checkpoint left log lines the resumed run writes again
                truncate_logs(self.run_dir, self.step)
            self.metrics = MetricsLog(self.run_dir, tensorboard=config.tensorboard,
                                      purge_step=self.step + 1 if config.resume else None)
            self._write_config()

    # -- setup -----------------------------------------------------------------------------

    def _resolve_run_dir(self) -> Path:
        """The run's directory. A default one is created here, on rank 0, by one atomic ``mkdir``
        (``bridges.rundirs.create_run_dir``: runs started in the same second get ``-2``, ``-3``);
        a start that fails before its first log line removes it again, while it is still empty."""
        config = self.config
        if config.run_dir:
            path = config.run_dir
        elif config.resume:
            path = str(ckpt.run_dir_of(Path(config.resume)))
        elif self.rank == 0:
            import atexit

            from bridges.rundirs import create_run_dir

            created = create_run_dir(self.env.name, root="runs")
            atexit.register(_remove_if_empty, created)
            path = str(created)
        else:
            path = ""  # rank 0's, broadcast below
        if self.world_size > 1:
            import torch.distributed as dist

            holder = [path]
            dist.broadcast_object_list(holder, src=0)  # every rank writes into rank 0's directory
            path = holder[0]
        run_dir = Path(path)
        if not config.resume and (run_dir / "metrics.jsonl").exists():
            raise ValueError(_holds_a_run(run_dir))
        return run_dir

    def _write_config(self) -> None:
        import yaml

        ckpt.write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False))

    def _rollout_engine(self) -> Any:
        if self.config.rollout_engine == "hf":
            return HFRolloutEngine(self.engine.policy, self.processor, gather=self.engine.gathered)
        source = self.config.model
        if source in TINY_PRESETS:  # vLLM loads from a directory: the built policy, exported once
            source = str(self.run_dir / "rollout_model")
            self.engine.export(source, self.processor)
            if self.world_size > 1:
                import torch.distributed as dist

                dist.barrier()
        return VLLMRolloutEngine(
            source, self.processor, seed=self.config.seed + self.rank,
            dtype="bfloat16" if self.config.precision == "bf16" else "float32",
            gpu_memory_utilization=self.config.vllm_gpu_memory_utilization,
            max_model_len=self.config.max_prompt_tokens + self.config.max_response_tokens,
            max_pixels=self.config.vllm_max_pixels,
        )

    # -- one step ------------------------------------------------------------------------------

    def encode_boards(self, boards: np.ndarray) -> tuple[list[str], EncodedPrompts]:
        """The prompt texts of ``boards`` (``(B, H, W, 3)`` uint8, one per state) and their
        encoding: the one way the trainer, the cold start and the evaluation build prompts."""
        from bridges.torch_io import prompts_for

        texts = prompts_for(self.env, len(boards))
        encoded = encode_prompts(self.processor, [chat_prompt(self.processor, t) for t in texts], boards,
                                 max_prompt_tokens=self.config.max_prompt_tokens)
        return texts, encoded

    def train_step(self) -> dict[str, Any]:
        """Run one GRPO step; returns its metrics (also written to metrics.jsonl)."""
        import jax

        from bridges.torch_io import images_to_numpy

        config, timer = self.config, _Timer()
        n = config.group_size
        step_start = time.perf_counter()
        with timer("sample"):
            states, images = self.sampler.sample(self.local_states)
            boards = images_to_numpy(images)
        with timer("prepare"):
            # Each board goes through the image processor once per step: the rollout engine
            # starts from this encoding (HF) and the updates train on it.
            prompt_texts, prompts = self.encode_boards(boards)
        with timer("rollout"):
            self.rollout.wake_up()
            if self._rollout_stale:
                with timer("weight_sync"):
                    self.rollout.sync_weights(self.engine.named_checkpoint_tensors())
                self._rollout_stale = False
            generation = self.rollout.generate(prompt_texts, boards, n, self.sampling, encoded=prompts)
            self.rollout.sleep()
        with timer("score"):
            responses = [[generation.texts[i * n + j] for j in range(n)] for i in range(self.local_states)]
            self.score_key, key = jax.random.split(self.score_key)
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
        update_metrics: dict[str, float] = {"optimizer_steps": 0, "sequences_trained": 0}
        if rollouts:
            separate_old = config.recompute_old_logprobs or config.updates_per_step * config.ppo_epochs > 1
            if separate_old:
                with timer("old_logprobs"):
                    self._fill_logprobs(prompts, rollouts, "old")
            if config.kl_coef > 0:
                with timer("ref_logprobs"):
                    self._fill_logprobs(prompts, rollouts, "ref")
            with timer("update"):
                update_metrics = self._update(prompts, rollouts, use_stored_old=separate_old)
            # A rollout engine with its own copy of the weights (vLLM) needs the new ones.
            self._rollout_stale = not self.rollout.shares_training_weights
        self.step += 1

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
        metrics = self._log_step(self._with_r_acc(self._reduce_metrics(metrics)), timer, step_start)
        if self.rank == 0:
            if config.dump_every and self.step % config.dump_every == 0:
                dump_rollouts(
                    self.run_dir / "rollouts" / f"step_{self.step:06d}",
                    images=boards, prompt=prompt_texts[0],
                    perception=_perception_truths(self.env, states, scores)[: config.dump_groups],
                    responses=responses, scores=scores, advantages=advantages.numpy(), groups=config.dump_groups,
                )
        if config.save_every and self.step % config.save_every == 0 and self.step < config.steps:
            self.save()
        return metrics

    def _log_step(self, metrics: dict[str, Any], timer: _Timer, step_start: float) -> dict[str, Any]:
        """A step's reduced metrics, with the held-out evaluation when it is due and the phase
        times, written to ``metrics.jsonl`` on rank 0 (one place for the trainer and the cold start)."""
        if self._evaluation_due():
            with timer("eval"):
                metrics.update({f"eval/{k}": v for k, v in self.evaluate().items() if math.isfinite(v)})
        metrics.update({f"seconds/{k}": v for k, v in timer.seconds.items()})
        metrics["seconds/step"] = time.perf_counter() - step_start
        if self.rank == 0:
            self.metrics.write(self.step, metrics)
        return metrics

    def _measures(self, states: Any, responses: list[list[str]], scores: Any) -> dict[str, float]:
        """The paper's measures of a step's rollouts: P_acc, R_acc = P(raw reward > 0 |
        perception exact), cell accuracy, legal and positive-reward fractions."""
        measured = paper_measures(scores, responses, _perception_truths(self.env, states, scores))
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

    def _evaluation_due(self) -> bool:
        every = self.config.eval_every
        return bool(every) and (self.step % every == 0 or self.step == self.config.steps)

    def held_out(self) -> tuple[Any, np.ndarray]:
        """The evaluation states and boards: ``eval_states`` states drawn once by a sampler
        seeded apart from training's (the same for every run of a seed, resumed or not)."""
        if getattr(self, "_held_out", None) is None:
            from bridges.torch_io import images_to_numpy

            config = self.config
            sampler = held_out_sampler(self.env, config.sample_mode, config.sample_depth, config.seed)
            states, images = sampler.sample(config.eval_states)
            self._held_out = (states, images_to_numpy(images))
        return self._held_out

    def evaluate(self) -> dict[str, float]:
        """Greedy responses on the held-out states through the rollout engine; the paper's
        measures (``learner.measures``) of them: P_acc, R_acc, cell_accuracy, format, legal,
        game (the shaped game reward), positive, and reasoning (the think line true of the
        board)."""
        import jax

        from bridges.torch_io import prompts_for

        states, boards = self.held_out()
        greedy = SamplingParams(temperature=0.0, max_new_tokens=self.config.max_response_tokens)
        texts: list[str] = []
        self.rollout.wake_up()
        if self._rollout_stale:
            self.rollout.sync_weights(self.engine.named_checkpoint_tensors())
            self._rollout_stale = False
        for rows in _chunks(list(range(len(boards))), self.config.logprob_micro_batch_size):
            generation = self.rollout.generate(prompts_for(self.env, len(rows)), boards[rows], 1, greedy)
            texts.extend(generation.texts)
        self.rollout.sleep()
        responses = [[t] for t in texts]
        scores = self.scorer.score(states, responses, jax.random.key(self.config.seed + EVAL_SEED_OFFSET))
        return paper_measures(scores, responses, _perception_truths(self.env, states, scores), env=self.env)

    def metrics_write_eval(self, measured: dict[str, float]) -> None:
        """Log an evaluation made outside a step (step 0: before any update)."""
        if self.rank == 0:
            self.metrics.write(self.step, {f"eval/{k}": v for k, v in measured.items() if math.isfinite(v)})

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
        for chunk in _chunks(rollouts, self.config.logprob_micro_batch_size):
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
                micro_batches = _chunks(mini, config.micro_batch_size)
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

    def _reduce_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Average the per-rank metrics (max for maxima) so rank 0 logs the global view."""
        if self.world_size == 1:
            return metrics
        keys = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
        maxima = torch.tensor([float(metrics[k]) if k.endswith("/max") else 0.0 for k in keys], dtype=torch.float64)
        mean = all_reduce_sum(values) / self.world_size
        maxima = all_reduce(maxima, "max")
        out = dict(metrics)
        for i, k in enumerate(keys):
            if k.endswith("/max"):
                out[k] = float(maxima[i])
            elif k in SUMMED_METRICS:
                out[k] = float(mean[i]) * self.world_size
            else:
                out[k] = float(mean[i])
        return out

    # -- checkpoints -------------------------------------------------------------------------

    def save(self) -> Path:
        """Checkpoint everything a bitwise resume needs (collective: call on every rank).

        Written into a partial directory and renamed once complete (``learner.checkpoint``),
        so a process killed mid-write never leaves a checkpoint that looks usable."""
        root = self.run_dir / CHECKPOINTS
        directory = root / f"step_{self.step:06d}"
        partial = ckpt.partial_dir(root, directory.name)
        if self.rank == 0:
            shutil.rmtree(partial, ignore_errors=True)  # left by a write that was killed
        self._barrier()
        self.engine.save(partial, client_state={"step": self.step})
        rng = ckpt.rng_state(self.sampler.state_dict(), _key_data(self.score_key))
        ckpt.write_text_atomic(partial / f"rng_rank{self.rank}.json", json.dumps(rng))
        self._barrier()
        if self.rank == 0:
            ckpt.finish(partial, directory, step=self.step, world_size=self.world_size, config=self.config.to_dict())
            ckpt.write_text_atomic(root / "latest", directory.name)
            if self.config.keep_checkpoints:
                older = [p for p in ckpt.step_dirs(self.run_dir) if p != directory]
                for stale in older[self.config.keep_checkpoints - 1:]:
                    ckpt.remove(stale)
        self._barrier()
        return directory

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def resume(self, source: str) -> None:
        """Restore model, optimizer, scheduler, step and every RNG from a checkpoint (a
        checkpoint directory, or a run directory: its newest complete checkpoint, falling
        back to older ones with a warning). A run with no checkpoint yet starts from step 0."""
        found = ckpt.candidates(Path(source), self.echo)
        if not found:
            self.echo(f"warning: {source} has no checkpoint yet (the run stopped before its first one); "
                      f"starting it again from step 0 with its saved config.")
            return
        for index, (directory, manifest) in enumerate(found):
            try:
                self._load_checkpoint(directory, manifest)
                break
            except ckpt.CheckpointError as error:
                if index == len(found) - 1:
                    raise
                self.echo(f"warning: {error}; falling back to {found[index + 1][0]}")
        self.echo(f"Resumed from {directory} at step {self.step}.")

    def _load_checkpoint(self, directory: Path, manifest: dict[str, Any]) -> None:
        import jax

        if manifest.get("world_size", self.world_size) != self.world_size:
            raise ckpt.CheckpointError(f"checkpoint {directory} was saved by {manifest['world_size']} rank(s), this "
                                       f"run has {self.world_size}; resume with the number of ranks it was saved with")
        rng_file = directory / f"rng_rank{self.rank}.json"
        if not rng_file.is_file():
            raise ckpt.CheckpointError(f"checkpoint {directory} has no RNG state for rank {self.rank} "
                                       f"({rng_file.name}); resume with the number of ranks it was saved with")
        rng = ckpt.read_json(rng_file)  # parsed before any weight is touched
        if not isinstance(rng, dict):
            raise ckpt.CheckpointError(f"{rng_file} is not a valid RNG state file")
        self.engine.load(directory)
        self.step = int(manifest["step"])
        sampler_state, score_key = ckpt.set_rng_state(rng, str(rng_file))
        try:
            self.sampler.load_state_dict(sampler_state)
            self.score_key = jax.random.wrap_key_data(score_key)
        except (KeyError, TypeError, ValueError) as error:
            raise ckpt.CheckpointError(f"{rng_file}: the sampler or score key cannot be restored ({error})") from None

    # -- the run -------------------------------------------------------------------------------

    PROGRESS_NAME = "GRPO"
    CURVE_KEYS = ("reward/overall", "reward/game", "reward/format", "reward/perception", "P_acc", "eval/game")
    """What ``reward_curve.png`` plots (keys of metrics.jsonl)."""

    def _postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        """The progress bar's summary of a step."""
        postfix = {"reward": f"{metrics['reward/overall']:.3f}", "game": f"{metrics['reward/game']:.3f}",
                   "len": f"{metrics['response_length/mean']:.0f}"}
        if "eval/game" in metrics:
            self._last_eval_game = metrics["eval/game"]
        if getattr(self, "_last_eval_game", None) is not None:
            postfix["greedy_game"] = f"{self._last_eval_game:.3f}"
        return postfix

    def _batch_description(self) -> str:
        """What one step trains on and where its responses come from, for the banner."""
        config = self.config
        return (f"{config.states_per_step} states x {config.group_size} responses per step "
                f"(rollouts: {config.rollout_engine})")

    def train(self) -> dict[str, Any]:
        """Run until ``config.steps``; checkpoint, export and plot at the end. Returns a summary."""
        from tqdm import tqdm

        config = self.config
        self.echo(f"Game {self.env.id}, model {config.model}, {self._batch_description()}, "
                  f"{_plural(config.steps, 'step')}, ZeRO-{config.zero_stage}, {config.precision}, "
                  f"{self.world_size} rank(s).")
        start = time.perf_counter()
        first_step = self.step
        self.echo(f"Curves: {self.run_dir / 'metrics.jsonl'} (every step), {self.run_dir / 'reward_curve.png'} (at "
                  f"the end).")
        bar = tqdm(total=config.steps, initial=self.step, desc=self.PROGRESS_NAME, unit="step",
                   disable=not config.progress or self.rank != 0, dynamic_ncols=True)
        history: list[dict[str, Any]] = []
        if config.eval_every and self.step == 0:
            # Step 0: the model as it starts, so that the evaluation curve shows where it began.
            self.metrics_write_eval(self.evaluate())
        while self.step < config.steps:
            metrics = self.train_step()
            history.append(metrics)
            bar.set_postfix(self._postfix(metrics))
            bar.update(1)
        bar.close()
        checkpoint = self.save() if self.step > first_step else None
        export = None
        if config.export:
            export = self.engine.export(self.run_dir / "export", self.processor)
        summary: dict[str, Any] = {"steps": self.step, "seconds": time.perf_counter() - start,
                                   "run_dir": str(self.run_dir.resolve())}
        if self.rank == 0:
            self.metrics.close()
            all_metrics = read_metrics(self.run_dir / "metrics.jsonl")
            curve = plot_reward_curve(all_metrics, self.run_dir / "reward_curve.png", keys=self.CURVE_KEYS)
            rewards = [m["reward/overall"] for m in all_metrics if "reward/overall" in m]
            game = [m["reward/game"] for m in all_metrics if "reward/game" in m]
            window = max(1, len(game) // 5)  # a fifth of the run: single steps are noisy
            evaluations = [{"step": m["step"], **{k: v for k, v in m.items() if k.startswith("eval/")}}
                           for m in all_metrics if any(k.startswith("eval/") for k in m)]
            summary.update({
                "reward_first": rewards[0] if rewards else math.nan,
                "reward_last": rewards[-1] if rewards else math.nan,
                "game_first_fifth": float(np.mean(game[:window])) if game else math.nan,
                "game_last_fifth": float(np.mean(game[-window:])) if game else math.nan,
                "first_eval": evaluations[0] if evaluations else None,
                "last_eval": evaluations[-1] if evaluations else None,
                "checkpoint": str(checkpoint.resolve()) if checkpoint else None,
                "export": str(export.resolve()) if export else None,
                "reward_curve": str(curve.resolve()) if curve else None,
            })
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            self.echo(_format_summary(summary, history))
        return summary


def resolve_cold_start(config: TrainConfig) -> tuple[TrainConfig, str]:
    """``model='cold-start'``: the shipped cold-started tiny checkpoint of the game, on the board
    it was trained on when ``game_params`` is empty; the random-weight tiny model for a game
    without one. Returns the config to run and a message saying what was chosen ('' if nothing)."""
    if config.model != COLD_START:
        return config, ""
    game = config.game.split("-v")[0]
    shipped = shipped_cold_start(game)
    if shipped is None:
        return dataclasses.replace(config, model=TINY), (
            f"No cold-started checkpoint ships for {game!r}: using the random-weight tiny model (build one with "
            f"python learner/sft.py --game {game}, then pass --model <its run dir>/export).")
    directory, record = shipped
    note = (f"Model: the shipped cold-started tiny checkpoint {directory} (perception cold start, teacher "
            f"{record['teacher']!r}; rebuild: {record['command']}).")
    changes: dict[str, Any] = {"model": str(directory)}
    if not config.game_params:
        changes["game_params"] = dict(record["game_params"])
        # The run settings it was measured with, for the keys left at their defaults.
        defaults = TrainConfig()
        changes.update({k: v for k, v in record.get("train", {}).items() if getattr(config, k) == getattr(defaults, k)})
        note += " Board and run settings it was measured with: " + ", ".join(
            f"{k}={json.dumps(v)}" for k, v in changes.items() if k != "model") + "."
    return dataclasses.replace(config, **changes), note


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _key_data(key: Any) -> np.ndarray:
    import jax

    return np.asarray(jax.random.key_data(key))


def _format_summary(summary: dict[str, Any], history: list[dict[str, Any]]) -> str:
    lines = [f"Done: {_plural(summary['steps'], 'step')} in {summary['seconds']:.1f} s."]
    if history and math.isfinite(summary.get("reward_first", math.nan)):
        lines.append(f"Mean overall reward: first {summary['reward_first']:.3f}, last {summary['reward_last']:.3f}.")
        lines.append(f"Mean game reward: first fifth of the steps {summary['game_first_fifth']:.3f}, last fifth "
                     f"{summary['game_last_fifth']:.3f}.")
    if history and summary.get("first_eval") and "eval/game" in summary["first_eval"]:
        first, last = summary["first_eval"], summary["last_eval"]
        lines.append(f"Greedy game reward on the held-out states: {first['eval/game']:.3f} at step {first['step']}, "
                     f"{last.get('eval/game', math.nan):.3f} at step {last['step']}.")
    if history and summary.get("last_eval"):
        lines.append("Last evaluation (greedy, held-out states): " + ", ".join(
            f"{k.removeprefix('eval/')} {v:.3f}" for k, v in summary["last_eval"].items()
            if k != "step" and isinstance(v, (int, float))))
        seconds = np.mean([m["seconds/step"] for m in history])
        lines.append(f"Seconds per step: {seconds:.2f}.")
    for key in ("checkpoint", "export", "reward_curve"):
        if summary.get(key):
            lines.append(f"{key.replace('_', ' ').capitalize()}: {summary[key]}")
    lines.append(f"Metrics: {Path(summary['run_dir']) / 'metrics.jsonl'}")
    return "\n".join(lines)
