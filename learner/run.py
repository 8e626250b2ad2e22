"""One training run: everything a trainer shares, whatever it trains on.

:class:`Run` owns the parts every training run has, and the trainers are its subclasses,
siblings that write only their step::

    Run                 learner/run.py: ranks, seeds, run directory, model and training engine,
     |                  rollout engine, checkpoint and resume, metrics, held-out evaluation,
     |                  the loop with its progress bar and summary
     +- GRPOTrainer     learner/trainer.py: sample states, roll out a group of responses per
     |                  board, score them, group advantages, the clipped policy update
     +- ColdStartTrainer  learner/sft.py: sample states, the teacher's target responses, the
                        cross-entropy update (no scorer in its step, no reference model)

A trainer fills in these hooks (the defaults fit a trainer that needs none of them):

- :meth:`Run.optimize_step` (required): one step of training on this rank, timed by the
  given :class:`StepTimer`; returns this rank's metrics. ``Run.train_step`` around it counts
  the step, averages the metrics over the ranks, runs the held-out evaluation when it is due,
  writes the metrics line, the step's dump and the checkpoints.
- :meth:`Run.build`: what only this kind needs (GRPO: its scorer; the cold start: its teacher),
  called once the model, engines and resumed state exist and before the run directory is
  created, so a refusal leaves nothing behind.
- :meth:`Run.uses_reference`: whether the engine keeps a frozen reference model (GRPO's KL).
- :meth:`Run.reduce_metrics`: metrics derived after the ranks' average (GRPO's ``R_acc``).
- :meth:`Run.write_dump`: what the step writes every ``dump_every`` steps (GRPO's rollouts).
- :meth:`Run.evaluate`: more held-out measures (the cold start's ``image_use``) on top of
  the greedy ones.
- ``PROGRESS_NAME``, ``CURVE_KEYS``, :meth:`Run.progress_postfix`,
  :meth:`Run.batch_description`: how the run shows itself.

Shared by every trainer: ``self.sampler`` (the training states, seeded per rank and
checkpointed), ``self.step_key`` (the JAX key stream of the steps, checkpointed with it),
``self.encode_boards`` (the one way prompts are built), ``self.rollout`` with
:meth:`Run.wake_rollout` (generation with current weights), ``self.engine`` (forward,
backward, optimizer step), ``self.scorer`` (built on first use), :func:`chunks`.
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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner import checkpoint as ckpt
from learner.batching import EncodedPrompts, chat_prompt, encode_prompts, format_token_budget
from learner.config import TrainConfig, check_resume_config, saved_run_config
from learner.engine import TrainingEngine, all_reduce, all_reduce_sum, init_distributed
from learner.measures import paper_measures
from learner.models import COLD_START, TINY, TINY_PRESETS, load_policy, shipped_cold_start, vision_tower
from learner.rollout import HFRolloutEngine, SamplingParams, VLLMRolloutEngine
from learner.runlog import MetricsLog, plot_reward_curve, read_metrics, truncate_logs

CHECKPOINTS = ckpt.CHECKPOINTS
EVAL_SEED_OFFSET = 7_777_777  # held-out evaluation states come from a sampler seeded far from training's
SUMMED_METRICS = ("sequences_trained",)  # counts add up over ranks; everything else is averaged


def held_out_sampler(env: Any, sample_mode: str, sample_depth: int, seed: int) -> Any:
    """The sampler of a run's held-out evaluation states (``sample_depth`` -1: the game's
    default), seeded ``EVAL_SEED_OFFSET`` away from the run's training sampler."""
    from bridges.sampler import StateSampler

    return StateSampler(env, depth=None if sample_depth < 0 else sample_depth, mode=sample_mode,
                        seed=seed + EVAL_SEED_OFFSET)


class StepTimer:
    """Seconds per phase of one step: ``with timer("rollout"): ...`` adds up under ``rollout``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive pieces of ``size`` (the last one shorter).

    >>> chunks([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    """
    return [items[i : i + size] for i in range(0, len(items), size)]


def perception_truths(env: Any, states: Any, scores: Any) -> list[str]:
    """Each state's perception truth: the scorer's (``GroupScores.perception_truths``),
    described here only for a scorer that returns none (a text-reward stand-in)."""
    if getattr(scores, "perception_truths", None) is not None:
        return list(scores.perception_truths)
    import jax

    from bridges.scoring import unbatch

    host = jax.device_get(states)
    return [env.describe(unbatch(host, b)) for b in range(int(np.shape(host.reward)[0]))]



def _holds_a_run(run_dir: Path) -> str:
    return (f"run_dir={str(run_dir)!r} already holds a run (metrics.jsonl); continue it with --resume {run_dir} or "
            f"choose another run_dir")

class Run:
    """Builds everything a training run needs from a :class:`TrainConfig` and runs its loop
    (see the module doc for the hooks a trainer fills in).

    Args:
        config: the run's configuration.
        scorer: replaces the game's ``GroupScorer`` (anything with ``score(states,
            responses, key)`` returning ``GroupScores``-like arrays); for custom rewards.
        echo: where rank 0's messages go.
    """

    PROGRESS_NAME = "run"
    CURVE_KEYS: tuple[str, ...] = ("eval/game",)
    """What ``reward_curve.png`` plots (keys of metrics.jsonl)."""

    def __init__(self, config: TrainConfig, *, scorer: Any = None, echo: Callable[[str], None] = print):
        import jax

        import jaxgym
        from bridges.sampler import StateSampler

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
        self.local_states = config.states_per_step // self.world_size
        self._scorer = scorer
        self._created_run_dir = False
        self.run_dir = self._resolve_run_dir()
        try:
            self.echo(f"Run directory: {self.run_dir.resolve()}")

            seed = config.seed * 1_000_003 + self.rank
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            self.sampler = StateSampler(
                self.env, depth=None if config.sample_depth < 0 else config.sample_depth, mode=config.sample_mode,
                seed=seed,
            )
            self.step_key = jax.random.key(seed + 7919)
            self._build_model_and_engines()
            self.step = 0
            if config.resume:
                self.resume(config.resume)
                self._rollout_stale = not self.rollout.shares_training_weights  # built from the initial weights
            self.build()
        except BaseException:
            self._remove_unused_run_dir()
            raise
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

    # -- hooks a trainer fills in ----------------------------------------------------------

    def optimize_step(self, timer: StepTimer) -> dict[str, Any]:
        """One step of training on this rank (draw a batch, update the weights); returns this
        rank's metrics. ``train_step`` counts, reduces, evaluates, logs and checkpoints."""
        raise NotImplementedError(f"{type(self).__name__} must define optimize_step")

    def build(self) -> None:
        """Build what only this kind of run needs (called before the run directory exists)."""

    def uses_reference(self) -> bool:
        """Whether the training engine keeps a frozen copy of the initial policy."""
        return False

    def reduce_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Average the per-rank metrics (max for maxima, sum for counts) so rank 0 logs the
        global view; a trainer adds the metrics derived from the averages."""
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

    def write_dump(self, directory: Path) -> None:
        """Write the last step's dump into ``directory`` (rank 0, every ``dump_every`` steps)."""

    def progress_postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        """The progress bar's summary of a step."""
        return {}

    def batch_description(self) -> str:
        """What one step trains on, for the banner."""
        return f"{self.config.states_per_step} states per step"

    # -- setup -----------------------------------------------------------------------------

    def _build_model_and_engines(self) -> None:
        config = self.config
        if config.model in TINY_PRESETS:
            self.echo("Using the built-in tiny random-weight Qwen2.5-VL (no download; it produces gibberish and "
                      "exists to smoke-test the pipeline). Train a real model with --model "
                      "Qwen/Qwen2.5-VL-3B-Instruct (a hub id) or --model /path/to/checkpoint.")
        dtype = "bf16" if config.precision == "bf16" else "fp32"
        extra = {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
        policy, self.processor = load_policy(config.model, dtype=dtype, seed=config.seed, **extra)
        reference = copy.deepcopy(policy) if self.uses_reference() else None
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
        self.sampling = SamplingParams(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
                                       max_new_tokens=config.max_response_tokens)
        self.rollout = self._rollout_engine()
        self._rollout_stale = False

    def _resolve_run_dir(self) -> Path:
        config = self.config
        if config.run_dir:
            path = config.run_dir
        elif config.resume:
            path = str(ckpt.run_dir_of(Path(config.resume)))
        elif self.rank == 0:
            from bridges.rundirs import create_run_dir

            path = str(create_run_dir(self.env.name, root="runs"))  # a new directory no concurrent run gets
            self._created_run_dir = True
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

    def _remove_unused_run_dir(self) -> None:
        """After a failed start: the default run directory this run created goes if it is still empty."""
        if self._created_run_dir:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()

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
            self._barrier()
        return VLLMRolloutEngine(
            source, self.processor, seed=self.config.seed + self.rank,
            dtype="bfloat16" if self.config.precision == "bf16" else "float32",
            gpu_memory_utilization=self.config.vllm_gpu_memory_utilization,
            max_model_len=self.config.max_prompt_tokens + self.config.max_response_tokens,
            max_pixels=self.config.vllm_max_pixels,
        )

    @property
    def scorer(self) -> Any:
        """The game's ``GroupScorer`` with the config's reward weights (or the one passed in),
        built on first use: a trainer whose step scores nothing builds it only to evaluate."""
        if self._scorer is None:
            from bridges.scoring import GroupScorer

            overrides = {k: v for k, v in (("w_format", self.config.w_format),
                                           ("w_perception", self.config.w_perception)) if v is not None}
            self._scorer = GroupScorer(self.env, **overrides)
        return self._scorer

    # -- what a step uses ------------------------------------------------------------------

    def encode_boards(self, boards: np.ndarray, texts: list[str] | None = None) -> tuple[list[str], EncodedPrompts]:
        """The prompt texts of ``boards`` (``(B, H, W, 3)`` uint8, one per state; ``texts``:
        the game's prompt unless given, e.g. with a history of earlier turns) and their
        encoding: the one way the trainers and the evaluation build prompts."""
        from bridges.torch_io import prompts_for

        texts = prompts_for(self.env, len(boards)) if texts is None else texts
        encoded = encode_prompts(self.processor, [chat_prompt(self.processor, t) for t in texts], boards,
                                 max_prompt_tokens=self.config.max_prompt_tokens)
        return texts, encoded

    def wake_rollout(self, timer: StepTimer | None = None) -> None:
        """Wake the rollout engine, first giving it the current weights if it holds its own
        copy (vLLM) and they changed since it last had them."""
        self.rollout.wake_up()
        if self._rollout_stale:
            with timer("weight_sync") if timer is not None else contextlib.nullcontext():
                self.rollout.sync_weights(self.engine.named_checkpoint_tensors())
            self._rollout_stale = False

    def weights_changed(self) -> None:
        """Record an optimizer step: a rollout engine with its own copy of the weights needs the new ones."""
        self._rollout_stale = not self.rollout.shares_training_weights

    # -- one step --------------------------------------------------------------------------

    def train_step(self) -> dict[str, Any]:
        """Run one step of this run's kind; returns its metrics (also written to metrics.jsonl)."""
        timer = StepTimer()
        step_start = time.perf_counter()
        metrics = self.optimize_step(timer)
        self.step += 1
        metrics = self.log_step(self.reduce_metrics(metrics), timer, step_start)
        config = self.config
        if self.rank == 0 and config.dump_every and self.step % config.dump_every == 0:
            self.write_dump(self.run_dir / "rollouts" / f"step_{self.step:06d}")
        if config.save_every and self.step % config.save_every == 0 and self.step < config.steps:
            self.save()
        return metrics

    def log_step(self, metrics: dict[str, Any], timer: StepTimer, step_start: float) -> dict[str, Any]:
        """A step's reduced metrics, with the held-out evaluation when it is due and the phase
        times, written to ``metrics.jsonl`` on rank 0."""
        if self._evaluation_due():
            with timer("eval"):
                metrics.update({f"eval/{k}": v for k, v in self.evaluate().items() if math.isfinite(v)})
        metrics.update({f"seconds/{k}": v for k, v in timer.seconds.items()})
        metrics["seconds/step"] = time.perf_counter() - step_start
        if self.rank == 0:
            self.metrics.write(self.step, metrics)
        return metrics

    # -- held-out evaluation ---------------------------------------------------------------

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
        self.wake_rollout()
        for rows in chunks(list(range(len(boards))), self.config.logprob_micro_batch_size):
            generation = self.rollout.generate(prompts_for(self.env, len(rows)), boards[rows], 1, greedy)
            texts.extend(generation.texts)
        self.rollout.sleep()
        responses = [[t] for t in texts]
        scores = self.scorer.score(states, responses, jax.random.key(self.config.seed + EVAL_SEED_OFFSET))
        return paper_measures(scores, responses, perception_truths(self.env, states, scores), env=self.env)

    def metrics_write_eval(self, measured: dict[str, float]) -> None:
        """Log an evaluation made outside a step (step 0: before any update)."""
        if self.rank == 0:
            self.metrics.write(self.step, {f"eval/{k}": v for k, v in measured.items() if math.isfinite(v)})

    # -- checkpoints -----------------------------------------------------------------------

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
        rng = ckpt.rng_state(self.sampler.state_dict(), _key_data(self.step_key))
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
        sampler_state, step_key = ckpt.set_rng_state(rng, str(rng_file))
        try:
            self.sampler.load_state_dict(sampler_state)
            self.step_key = jax.random.wrap_key_data(step_key)
        except (KeyError, TypeError, ValueError) as error:
            raise ckpt.CheckpointError(f"{rng_file}: the sampler or step key cannot be restored ({error})") from None

    # -- the loop --------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Run until ``config.steps``; checkpoint, export and plot at the end. Returns a summary."""
        from tqdm import tqdm

        config = self.config
        self.echo(f"Game {self.env.id}, model {config.model}, {self.batch_description()}, "
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
            bar.set_postfix(self.progress_postfix(metrics))
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
