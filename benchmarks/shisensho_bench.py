"""Shisen-Sho throughput: logic steps/s, step+render frames/s, and a memory-fill baseline.

    python benchmarks/shisensho_bench.py                     # sizes 6 and 12, batches 1, 256, 4096
    python benchmarks/shisensho_bench.py --sizes 6 --batches 256 --game shisensho-images

- logic: ``lax.scan`` of ``vmap(step)`` over ``--steps`` uniformly random flat actions (the
  legal mask and termination are computed every step), timed after a warm-up call.
- step+render: one jitted ``vmap(step)`` + ``vmap(render)`` call per step, returning the
  frames (every pixel is materialised, as a training loop would consume them).
- fill: numpy ``.fill()`` into a preallocated ``(B, H, W, 3)`` uint8 buffer, the rate at
  which this machine writes frame-sized memory at all.
- xla fill: a jitted function that returns a new ``(B, H, W, 3)`` uint8 array of one
  (traced) value: the fastest any XLA program on this backend can hand out frames.

Timings are wall clock with ``block_until_ready`` and the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jaxgym  # noqa: E402


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def logic_rate(env, batch: int, steps: int, repeats: int) -> float:
    def run(state, key):
        def body(s, k):
            actions = jax.random.randint(k, (batch,), 0, env.num_actions)
            return jax.vmap(env.step)(s, actions, jax.random.split(k, batch)), None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

    run = jax.jit(run)
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), batch))
    jax.block_until_ready(run(state, jax.random.key(1)))
    seconds = best_time(lambda: jax.block_until_ready(run(state, jax.random.key(2))), repeats)
    return batch * steps / seconds


def render_rate(env, batch: int, steps: int, repeats: int) -> float:
    @jax.jit
    def step_render(state, key):
        actions = jax.random.randint(key, (batch,), 0, env.num_actions)
        state = jax.vmap(env.step)(state, actions, jax.random.split(key, batch))
        return state, jax.vmap(env.render)(state)

    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), batch))
    jax.block_until_ready(step_render(state, jax.random.key(1)))
    keys = jax.random.split(jax.random.key(2), steps)

    def loop():
        s = state
        for k in keys:
            s, frames = step_render(s, k)
            jax.block_until_ready(frames)

    return batch * steps / best_time(loop, repeats)


def fill_rate(batch: int, shape: tuple[int, int, int], repeats: int) -> float:
    buffer = np.empty((batch, *shape), np.uint8)
    buffer.fill(1)  # touch the pages before timing
    rounds = max(1, 256 // batch)
    seconds = best_time(lambda: [buffer.fill(v % 251) for v in range(rounds)], repeats)
    return batch * rounds / seconds


def xla_fill_rate(batch: int, shape: tuple[int, int, int], steps: int, repeats: int) -> float:
    fill = jax.jit(lambda v: jnp.full((batch, *shape), v, jnp.uint8))
    jax.block_until_ready(fill(jnp.uint8(1)))

    def loop():
        for v in range(steps):
            jax.block_until_ready(fill(jnp.uint8(v)))

    return batch * steps / best_time(loop, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="shisensho")
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 12])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256, 4096])
    parser.add_argument("--image-size", type=int, nargs="+", default=[448])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    image_size = tuple(args.image_size) if len(args.image_size) == 2 else args.image_size[0]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus")
    rows = []
    for size in args.sizes:
        params = dict(size=size, image_size=image_size)
        if args.game == "shisensho" and size > 12:
            params["colors"] = 16
        env = jaxgym.make(args.game, **params)
        h, w, _ = env.image_shape
        for batch in args.batches:
            logic_steps = max(4, min(200, 200_000 // batch // max(1, size // 6) ** 4))
            render_steps = max(2, min(50, 4096 // batch))
            logic = logic_rate(env, batch, logic_steps, args.repeats)
            frames = render_rate(env, batch, render_steps, args.repeats)
            fill = fill_rate(batch, env.image_shape, args.repeats)
            xla_fill = xla_fill_rate(batch, env.image_shape, render_steps, args.repeats)
            row = dict(game=args.game, size=size, image=f"{h}x{w}", batch=batch, logic_steps_per_s=round(logic),
                       frames_per_s=round(frames), ms_per_rendered_step=1000 / frames, fill_frames_per_s=round(fill),
                       xla_fill_frames_per_s=round(xla_fill), render_vs_fill=frames / fill)
            rows.append(row)
            print(f"{args.game} {size}x{size} {h}x{w} batch {batch:5d}: logic {logic:12,.0f} steps/s | "
                  f"step+render {frames:10,.0f} frames/s ({1000 / frames:.4f} ms/step) | "
                  f"fill {fill:10,.0f} frames/s | xla fill {xla_fill:8,.0f} frames/s | render/fill {frames / fill:.2f}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
