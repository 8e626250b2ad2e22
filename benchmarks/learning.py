"""Does it learn? The G1 recipe in miniature: G0 (GRPO from the untrained tiny model), the
perception cold start alone, and G1 (cold start, then the same GRPO), on 2048 and a small
Shisen-Sho, several seeds each, with the paper's measures.

    python benchmarks/learning.py                       # the full run (see FULL; 2 workers on 2 cores)
    python benchmarks/learning.py --quick               # a few steps of everything (the test)
    python benchmarks/learning.py --seeds 5 --rl-steps 80 --out runs/learning-5seeds

Per game and seed, in one run directory (printed first):
    <game>/seed<k>/cold-start/   learner/sft.py run (teacher: GAMES[game]["teacher"], a
                                 weak one, so that RL can surpass it), its export
    <game>/seed<k>/G0/, G1/      learner/train.py runs of the same length, greedy held-out
                                 evaluation every ``eval_every`` steps (eval/game, eval/P_acc)
    <game>/seed<k>/eval-<arm>/   learner/evaluate.py under the paper's protocol (avg@k)
and at the top: ``curves_<game>.png`` (held-out greedy game reward and training P_acc per GRPO
step, mean and +-1 s.e. band over seeds, the cold start alone and the teacher as lines),
``results.json`` and ``results.md`` (mean +- s.e. over seeds of every arm's greedy held-out
game reward, P_acc and paper-protocol score), with the total time.

Boards: 2048 4x4 (the paper's sampling) at 112 px, and Shisen-Sho 4x4 with 4 of 8 colours
(one shape, 4 copies each) at 168 px (32 px cells), after 0-6 random legal matches. Each
Shisen-Sho board draws its 4 colours from 8, so the image says which colours a board holds:
with the same 4 colours on every board, the image carries nothing a blind model cannot guess
until it can find each cell, and a tiny model never left that plateau (README, "Does it
learn?"). The default 6x6 Shisen-Sho with 9 of 36 kinds is beyond what a tiny model reads in
minutes of CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

GAMES: dict[str, dict[str, Any]] = {
    "2048": dict(game="2048", game_params={"size": 4, "image_size": 112}, teacher="legal-random"),
    # Random-depth legal play from 0 to 6 matches: full boards and boards with up to 12 empty
    # cells (after the paper's 250 random actions these small boards are mostly empty).
    # The brief prompt: the game's instruction would be ~5/6 of every sequence, and a tiny model
    # trained from scratch cannot read it.
    "shisensho": dict(game="shisensho", game_params={"size": 4, "colors": 8, "shapes": 1, "image_size": 168,
                                                     "prompt": "brief"},
                      teacher="first-same-kind", train={"sample_mode": "random-depth", "sample_depth": 6}),
}
ARMS = ("G0", "cold start", "G1", "teacher")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of everything one benchmark run does."""

    seeds: int = 3
    cold_start_steps: int = 600
    rl_steps: int = 40
    states_per_step: int = 8
    group_size: int | None = None
    """None: the game's main job's (``learner.sft.SHIPPED_RUN``, per game: Shisen-Sho 8, 2048 4)."""
    eval_every: int = 10
    eval_states: int = 32
    protocol_runs: int = 10
    protocol_steps: int = 20
    rl_lr: float | None = None
    """None: the game's main job's (3e-4 on both: 1e-3 wore the cold starts' reading down)."""
    workers: int = 1
    """(game, seed) runs at once, each in its own process pinned to a core of its own."""
    cold_start: str = "shipped"
    """'shipped': every seed's G1 starts from the game's shipped cold start
    (learner/assets/cold-start-<game>, rebuilt by the command in its jaxgym.json); 'train': a
    cold start of ``cold_start_steps`` per seed inside the run."""


COLD_STARTS = ("shipped", "train")
FULL = Plan()
QUICK = Plan(seeds=2, cold_start_steps=2, rl_steps=2, states_per_step=2, group_size=2, eval_every=1, eval_states=2,
             protocol_runs=2, protocol_steps=2, cold_start="train")


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (NaN s.e. for a single value); NaNs are left out.

    >>> mean_se([1.0, 2.0, 3.0])
    (2.0, 0.5773502691896258)
    """
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    if len(finite) == 1:
        return float(finite[0]), math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1) / np.sqrt(len(finite)))


def _config(game: str, plan: Plan, seed: int, run_dir: Path, **overrides: Any) -> Any:
    from learner.config import PRESETS, from_dict

    spec = GAMES[game]
    values = dict(game=spec["game"], game_params=spec["game_params"], seed=seed, run_dir=str(run_dir),
                  states_per_step=plan.states_per_step, eval_states=plan.eval_states, progress=False,
                  tensorboard=False, dump_every=0, save_every=0, export=True)
    values.update(spec.get("train", {}))
    values.update(overrides)
    if values.get("preset") == "cold-start":
        values = {**PRESETS["cold-start"], **values}
    return from_dict(values).validate()


def cold_start(game: str, plan: Plan, seed: int, run_dir: Path) -> dict[str, Any]:
    from learner.sft import ColdStartTrainer

    config = _config(game, plan, seed, run_dir, preset="cold-start", teacher=GAMES[game]["teacher"],
                     steps=plan.cold_start_steps, eval_every=plan.cold_start_steps)
    return ColdStartTrainer(config, echo=lambda _: None).train()


def shipped_cold_start(game: str) -> str:
    """The export directory of ``game``'s shipped cold start, checked against the benchmark's
    board and teacher (a clear error when it was built for another)."""
    from learner.models import shipped_cold_start as find

    spec = GAMES[game]
    found = find(spec["game"])
    if found is None:
        raise SystemExit(f"error: no cold start ships for {game!r}; run with --cold-start train")
    directory, record = found
    board = {**record["game_params"], "size": record["game_params"].get("size", spec["game_params"].get("size"))}
    sampling = ("sample_mode", "sample_depth")
    wanted = {"game_params": spec["game_params"], "teacher": spec["teacher"],
              **{k: spec.get("train", {}).get(k, record["train"].get(k)) for k in sampling}}
    got = {"game_params": board, "teacher": record["teacher"], **{k: record["train"].get(k) for k in sampling}}
    if got != wanted:
        raise SystemExit(f"error: the shipped cold start {directory} was built for {got}, the benchmark needs "
                         f"{wanted}; rebuild it ({record['command']}) or run with --cold-start train")
    return str(directory)


def rl_settings(game: str, plan: Plan) -> dict[str, Any]:
    """The GRPO settings of ``game``'s arms: those of the README's main job on that game
    (``learner.sft.SHIPPED_RUN`` and its per-game entry), where ``plan`` leaves them unset.

    >>> rl_settings("shisensho", FULL)
    {'group_size': 8, 'lr': 0.0003, 'w_perception': 1.0}
    """
    from learner.sft import SHIPPED_RUN, SHIPPED_RUN_PER_GAME

    shipped = {**SHIPPED_RUN, **SHIPPED_RUN_PER_GAME.get(GAMES[game]["game"], {})}
    settings = {"group_size": plan.group_size or shipped["group_size"], "lr": plan.rl_lr or shipped["lr"]}
    if "w_perception" in shipped:
        settings["w_perception"] = shipped["w_perception"]
    return settings


def grpo(game: str, plan: Plan, seed: int, run_dir: Path, model: str) -> dict[str, Any]:
    from learner.trainer import GRPOTrainer

    config = _config(game, plan, seed, run_dir, model=model, steps=plan.rl_steps, eval_every=plan.eval_every,
                     **rl_settings(game, plan))
    return GRPOTrainer(config, echo=lambda _: None).train()


def protocol_score(game: str, plan: Plan, seed: int, policy: str, out: Path, max_tokens: int) -> float:
    """The mean per-run score of ``policy`` under the paper's protocol (learner/evaluate.py)."""
    import contextlib
    import io

    from learner import evaluate

    params = [f"--param={k}={json.dumps(v)}" for k, v in GAMES[game]["game_params"].items()]
    argv = ["--game", GAMES[game]["game"], "--policy", policy, "--runs", str(plan.protocol_runs), "--steps",
            str(plan.protocol_steps), "--seed", str(seed), "--out", str(out), "--video", "none", "--quiet",
            "--max-tokens", str(max_tokens), *params]
    with contextlib.redirect_stdout(io.StringIO()):
        _, result = evaluate.main(argv)
    return float(np.mean(result.scores))


def teacher_game_reward(game: str, plan: Plan, seed: int) -> float:
    """The teacher's mean shaped game reward on the held-out states the arms are evaluated on."""
    import jax

    import jaxgym
    from bridges.protocol import protocol_for, shape_reward
    from bridges.teachers import Teacher
    from learner.run import held_out_sampler

    env = jaxgym.make(GAMES[game]["game"], **GAMES[game]["game_params"])
    train = GAMES[game].get("train", {})
    sampler = held_out_sampler(env, train.get("sample_mode", "paper"), train.get("sample_depth", -1), seed)
    states, _ = sampler.sample(plan.eval_states)
    _, raw = Teacher(env, GAMES[game]["teacher"]).act(states, jax.random.key(seed))
    return float(np.mean(shape_reward(protocol_for(env).shaping, raw, np.ones_like(raw, bool))))


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    from learner.runlog import read_metrics

    return read_metrics(run_dir / "metrics.jsonl")


def _logged(metrics: list[dict[str, Any]], key: str, index: int) -> float:
    """The ``index``-th logged value of ``key`` (NaN when it was never logged)."""
    values = [m[key] for m in metrics if isinstance(m.get(key), (int, float))]
    return float(values[index]) if values else math.nan


def _last(metrics: list[dict[str, Any]], key: str) -> float:
    return _logged(metrics, key, -1)


def _first(metrics: list[dict[str, Any]], key: str) -> float:
    return _logged(metrics, key, 0)


def run_seed(game: str, plan: Plan, seed: int, out: Path) -> dict[str, Any]:
    """Every arm of one game and seed; returns their numbers and curves."""
    base = out / game / f"seed{seed}"
    if plan.cold_start == "shipped":
        cs_export = shipped_cold_start(game)
    else:
        cs_export = cold_start(game, plan, seed, base / "cold-start")["export"]
    g0 = grpo(game, plan, seed, base / "G0", model="tiny")
    g1 = grpo(game, plan, seed, base / "G1", model=cs_export)
    budget = _config(game, plan, seed, base).max_response_tokens
    if budget == 0:
        import jaxgym
        from learner.batching import format_token_budget
        from learner.models import build_tiny_tokenizer

        budget = format_token_budget(jaxgym.make(GAMES[game]["game"], **GAMES[game]["game_params"]),
                                     build_tiny_tokenizer())
    result: dict[str, Any] = {"seed": seed, "arms": {}, "curves": {}}
    # The cold start alone is G1 before its first update: its step-0 greedy evaluation on the
    # same held-out states as G0's and G1's.
    arms = (("G0", g0["export"], base / "G0", _last), ("cold start", cs_export, base / "G1", _first),
            ("G1", g1["export"], base / "G1", _last))
    for arm, export, run, pick in arms:
        metrics = _metrics(run)
        result["arms"][arm] = {
            "game": pick(metrics, "eval/game"),
            "P_acc": pick(metrics, "eval/P_acc"),
            "R_acc": pick(metrics, "eval/R_acc"),
            "protocol": protocol_score(game, plan, seed, f"hf:{export}", base / f"eval-{arm}", budget),
        }
        if arm != "cold start":
            steps = [m for m in metrics if "reward/game" in m]  # not the step-0 evaluation's row
            result["curves"][arm] = {
                "eval_step": [m["step"] for m in metrics if "eval/game" in m],
                "eval_game": [m["eval/game"] for m in metrics if "eval/game" in m],
                "step": [m["step"] for m in steps],
                "P_acc": [m.get("P_acc", math.nan) for m in steps],
                "game": [m["reward/game"] for m in steps],
            }
    teacher = GAMES[game]["teacher"]
    result["arms"]["teacher"] = {
        "game": teacher_game_reward(game, plan, seed),
        "P_acc": 1.0,
        "R_acc": math.nan,
        "protocol": (protocol_score(game, plan, seed, "legal-random", base / "eval-teacher", budget)
                     if teacher == "legal-random" else math.nan),
    }
    return result


def _pin_worker(cores: Any, counter: Any) -> None:
    """Pool initializer: each worker process takes the next core (the learner's one torch
    thread then never shares a core with another worker's)."""
    import os

    if os.environ.get("WORLD_SIZE") == "1":
        # A parent that ran a learner itself handed down its single-process rendezvous port;
        # every worker must pick its own (learner.engine.single_process_env).
        for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(name, None)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cores[index % len(cores)]})


def run_all(games: list[str], plan: Plan, out: Path, progress: Any) -> dict[str, list[dict[str, Any]]]:
    """``run_seed`` for every game and seed, ``plan.workers`` at a time; ``{game: per_seed}``."""
    tasks = [(game, seed) for game in games for seed in range(plan.seeds)]
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if plan.workers <= 1:
        for game, seed in tasks:
            done[game, seed] = run_seed(game, plan, seed, out)
            progress.update(1)
    else:
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor, as_completed

        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(plan.workers))
        context = multiprocessing.get_context("spawn")  # JAX and torch threads do not survive a fork
        with ProcessPoolExecutor(plan.workers, mp_context=context, initializer=_pin_worker,
                                 initargs=(cores, context.Value("i", 0))) as pool:
            futures = {pool.submit(run_seed, game, plan, seed, out): (game, seed) for game, seed in tasks}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                progress.update(1)
    return {game: [done[game, seed] for seed in range(plan.seeds)] for game in games}


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{arm: {measure: (mean, s.e.)}}`` over seeds."""
    return {
        arm: {key: mean_se([r["arms"][arm][key] for r in per_seed]) for key in ("game", "P_acc", "R_acc", "protocol")}
        for arm in ARMS
    }


def _band(curves: list[dict[str, Any]], x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    length = min(len(c[y]) for c in curves)
    values = np.array([np.asarray(c[y][:length], dtype=float) for c in curves])
    mean = np.nanmean(values, axis=0)
    se = (np.nanstd(values, axis=0, ddof=1) / np.sqrt(len(curves))) if len(curves) > 1 else np.zeros_like(mean)
    return np.asarray(curves[0][x][:length]), mean, se


def plot_curves(game: str, per_seed: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for arm, color in (("G0", "tab:blue"), ("G1", "tab:red")):
        curves = [r["curves"][arm] for r in per_seed]
        for axis, (x, y) in ((left, ("eval_step", "eval_game")), (right, ("step", "P_acc"))):
            steps, mean, se = _band(curves, x, y)
            axis.plot(steps, mean, color=color, label=arm)
            axis.fill_between(steps, mean - se, mean + se, color=color, alpha=0.2)
    for arm, color, style in (("cold start", "tab:green", "--"), ("teacher", "black", ":")):
        left.axhline(summary[arm]["game"][0], color=color, linestyle=style, label=arm)
    right.axhline(summary["cold start"]["P_acc"][0], color="tab:green", linestyle="--", label="cold start")
    left.set(title=f"{game}: greedy game reward, held-out states", xlabel="GRPO step", ylabel="mean game reward")
    right.set(title=f"{game}: P_acc of the rollouts", xlabel="GRPO step", ylabel="exact perception")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _cell(pair: tuple[float, float]) -> str:
    mean, se = pair
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} +- {se:.3f}" if math.isfinite(se) else f"{mean:.3f}"


def markdown_table(results: dict[str, Any]) -> str:
    lines = ["| game | arm | greedy game reward (held-out) | P_acc | R_acc | paper-protocol score |",
             "|---|---|---|---|---|---|"]
    for game, summary in results["summary"].items():
        for arm in ARMS:
            row = summary[arm]
            lines.append(f"| {game} | {arm} | {_cell(row['game'])} | {_cell(row['P_acc'])} | {_cell(row['R_acc'])} "
                         f"| {_cell(row['protocol'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (checks the machinery)")
    parser.add_argument("--games", default=",".join(GAMES), help=f"comma-separated, of {', '.join(GAMES)}")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--cold-start-steps", type=int, default=None)
    parser.add_argument("--rl-steps", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None,
                        help="(game, seed) runs at once, one core each (full run's default: the cores this "
                             "process may use, at most 2)")
    parser.add_argument("--cold-start", choices=COLD_STARTS, default=None,
                        help="'shipped' (the full run's default): G1 starts from the game's shipped cold start; "
                             "'train': a cold start per seed inside the run (--cold-start-steps, --quick's default)")
    parser.add_argument("--out", default=None, help="run directory (default runs/learning-<time>)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.workers is None and not args.quick:
        import os

        args.workers = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    for field, value in (("seeds", args.seeds), ("cold_start_steps", args.cold_start_steps),
                         ("rl_steps", args.rl_steps), ("workers", args.workers)):
        if value is not None:
            if value < 1:
                raise SystemExit(f"error: --{field.replace('_', '-')}={value} must be >= 1")
            plan = dataclasses.replace(plan, **{field: value})
    if args.cold_start is not None:
        plan = dataclasses.replace(plan, cold_start=args.cold_start)
    games = [g.strip() for g in args.games.split(",") if g.strip()]
    unknown = [g for g in games if g not in GAMES]
    if unknown:
        raise SystemExit(f"error: unknown game(s) {unknown}; allowed: {', '.join(GAMES)}")
    out = Path(args.out or f"runs/learning-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"Run directory: {out.resolve()}", flush=True)
    print(f"Plan: {plan}", flush=True)
    from tqdm import tqdm

    start = time.perf_counter()
    results: dict[str, Any] = {"plan": dataclasses.asdict(plan), "games": {g: GAMES[g] for g in games},
                               "per_seed": {}, "summary": {}}
    with tqdm(total=len(games) * plan.seeds, desc="learning benchmark", unit="seed") as bar:
        results["per_seed"] = run_all(games, plan, out, bar)
    for game, per_seed in results["per_seed"].items():
        results["summary"][game] = summarize(per_seed)
        plot_curves(game, per_seed, results["summary"][game], out / f"curves_{game}.png")
    results["seconds"] = time.perf_counter() - start
    table = markdown_table(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text(f"{table}\n\nTotal time: {results['seconds'] / 60:.1f} min; plan: {plan}\n")
    print(table)
    print(f"Total time: {results['seconds'] / 60:.1f} min. Curves: "
          + ", ".join(str(out / f"curves_{g}.png") for g in games) + f"; table: {out / 'results.md'}")
    return results


if __name__ == "__main__":
    main()
