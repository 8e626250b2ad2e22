"""Evaluate a policy on a game under the paper's protocol ("avg@10").

    python learner/evaluate.py --game 2048 --policy random
    python learner/evaluate.py --game shisensho --policy greedy --runs 10 --steps 100 --seed 0
    python learner/evaluate.py --game swap --policy openai:http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct
    python learner/evaluate.py --game 2048 --policy hf:runs/train-2048/checkpoint-final
    python learner/evaluate.py --game 2048 --policy mypackage.agents:answer   # fn(images, prompts) -> responses

Writes to a run directory (printed first; ``--out`` to choose it, default
``runs/eval-<game>-<policy>-<timestamp>/``):
    ``eval.json``       config, summary, per run totals and every step (response, parsed
                        action, legal, raw reward, points, cumulative score, ...);
    ``cumulative.png``  each run's cumulative score over the steps, and the mean;
    ``run00.mp4`` ...   one video per run (GIF if no ffmpeg encoder is installed);
and prints a table of the runs with the mean and standard error. See
``bridges/evaluation.py`` for the protocol, ``bridges/policies.py`` for the policies.

Exit status: 0 for a usable result; 2 for bad arguments; 3 when the score does not measure
the policy because requests failed (``--on-request-error unparseable``): a run had no
successful request at all, or more than ``--max-request-error-rate`` of all requests
failed (default 0.1). ``eval.json`` is written either way, with the error counts.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jaxgym  # noqa: E402
from bridges.evaluation import (  # noqa: E402
    EvalResult,
    VideoRecorder,
    evaluate,
    plot_cumulative,
    summary_table,
    write_json,
)
from bridges.policies import PolicyError, make_policy  # noqa: E402
from bridges.protocol import EVAL_PROTOCOLS, eval_preset, parse_game_params  # noqa: E402

EXIT_UNUSABLE = 3


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: >= {low}")
        return value

    return parse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: 0 to 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Evaluate a policy on a jaxgym game under the paper's protocol (k runs of N steps).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--game", required=True, help=f"game id, one of {jaxgym.registered_games()}")
    parser.add_argument(
        "--policy", required=True,
        help="random | legal-random | greedy | openai:<base_url> | hf:<checkpoint dir> | module:function",
    )
    parser.add_argument("--protocol", choices=sorted(EVAL_PROTOCOLS), default="paper",
                        help="preset runs, steps, warm-up and game parameters (bridges.protocol.EVAL_PROTOCOLS); "
                             "explicit flags override it")
    parser.add_argument("--runs", type=_at_least(1), default=None,
                        help="parallel runs (default: the protocol's; paper: 10)")
    parser.add_argument("--steps", type=_at_least(1), default=None,
                        help="steps per run (default: the protocol's; paper: 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=_at_least(0), default=None,
                        help="random warm-up actions (default: the game's)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/eval-<game>-<policy>-<timestamp>)")
    parser.add_argument("--size", type=int, default=None, help="board size, for games that have one")
    parser.add_argument("--image-size", type=int, default=None, help="rendered image side in pixels")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="any other game parameter (VALUE read as JSON if it parses, else a string); repeatable",
    )
    parser.add_argument("--model", default=None, help="model name for openai: policies")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable with the API key")
    parser.add_argument("--max-tokens", type=int, default=2048, help="generation budget per response")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="openai: wall-clock seconds per request attempt")
    parser.add_argument("--retries", type=int, default=3, help="openai: retries of a failed request")
    parser.add_argument(
        "--on-request-error", choices=("raise", "unparseable"), default="raise",
        help="openai: stop, or score a request that failed every retry as an unparseable answer",
    )
    parser.add_argument(
        "--max-request-error-rate", type=_rate, default=0.1,
        help=f"share of failed requests above which the result is unusable (exit status {EXIT_UNUSABLE})",
    )
    parser.add_argument("--video", choices=("auto", "mp4", "gif", "none"), default="auto")
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        preset = eval_preset(args.protocol, args.game)
    except ValueError as error:
        parser.error(str(error))
    args.runs = preset.runs if args.runs is None else args.runs
    args.steps = preset.steps if args.steps is None else args.steps
    args.warmup = preset.warmup if args.warmup is None else args.warmup
    args.preset_params = preset.params
    return args


def game_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = dict(getattr(args, "preset_params", {}))
    if args.size is not None:
        params["size"] = args.size
    if args.image_size is not None:
        params["image_size"] = args.image_size
    params.update(parse_game_params(args.param))
    return params


def default_run_dir(game: str, policy: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", policy).strip("_")[:60] or "policy"
    return Path("runs") / f"eval-{game}-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def policy_options(args: argparse.Namespace) -> dict[str, Any]:
    kind = args.policy.partition(":")[0]
    if kind == "openai":
        return dict(
            api_key_env=args.api_key_env, max_tokens=args.max_tokens, temperature=args.temperature,
            concurrency=args.concurrency, timeout=args.timeout, retries=args.retries, on_error=args.on_request_error,
        )
    if kind == "hf":
        return dict(max_new_tokens=args.max_tokens, temperature=args.temperature)
    return {}


def main(argv: list[str] | None = None) -> tuple[Path, EvalResult]:
    args = parse_args(argv)
    try:
        env = jaxgym.make(args.game, **game_params(args))
        policy = make_policy(args.policy, env, seed=args.seed, model=args.model, **policy_options(args))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    run_dir = Path(args.out) if args.out else default_run_dir(args.game, args.policy)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory: {run_dir}", flush=True)

    recorder = None if args.video == "none" else VideoRecorder(
        run_dir, args.runs, fps=args.fps, fmt=args.video, steps=args.steps
    )
    from tqdm import tqdm

    progress = tqdm(total=args.steps, desc=f"{env.id} {policy.name}", unit="step", disable=args.quiet)
    try:
        result = evaluate(
            env, policy, runs=args.runs, steps=args.steps, seed=args.seed, warmup=args.warmup,
            frame_sink=recorder, progress=progress,
        )
    except PolicyError as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        progress.close()
        policy.close()
        if recorder is not None:
            recorder.close()
    result.config.update(
        {"params": game_params(args), "model": args.model, "policy_spec": args.policy, "run_dir": str(run_dir)}
    )
    write_json(result, run_dir / "eval.json")
    plot_cumulative(result, run_dir / "cumulative.png")
    print(summary_table(result))
    outputs = ["eval.json", "cumulative.png"] + ([p.name for p in recorder.paths] if recorder else [])
    print(f"wrote {', '.join(outputs)} to {run_dir}")
    problem = unusable(result, args.max_request_error_rate)
    if problem:
        print(f"error: {problem}; the score does not measure the policy (exit status {EXIT_UNUSABLE})",
              file=sys.stderr)
        raise SystemExit(EXIT_UNUSABLE)
    return run_dir, result


def unusable(result: EvalResult, max_error_rate: float) -> str:
    """Why ``result``'s score is not a measurement of the policy ('' if it is)."""
    summary = result.summary()
    if summary["runs_without_a_successful_request"]:
        return (f"{summary['runs_without_a_successful_request']} of {result.runs} run(s) had no successful request "
                f"({summary['request_errors']} request errors in all)")
    if summary["request_error_rate"] > max_error_rate:
        return (f"{summary['request_errors']} of {result.runs * result.steps} requests failed "
                f"({summary['request_error_rate']:.0%} > --max-request-error-rate {max_error_rate:g})")
    return ""


if __name__ == "__main__":
    main()
