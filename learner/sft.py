"""Perception cold start: teach a policy to read the board (and answer like a teacher)
before GRPO, the "G1" recipe's first stage.

    python learner/sft.py --game 2048                                   # tiny model, expert teacher
    python learner/sft.py --game 2048 --teacher legal-random --steps 900 --run_dir runs/cs-2048
    python learner/train.py --game 2048 --model runs/cs-2048/export      # then GRPO from it
    python learner/sft.py --resume runs/cs-2048 --steps 1200             # continue a cold start

Every step draws fresh training states (``bridges.sampler``, the game's protocol, seeded and
resumable), asks the teacher (``bridges.teachers``) for an answer, and trains on the target
response ``<perception>`` exact board ``</perception>`` + a one-line ``<think>`` + the
teacher's ``<answer>``, followed by the stop token: cross-entropy on the response tokens
only, **through the trainer's own forward path** (``learner.logprobs`` inside the DeepSpeed
engine, the multimodal rotary positions of ``generate``). A plain HF forward without those
positions places the image tokens elsewhere than generation does, and a model trained that
way is blind when it plays.

It is a :class:`learner.run.Run` (a sibling of :class:`learner.trainer.GRPOTrainer`) with
its own step: the same config keys (``--preset cold-start`` is applied first), run directory,
engine, checkpoints, resume, metrics log and export (``<run_dir>/export``, loadable with
``--model``); no scorer in its step and no reference model. Every ``eval_every`` steps, greedy
generation through the rollout engine on held-out states gives the paper's measures
(``learner.measures``): ``eval/P_acc``, ``eval/cell_accuracy``, ``eval/format``,
``eval/legal``, ``eval/game`` ..., and whether the model reads its image at all
(``eval/image_use``: how much worse the held-out targets score with the images swapped).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner.batching import collate
from learner.config import TrainConfig
from learner.run import Run, StepTimer, chunks


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, normalizer: float) -> torch.Tensor:
    """Token-mean negative log-likelihood: ``-(logp * mask).sum() / normalizer``.

    ``logp``/``mask``: ``(B, T)`` (one micro-batch); ``normalizer``: the response tokens of
    the whole optimizer step (all micro-batches and ranks) over the number of ranks
    (``learner.algorithms.loss_normalizer``), so that neither micro-batching nor data
    parallelism (whose ranks' gradients are averaged) changes the gradient."""
    return -(logp * mask).sum() / max(float(normalizer), 1e-9)


class ColdStartTrainer(Run):
    """Supervised cold start on teacher targets (see module doc)."""

    PROGRESS_NAME = "cold start"
    CURVE_KEYS = ("loss/sft", "token_accuracy", "eval/P_acc", "eval/cell_accuracy", "eval/image_use", "eval/legal",
                  "eval/game")

    def __init__(self, config: TrainConfig, **kwargs: Any):
        if config.kl_coef != 0:
            raise ValueError(f"kl_coef={config.kl_coef!r}: the cold start has no KL term (it is GRPO's); leave "
                             f"kl_coef at 0, the cold-start preset's value")
        super().__init__(config, **kwargs)

    def build(self) -> None:
        from bridges.teachers import Teacher

        stages_of(self.config.model)  # a --model whose stage record is unreadable is refused now, not at the end
        self.teacher = Teacher(self.env, self.config.teacher)
        self.stop_id = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def progress_postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        return {"loss": f"{metrics['loss/sft']:.3f}", "tok_acc": f"{metrics['token_accuracy']:.3f}"}

    def batch_description(self) -> str:
        # One teacher target per state: neither the GRPO group size nor a rollout engine plays a part.
        return f"{self.config.states_per_step} states per step (one '{self.config.teacher}' target each)"

    # -- data ------------------------------------------------------------------------------

    def targets(self, states: Any, key: Any) -> tuple[list[str], list[list[int]]]:
        """The teacher's target responses for a batch of states: texts and token ids (the
        stop token appended)."""
        import jax

        from bridges.scoring import unbatch
        from bridges.teachers import target_text

        actions, raw = self.teacher.act(states, key)
        host = jax.device_get(states)
        texts = [target_text(self.env, unbatch(host, b), int(actions[b]), float(raw[b])) for b in range(len(actions))]
        tokenizer = self.processor.tokenizer
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [self.stop_id] for t in texts]
        return texts, ids

    def forward(self, prompts: Any, rows: list[int], ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs ``(len(rows), T)`` of the target tokens ``ids[r]`` after prompt ``r`` and
        their mask, through the trainer's engine (the forward path of GRPO's update)."""
        batch = collate(prompts, rows, [ids[r] for r in rows], pad_token_id=self.pad_token_id)
        logp, _ = self.engine.logprobs(batch)
        return logp, batch.response_mask.to(logp.device)

    # -- evaluation --------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """The greedy measures (:meth:`learner.run.Run.evaluate`) plus the image's use: the
        teacher-forced NLL per target token on the held-out states with their own images
        (``nll``) and with each image swapped for the next state's (``nll_swapped``). A model
        that reads the board loses when the images are swapped (``image_use`` =
        ``nll_swapped - nll`` > 0); one on the loss plateau writes the average board whatever
        it sees (``image_use`` ~ 0), however low its loss."""
        import jax

        measured = super().evaluate()
        states, boards = self.held_out()
        if len(boards) < 2:
            return measured
        # A fixed key: the held-out targets are the same at every evaluation, and the training
        # stream of keys is left alone (a resumed run stays bit for bit the same).
        _, ids = self.targets(states, jax.random.key(self.config.seed))
        nll = {}
        for name, shown in (("nll", boards), ("nll_swapped", np.roll(boards, 1, axis=0))):
            _, prompts = self.encode_boards(shown)
            total, summed = 0.0, 0.0
            with torch.no_grad():
                for rows in chunks(list(range(len(shown))), self.config.logprob_micro_batch_size):
                    logp, mask = self.forward(prompts, rows, ids)
                    summed += float(-(logp * mask).sum())
                    total += float(mask.sum())
            nll[name] = summed / max(total, 1.0)
        return {**measured, **nll, "image_use": nll["nll_swapped"] - nll["nll"]}

    # -- one step ----------------------------------------------------------------------------

    def optimize_step(self, timer: StepTimer) -> dict[str, Any]:
        """One optimizer step on fresh teacher targets; returns this rank's metrics."""
        import jax

        from bridges.torch_io import images_to_numpy
        from learner.algorithms import loss_normalizer
        from learner.engine import all_reduce_sum

        config = self.config
        with timer("sample"):
            states, images = self.sampler.sample(self.local_states)
            boards = images_to_numpy(images)
            self.step_key, key = jax.random.split(self.step_key)
            _, ids = self.targets(states, key)
            _, prompts = self.encode_boards(boards)
        # Each rank's share of the global token mean, scaled by the rank count: DeepSpeed
        # averages the ranks' gradients, and reduce_metrics averages their metrics.
        normalizer = loss_normalizer([float(len(t)) for t in ids], "token-mean", world_size=self.world_size,
                                     all_reduce_sum=all_reduce_sum if self.world_size > 1 else None)
        loss_sum, correct = 0.0, 0.0
        with timer("update"):
            micro_batches = chunks(list(range(self.local_states)), config.micro_batch_size)
            for index, rows in enumerate(micro_batches):
                logp, mask = self.forward(prompts, rows, ids)
                loss = sft_loss(logp, mask, normalizer)
                self.engine.backward(loss, last=index == len(micro_batches) - 1)
                loss_sum += float(loss.detach()) * normalizer
                # A token is "right" when the model gives it more than half the probability:
                # then greedy decoding surely picks it (teacher-forced).
                correct += float(((logp.detach() > np.log(0.5)) * mask).sum())
            grad_norm = self.engine.step()
        self.weights_changed()
        return {
            "loss/sft": loss_sum / normalizer,
            "token_accuracy": correct / normalizer,
            "response_length/mean": float(np.mean([len(t) for t in ids])),
            "grad_norm": grad_norm,
            "lr": self.engine.lr,
            "sequences_trained": self.local_states,
        }


# What a shipped checkpoint's GRPO run uses where the user left the defaults (see
# learner.run.resolve_cold_start): the sampling it was cold-started on, and the run the
# README's main job makes from it (about 4 minutes on 2 busy cores, greedy evaluations
# every 10 steps to show the curve). lr 3e-4: at 1e-3 GRPO wore both cold starts' reading
# down within 3-30 steps (the README's "Does it learn?").
SHIPPED_TRAIN_KEYS = ("sample_depth", "sample_mode")
SHIPPED_RUN = dict(steps=40, states_per_step=8, group_size=4, lr=3e-4, eval_every=10, eval_states=32)
SHIPPED_RUN_PER_GAME: dict[str, dict[str, Any]] = {
    # Shisen-Sho's paper protocol has no perception reward; without one, GRPO at lr 1e-3 or
    # 3e-4 wore earlier cold starts' reading down (held-out cell accuracy 0.955 -> 0.66-0.80 in
    # 40-80 steps). Groups of 8: the cold start picks one of the first tile's 1-3 partners at
    # random (its `first-same-kind` teacher), so a group of 4 often names one pair only and
    # gives no gradient. 100 steps (2.4-2.5 s each with the brief prompt) and 64 held-out boards
    # (at a legal rate of 0.8 one s.e. of the greedy reward is 0.14 on 32 boards, 0.10 on 64).
    "shisensho": dict(steps=100, group_size=8, lr=3e-4, w_perception=1.0, eval_every=20, eval_states=64),
}


STAGES_FILE = "cold_start.json"
"""Written into every cold start's export: the stages that made it (each one's command,
teacher, steps, seed and seconds), the earlier ones read from its ``--model`` directory."""


def stages_of(model: str) -> list[dict[str, Any]]:
    """The cold-start stages behind a ``--model`` directory (its ``cold_start.json``, or a
    shipped checkpoint's ``jaxgym.json``); ``[]`` for a model built from scratch.

    Raises ``ValueError`` naming the file when it is not a JSON object or its ``stages`` is
    not a list of stage objects (each with its ``command``): such a record would otherwise
    be copied piece by piece into the next stage's."""
    from bridges.safe_json import loads_bounded

    directory = Path(model)
    for name in (STAGES_FILE, "jaxgym.json"):
        path = directory / name
        if not path.is_file():
            continue
        try:
            record = loads_bounded(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not readable JSON ({error}); restore it from the run that wrote it, or "
                             f"delete it to record no earlier stages") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(record).__name__}; restore it from the run "
                             f"that wrote it, or delete it to record no earlier stages")
        stages = record.get("stages")
        if stages is None or stages == []:  # a single-stage record: the stage is the record itself
            keys = ("command", "model", "teacher", "steps", "seed", "seconds")
            return [{k: record.get(k) for k in keys}]
        if not isinstance(stages, list) or not all(
                isinstance(stage, dict) and isinstance(stage.get("command"), str) for stage in stages):
            raise ValueError(f"{path}: 'stages' must be a list of objects, each with its 'command' string; got "
                             f"{json.dumps(stages)[:80]}. Restore it from the run that wrote it, or delete it to "
                             f"record no earlier stages")
        return list(stages)
    return []


LAUNCH_FILE = "cold_start_launch.json"
"""Written into a cold start's run directory when it starts (not when it resumes): its
arguments and number of ranks, so that a resumed run records the command that rebuilds it."""


def launcher(world_size: int) -> str:
    """How ``learner/sft.py`` is started on ``world_size`` ranks of one machine."""
    if world_size == 1:
        return "python learner/sft.py"
    return f"python -m torch.distributed.run --nproc_per_node {world_size} learner/sft.py"


def with_option(argv: list[str], key: str, value: Any) -> list[str]:
    """``argv`` with config key ``key`` set to ``value``, in whichever form it was given
    (appended as ``--key value`` where it was not).

    >>> with_option(["--game", "2048", "--steps", "5"], "steps", 9), with_option(["steps=5"], "steps", 9)
    (['--game', '2048', '--steps', '9'], ['steps=9'])
    >>> with_option(["--steps=5"], "lr_schedule_steps", 9)
    ['--steps=5', '--lr_schedule_steps', '9']
    """
    out, found, skip = [], False, False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == f"--{key}" and index + 1 < len(argv):
            out += [f"--{key}", str(value)]
            found = skip = True
        elif arg.startswith((f"--{key}=", f"{key}=")):
            out.append(arg.split("=", 1)[0] + f"={value}")
            found = True
        else:
            out.append(arg)
    return out if found else [*out, f"--{key}", str(value)]


def has_option(argv: list[str], key: str) -> bool:
    """Whether ``argv`` sets config key ``key`` in any form the parser takes.

    >>> [has_option(a, "ship_to") for a in (["--ship_to", "x"], ["--ship_to=x"], ["ship_to=x"], ["--ship"])]
    [True, True, True, False]
    """
    return any(arg == f"--{key}" or arg.startswith((f"--{key}=", f"{key}=")) for arg in argv)


def write_launch(run_dir: Path, argv: list[str], world_size: int) -> None:
    (run_dir / LAUNCH_FILE).write_text(json.dumps({"argv": argv, "world_size": world_size}, indent=1) + "\n")


def _stage_command(config: TrainConfig, argv: list[str], world_size: int, run_dir: Path | None) -> tuple[str, bool]:
    """The command that rebuilds this run, and whether it is a resumed run's original launch
    (whose seconds are then the run's, summed from its metrics)."""
    import shlex

    launch = run_dir / LAUNCH_FILE if (config.resume and run_dir is not None) else None
    if launch is None or not launch.is_file():
        return f"{launcher(world_size)} {shlex.join(argv)}", False
    started = json.loads(launch.read_text())
    rebuild = with_option(list(started["argv"]), "steps", config.steps)
    if config.lr_schedule_steps or has_option(rebuild, "lr_schedule_steps"):  # e.g. stopped before its cosine ended
        rebuild = with_option(rebuild, "lr_schedule_steps", config.lr_schedule_steps)
    if config.ship_to and not has_option(rebuild, "ship_to"):
        rebuild += ["--ship_to", config.ship_to]
    return f"{launcher(int(started['world_size']))} {shlex.join(rebuild)}", True


def _run_seconds(run_dir: Path) -> float:
    """The seconds of every step of a run directory's metrics (the last record of each step)."""
    from learner.runlog import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    per_step = {int(row["step"]): float(row.get("seconds/step", 0.0)) for row in rows}
    return sum(per_step.values())


def record_stages(summary: dict[str, Any], config: TrainConfig, argv: list[str], *, world_size: int = 1,
                  run_dir: Path | None = None) -> list[dict[str, Any]]:
    """Write the export's ``cold_start.json``: the ``--model``'s stages, then this run's (for a
    resumed run, the command it was started with, at its final step count)."""
    command, resumed = _stage_command(config, argv, world_size, run_dir)
    seconds = _run_seconds(run_dir) if resumed and run_dir is not None else summary.get("seconds")
    stage = {"command": command, "model": config.model, "teacher": config.teacher,
             "steps": config.steps, "seed": config.seed, "seconds": seconds}
    stages = [*stages_of(config.model), stage]
    if summary.get("export"):
        (Path(summary["export"]) / STAGES_FILE).write_text(json.dumps({"stages": stages}, indent=1) + "\n")
    return stages


def ship(summary: dict[str, Any], config: TrainConfig, argv: list[str], target: Path, *, world_size: int = 1,
         run_dir: Path | None = None) -> Path:
    """Copy a finished cold start's export to ``target`` with its ``jaxgym.json`` record. A
    cold start continued from another one's export (``--model``) records every stage: its
    ``command`` is the stages' commands joined by ``&&``, the whole rebuild in one line."""
    import shutil

    if not summary.get("export"):
        raise ValueError("ship_to needs the run's export; do not pass --export false")
    stages = record_stages(summary, config, argv, world_size=world_size, run_dir=run_dir)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(summary["export"], target)
    (target / STAGES_FILE).unlink(missing_ok=True)
    record = {
        "game": config.game,
        "game_params": config.game_params,
        "teacher": config.teacher,
        "model": stages[0].get("model") or config.model,
        "seed": stages[0]["seed"],
        "steps": sum(int(stage["steps"] or 0) for stage in stages),
        "command": " && ".join(stage["command"] for stage in stages),
        "train": {**{k: getattr(config, k) for k in SHIPPED_TRAIN_KEYS}, **SHIPPED_RUN,
                  **SHIPPED_RUN_PER_GAME.get(config.game.split("-v")[0], {})},
        "last_eval": summary.get("last_eval"),
        "seconds": sum(float(stage["seconds"] or 0.0) for stage in stages),
        "stages": stages,
    }
    (target / "jaxgym.json").write_text(json.dumps(record, indent=1) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        from learner.train import _help

        print(__doc__.strip() + "\n\nThe keys are the trainer's (python learner/train.py --help); the 'cold-start' "
              "preset is applied first.\n\n" + _help().split("Presets:", 1)[1])
        return 0
    from learner.config import parse_args

    try:
        config = parse_args(["--preset", "cold-start", *argv])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        trainer = ColdStartTrainer(config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = dict(world_size=trainer.world_size, run_dir=trainer.run_dir)
    if trainer.rank == 0 and not config.resume:
        write_launch(trainer.run_dir, argv, trainer.world_size)
    summary = trainer.train()
    if trainer.rank == 0:
        if config.ship_to:
            print(f"Shipped to {ship(summary, trainer.config, argv, Path(config.ship_to), **where)}")
        else:
            record_stages(summary, trainer.config, argv, **where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
