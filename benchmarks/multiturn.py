"""Seconds per multi-turn step and the env's share of it, next to the bandit's one-move step.

    nice -n 10 python benchmarks/multiturn.py --states 8 --group 4 --turns 4 --repeats 3

No model runs here: a **scripted random policy stands in for it** (a uniformly random move
with the true perception and the full answer format, text made on the host), so the rows
measure the rollout machinery a trainer's step pays for besides generation, and the table
says so. Each row is the median over ``repeats`` steps after one untimed step (compiles):

- ``bandit``: ``StateSampler.sample(states)`` then ``GroupScorer.score`` of ``group``
  responses per state (today's trainer step, one move per response);
- ``multi-turn``: ``StateSampler.sample(states)`` then ``EpisodeRunner.play`` of ``group``
  episodes of up to ``turns`` turns from each, history ``history``.

``env s`` is the time inside the jitted env calls (sampling, stepping, rendering, hashing;
each waited for with ``block_until_ready``); ``loop s`` everything but the stand-in policy
(env calls plus the host's parsing, scoring, prompts and bookkeeping); ``env share`` is
``env s / loop s``. Writes ``multiturn.json`` to ``--out`` (default: a new ``runs/``
directory, printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxgym
from bridges.episodes import EpisodeRunner
from bridges.rundirs import create_run_dir
from bridges.sampler import StateSampler
from bridges.scoring import GroupScorer, unbatch

STAND_IN = "a scripted random policy stands in for the model (no generation timed)"


class Timer:
    """Adds up the seconds of the calls it wraps, each waited for on the device."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*args, **kwargs))
            self.seconds += time.perf_counter() - start
            return out
        return timed


class TimedScorer(GroupScorer):
    """A ``GroupScorer`` whose jitted step is timed."""

    def __init__(self, env: Any, timer: Timer):
        super().__init__(env)
        self.timer = timer

    @property
    def _step_fn(self) -> Any:
        return self.timer.wrap(super()._step_fn)


def random_response(env: Any, state: Any, rng: np.random.Generator) -> str:
    """What the stand-in policy answers: the true perception, a thought, a random move."""
    return (f"<perception>\n{env.describe(state)}\n</perception>\n<think>random move</think>\n"
            f"{env.format_answer(int(rng.integers(env.num_actions)))}")


def bandit_step(env: Any, sampler: Any, scorer: Any, args: argparse.Namespace, rng: np.random.Generator,
                env_timer: Timer, policy_timer: Timer) -> dict[str, float]:
    """One bandit step: sample the states, answer ``group`` times each, score."""
    start = time.perf_counter()
    states, _ = env_timer.wrap(sampler.sample)(args.states)
    policy_start = time.perf_counter()
    host = jax.device_get(states)
    responses = [[random_response(env, unbatch(host, b), rng) for _ in range(args.group)] for b in range(args.states)]
    policy_timer.seconds += time.perf_counter() - policy_start
    scores = scorer.score(states, responses, jax.random.key(int(rng.integers(1 << 30))))
    jax.block_until_ready(scores.next_states)
    return {"responses": float(args.states * args.group), "return": float(scores.overall.mean()),
            "total": time.perf_counter() - start}


def multiturn_step(env: Any, sampler: Any, runner: Any, args: argparse.Namespace, rng: np.random.Generator,
                   env_timer: Timer, policy_timer: Timer) -> dict[str, float]:
    """One multi-turn step: sample the start states, play ``group`` episodes from each."""
    def policy(observation: Any) -> list[str]:
        policy_start = time.perf_counter()
        texts = [random_response(env, unbatch(observation.states, j), rng) for j in range(len(observation.prompts))]
        policy_timer.seconds += time.perf_counter() - policy_start
        return texts

    start = time.perf_counter()
    starts, _ = env_timer.wrap(sampler.sample)(args.states)
    episodes = runner.play(starts, policy, group_size=args.group, turns=args.turns,
                           key=jax.random.key(int(rng.integers(1 << 30))), keep_images=False)
    return {"responses": float(episodes.mask.sum()), "return": float(episodes.returns().mean()),
            "total": time.perf_counter() - start}


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """The median step of ``mode`` over ``args.repeats`` timed steps."""
    env = jaxgym.make(args.game, **json.loads(args.game_params))
    sampler = StateSampler(env, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    env_timer, policy_timer = Timer(), Timer()
    if mode == "bandit":
        scorer = TimedScorer(env, env_timer)

        def one() -> dict[str, float]:
            return bandit_step(env, sampler, scorer, args, rng, env_timer, policy_timer)
    else:
        runner = EpisodeRunner(env, history=args.history)
        observe, turn = runner._compiled(args.group)
        runner._compiled = lambda _n: (env_timer.wrap(observe), env_timer.wrap(turn))  # type: ignore[method-assign]

        def one() -> dict[str, float]:
            return multiturn_step(env, sampler, runner, args, rng, env_timer, policy_timer)

    one()  # compiles
    rows = []
    for _ in range(args.repeats):
        env_timer.seconds = policy_timer.seconds = 0.0
        row = one()
        loop = row["total"] - policy_timer.seconds
        rows.append({**row, "env": env_timer.seconds, "policy": policy_timer.seconds, "loop": loop})
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    return {
        "mode": mode,
        "turns": 1 if mode == "bandit" else args.turns,
        "responses_per_step": median["responses"],
        "loop_s": median["loop"],
        "env_s": median["env"],
        "env_share": median["env"] / median["loop"] if median["loop"] > 0 else float("nan"),
        "policy_s": median["policy"],
        "loop_s_per_response": median["loop"] / max(median["responses"], 1.0),
        "mean_return": median["return"],
        "steps": rows,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| mode | turns | responses / step | loop s / step | env s / step | env share | stand-in policy s "
            "| loop ms / response |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {r['mode']} | {r['turns']} | {r['responses_per_step']:.0f} | {r['loop_s']:.3f} | {r['env_s']:.3f} "
             f"| {r['env_share']:.0%} | {r['policy_s']:.3f} | {1000 * r['loop_s_per_response']:.2f} |" for r in rows]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="sokoban")
    parser.add_argument("--game-params", default='{"size": 6, "boxes": 2, "image_size": 112}',
                        help="JSON keyword arguments of jaxgym.make")
    parser.add_argument("--states", type=int, default=8, help="start states per step (G)")
    parser.add_argument("--group", type=int, default=4, help="responses (bandit) or episodes (multi-turn) per state")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--history", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="directory for multiturn.json (default: a new runs/ directory)")
    args = parser.parse_args(argv)
    for name in ("states", "group", "turns", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be >= 1")
    out = Path(args.out) if args.out else create_run_dir("multiturn-bench")
    out.mkdir(parents=True, exist_ok=True)
    print(f"Output directory: {out.resolve()}")
    print(f"Note: {STAND_IN}.")
    rows = [measure("bandit", args), measure("multi-turn", args)]
    device = jax.devices()[0]
    payload = {"note": STAND_IN, "device": f"{device.platform}:{device.device_kind}", "args": vars(args),
               "rows": rows}
    (out / "multiturn.json").write_text(json.dumps(payload, indent=2))
    print(f"{args.game} {args.game_params}, {args.states} states x {args.group}, history {args.history}, "
          f"median of {args.repeats} steps on {payload['device']}")
    print(table(rows))
    print(f"Note: {STAND_IN}; wrote multiturn.json to {out}")
    return rows


if __name__ == "__main__":
    main()
