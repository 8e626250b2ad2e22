"""Does a checkpoint answer from the board it read? Greedy responses of each game's shipped
cold start (or ``--model``) on held-out boards, and how often the parts of each answer that
need a computation on the board are right, next to what a board-blind guess gets.

    python benchmarks/reasoning_check.py                  # both shipped cold starts, 96 boards each
    python benchmarks/reasoning_check.py --games shisensho --boards 256 --model runs/<run>/export

Per game (the boards of the checkpoint's record: ``game_params``, sampling mode and depth):
    P_acc, legal, positive      the paper's measures (``learner.measures``);
    reasoning                   the think line is true of the board (``eval/reasoning``);
    2048:       ``claimed score right``: the think line's "Moving <d> merges for <X> points"
                names the merge score <d> earns, against ``blind guess``: the best
                board-blind guess of that score (its most common value over these boards);
    Shisen-Sho: ``partner same kind``: the answer's second cell holds the first cell's kind,
                against ``blind guess``: a uniformly random other tile (the mean share of
                the other tiles that hold that kind).
A model that computes nothing from its perception scores its blind guess. Prints a table and
writes ``reasoning_check.json`` to the run directory (printed first).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

GAMES = ("2048", "shisensho")


def _held_out(env: Any, record: dict[str, Any], boards: int, seed: int) -> tuple[Any, np.ndarray]:
    from bridges.torch_io import images_to_numpy
    from learner.run import held_out_sampler

    train = record.get("train", {})
    sampler = held_out_sampler(env, train.get("sample_mode", "paper"), train.get("sample_depth", -1), seed)
    states, images = sampler.sample(boards)
    return states, images_to_numpy(images)


def check_2048(env: Any, states: Any, texts: list[str]) -> dict[str, float]:
    """The think line's claimed merge score against the one its move earns."""
    import re

    import jax

    from jaxgym.game2048 import ACTION_NAMES

    earned = np.asarray(jax.jit(jax.vmap(jax.vmap(env.step, in_axes=(None, 0, None)), in_axes=(0, None, None)))(
        states, np.arange(4, dtype=np.int32), jax.random.key(0)).reward)
    right, chosen = [], []
    for b, text in enumerate(texts):
        claim = re.search(r"Moving (up|right|down|left) merges for (\d+) points", text)
        if claim is None:
            right.append(False)
            continue
        score = int(earned[b, ACTION_NAMES.index(claim.group(1))])
        chosen.append(score)
        right.append(int(claim.group(2)) == score)
    blind = Counter(chosen).most_common(1)[0][1] / len(texts) if chosen else 0.0
    return {"claimed score right": float(np.mean(right)), "blind guess": blind}


def check_pairs(env: Any, states: Any, actions: np.ndarray) -> dict[str, float]:
    """The answer's second cell against the first cell's kind."""
    boards = np.asarray(states.board).reshape(len(actions), -1)
    same, chance = [], []
    for b, action in enumerate(actions):
        if not 0 <= action < env.num_actions:
            same.append(False)
            continue
        r1, c1, r2, c2 = (int(v) for v in env.action_to_pair(int(action)))
        first, second = r1 * env.size + c1, r2 * env.size + c2
        kind = boards[b, first]
        others = [i for i in np.flatnonzero(boards[b] > 0) if i != first]
        same.append(bool(kind > 0 and second != first and boards[b, second] == kind))
        if kind > 0 and others:
            chance.append(float(np.mean(boards[b, others] == kind)))
    return {"partner same kind": float(np.mean(same)), "blind guess": float(np.mean(chance)) if chance else 0.0}


def check(game: str, model: str | None, boards: int, seed: int) -> dict[str, Any]:
    """Every measure of one game's checkpoint (the shipped cold start when ``model`` is None)."""
    import jax

    import jaxgym
    from bridges.scoring import GroupScorer
    from bridges.torch_io import prompts_for
    from learner.batching import format_token_budget
    from learner.hf_policy import HFPolicy
    from learner.measures import paper_measures
    from learner.models import shipped_cold_start

    shipped = shipped_cold_start(game)
    if shipped is None:
        raise SystemExit(f"error: no cold start ships for {game!r}; pass --model")
    directory, record = shipped
    path = model or str(directory)
    env = jaxgym.make(game, **record["game_params"])
    states, images = _held_out(env, record, boards, seed)
    policy = HFPolicy(path, batch_size=16)
    policy.sampling = dataclasses.replace(policy.sampling,
                                          max_new_tokens=format_token_budget(env, policy.processor.tokenizer))
    texts = policy.generate(list(images), prompts_for(env, boards))
    scores = GroupScorer(env).score(states, [[t] for t in texts], jax.random.key(seed))
    truths = list(scores.perception_truths)
    measured = paper_measures(scores, [[t] for t in texts], truths, env=env)
    actions = np.asarray(scores.actions)[:, 0]
    extra = check_2048(env, states, texts) if game == "2048" else check_pairs(env, states, actions)
    return {"game": game, "model": path, "boards": boards, **{k: measured[k] for k in
            ("P_acc", "legal", "positive", "reasoning")}, **extra}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", default=",".join(GAMES), help=f"comma-separated, of {', '.join(GAMES)}")
    parser.add_argument("--model", default=None, help="a checkpoint directory (default: each game's shipped one)")
    parser.add_argument("--boards", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default runs/reasoning-<time>)")
    args = parser.parse_args(argv)
    games = [g.strip() for g in args.games.split(",") if g.strip()]
    unknown = [g for g in games if g not in GAMES]
    if unknown:
        raise SystemExit(f"error: unknown game(s) {unknown}; allowed: {', '.join(GAMES)}")
    if args.boards < 1:
        raise SystemExit(f"error: --boards={args.boards} must be >= 1")
    out = Path(args.out or f"runs/reasoning-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"Run directory: {out.resolve()}", flush=True)
    rows = [check(game, args.model, args.boards, args.seed) for game in games]
    print("| game | boards | P_acc | legal | positive | reasoning | the board computation | right | blind guess |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        name = "claimed score right" if row["game"] == "2048" else "partner same kind"
        print(f"| {row['game']} | {row['boards']} | {row['P_acc']:.3f} | {row['legal']:.3f} | {row['positive']:.3f} "
              f"| {row['reasoning']:.3f} | {name} | {row[name]:.3f} | {row['blind guess']:.3f} |")
    (out / "reasoning_check.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
