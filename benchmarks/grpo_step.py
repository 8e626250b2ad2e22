"""One GRPO step of jaxgym's learner next to TRL's ``GRPOTrainer``, split into phases.

    nice -n 10 python benchmarks/grpo_step.py --states 4 --group 4 --tokens 16 --repeats 3

Both train the same tiny Qwen2.5-VL (``learner.models.build_tiny_policy``) on the same game
states (2048 boards sampled by ``bridges.sampler`` with the same seed; TRL gets them through
``bridges.export``) with ``states x group`` responses of at most ``tokens`` tokens, no KL term
and one update per step, on this machine, one after the other. After ``warmup`` untimed
steps each trainer runs ``repeats`` steps; the table shows the median seconds per phase:

- ``sample+render``: jaxgym samples and renders in its step; TRL's boards come from an
  export, so its row is the export of one step's states (``bridges.export.iter_rows``,
  compiled: sampling, rendering, PNG encoding, ground truths), added to its step.
- ``generate``: the rollouts (jaxgym: ``HFRolloutEngine``; TRL: ``_generate``).
- ``score``: jaxgym ``GroupScorer``; TRL its reward functions (``bridges.rewards.trl``).
- ``log-probs``: jaxgym the prompts' encoding and the old/reference log-probs (``prepare``,
  ``old_logprobs``, ``ref_logprobs``); TRL the rest of ``_generate_and_score_completions``
  (tokenising, image processing, advantages, any old/reference log-probs).
- ``update``: the forward/backward and optimizer step (TRL: the step minus the above).

jaxgym runs twice in the same run (``--pixels both``, the default): with the prompts' image
patches from the HF image processor (``jaxgym (HF processor)``, as before issue 30) and from
JAX (``bridges.model_inputs``). Two more rows, jaxgym only: ``prepare`` (the prompts'
encoding, part of ``log-probs``) and ``env share`` (``sample+render`` plus ``prepare``, as a
share of the step: the environment side's cost).

Writes ``grpo_step.json`` and ``grpo_step.md`` to ``--out`` (printed at the start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES = ("sample+render", "generate", "score", "log-probs", "update", "step")
JAXGYM_ONLY = ("prepare", "env share")


def jaxgym_steps(args: argparse.Namespace, run_dir: Path, jax_pixels: bool = True) -> tuple[list[dict[str, float]],
                                                                                               float]:
    """Per-step phase seconds of jaxgym's learner, and its mean response length; the prompts'
    patches from JAX (``jax_pixels``) or from the HF image processor."""
    from learner import batching
    from learner.config import from_dict
    from learner.trainer import GRPOTrainer

    config = from_dict(dict(
        game="2048", game_params={"image_size": args.image_size}, run_dir=str(run_dir), seed=args.seed,
        steps=args.warmup + args.repeats, states_per_step=args.states, group_size=args.group,
        max_response_tokens=args.tokens, micro_batch_size=args.states * args.group,
        logprob_micro_batch_size=args.states * args.group, lr=1e-3, kl_coef=0.0, dump_every=0, export=False,
        progress=False, tensorboard=False, temperature=1.0,
    )).validate()
    trainer = GRPOTrainer(config, echo=lambda _: None)
    rows, lengths = [], []
    before, batching.JAX_PIXELS = batching.JAX_PIXELS, jax_pixels
    try:
        metrics = [trainer.train_step() for _ in range(args.warmup + args.repeats)]
    finally:
        batching.JAX_PIXELS = before
    for step, m in enumerate(metrics):
        if step < args.warmup:
            continue
        sec = {k.removeprefix("seconds/"): v for k, v in m.items() if k.startswith("seconds/")}
        rows.append({
            "sample+render": sec.get("sample", 0.0),
            "generate": sec.get("rollout", 0.0),
            "score": sec.get("score", 0.0),
            "log-probs": sum(sec.get(k, 0.0) for k in ("prepare", "old_logprobs", "ref_logprobs")),
            "update": sec.get("update", 0.0),
            "step": sec["step"],
            "prepare": sec.get("prepare", 0.0),
            "env share": (sec.get("sample", 0.0) + sec.get("prepare", 0.0)) / sec["step"],
        })
        lengths.append(m["response_length/mean"])
    return rows, statistics.mean(lengths)


class _Timed:
    """Wraps a bound method, adding its wall time to ``totals[name]``."""

    def __init__(self, fn: Any, totals: dict[str, float], name: str):
        self.fn, self.totals, self.name = fn, totals, name

    def __call__(self, *a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.totals[self.name] = self.totals.get(self.name, 0.0) + time.perf_counter() - start


def trl_steps(args: argparse.Namespace, out_dir: Path) -> tuple[list[dict[str, float]], float]:
    """Per-step phase seconds of TRL's GRPOTrainer, and its mean response length."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from bridges.export import features, iter_rows
    from bridges.rewards.trl import REWARD_FUNCS, reward_weights
    from learner.models import build_tiny_policy

    steps = args.warmup + args.repeats
    # One step's export, timed warm: the first batch compiles the sampler, the second is timed.
    batches = iter_rows("2048", args.states * (steps + 1), seed=args.seed, batch_size=args.states,
                        image_size=args.image_size)
    rows_out = list(next(batches))
    start = time.perf_counter()
    rows_out += next(batches)
    export_seconds = time.perf_counter() - start
    for batch in batches:
        rows_out += batch
    ds = datasets.Dataset.from_list(rows_out[args.states:], features=features())

    model, processor = build_tiny_policy(seed=args.seed)
    config = GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=False, report_to=[], save_strategy="no", seed=args.seed,
        num_generations=args.group, per_device_train_batch_size=args.states * args.group,
        max_completion_length=args.tokens, max_steps=steps, logging_steps=1, learning_rate=1e-3, beta=0.0,
        temperature=1.0, reward_weights=reward_weights(ds[0]["answer"]), shuffle_dataset=False, disable_tqdm=True,
    )
    totals: dict[str, float] = {}
    rows: list[dict[str, float]] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            totals.clear()
            self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            step = time.perf_counter() - self.start
            gen_side = totals.get("gen_and_score", 0.0)
            rows.append({
                "sample+render": export_seconds,
                "generate": totals.get("generate", 0.0),
                "score": totals.get("score", 0.0),
                "log-probs": gen_side - totals.get("generate", 0.0) - totals.get("score", 0.0),
                "update": step - gen_side,
                "step": step + export_seconds,
            })

    trainer = GRPOTrainer(model=model, reward_funcs=REWARD_FUNCS, args=config, train_dataset=ds,
                          processing_class=processor, callbacks=[StepClock()])
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    for attr, name in (("_generate", "generate"), ("_calculate_rewards", "score"),
                       ("_generate_and_score_completions", "gen_and_score")):
        setattr(trainer, attr, _Timed(getattr(trainer, attr), totals, name))
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return rows[args.warmup:], statistics.mean(lengths[args.warmup:])


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    lines = ["| phase (median s) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for phase in PHASES + JAXGYM_ONLY:
        cells = [results[n]["median"].get(phase) for n in names]
        if all(c is None for c in cells):
            continue
        fmt = "{:.0%}" if phase == "env share" else "{:.3f}"
        lines.append(f"| {phase} | " + " | ".join("-" if c is None else fmt.format(c) for c in cells) + " |")
    lines.append("| mean response tokens | " + " | ".join(f"{results[n]['response_tokens']:.1f}" for n in names)
                 + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-grpo-step")
    parser.add_argument("--pixels", choices=("both", "jax", "hf"), default="both",
                        help="jaxgym's prompt patches: from JAX, the HF image processor, or both (before/after)")
    parser.add_argument("--no-trl", action="store_true", help="leave TRL's GRPOTrainer out")
    args = parser.parse_args(argv)
    for name in ("states", "group", "tokens", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} is out of range; allowed: >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Output directory: {out.resolve()}")
    import torch

    torch.set_num_threads(args.torch_threads)
    from tqdm import tqdm

    results: dict[str, dict[str, Any]] = {}
    runs: list[tuple[str, Any]] = []
    if args.pixels in ("both", "hf"):
        runs.append(("jaxgym (HF processor)", lambda a, d: jaxgym_steps(a, d, jax_pixels=False)))
    if args.pixels in ("both", "jax"):
        runs.append(("jaxgym", jaxgym_steps))
    if not args.no_trl:
        runs.append(("TRL", trl_steps))
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=len(runs), desc="trainers", unit="trainer") as bar:
        for index, (name, run) in enumerate(runs):
            bar.set_postfix_str(name)
            rows, length = run(args, Path(tmp) / f"run{index}")
            results[name] = {
                "steps": rows,
                "median": {p: statistics.median(r[p] for r in rows) for p in PHASES + JAXGYM_ONLY if p in rows[0]},
                "response_tokens": length,
            }
            bar.update(1)
    md = table(results)
    config = {k: getattr(args, k) for k in ("states", "group", "tokens", "image_size", "warmup", "repeats", "seed",
                                            "torch_threads", "pixels", "no_trl")}
    (out / "grpo_step.json").write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
    (out / "grpo_step.md").write_text(md + "\n")
    print(md)
    if "jaxgym" in results and "TRL" in results:
        ratio = results["jaxgym"]["median"]["step"] / results["TRL"]["median"]["step"]
        print(f"jaxgym step / TRL step: {ratio:.2f}x")
    print(f"wrote grpo_step.json and grpo_step.md to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
