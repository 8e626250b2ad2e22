"""Swap's settle loop: how many waves plus shuffles random valid moves need (the tail
quoted in ``jaxgym/swap.py``, which justifies the loop's cap). Throughput is measured by
``benchmarks/throughput.py --games swap``.

    python benchmarks/swap_settle.py --moves 20000
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import jaxgym
from benchmarks.throughput import random_legal_action
from jaxgym import swap as swap_lib


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
    parser.add_argument("--moves", type=int, default=20_000, help="random valid moves from fresh boards")
    args = parser.parse_args()
    settle_tail(args.moves)


if __name__ == "__main__":
    main()
