"""The device check: what one lent GPU does with jaxgym, in one script of under 8 minutes.

    python benchmarks/device_check.py                 # on one H100/H200 (needs no vLLM)
    python benchmarks/device_check.py --dry-run       # tiny sizes on this CPU (tested)

Three sections, each timed, each written to ``<out>/device_check.json`` as it finishes:

1. ``envs``: every registered game's logic steps/s and 448 x 448 step+render frames/s at
   batch 1k-64k (``benchmarks/throughput.py``'s scanned measurement, one compile per row),
   next to the device's own memory rates for the same frames: a write-only fill and a
   device-to-device copy (read + write). Render rows whose frames would not fit in 40% of the
   device memory (the scan holds two batches of frames) are skipped and listed; rows left when
   ``--env-budget`` seconds are spent are skipped and listed too.
2. ``pixel_values``: 448 x 448 boards -> a Qwen2.5-VL's ``pixel_values`` per board: in JAX on
   the device (``bridges.model_inputs``, handed to torch by DLPack without a copy) vs the HF
   image processor on the host, and whether the two are equal.
3. ``grpo``: one GRPO step (after one warm-up step) of the learner on a random-weight
   Qwen2.5-VL-3B-shaped model (``benchmarks/gpu_check.py``'s shape: the real decoder and
   vision tower, the tiny tokenizer's vocabulary) in bf16 with DeepSpeed and HF rollouts:
   seconds per phase and peak memory. DeepSpeed is not on the device machine: carry its
   pure-Python wheel (``DS_BUILD_OPS=0 pip wheel --no-deps deepspeed hjson ninja py-cpuinfo``)
   and put it on ``PYTHONPATH``; without it the section says it was skipped and why.

``--dry-run`` runs the same code on tiny sizes (batch 8 and 16, 112 x 112 boards, the tiny
model) on whatever device JAX and torch see.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp

import jaxgym

DEVICE_BATCHES = (1024, 4096, 16384, 65536)
DRY_RUN_BATCHES = (8, 16)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script, no numbers")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help=f"env batches (default {list(DEVICE_BATCHES)}; dry run {list(DRY_RUN_BATCHES)})")
    parser.add_argument("--image-size", type=int, default=None, help="board side (default 448; dry run 112)")
    parser.add_argument("--env-budget", type=float, default=None,
                        help="seconds for the env section (default 240; dry run: no limit, every row runs)")
    parser.add_argument("--pixel-boards", type=int, default=None, help="boards for the JAX pixel path (default 256)")
    parser.add_argument("--hf-boards", type=int, default=None, help="boards through the HF processor (default 16)")
    parser.add_argument("--shape", default=None, help="gpu_check shape of the GRPO model (default 3b; dry run tiny)")
    parser.add_argument("--grpo-tokens", type=int, default=None, help="response tokens (default 128; dry run 4)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("envs", "pixel_values", "grpo"))
    parser.add_argument("--out", default="runs/device_check")
    args = parser.parse_args(argv)
    dry = args.dry_run
    args.batch_sizes = args.batch_sizes or list(DRY_RUN_BATCHES if dry else DEVICE_BATCHES)
    args.image_size = args.image_size or (112 if dry else 448)
    args.pixel_boards = args.pixel_boards or (8 if dry else 256)
    args.hf_boards = args.hf_boards or (2 if dry else 16)
    args.shape = args.shape or ("tiny" if dry else "3b")
    args.grpo_tokens = args.grpo_tokens or (4 if dry else 128)
    if args.env_budget is None:
        args.env_budget = float("inf") if dry else 240.0
    for name in ("batch_sizes", "image_size", "pixel_boards", "hf_boards", "grpo_tokens"):
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f"--{name.replace('_', '-')}={values} must be >= 1")
    if args.image_size % 28:
        parser.error(f"--image-size={args.image_size} must be a multiple of 28 (Qwen2.5-VL's patch 14 x merge 2)")
    return args


def device_memory_bytes() -> int:
    """The default JAX device's memory (its allocator's limit where it reports one)."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    from benchmarks.throughput import available_memory_bytes

    return available_memory_bytes()


def _best_seconds(fn: Any, args: tuple, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def memory_rates(batch: int, image_hw: tuple[int, int], repeats: int) -> dict[str, float]:
    """Frames/s of the device writing a ``(batch, H, W, 3)`` uint8 batch (fill) and copying one
    into another buffer (read + write), the limits a step+render row is compared with."""
    shape = (batch, *image_hw, 3)
    fill = jax.jit(lambda value: jnp.full(shape, value, jnp.uint8))
    copy = jax.jit(lambda frames: frames + jnp.uint8(1))  # a copy XLA cannot elide
    frames = fill(jnp.uint8(3))
    fill_s = _best_seconds(fill, (jnp.uint8(7),), repeats)
    copy_s = _best_seconds(copy, (frames,), repeats)
    return {"fill_frames_per_s": batch / fill_s, "copy_frames_per_s": batch / copy_s}


def env_section(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.throughput import bench_jaxgym

    games = sorted({g.rsplit("-v", 1)[0] for g in jaxgym.registered_games()})
    image_hw = (args.image_size, args.image_size)
    bench_args = SimpleNamespace(quick=True, seconds=0.1, repeats=2, game_extra={"image_size": image_hw})
    memory = device_memory_bytes()
    frame_bytes = image_hw[0] * image_hw[1] * 3
    rows, skipped, references = [], [], {}
    start = time.perf_counter()
    for batch in args.batch_sizes:
        fits = 2 * batch * frame_bytes < 0.4 * memory
        if fits and time.perf_counter() - start < args.env_budget:
            references[batch] = memory_rates(batch, image_hw, repeats=3)
        for game in games:
            for render in (False, True):
                what = f"{game} batch {batch} {'step+render' if render else 'logic'}"
                if render and not fits:
                    skipped.append(f"{what}: two batches of frames need {2 * batch * frame_bytes / 2**30:.1f} GiB, "
                                   f"over 40% of the device's {memory / 2**30:.0f} GiB")
                    continue
                if time.perf_counter() - start > args.env_budget:
                    skipped.append(f"{what}: the env budget of {args.env_budget:.0f} s was spent")
                    continue
                row = bench_jaxgym(game, {}, batch, bench_args, render)
                entry = {"game": game, "batch": batch, "compile_s": row.compile_s}
                if render:
                    entry["frames_per_s"] = row.frames_per_s
                    if batch in references:
                        entry["share_of_fill"] = row.frames_per_s / references[batch]["fill_frames_per_s"]
                        entry["share_of_copy"] = row.frames_per_s / references[batch]["copy_frames_per_s"]
                else:
                    entry["steps_per_s"] = row.steps_per_s
                rows.append(entry)
                print(f"  {what}: " + (f"{row.frames_per_s:,.0f} frames/s" if render else
                                       f"{row.steps_per_s:,.0f} steps/s"), flush=True)
    return {"image_hw": list(image_hw), "memory_rates": {str(b): r for b, r in references.items()}, "rows": rows,
            "skipped": skipped}


def pixel_section(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from benchmarks.model_inputs import boards_to_pixels
    from bridges.model_inputs import patch_layout, pixel_values, to_torch
    from learner.models import build_image_processor

    row = boards_to_pixels("shisensho", args.image_size, args.pixel_boards, args.hf_boards)
    # DLPack hands the device's patches to torch on the same device, without a copy.
    side = args.image_size
    values, _ = pixel_values(jax.numpy.zeros((1, side, side, 3), jax.numpy.uint8),
                             patch_layout(build_image_processor(), side, side))
    tensor = to_torch(values)
    return {**row, "torch_device": str(tensor.device), "torch": torch.__version__,
            "dlpack_zero_copy": tensor.data_ptr() == values.unsafe_buffer_pointer()}


def deepspeed_missing() -> str | None:
    """Why the GRPO section cannot run, or ``None`` when DeepSpeed imports."""
    try:
        import deepspeed  # noqa: F401
    except Exception as error:  # its import also fails on some setups for reasons other than absence
        return (f"DeepSpeed does not import ({type(error).__name__}: {error}); the learner's engine needs it. "
                f"Carry its pure-Python wheel (DS_BUILD_OPS=0 pip wheel --no-deps deepspeed; plus hjson, ninja, "
                f"py-cpuinfo) and put it on PYTHONPATH")
    return None


def grpo_section(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    reason = deepspeed_missing()
    if reason is not None:
        return {"skipped": reason}
    import dataclasses

    import torch

    from benchmarks.gpu_check import SHAPES, LengthReward, PeakMemory
    from learner.config import from_dict
    from learner.models import TINY_PRESETS, build_tiny_policy, export_policy
    from learner.trainer import GRPOTrainer

    cuda = torch.cuda.is_available()
    shape = TINY_PRESETS["tiny"] if args.shape == "tiny" else SHAPES[args.shape]
    shape = dataclasses.replace(shape, image_size=args.image_size).validate()
    start = time.perf_counter()
    with torch.device("cuda" if cuda else "cpu"):
        model, processor = build_tiny_policy(seed=0, dtype="bf16", shape=shape)
    model_dir = export_policy(model, processor, out / "model")
    del model
    build_s = time.perf_counter() - start
    states, group = (2, 2) if args.dry_run else (4, 4)
    config = from_dict(dict(
        game="2048", game_params={"image_size": args.image_size}, model=str(model_dir), seed=0, steps=2,
        run_dir=str(out / "run"), states_per_step=states, group_size=group, max_response_tokens=args.grpo_tokens,
        max_prompt_tokens=1024, rollout_engine="hf", precision="bf16", zero_stage=0, lr=1e-6, kl_coef=0.0,
        gradient_checkpointing=True, micro_batch_size=4, logprob_micro_batch_size=8, torch_threads=0, dump_every=0,
        save_every=0, export=False, tensorboard=False, progress=False,
    )).validate()
    steps = []
    with PeakMemory() if cuda else _NoPeak() as peak:
        trainer = GRPOTrainer(config, scorer=LengthReward(), echo=lambda _: None)
        for _ in range(2):  # the first compiles and warms up; the second is the one reported
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            metrics = trainer.train_step()
            steps.append({k.removeprefix("seconds/"): round(v, 3) for k, v in metrics.items()
                          if k.startswith("seconds/")})
    result = {"shape": args.shape, "states": states, "group": group, "max_response_tokens": args.grpo_tokens,
              "seconds_build_and_export": round(build_s, 1), "warmup_step": steps[0], "step": steps[1]}
    if cuda:
        result.update(torch_peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                      device_peak_gib=round(peak.peak / 2**30, 2))
    return result


class _NoPeak:
    peak = 0

    def __enter__(self) -> _NoPeak:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    report: dict[str, Any] = {"args": vars(args), "jax": jax.__version__, "device": device.device_kind,
                              "platform": device.platform}
    print(f"device check{' (dry run)' if args.dry_run else ''} on {device.device_kind} ({device.platform}), "
          f"JAX {jax.__version__}; output in {out.resolve()}", flush=True)
    total = time.perf_counter()
    sections = (("envs", lambda: env_section(args)), ("pixel_values", lambda: pixel_section(args)),
                ("grpo", lambda: grpo_section(args, out)))
    for name, run in sections:
        if name in args.skip:
            report[name] = {"skipped": "--skip"}
            continue
        start = time.perf_counter()
        print(f"[{name}]", flush=True)
        report[name] = run()
        report[name]["section_seconds"] = round(time.perf_counter() - start, 1)
        (out / "device_check.json").write_text(json.dumps(report, indent=1, default=str))
    report["total_seconds"] = round(time.perf_counter() - total, 1)
    (out / "device_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(summary(report))
    return report


def _cell(row: dict[str, Any], key: str, percent: bool = False) -> str:
    if key not in row:
        return "-"
    return f"{100 * row[key]:.0f}%" if percent else f"{row[key]:,.0f}"


def summary(report: dict[str, Any]) -> str:
    """The check's tables and skips as markdown."""
    lines = [f"## Device check on {report['device']} ({report['platform']}), {report['total_seconds']} s"]
    envs = report.get("envs", {})
    if envs.get("rows"):
        lines += ["", "| game | batch | logic steps/s | step+render frames/s | share of fill | share of copy |",
                  "|---|---:|---:|---:|---:|---:|"]
        cells: dict[tuple[str, int], dict[str, Any]] = {}
        for row in envs["rows"]:
            cells.setdefault((row["game"], row["batch"]), {}).update(row)
        for (game, batch), row in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            lines.append(f"| {game} | {batch} | {_cell(row, 'steps_per_s')} | {_cell(row, 'frames_per_s')} | "
                         f"{_cell(row, 'share_of_fill', True)} | {_cell(row, 'share_of_copy', True)} |")
        for batch, rates in envs.get("memory_rates", {}).items():
            lines.append(f"- batch {batch}: fill {rates['fill_frames_per_s']:,.0f} frames/s, copy "
                         f"{rates['copy_frames_per_s']:,.0f} frames/s ({envs['image_hw'][0]}x{envs['image_hw'][1]})")
    for skip in envs.get("skipped", []):
        lines.append(f"- skipped {skip}")
    pixels = report.get("pixel_values", {})
    if "jax_ms_per_board" in pixels:
        lines.append(f"- boards -> pixel_values ({pixels['image_hw'][0]}x{pixels['image_hw'][1]}): JAX "
                     f"{pixels['jax_ms_per_board']:.4f} ms/board on {pixels['device']} ({pixels['boards']} boards), "
                     f"HF processor {pixels['hf_ms_per_board']:.1f} ms/board; equal: {pixels['equal']}, "
                     f"DLPack zero-copy to {pixels['torch_device']}: {pixels['dlpack_zero_copy']}")
    grpo = report.get("grpo", {})
    if "step" in grpo:
        lines.append(f"- GRPO step ({grpo['shape']} shape, bf16, DeepSpeed, HF rollouts, {grpo['states']}x"
                     f"{grpo['group']} responses of <= {grpo['max_response_tokens']} tokens): "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in grpo["step"].items())
                     + (f"; peak {grpo['device_peak_gib']} GiB (device), {grpo['torch_peak_gib']} GiB (PyTorch)"
                        if "torch_peak_gib" in grpo else ""))
    elif "skipped" in grpo:
        lines.append(f"- GRPO step SKIPPED: {grpo['skipped']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
