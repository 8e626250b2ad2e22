"""The learner's configuration: one typed dataclass, presets, YAML files, CLI overrides.

Precedence, lowest first: the dataclass defaults, the preset (``--preset``), a YAML file
(``--config run.yaml``), then command-line overrides in either form ``--key value``,
``--key=value`` or ``key=value``. Unknown keys and invalid values raise ``ValueError``
naming the key, the value and what is allowed.

>>> cfg = parse_args(["--game", "2048", "steps=3", "--lr=0.01"])
>>> cfg.game, cfg.steps, cfg.lr, cfg.model
('2048', 3, 0.01, 'cold-start')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridges import cli
from bridges.cli import option
from learner.algorithms import AGGREGATION_MODES, KL_ESTIMATORS  # the maths names its options (torch-free)

# The allowed values of the engine's choice keys. They live here, not beside the code that
# uses them (learner.engine, which imports them from here), so reading a command line
# imports neither torch nor DeepSpeed.
ZERO_STAGES: tuple[int, ...] = (0, 1, 2, 3)
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
ROLLOUT_ENGINES: tuple[str, ...] = ("hf", "vllm")


@dataclass
class TrainConfig:
    """Every knob of a GRPO run (see the README's "Train a model" for a table)."""

    # What to train on and with.
    game: str = option("2048", "A registered jaxgym game, bare name or versioned id.")
    game_params: dict[str, Any] = option(
        help="Keyword arguments of ``jaxgym.make`` (JSON on the command line: '{\"size\": 4}').", default_factory=dict)
    model: str = option("cold-start", (
        "'cold-start' (the cold-started tiny checkpoint shipped for the game, else 'tiny'), 'tiny' or "
        "'tiny-h64' (built-in random-weight Qwen2.5-VL), a local directory or a hub id."))
    attn_implementation: str = option("", (
        "Passed to from_pretrained for a real model ('' = transformers' default, e.g. sdpa; "
        "'flash_attention_2' on GPUs with flash-attn installed)."))
    preset: str = option("default", (
        "A named set of defaults applied before the YAML file and the overrides: default, g1."))
    seed: int = option(0, (
        "Seeds every RNG (torch, numpy, python, the state sampler's JAX key, the tiny model's weights)."))
    steps: int = option(6, "Rollout batches to train on (the total, counting the steps of a resumed run).")
    run_dir: str = option("", "Where logs and checkpoints go ('' = runs/<game>-<time>).")

    # States and rollouts.
    states_per_step: int = option(4, "Game states per optimizer step (all ranks together); the paper: 128.")
    group_size: int = option(4, "Responses per state (GRPO's group); the paper: 5.")
    sample_depth: int = option(-1, (
        "Random actions from a fresh board to a training state (-1: the game's paper default)."))
    sample_mode: str = option("paper", (
        "How training states are drawn (bridges.sampler): paper, uniform, legal, random-depth."))
    temperature: float = option(1.0, "Sampling temperature of the rollouts (log-probs are of this distribution).")
    top_p: float = option(1.0, "Nucleus sampling of the rollouts (1: off).")
    top_k: int = option(0, "Top-k sampling of the rollouts (0: off).")
    max_prompt_tokens: int = option(1024, (
        "Longest prompt (image tokens included); longer ones are an error, never truncated."))
    max_response_tokens: int = option(0, (
        "Longest response (0: what the game's response format needs, from the token count of a full "
        "perception + reasoning + answer target, plus a margin); the paper: 8192."))
    rollout_engine: str = option("hf", (
        "'hf' (transformers generate, shares the training weights) or 'vllm' (GPU only)."), choices=ROLLOUT_ENGINES)
    vllm_gpu_memory_utilization: float = option(0.4, "Share of the GPU vLLM may take (it sleeps during updates).")
    vllm_max_pixels: int = option(448 * 448, (
        "vLLM's image budget: the board size, so it reserves no memory for larger images."))

    # Rewards (None: the game's paper defaults from bridges.protocol).
    w_format: float | None = option(None, "Weight of the format reward (None: the game's paper default, 1).")
    w_perception: float | None = option(None, "Weight of the perception reward (None: the game's paper default).")

    # GRPO.
    advantage_std_normalize: bool = option(True, (
        "Divide advantages by the group's (unbiased) std; False keeps the mean baseline only."))
    advantage_eps: float = option(1e-6, "Added to the group std.")
    drop_zero_variance_groups: bool = option(False, (
        "Leave out groups whose rewards are all equal (they carry no signal; DAPO)."))
    clip_low: float = option(0.2, "The ratio is clipped below at 1 - clip_low.")
    clip_high: float = option(0.2, "... and above at 1 + clip_high (DAPO's clip-higher: 0.28).")
    dual_clip: float | None = option(None, "Dual-clip PPO bound c > 1 for negative advantages (None: off).")
    kl_coef: float = option(0.01, "0 disables the KL term and no reference model is loaded.")
    kl_estimator: str = option("k3", (
        "k1, k2 or k3 (the paper's low-variance \"low_var_kl\", clamped to +-10)."), choices=KL_ESTIMATORS)
    loss_aggregation: str = option("token-mean", (
        "token-mean (over the global batch; DAPO) or seq-mean-token-mean (the original GRPO)."),
        choices=AGGREGATION_MODES)
    updates_per_step: int = option(1, (
        "Optimizer steps per rollout batch (the batch is split into this many mini-batches)."))
    ppo_epochs: int = option(1, "Passes over each rollout batch.")
    recompute_old_logprobs: bool = option(False, (
        "Run a separate no-grad pass for the old log-probs even with one update per batch (where they equal "
        "the detached current ones, so the pass is skipped by default)."))

    # Optimisation.
    lr: float = option(2e-3, (
        "AdamW learning rate (the tiny default's random weights need a large one; the paper: 1e-6)."))
    weight_decay: float = option(0.01, "AdamW weight decay (not applied to biases and norms).")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    adam_eps: float = option(1e-8, "AdamW epsilon.")
    warmup_steps: int = option(0, (
        "Linear learning-rate warm-up steps; then constant, or a cosine if ``min_lr_ratio`` < 1."))
    min_lr_ratio: float = option(1.0, (
        "1: constant learning rate after warm-up; below 1: a cosine from ``lr`` down to ``lr * min_lr_ratio`` "
        "at the last of ``steps`` (a resume that changes ``steps`` reshapes it; see ``lr_schedule_steps``)."))
    lr_schedule_steps: int = option(0, (
        "The step at which the cosine reaches its floor (0: ``steps``). A run stopped early keeps its schedule: "
        "``--resume RUN --steps 1500 --lr_schedule_steps 3000`` ends step 1500 of a 3000-step cosine."))
    grad_clip: float = option(1.0, "Clip the global gradient norm to this (0: off).")
    micro_batch_size: int = option(8, "Sequences per forward/backward pass on one device.")
    logprob_micro_batch_size: int = option(16, "Sequences per no-grad pass (old and reference log-probs).")
    logprob_chunk_tokens: int = option(1024, (
        "Tokens per LM-head chunk: bounds the fp32 logits held at once to this x vocab."))

    # Engine.
    torch_threads: int = option(1, (
        "CPU threads for torch (0: torch's default). One thread is fastest for the tiny model, and far faster "
        "on a machine whose cores other processes also use."))
    zero_stage: int = option(0, (
        "DeepSpeed ZeRO stage 0-3 (tested: 0, 2, 3); 3 also shards the parameters and the reference model."),
        choices=ZERO_STAGES)
    precision: str = option("fp32", (
        "fp32 or bf16 (bf16 weights, fp32 master weights in the optimizer)."), choices=PRECISIONS)
    freeze_vision_tower: bool = option(False, (
        "Train the language model only: the vision encoder keeps its weights (EasyR1's freeze_vision_tower); "
        "keeps a cold start's reading from drifting while RL changes the answers."))
    gradient_checkpointing: bool = option(False, (
        "Recompute layer activations in the backward pass (less memory, more compute)."))

    # Logging and checkpoints.
    dump_every: int = option(2, (
        "Write a rollout dump (board PNG, prompt, responses, rewards) every k steps (0: never)."))
    dump_groups: int = option(2, "Groups (boards) per rollout dump.")
    save_every: int = option(0, "Checkpoint every k steps (0: only at the end).")
    keep_checkpoints: int = option(2, "How many of the newest checkpoints to keep (0: all).")
    export: bool = option(True, "Write a from_pretrained-loadable export at the end.")
    resume: str = option("", "A run directory or checkpoint directory to continue from.")
    tensorboard: bool = option(True, "Also log to TensorBoard when the tensorboard package is installed.")
    progress: bool = option(True, "Show a tqdm progress bar (rank 0).")

    # Cold start (learner/sft.py) and evaluation during a run.
    teacher: str = option("expert", (
        "Cold start's answer teacher (bridges.teachers): expert, legal-random, same-kind, "
        "first-same-kind, first-next (those three: tile games), random."))
    eval_every: int = option(0, "Greedy evaluation on held-out states every k steps and at the end (0: never).")
    eval_states: int = option(32, "Held-out states of that evaluation (drawn once, with a seed apart from training's).")
    ship_to: str = option("", (
        "Cold start only: copy the final export and a jaxgym.json record (board, teacher, the command, the "
        "last evaluation) here; learner/assets/cold-start-<game> is what --model cold-start loads."))

    def validate(self, world_size: int = 1) -> TrainConfig:
        """Raise ``ValueError`` naming the first invalid value; returns ``self``."""
        def need(ok: bool, key: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"{key}={getattr(self, key)!r} is invalid; allowed: {allowed}")

        need(self.group_size >= 2, "group_size",
             ">= 2 (GRPO compares the responses within a group; one response has no baseline)")
        need(self.states_per_step >= 1, "states_per_step", ">= 1")
        need(self.states_per_step % world_size == 0, "states_per_step",
             f"a multiple of the number of data-parallel ranks ({world_size})")
        need(self.steps >= 1, "steps", ">= 1")
        need(self.temperature > 0, "temperature", "> 0 (GRPO samples; greedy decoding gives identical groups)")
        need(0 < self.top_p <= 1, "top_p", "(0, 1]")
        need(self.top_k >= 0, "top_k", ">= 0 (0 disables it)")
        need(self.max_response_tokens >= 0, "max_response_tokens", ">= 1, or 0 for what the game's format needs")
        need(self.max_prompt_tokens >= 1, "max_prompt_tokens", ">= 1")
        need(self.rollout_engine in ROLLOUT_ENGINES, "rollout_engine", "'hf' or 'vllm'")
        need(self.advantage_eps >= 0, "advantage_eps", ">= 0")
        need(self.clip_low >= 0 and self.clip_low < 1, "clip_low", "[0, 1)")
        need(self.clip_high >= 0, "clip_high", ">= 0")
        need(self.dual_clip is None or self.dual_clip > 1, "dual_clip", "None or > 1")
        need(self.kl_coef >= 0, "kl_coef", ">= 0")
        need(self.kl_estimator in KL_ESTIMATORS, "kl_estimator", ", ".join(KL_ESTIMATORS))
        need(self.loss_aggregation in AGGREGATION_MODES, "loss_aggregation", ", ".join(AGGREGATION_MODES))
        need(self.updates_per_step >= 1, "updates_per_step", ">= 1")
        need(self.ppo_epochs >= 1, "ppo_epochs", ">= 1")
        need(self.lr > 0, "lr", "> 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.warmup_steps >= 0, "warmup_steps", ">= 0")
        need(0 < self.min_lr_ratio <= 1, "min_lr_ratio", "in (0, 1]")
        need(self.lr_schedule_steps >= 0, "lr_schedule_steps", ">= 0 (0: steps)")
        need(self.grad_clip >= 0, "grad_clip", ">= 0 (0 disables clipping)")
        need(self.micro_batch_size >= 1, "micro_batch_size", ">= 1")
        need(self.logprob_micro_batch_size >= 1, "logprob_micro_batch_size", ">= 1")
        need(self.logprob_chunk_tokens >= 1, "logprob_chunk_tokens", ">= 1")
        need(self.torch_threads >= 0, "torch_threads", ">= 0 (0: torch's default)")
        need(self.zero_stage in ZERO_STAGES, "zero_stage", ", ".join(map(str, ZERO_STAGES)))
        need(self.precision in PRECISIONS, "precision", ", ".join(PRECISIONS))
        need(self.dump_every >= 0, "dump_every", ">= 0")
        need(self.save_every >= 0, "save_every", ">= 0")
        need(self.keep_checkpoints >= 0, "keep_checkpoints", ">= 0 (0 keeps all)")
        need(self.sample_depth >= -1, "sample_depth", ">= 0, or -1 for the game's default")
        need(self.preset in PRESETS, "preset", ", ".join(PRESETS))
        need(self.eval_every >= 0, "eval_every", ">= 0 (0: never)")
        need(self.eval_states >= 1, "eval_states", ">= 1")
        for weight in ("w_format", "w_perception"):  # NaN passes no comparison: refused by name here
            need(getattr(self, weight) is None or math.isfinite(getattr(self, weight)), weight,
                 "a finite number, or None for the game's default")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The CPU smoke run (the dataclass defaults): the built-in tiny model, a few small steps.
    "default": dict(),
    # The paper's recipe (G0: RL from the instruct model) for Qwen2.5-VL-7B on 4x80 GB:
    #   deepspeed --num_gpus 4 learner/train.py --preset g1 --game shisensho \
    #       --model Qwen/Qwen2.5-VL-7B-Instruct
    "g1": dict(
        model="Qwen/Qwen2.5-VL-7B-Instruct",
        steps=400,
        states_per_step=128,
        group_size=5,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_prompt_tokens=1024,
        max_response_tokens=8192,
        rollout_engine="vllm",
        vllm_gpu_memory_utilization=0.4,
        advantage_std_normalize=True,
        advantage_eps=1e-6,
        clip_low=0.2,
        clip_high=0.2,
        kl_coef=0.01,
        kl_estimator="k3",
        loss_aggregation="token-mean",
        updates_per_step=1,
        lr=1e-6,
        weight_decay=0.01,
        warmup_steps=0,
        grad_clip=1.0,
        torch_threads=0,
        micro_batch_size=4,
        logprob_micro_batch_size=16,
        logprob_chunk_tokens=2048,
        zero_stage=3,
        precision="bf16",
        gradient_checkpointing=True,
        dump_every=10,
        save_every=25,
    ),
    # The perception cold start of the tiny model (python learner/sft.py): teacher-forced
    # perception + reasoning + answer on fresh states every step, greedy evaluation.
    "cold-start": dict(
        model="tiny",  # a cold start trains the model from scratch, not from the shipped cold start
        steps=600,
        states_per_step=16,
        lr=3e-3,
        warmup_steps=10,
        kl_coef=0.0,
        micro_batch_size=16,
        eval_every=100,
        eval_states=32,
        dump_every=0,
        save_every=200,
    ),
}


def field_docs() -> dict[str, str]:
    """Each key's documentation: the help text in its field's metadata."""
    return cli.field_help(TrainConfig)


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (a YAML value or a command-line string) to the type of ``key``."""
    return cli.coerce(TrainConfig, key, value)


def from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A config with ``values`` applied over ``base`` (default: the dataclass defaults)."""
    config = dataclasses.replace(base) if base is not None else TrainConfig()
    for key, value in values.items():
        setattr(config, key, coerce(key, value))
    return config


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ValueError(f"cannot read config file {str(path)!r}: {reason}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"config file {str(path)!r} is not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


RESUME_SAFE_KEYS = ("steps", "lr_schedule_steps", "run_dir", "resume", "dump_every", "dump_groups", "save_every",
                    "keep_checkpoints", "eval_every", "export", "ship_to", "tensorboard", "progress", "torch_threads")
"""The keys a resumed run may set differently from the run it continues: how long it runs (and
so where its cosine ends) and what it logs and keeps. Everything else shapes the training
itself (the game, the model, the optimizer, the batch) and must stay what the checkpoint was
trained with."""


def saved_run_config(resume: str | Path) -> dict[str, Any]:
    """The saved config of the run ``resume`` names: a checkpoint's manifest config, else the
    run directory's ``config.yaml``. Raises ``ValueError`` if neither exists."""
    from learner import checkpoint

    path = Path(resume)
    manifest = path / checkpoint.MANIFEST
    if manifest.is_file():
        saved = checkpoint.read_json(manifest).get("config")
        if isinstance(saved, dict):
            return saved
    config_file = checkpoint.run_dir_of(path) / "config.yaml"
    if not config_file.is_file():
        raise ValueError(f"resume={str(resume)!r} is not a run directory or checkpoint: it has no {config_file.name} "
                         f"(pass the directory a training run printed at its start)")
    return load_yaml(config_file)


def check_resume_config(saved: dict[str, Any], config: TrainConfig, *, source: str | Path,
                        resolve: Callable[[TrainConfig], TrainConfig] | None = None) -> None:
    """Raise ``ValueError`` if ``config`` changes a key outside ``RESUME_SAFE_KEYS`` from the
    ``saved`` config of the run it resumes, naming every such key with both values.
    ``resolve`` maps the saved config the way ``config`` was (e.g. ``model='cold-start'``)."""
    try:
        base = from_dict(saved)
    except ValueError as error:
        raise ValueError(f"the saved config of {str(source)!r} is not readable: {error}") from None
    if resolve is not None:
        base = resolve(base)
    changed = [f"{f.name}: saved {getattr(base, f.name)!r}, now {getattr(config, f.name)!r}"
               for f in dataclasses.fields(TrainConfig)
               if f.name not in RESUME_SAFE_KEYS and getattr(base, f.name) != getattr(config, f.name)]
    if changed:
        raise ValueError(f"cannot resume {str(source)!r} with different settings ({'; '.join(changed)}); a resumed run "
                         f"may change only {', '.join(RESUME_SAFE_KEYS)}. Start a new run to change the others")


def parse_args(argv: Sequence[str]) -> TrainConfig:
    """Build a config from command-line arguments (see the module docstring)."""
    pairs = cli.split_overrides(argv, TrainConfig)
    preset = "default"
    yaml_values: dict[str, Any] = {}
    overrides: list[tuple[str, str]] = []
    for key, value in pairs:
        if key == "config":
            yaml_values = load_yaml(value)
        elif key in ("local_rank",):  # passed by the deepspeed launcher
            continue
        else:
            overrides.append((key, value))
    resume = next((coerce("resume", v) for k, v in reversed(overrides) if k == "resume"),
                  coerce("resume", yaml_values.get("resume", "")))
    if resume:
        # The run's own settings are the base; a run directory moved since is found where it is now.
        config = from_dict(dict(saved_run_config(resume), run_dir="", resume=resume))
    else:
        preset = str(yaml_values.get("preset", preset))
        for key, value in overrides:
            if key == "preset":
                preset = value
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is unknown; allowed: {', '.join(PRESETS)}")
        config = from_dict(dict(PRESETS[preset], preset=preset))
    config = from_dict(yaml_values, config)
    for key, value in overrides:
        setattr(config, key, coerce(key, value))
    if resume:
        check_resume_config(saved_run_config(resume), config, source=resume)
    return config
