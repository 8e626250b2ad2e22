"""The GPU check of vLLM rollouts: a few GRPO steps of the learner with a colocated vLLM
engine in bf16 with sleep mode, on a random-weight Qwen2.5-VL of real shape (no download).

    pip install torch 'jaxgym[learner,vllm]'        # the real vllm wheel (vLLM 0.32)
    python benchmarks/gpu_check.py                  # Qwen2.5-VL-3B shape, 3 steps: ~5 min on one H100/H200
    python benchmarks/gpu_check.py --shape 7b --steps 4 --max-new-tokens 512

Prints, per step, the seconds of every phase (sample, rollout, weight_sync, score, ...,
update), the rollout-vs-trainer log-prob gap, and the peak GPU memory (the device's, which
counts vLLM's allocations, and PyTorch's), plus the memory in use while vLLM sleeps; writes
it all to ``<out>/gpu_check.json``. It needs one CUDA GPU and is not part of CI (these CPU
machines have none); ``tests/test_gpu_check.py`` covers its argument parsing and configs.

The model has the 3B (or 7B) decoder and vision tower but the tiny byte-level tokenizer's
vocabulary (~640 tokens: no tokenizer can be downloaded), so its embedding and LM head are
small; everything else is full size. The reward is a stand-in (longer responses score
higher) so that every group has a spread and every step updates the weights and syncs them
into vLLM; the game's own reward would be constant for random weights.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from learner.models import TinyConfig

# Qwen2.5-VL's published decoder and vision-tower sizes (config.json of the instruct models).
_VISION = dict(vision_depth=32, vision_hidden_size=1280, vision_intermediate_size=3420, vision_heads=16)
SHAPES: dict[str, TinyConfig] = {
    "3b": TinyConfig(hidden_size=2048, intermediate_size=11008, num_layers=36, num_heads=16, num_kv_heads=2,
                     mrope_section=(16, 24, 24), image_size=448, **_VISION),
    "7b": TinyConfig(hidden_size=3584, intermediate_size=18944, num_layers=28, num_heads=28, num_kv_heads=4,
                     mrope_section=(16, 24, 24), image_size=448, **_VISION),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="3b", help="Qwen2.5-VL size to imitate")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the real count)")
    parser.add_argument("--game", default="2048")
    parser.add_argument("--image-size", type=int, default=448, help="board side in pixels")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps")
    parser.add_argument("--states", type=int, default=4, help="boards per step")
    parser.add_argument("--group-size", type=int, default=4, help="responses per board")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3, help="vLLM's share of the GPU")
    parser.add_argument("--kl-coef", type=float, default=0.01, help="0: no reference model")
    parser.add_argument("--zero-stage", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/gpu_check", help="directory for the model and the report")
    args = parser.parse_args(argv)
    if args.layers is not None and args.layers < 1:
        parser.error(f"--layers={args.layers} must be >= 1")
    for name in ("steps", "states", "max_new_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.group_size < 2:
        parser.error(f"--group-size={args.group_size} must be >= 2 (GRPO compares responses within a group)")
    if not 0 < args.gpu_memory_utilization < 1:
        parser.error(f"--gpu-memory-utilization={args.gpu_memory_utilization} must be in (0, 1)")
    return args


def model_shape(args: argparse.Namespace) -> TinyConfig:
    """The model's shape: ``SHAPES[args.shape]``, with ``--layers`` decoder layers if given."""
    import dataclasses

    shape = SHAPES[args.shape]
    if args.layers is not None:
        shape = dataclasses.replace(shape, num_layers=args.layers)
    return shape.validate()


def train_config(args: argparse.Namespace, model_dir: str) -> Any:
    """The learner's config for the check: vLLM rollouts, bf16, the paper's GRPO settings."""
    from learner.config import from_dict

    return from_dict(dict(
        game=args.game, game_params={"image_size": args.image_size}, model=model_dir, seed=args.seed,
        steps=args.steps, run_dir=str(Path(args.out) / "run"), states_per_step=args.states,
        group_size=args.group_size, max_response_tokens=args.max_new_tokens, max_prompt_tokens=1024,
        rollout_engine="vllm", vllm_gpu_memory_utilization=args.gpu_memory_utilization,
        vllm_max_pixels=args.image_size**2, precision="bf16", zero_stage=args.zero_stage, lr=1e-6,
        kl_coef=args.kl_coef, gradient_checkpointing=True, micro_batch_size=4, logprob_micro_batch_size=8,
        torch_threads=0, dump_every=0, save_every=0, export=False, tensorboard=False, progress=False,
    )).validate()


class LengthReward:
    """A stand-in ``GroupScorer``: a response's reward is its length in characters / 100."""

    def score(self, states: Any, responses: Any, key: Any) -> Any:
        import numpy as np

        from bridges.scoring import GroupScores

        overall = np.array([[min(len(r), 1000) / 100 for r in group] for group in responses], np.float32)
        zeros = np.zeros_like(overall)
        return GroupScores(actions=np.full(overall.shape, -1, np.int32), parsed=zeros.astype(bool),
                           raw_reward=zeros, game=zeros, format=zeros, perception=zeros, overall=overall)


class PeakMemory:
    """The device's peak used memory (``total - free``, which counts vLLM's own allocator),
    sampled every ``interval`` seconds in a background thread."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _gib(count: float) -> float:
    return round(count / 2**30, 2)


def require_gpu_and_vllm() -> str:
    """The installed vLLM version; ``SystemExit`` with what to do when there is no GPU or vLLM."""
    import importlib.metadata as md

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("error: benchmarks/gpu_check.py needs a CUDA GPU (none is visible); on CPU run the vLLM "
                         "tests instead: bash .ci/build_vllm_venv.sh .venv-vllm && .venv-vllm/bin/python -m pytest "
                         "tests/rollout_vllm")
    try:
        return md.version("vllm")
    except md.PackageNotFoundError:
        raise SystemExit("error: the vllm wheel is not installed: pip install 'jaxgym[vllm]'") from None


def build_model(shape: TinyConfig, seed: int, out_dir: Path) -> Path:
    """Build the random-weight model on the GPU in bf16 and export it (``export_policy``)."""
    import torch

    from learner.models import build_tiny_policy, export_policy

    with torch.device("cuda"):
        model, processor = build_tiny_policy(seed=seed, dtype="bf16", shape=shape)
    path = export_policy(model, processor, out_dir)
    del model
    torch.cuda.empty_cache()
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    version = require_gpu_and_vllm()
    import torch

    from learner.trainer import GRPOTrainer

    out = Path(args.out)
    shape = model_shape(args)
    print(f"vLLM {version}, torch {torch.__version__}, {torch.cuda.get_device_name()}; Qwen2.5-VL-{args.shape} "
          f"shape, {shape.num_layers} layers, random weights; output in {out.resolve()}", flush=True)
    report: dict[str, Any] = {"args": vars(args), "vllm": version, "device": torch.cuda.get_device_name()}
    start = time.perf_counter()
    model_dir = build_model(shape, args.seed, out / "model")
    report["seconds_build_and_export"] = time.perf_counter() - start
    print(f"model built and exported in {report['seconds_build_and_export']:.0f} s", flush=True)

    with PeakMemory() as peak:
        start = time.perf_counter()
        trainer = GRPOTrainer(train_config(args, str(model_dir)), scorer=LengthReward())
        report["seconds_trainer_and_vllm_start"] = time.perf_counter() - start
        sleeping: list[int] = []
        engine_sleep = trainer.rollout.sleep

        def sleep_and_measure() -> None:  # device memory in use just after vLLM fell asleep
            engine_sleep()
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            sleeping.append(total - free)

        trainer.rollout.sleep = sleep_and_measure
        steps = []
        for _ in range(args.steps):
            torch.cuda.reset_peak_memory_stats()
            metrics = trainer.train_step()
            step = {k: round(v, 2) for k, v in metrics.items() if k.startswith("seconds/")}
            step.update({k: metrics[k] for k in ("rollout_logprob_gap/mean", "rollout_logprob_gap/max",
                                                 "response_length/mean", "grad_norm")})
            step["torch_peak_gib"] = _gib(torch.cuda.max_memory_allocated())
            step["device_peak_gib_so_far"] = _gib(peak.peak)
            step["device_while_vllm_sleeps_gib"] = _gib(sleeping[-1])
            steps.append(step)
            print(json.dumps({"step": trainer.step, **step}), flush=True)
    report.update(steps=steps, device_peak_gib=_gib(peak.peak), total_gib=_gib(torch.cuda.mem_get_info()[1]))
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(summary(report))
    return report


def summary(report: dict[str, Any]) -> str:
    """The check's outcome in a few lines."""
    steps = report["steps"]
    phases = sorted({k for s in steps for k in s if k.startswith("seconds/")})
    lines = [f"{len(steps)} GRPO steps with vLLM {report['vllm']} on {report['device']}:",
             "  seconds per phase (mean over steps): " + ", ".join(
                 f"{p.removeprefix('seconds/')} {sum(s.get(p, 0.0) for s in steps) / len(steps):.2f}"
                 for p in phases),
             f"  rollout-vs-trainer log-prob gap: mean {max(s['rollout_logprob_gap/mean'] for s in steps):.4f}, "
             f"max {max(s['rollout_logprob_gap/max'] for s in steps):.4f} (bf16)",
             f"  peak GPU memory: {report['device_peak_gib']} of {report['total_gib']} GiB (device), "
             f"{max(s['torch_peak_gib'] for s in steps)} GiB (PyTorch); while vLLM sleeps "
             f"{max(s['device_while_vllm_sleeps_gib'] for s in steps)} GiB"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
