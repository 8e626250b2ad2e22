"""Boards -> a Qwen2.5-VL's ``pixel_values``, per board: JAX (``bridges.model_inputs``) vs the
HF image processor (the tiny policy's ``Qwen2VLImageProcessorPil``, as ``learner.models``
builds it), on every game's rendered boards.

    nice -n 10 python benchmarks/model_inputs.py --image-size 448 --boards 64 --hf-boards 8

JAX: the best of ``--repeats`` jitted calls on ``--boards`` boards already on the device (the
render is not counted), ending when the patches are ready. HF: one call on ``--hf-boards``
boards as numpy arrays (what ``encode_prompts`` handed it before). Each row also says whether
the two outputs are equal. Prints a markdown table and writes ``model_inputs.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxgym


def boards_to_pixels(game: str, image_size: int, boards: int, hf_boards: int, repeats: int = 5) -> dict[str, Any]:
    """One row: ms per board through JAX and through the HF processor, and their equality."""
    from bridges.model_inputs import patch_layout, pixel_values
    from learner.models import build_image_processor

    env = jaxgym.make(game, image_size=image_size)
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), boards))
    images = jax.block_until_ready(jax.jit(jax.vmap(env.render))(states))
    processor = build_image_processor()
    layout = patch_layout(processor, *images.shape[1:3])
    if layout is None:
        raise ValueError(f"{game} boards of {images.shape[1]}x{images.shape[2]} need the HF processor's resize; "
                         f"pass an --image-size that is a multiple of 28")
    jax.block_until_ready(pixel_values(images, layout)[0])  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        values = jax.block_until_ready(pixel_values(images, layout)[0])
        best = min(best, time.perf_counter() - start)
    host = list(np.asarray(images[:hf_boards]))
    start = time.perf_counter()
    reference = processor(images=host, return_tensors="np")["pixel_values"]
    hf_seconds = time.perf_counter() - start
    per_board = values.shape[0] // boards
    return {"game": game, "image_hw": list(images.shape[1:3]), "boards": boards, "hf_boards": hf_boards,
            "jax_ms_per_board": 1e3 * best / boards, "hf_ms_per_board": 1e3 * hf_seconds / hf_boards,
            "equal": bool(np.array_equal(np.asarray(values[: per_board * hf_boards]), reference)),
            "device": str(images.devices())}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| boards -> pixel_values | size | JAX ms/board | HF processor ms/board | speed-up | equal |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['game']} | {r['image_hw'][0]}x{r['image_hw'][1]} | {r['jax_ms_per_board']:.3f} | "
                     f"{r['hf_ms_per_board']:.1f} | {r['hf_ms_per_board'] / r['jax_ms_per_board']:.0f}x | "
                     f"{r['equal']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", nargs="+", default=None, help="registered games (default: all)")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--boards", type=int, default=64, help="boards per JAX call")
    parser.add_argument("--hf-boards", type=int, default=8, help="boards through the HF processor")
    parser.add_argument("--out", default="runs/bench-model-inputs")
    args = parser.parse_args(argv)
    games = args.games or sorted(jaxgym.registered_games())
    for name in ("image_size", "boards", "hf_boards"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.hf_boards > args.boards:
        parser.error(f"--hf-boards={args.hf_boards} must be <= --boards={args.boards}")
    rows = [boards_to_pixels(game, args.image_size, args.boards, args.hf_boards) for game in games]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_inputs.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")
    print(table(rows))
    print(f"wrote {out / 'model_inputs.json'}")
    return rows


if __name__ == "__main__":
    main()
