"""Swap throughput and settle-loop statistics (the numbers quoted in jaxgym/swap.py).

    python benchmarks/swap_bench.py                       # batches 1 256 4096
    python benchmarks/swap_bench.py --batch-sizes 1024 --tail-moves 20000

Method (the same as ``benchmarks/throughput.py``): ``AutoReset`` env, ``lax.scan`` over steps
of uniformly random legal actions, ``block_until_ready``, best of ``--repeats`` timed calls
after a compile call. Logic: steps/s. Step+render: frames/s, every step's 448x448 frames
written to memory (carried through the scan, so they are not optimised away).
"logic, no reset" steps the bare env (Swap never terminates; ``AutoReset`` computes a fresh
board every step and selects it where an episode ended). ``--tail-moves``: how many waves
plus shuffles random valid moves from fresh boards need.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxgym  # noqa: E402
from jaxgym import swap as swap_lib  # noqa: E402

PAPER_MS_PER_RENDERED_STEP = 8.8  # the paper's code, per env-step with rendering (shared/spec)


def random_legal_action(key: jax.Array, legal: jax.Array) -> jax.Array:
    k = jnp.floor(jax.random.uniform(key) * jnp.sum(legal)).astype(jnp.int32)
    return jnp.argmax(jnp.cumsum(legal) > k).astype(jnp.int32)


def scanned(env, batch: int, steps: int, render: bool):
    vreset, vstep, vrender = jax.vmap(env.reset), jax.vmap(env.step), jax.vmap(env.render)

    def run(key):
        state = vreset(jax.random.split(key, batch))
        frames = jnp.zeros((batch, *env.image_shape), jnp.uint8) if render else None

        def body(carry, k):
            state, frames = carry
            k_act, k_step = jax.random.split(k)
            actions = jax.vmap(random_legal_action)(jax.random.split(k_act, batch), state.legal_action_mask)
            state = vstep(state, actions, jax.random.split(k_step, batch))
            return (state, vrender(state) if render else frames), None

        (state, frames), _ = jax.lax.scan(body, (state, frames), jax.random.split(key, steps))
        return state, frames

    return jax.jit(run)


def timed(fn, repeats: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.key(0)))
    first = time.perf_counter() - t0
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jax.random.key(r + 1)))
        best = min(best, time.perf_counter() - t0)
    return max(0.0, first - best), best


def settle_tail(moves: int) -> None:
    env = jaxgym.make("swap")
    keys = jax.random.split(jax.random.key(5), moves)
    states = jax.jit(jax.vmap(env.reset))(keys)
    action = jax.vmap(random_legal_action)(jax.random.split(jax.random.key(6), moves), states.legal_action_mask)
    settle = jax.jit(jax.vmap(lambda b, a, k: swap_lib.settle(swap_lib.apply_swap(b, a), k, env.kinds)))
    _, _, waves, shuffles = settle(states.board, action, jax.random.split(jax.random.key(7), moves))
    total = np.asarray(waves) + np.asarray(shuffles)
    print(f"\nsettle steps (waves + shuffles) of {moves} random valid moves from fresh boards:")
    for n in range(1, int(total.max()) + 2):
        print(f"  >= {n}: {np.mean(total >= n):.5f}")
    print(f"  moves with a shuffle: {np.mean(np.asarray(shuffles) > 0):.4f}; mean waves {np.mean(waves):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256, 4096])
    parser.add_argument("--logic-budget", type=int, default=65_536, help="env-steps per timed logic call")
    parser.add_argument("--render-budget", type=int, default=8_192, help="frames per timed render call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tail-moves", type=int, default=0)
    args = parser.parse_args()

    bare = jaxgym.make("swap")
    env = jaxgym.AutoReset(bare)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}: {jax.devices()[0].device_kind}")
    print(f"{'batch':>6} {'mode':>18} {'steps':>6} {'compile s':>10} {'per s':>12} {'ms/step':>10} {'vs paper':>9}")
    # "no reset": the bare env (Swap never terminates; AutoReset computes a reset every step).
    modes = [("logic", env, False), ("logic, no reset", bare, False), ("step+render", env, True)]
    for batch in args.batch_sizes:
        for mode, game, render in modes:
            budget = args.render_budget if render else args.logic_budget
            steps = int(np.clip(budget // batch, 4 if render else 8, 64 if render else 512))
            compile_s, sec = timed(scanned(game, batch, steps, render), args.repeats)
            rate = batch * steps / sec
            ratio = f"{PAPER_MS_PER_RENDERED_STEP * rate / 1000:.0f}x" if render else ""
            print(f"{batch:>6} {mode:>18} {steps:>6} {compile_s:>10.1f} {rate:>12,.0f} {1000 / rate:>10.4f} {ratio:>9}")
    if args.tail_moves:
        settle_tail(args.tail_moves)


if __name__ == "__main__":
    main()
