"""The paper's evaluation protocol ("avg@10"), its logs, plot and videos.

    result = evaluate(env, make_policy("random", env), runs=10, steps=100, seed=0)
    result.summary()["mean"], result.summary()["stderr"]

Protocol (``docs/games.md``, "How the paper sampled ... and evaluated"):

1. k parallel runs start from fresh boards after the game's warm-up
   (``GameProtocol.eval_warmup`` random actions of its ``sample_policy``: 2048 100 uniformly
   random moves, the other games none). A board that ends during warm-up restarts.
2. Each of ``steps`` steps renders the k boards, asks the policy for k responses, parses
   them with ``env.parse_answer`` (unparseable text is the game's invalid move) and steps
   all runs in one ``jit(vmap(step))`` call.
3. A run's score is the sum over its steps of ``GameProtocol.eval_points``: the raw reward
   for 2048 (its merge score), 1 per successful step for the others (Shisen-Sho matches,
   Swap swaps).
4. A game that ends inside the steps restarts at once on a fresh board (``AutoReset``),
   without a new warm-up, and the run goes on: the steps count, not the episodes. The
   paper's runs did the same. The records mark the step that ended an episode.

Everything is seeded: one seed gives the same warm-up boards, spawns and baseline choices.

The command line (``main``) is here too, beside the code it runs; its documented entry is
``python learner/evaluate.py``, which first registers the learner's ``hf:`` policy.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxgym
import renderers  # noqa: F401  (registers the games' renderers: this module renders boards)
from bridges import cli
from bridges.cli import option
from bridges.policies import Observation, Policy, PolicyError, RequestFailure, make_policy, not_text, policy_kinds
from bridges.protocol import EVAL_PROTOCOLS, GameProtocol, eval_preset, parse_game_params, protocol_for
from bridges.rundirs import claim_file, create_run_dir
from bridges.sampler import StateSampler
from bridges.scoring import format_ok, parse_action, perception_ok, unbatch
from bridges.torch_io import prompts_for
from jaxgym.core import Env
from jaxgym.wrappers import AutoReset
from renderers.draw import blend

FrameSink = Callable[[int, np.ndarray, list[dict[str, Any]] | None], None]

MAX_STORED_RESPONSE = 32_768
"""Characters of a response kept in a step's record (it is parsed whole); the rest is cut and
``response_cut`` says how many, so ``eval.json`` stays readable whatever a model sends."""


class Terminated(BaseException):
    """SIGTERM arrived during an evaluation run from the command line (raised by its handler, so the
    run unwinds like Ctrl-C and keeps the steps it did)."""


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`.

    Attributes:
        records: ``records[run][step]`` dicts: ``step``, ``response``, ``action`` (flat int,
            or None if unparseable), ``answer`` (the parsed action as answer text, or
            ``"unparseable"``), ``legal``, ``raw_reward``, ``points`` (what the step adds to
            the score), ``cumulative``, ``episode_end``, ``format``, ``perception``,
            ``request_error`` (why the policy's request failed, or None: such a step's
            response is empty and scored as unparseable); ``response_cut`` where the response
            was longer than :data:`MAX_STORED_RESPONSE` characters: how many were not stored.
        scores: float64 ``(runs,)``, each run's score.
        steps: the steps every run did (fewer than asked where the evaluation stopped early).
        stopped: why the evaluation stopped before all its steps (None: it did them all).
    """

    game: str
    policy: str
    runs: int
    steps: int
    seed: int
    warmup: int
    eval_score: str
    records: list[list[dict[str, Any]]]
    scores: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None

    @property
    def cumulative(self) -> np.ndarray:
        """``(runs, steps)`` running score of each run."""
        return np.array([[rec["cumulative"] for rec in run] for run in self.records], np.float64).reshape(
            self.runs, self.steps
        )

    def run_totals(self) -> list[dict[str, Any]]:
        """Per-run totals: score, raw reward, rates of legal/parsed/format/perception, episodes ended."""
        totals = []
        for r, run in enumerate(self.records):
            n = max(1, len(run))
            totals.append(
                {
                    "run": r,
                    "score": float(self.scores[r]),
                    "raw_reward": float(sum(rec["raw_reward"] for rec in run)),
                    "legal_rate": sum(rec["legal"] for rec in run) / n,
                    "parsed_rate": sum(rec["action"] is not None for rec in run) / n,
                    "format_rate": sum(rec["format"] for rec in run) / n,
                    "perception_rate": sum(rec["perception"] for rec in run) / n,
                    "episodes_ended": sum(rec["episode_end"] for rec in run),
                    "request_errors": sum(rec.get("request_error") is not None for rec in run),
                }
            )
        return totals

    def summary(self) -> dict[str, Any]:
        """Mean, standard deviation (ddof 1), standard error, min and max of the run scores,
        the mean of the per-run rates, and the request errors: their count, the share of all
        requests, and how many runs had no successful request at all."""
        scores = np.asarray(self.scores, np.float64)
        std = float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
        totals = self.run_totals()
        rates = {
            name: float(np.mean([t[name] for t in totals]))
            for name in ("legal_rate", "parsed_rate", "format_rate", "perception_rate")
        }
        return {
            "game": self.game,
            "policy": self.policy,
            "runs": self.runs,
            "steps": self.steps,
            "score": self.eval_score,
            "mean": float(scores.mean()),
            "std": std,
            "stderr": std / math.sqrt(len(scores)) if len(scores) else 0.0,
            "min": float(scores.min()) if len(scores) else 0.0,
            "max": float(scores.max()) if len(scores) else 0.0,
            **rates,
            "request_errors": sum(t["request_errors"] for t in totals),
            "request_error_rate": sum(t["request_errors"] for t in totals) / max(1, self.runs * self.steps),
            "runs_without_a_successful_request": sum(t["request_errors"] == len(self.records[t["run"]]) > 0
                                                     for t in totals),
        }

    def to_json(self) -> dict[str, Any]:
        totals = self.run_totals()
        return {
            "complete": self.stopped is None,
            "stopped": self.stopped,
            "config": {
                "game": self.game,
                "policy": self.policy,
                "runs": self.runs,
                "steps": self.steps,
                "seed": self.seed,
                "warmup": self.warmup,
                "eval_score": self.eval_score,
                **self.config,
            },
            "summary": self.summary(),
            "runs": [{**totals[r], "steps": self.records[r]} for r in range(self.runs)],
        }


def _answer_text(env: Env, action: int | None) -> str:
    if action is None:
        return "unparseable"
    text = env.format_answer(action)
    return text.removeprefix("<answer>").removesuffix("</answer>").strip()


def checked_responses(responses: Sequence[Any], policy_name: str) -> list[str]:
    """``responses`` with every one that is not text (bytes, None, a number, ...) replaced by a
    :class:`RequestFailure` naming what came back: a counted request error with a warning, never
    an empty answer silently scored as unparseable."""
    checked: list[str] = []
    for i, response in enumerate(responses):
        if isinstance(response, str):
            checked.append(response)
            continue
        problem = f"policy {policy_name} returned {not_text(response)} for board {i}, not a response text"
        warnings.warn(f"{problem}; counted as a request error", RuntimeWarning, stacklevel=3)
        checked.append(RequestFailure(problem))
    return checked


def stop_reason(error: BaseException) -> str:
    """Why an evaluation stopped early, in words, for ``eval.json``'s ``stopped``."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (SIGINT, Ctrl-C)"
    if isinstance(error, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(error, PolicyError):
        return f"policy error: {error}"
    return f"{type(error).__name__}: {error}"


def _stored(response: str) -> tuple[str, int]:
    """The response text a record keeps, and how many characters were cut from it."""
    cut = len(response) - MAX_STORED_RESPONSE
    return (response[:MAX_STORED_RESPONSE], cut) if cut > 0 else (str(response), 0)


@functools.lru_cache(maxsize=32)
def _compiled_eval_fns(env: Env) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Batched auto-resetting step and render, compiled once per env."""
    return jax.jit(AutoReset(env).step_batch), jax.jit(jax.vmap(env.render))


def evaluate(
    env: Env,
    policy: Policy,
    *,
    runs: int = 10,
    steps: int = 100,
    seed: int = 0,
    warmup: int | None = None,
    protocol: GameProtocol | None = None,
    frame_sink: FrameSink | None = None,
    progress: Any = None,
    on_stop: Callable[[EvalResult, BaseException], None] | None = None,
) -> EvalResult:
    """Run the evaluation protocol (module doc) and return every step's record.

    Args:
        env: the game (unwrapped or wrapped; it is wrapped in ``AutoReset`` here).
        policy: a :class:`~bridges.policies.Policy`.
        runs, steps: k parallel runs of this many steps (the paper: 10 and 100).
        seed: seeds the warm-up, the env's randomness and the policy's key.
        warmup: random actions before the runs (default: the game's ``eval_warmup``).
        protocol: scoring rule (default: ``protocol_for(env)``).
        frame_sink: called with ``(step, images (k, H, W, 3) uint8, records)`` before each
            step (``records`` is that step's k records) and once after the last step with
            ``records=None``: videos are written through it.
        progress: an optional tqdm-like object with ``update(n)``.
        on_stop: called with the steps done so far (an :class:`EvalResult` whose ``stopped``
            says why) and the exception, when anything (a policy error, Ctrl-C, SIGTERM raised
            as :class:`Terminated`) stops the run before its last step; the exception then
            propagates. The command line writes ``eval.json`` from it.
    """
    checks = (("runs", runs, 1), ("steps", steps, 1), ("seed", seed, None), ("warmup", warmup, 0))
    for name, value, lo in checks:
        if name == "warmup" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (lo is not None and value < lo):
            allowed = "an int" + (f" >= {lo}" if lo is not None else "")
            raise ValueError(f"{name}={value!r} is out of range; allowed: {allowed}")
    protocol = protocol or protocol_for(env)
    warmup = protocol.eval_warmup if warmup is None else warmup
    sampler = StateSampler(env, mode="paper", depth=warmup, seed=int(seed))
    states, images = sampler.sample(runs)
    step_fn, render_fn = _compiled_eval_fns(env)
    prompts = prompts_for(env, runs)
    key = jax.random.fold_in(jax.random.key(int(seed)), 1)

    records: list[list[dict[str, Any]]] = [[] for _ in range(runs)]
    totals = np.zeros(runs, np.float64)

    def result(stopped: str | None = None) -> EvalResult:
        return EvalResult(
            game=env.id,
            policy=policy.name,
            runs=int(runs),
            steps=len(records[0]),
            seed=int(seed),
            warmup=int(warmup),
            eval_score=protocol.eval_score,
            records=records,
            scores=totals.copy(),
            stopped=stopped,
        )

    try:
        for t in range(steps):
            key, policy_key, step_key = jax.random.split(key, 3)
            responses = policy(Observation(images=images, prompts=prompts, states=states, key=policy_key))
            if isinstance(responses, str) or len(responses) != runs:
                raise PolicyError(f"policy {policy.name} returned {len(responses)} responses for {runs} boards")
            responses = checked_responses(responses, policy.name)
            host = jax.device_get(states)
            parsed = [parse_action(env, response) for response in responses]
            actions = np.array([a for a, _ in parsed], np.int32)
            nxt = step_fn(states, actions, jax.random.split(step_key, runs))
            raw = np.asarray(nxt.reward, np.float64)
            legal = np.asarray(nxt.last_action_legal)
            ended = np.asarray(nxt.terminated | nxt.truncated)
            points = np.asarray(protocol.eval_points(raw), np.float64)
            step_records = []
            for r in range(runs):
                action = int(actions[r]) if parsed[r][1] else None
                text, cut = _stored(responses[r])
                record = {
                    "step": t,
                    "response": text,
                    "action": action,
                    "answer": _answer_text(env, action),
                    "legal": bool(legal[r]),
                    "raw_reward": float(raw[r]),
                    "points": float(points[r]),
                    "cumulative": float(totals[r] + points[r]),
                    "episode_end": bool(ended[r]),
                    "format": int(format_ok(responses[r])),
                    "perception": int(perception_ok(responses[r], env.describe(unbatch(host, r)))),
                    "request_error": responses[r].error if isinstance(responses[r], RequestFailure) else None,
                }
                if cut:
                    record["response_cut"] = cut
                step_records.append(record)
            # A step counts for all runs or none: what is kept when the run stops is whole steps.
            totals += points
            for r, record in enumerate(step_records):
                records[r].append(record)
            if frame_sink is not None:
                frame_sink(t, np.asarray(images), step_records)
            states = nxt
            images = render_fn(states)
            if progress is not None:
                progress.update(1)
        if frame_sink is not None:
            frame_sink(steps, np.asarray(images), None)
    except BaseException as error:
        if on_stop is not None:
            on_stop(result(stop_reason(error)), error)
        raise
    return result()


# ---------------------------------------------------------------- outputs


def video_format(requested: str = "auto") -> str:
    """``"mp4"`` if an ffmpeg encoder is available (the ``imageio-ffmpeg`` package ships
    one), else ``"gif"``; or the requested one (``"mp4"`` raises if it cannot be written)."""
    if requested not in ("auto", "mp4", "gif"):
        raise ValueError(f"video format {requested!r} is not one of ('auto', 'mp4', 'gif')")
    if requested == "gif":
        return "gif"
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return "mp4"
    except (ImportError, RuntimeError) as error:
        if requested == "mp4":
            message = f"mp4 videos need the imageio-ffmpeg package (pip install imageio-ffmpeg): {error}"
            raise ValueError(message) from None
        return "gif"


CAPTION_BACKGROUND = (32, 32, 32)
CAPTION_TEXT = (240, 240, 240)


@functools.lru_cache(maxsize=4096)
def _glyph(char: str, height: int) -> np.ndarray:
    """Coverage of one character at ``height`` pixels (exact glyphs from ``renderers.text``,
    cached: a caption is a row of cached glyphs, not a fresh resample of the whole line)."""
    from renderers import text

    return text.text_coverage(char, height)


def _caption_coverage(caption: str, height: int, max_width: int) -> np.ndarray:
    printable = "".join(c if 32 <= ord(c) < 127 else "?" for c in caption)
    if not printable:
        return np.zeros((height, 0), np.uint8)
    width = sum(_glyph(c, height).shape[1] for c in printable)
    if width > max_width:
        height = max(6, height * max_width // width)
    while height > 6 and sum(_glyph(c, height).shape[1] for c in printable) > max_width:
        height -= 1
    glyphs = [_glyph(c, height) for c in printable]
    return np.concatenate(glyphs, axis=1)[:, :max_width]


def caption_frame(image: np.ndarray, caption: str, pad_to: int = 16) -> np.ndarray:
    """The frame with a caption bar below it, padded to a multiple of ``pad_to`` pixels
    (video codecs want even sizes, ``pad_to=16`` avoids any rescaling)."""
    height, width, _ = image.shape
    bar = max(14, height // 14)
    total_h = -(-(height + bar) // pad_to) * pad_to
    total_w = -(-width // pad_to) * pad_to
    frame = np.empty((total_h, total_w, 3), np.uint8)
    frame[:] = CAPTION_BACKGROUND
    frame[:height, :width] = image
    coverage = _caption_coverage(caption, int(bar * 0.7), total_w - 4)
    h, w = coverage.shape
    top = height + (total_h - height - h) // 2
    left = (total_w - w) // 2
    blend(frame, coverage, top, left, CAPTION_TEXT)
    return frame


class VideoRecorder:
    """A :data:`FrameSink` writing one video per run (``run00.mp4``, ... or ``.gif``).

    Each frame is the board before a step, captioned with the step, the parsed answer,
    its raw reward and the run's score so far; the last frame shows the final board."""

    def __init__(
        self, out_dir: str | Path, runs: int, *, fps: float = 2.0, fmt: str = "auto", steps: int | None = None
    ):
        self.out_dir = Path(out_dir)
        self.runs, self.fps, self.steps = runs, float(fps), steps
        self.format = video_format(fmt)
        self.paths = [self.out_dir / f"run{r:02d}.{self.format}" for r in range(runs)]
        self._writers: list[Any] | None = None
        self._last_score: list[float] = [0.0] * runs

    def _open(self) -> list[Any]:
        import imageio.v2 as imageio

        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.format == "mp4":
            return [
                imageio.get_writer(p, fps=self.fps, codec="libx264", quality=7, pixelformat="yuv420p",
                                   macro_block_size=16, ffmpeg_log_level="error")
                for p in self.paths
            ]
        return [imageio.get_writer(p, mode="I", duration=1000.0 / self.fps, loop=0) for p in self.paths]

    def __call__(self, step: int, images: np.ndarray, records: list[dict[str, Any]] | None) -> None:
        # ffmpeg starts as a subprocess on the first frame: fork-then-exec is safe, and JAX's
        # warning about fork is noise here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            self._write(step, images, records)

    def _write(self, step: int, images: np.ndarray, records: list[dict[str, Any]] | None) -> None:
        if self._writers is None:
            self._writers = self._open()
        of = f"/{self.steps}" if self.steps else ""
        for r, writer in enumerate(self._writers):
            if records is None:
                caption = f"run {r}  end  score {self._last_score[r]:g}"
            else:
                rec = records[r]
                caption = (
                    f"run {r}  step {step + 1}{of}  answer {rec['answer']}  "
                    f"reward {rec['raw_reward']:+g}  score {rec['cumulative']:g}"
                )
            writer.append_data(caption_frame(images[r], caption))
        if records is not None:
            self._last_score = [rec["cumulative"] for rec in records]

    def close(self) -> list[Path]:
        for writer in self._writers or []:
            writer.close()
        self._writers = None
        return self.paths


def plot_cumulative(result: EvalResult, path: str | Path) -> Path:
    """A PNG of each run's cumulative score over the steps, and their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cumulative = np.concatenate([np.zeros((result.runs, 1)), result.cumulative], axis=1)
    steps = np.arange(0, result.steps + 1)
    summary = result.summary()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for r in range(result.runs):
        ax.plot(steps, cumulative[r], lw=0.9, alpha=0.5, label="runs" if r == 0 else None)
    ax.plot(steps, cumulative.mean(axis=0), color="black", lw=2.2, label="mean")
    ylabel = "cumulative merge score" if result.eval_score == "raw" else "cumulative successful moves"
    ax.set(xlabel="step", ylabel=ylabel,
           title=f"{result.game}, {result.policy}: {summary['mean']:.1f} ± {summary['stderr']:.1f} "
                 f"(mean ± s.e., {result.runs} runs)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_json(result: EvalResult, path: str | Path) -> Path:
    """Write ``result.to_json()`` atomically (a temporary file renamed over ``path``: a
    failure leaves the previous file, never a truncated one). Any text a model returned is
    stored: an unpaired surrogate, which UTF-8 cannot encode, is written as its JSON escape
    (``\\ud800``), which reads back as the same string."""
    return _write_text_atomic(path, json.dumps(result.to_json(), indent=1, ensure_ascii=False))


def _write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    # Surrogates occur only inside JSON strings, where backslashreplace's \udxxx is a JSON escape.
    data = text.encode("utf-8", errors="backslashreplace")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def summary_table(result: EvalResult) -> str:
    """A plain-text table: one line per run, then the mean ± standard error."""
    totals = result.run_totals()
    summary = result.summary()
    header = f"{'run':>4} {'score':>10} {'raw':>10} {'legal':>6} {'parsed':>6} {'format':>6} {'percep':>6} {'ended':>5}"
    lines = [f"{result.game}  policy {result.policy}  {result.runs} runs x {result.steps} steps  "
             f"(warm-up {result.warmup}, score = {'raw reward' if result.eval_score == 'raw' else 'successful moves'})",
             header, "-" * len(header)]
    for t in totals:
        lines.append(
            f"{t['run']:>4} {t['score']:>10.1f} {t['raw_reward']:>10.1f} {t['legal_rate']:>6.0%} "
            f"{t['parsed_rate']:>6.0%} {t['format_rate']:>6.0%} {t['perception_rate']:>6.0%} {t['episodes_ended']:>5}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"mean {summary['mean']:.2f} ± {summary['stderr']:.2f} (standard error; std {summary['std']:.2f}, "
        f"min {summary['min']:g}, max {summary['max']:g})"
    )
    if summary["request_errors"]:
        lines.append(
            f"request errors: {summary['request_errors']} of {result.runs * result.steps} requests "
            f"({summary['request_error_rate']:.0%}) failed and were scored as unparseable; "
            f"{summary['runs_without_a_successful_request']} run(s) had no successful request"
        )
        first = next(rec["request_error"] for run in result.records for rec in run if rec.get("request_error"))
        lines.append(f"first request error: {first}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line

EXIT_UNUSABLE = 3


@dataclass
class EvalOptions:
    """The evaluator's command line (``python learner/evaluate.py --help``), in the grammar of
    ``bridges.cli``: the learner's (``--key value``, ``--key=value``, ``key=value``)."""

    game: str = option("", "Game id (required): a registered jaxgym game.")
    policy: str = option("", (
        "Policy spec (required): random | legal-random | greedy | openai:<base_url> | hf:<checkpoint dir> "
        "(the learner's, registered by learner/evaluate.py) | module:function."))
    protocol: str = option("paper", (
        "Preset runs, steps, warm-up and game parameters (bridges.protocol.EVAL_PROTOCOLS); the other "
        "options override it."), choices=tuple(sorted(EVAL_PROTOCOLS)))
    runs: int | None = option(None, "Parallel runs (None: the protocol's; paper: 10).")
    steps: int | None = option(None, "Steps per run (None: the protocol's; paper: 100).")
    seed: int = option(0, "Seeds the warm-up, the game's randomness and the policy.")
    warmup: int | None = option(None, "Random warm-up actions (None: the protocol's, else the game's).")
    out: str = option("", "Run directory ('' = runs/eval-<game>-<policy>-<timestamp>).")
    size: int | None = option(None, "Board size, for games that have one.")
    image_size: int | None = option(None, "Rendered image side in pixels.")
    param: list[str] = option(help=(
        "Any other game parameter as KEY=VALUE (VALUE read as JSON if it parses, else a string); "
        "repeatable."), default_factory=list)
    model: str | None = option(None, "Model name for openai: policies.")
    api_key_env: str = option("OPENAI_API_KEY", "openai: the environment variable with the API key.")
    max_tokens: int = option(2048, "Generation budget per response.")
    temperature: float = option(0.0, "Sampling temperature (0: greedy).")
    concurrency: int = option(8, "openai: requests in flight.")
    timeout: float = option(300.0, "openai: wall-clock seconds per request attempt.")
    retries: int = option(3, "openai: retries of a failed request.")
    on_request_error: str = option("raise", (
        "openai: stop, or score a request that failed every retry as an unparseable answer."),
        choices=("raise", "unparseable"))
    max_request_error_rate: float = option(0.1, (
        f"Share of failed requests above which the result is unusable (exit status {EXIT_UNUSABLE})."))
    video: str = option("auto", "Videos of the runs (auto: mp4 if ffmpeg is there, else gif).",
                        choices=("auto", "mp4", "gif", "none"))
    fps: float = option(2.0, "Frames per second of the videos.")
    quiet: bool = option(False, "No progress bar.")

    def validate(self) -> EvalOptions:
        """Raise ``ValueError`` naming the first invalid value; returns ``self``."""
        for key in ("game", "policy"):
            if not getattr(self, key):
                raise ValueError(f"--{key} is required" + (
                    f"; one of {', '.join(jaxgym.registered_games())}" if key == "game" else ""))
        for key, low in (("runs", 1), ("steps", 1), ("warmup", 0), ("concurrency", 1), ("retries", 0)):
            value = getattr(self, key)
            if value is not None and value < low:
                raise ValueError(f"{key}={value!r} is out of range; allowed: >= {low}")
        if not 0 <= self.max_request_error_rate <= 1:
            raise ValueError(f"max_request_error_rate={self.max_request_error_rate!r} is out of range; "
                             f"allowed: 0 to 1")
        # NaN passes no comparison and inf overflows a timer: refused here, naming the value.
        for key, ok, allowed in (("timeout", 0 < self.timeout < math.inf, "a finite number of seconds > 0"),
                                 ("temperature", 0 <= self.temperature < math.inf, "a finite number >= 0"),
                                 ("max_tokens", self.max_tokens >= 1, ">= 1"),
                                 ("fps", 0 < self.fps < math.inf, "a finite number > 0")):
            if not ok:
                raise ValueError(f"{key}={getattr(self, key)!r} is out of range; allowed: {allowed}")
        return self


def parse_args(argv: Sequence[str]) -> EvalOptions:
    """The options of a command line, the protocol's presets filled in. Raises ``ValueError``
    naming a bad key or value (``main`` prints it and exits with status 2)."""
    args = cli.parse(EvalOptions, argv).validate()
    preset = eval_preset(args.protocol, args.game)
    args.runs = preset.runs if args.runs is None else args.runs
    args.steps = preset.steps if args.steps is None else args.steps
    args.warmup = preset.warmup if args.warmup is None else args.warmup
    return args


def game_params(args: EvalOptions) -> dict[str, Any]:
    """``jaxgym.make``'s keyword arguments: the protocol's, then ``--size``, ``--image_size``, ``--param``."""
    params: dict[str, Any] = dict(eval_preset(args.protocol, args.game).params)
    if args.size is not None:
        params["size"] = args.size
    if args.image_size is not None:
        params["image_size"] = args.image_size
    params.update(parse_game_params(args.param))
    return params


HELP_USAGE = """Evaluate a policy on a jaxgym game under the paper's protocol (k runs of N steps).

    python learner/evaluate.py --game 2048 --policy random
    python learner/evaluate.py --game shisensho --policy greedy --runs 10 --steps 100 --seed 0
    python learner/evaluate.py --game swap --policy openai:http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct
    python learner/evaluate.py --game 2048 --policy hf:runs/<train-run>/export

Exit status: 0 for a usable result; 1 when the policy failed (eval.json keeps the steps done,
"complete": false); 2 for bad arguments (an --out directory that already holds an eval.json
included); 3 when requests failed too often for the score to measure the policy (see
--max_request_error_rate); 130 after Ctrl-C and 143 after SIGTERM, the steps done kept."""

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
RESULTS = "eval.json"


def default_run_dir(game: str, policy: str, root: str | Path = "runs") -> Path:
    """Create and return a new ``root/eval-<game>-<policy>-<time>[-N]`` that no concurrent
    evaluation gets (``bridges.rundirs.create_run_dir``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", policy).strip("_")[:60] or "policy"
    return create_run_dir(f"eval-{game}-{slug}", root=root)


def _holds_results(run_dir: Path) -> ValueError:
    return ValueError(f"--out {str(run_dir)!r} already holds an evaluation ({RESULTS}); choose another directory, "
                      f"or remove {str(run_dir / RESULTS)!r} to evaluate into it again")


def claim_run_dir(out: str, game: str, policy: str) -> Path:
    """The run directory, made this evaluation's: ``out`` with its ``eval.json`` claimed by an
    atomic exclusive create (``ValueError`` if it exists: an evaluation never overwrites
    another's results, however many start together), or a new default directory."""
    if not out:
        return default_run_dir(game, policy)
    run_dir = Path(out)
    try:
        claim_file(run_dir / RESULTS)
    except FileExistsError:
        raise _holds_results(run_dir) from None
    except OSError as error:
        raise ValueError(f"--out {out!r} cannot be used: {error.strerror or error}") from None
    return run_dir


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def policy_options(args: EvalOptions) -> dict[str, Any]:
    kind = args.policy.partition(":")[0]
    if kind == "openai":
        return dict(
            api_key_env=args.api_key_env, max_tokens=args.max_tokens, temperature=args.temperature,
            concurrency=args.concurrency, timeout=args.timeout, retries=args.retries, on_error=args.on_request_error,
        )
    if kind in policy_kinds():  # a registered model policy (hf:): a generation budget and temperature
        return dict(max_tokens=args.max_tokens, temperature=args.temperature)
    return {}


def main(argv: Sequence[str] | None = None) -> tuple[Path, EvalResult]:
    """The command line (``python learner/evaluate.py --help``). Ctrl-C anywhere ends it with one
    line and exit status 130, never a traceback."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C) before the evaluation started; nothing written", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def _main(argv: list[str]) -> tuple[Path, EvalResult]:
    if any(a in ("-h", "--help") for a in argv):
        print(cli.help_text(EvalOptions, HELP_USAGE, required=("game", "policy")))
        raise SystemExit(0)
    try:
        args = parse_args(argv)
        if args.out and (Path(args.out) / RESULTS).exists():  # early, before a model loads; claimed atomically below
            raise _holds_results(Path(args.out))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        env = jaxgym.make(args.game, **game_params(args))
        policy = make_policy(args.policy, env, seed=args.seed, model=args.model, **policy_options(args))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    try:
        run_dir = claim_run_dir(args.out, args.game, args.policy)
    except ValueError as error:
        policy.close()
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"run directory: {run_dir}", flush=True)
    config = {"params": game_params(args), "model": args.model, "policy_spec": args.policy, "run_dir": str(run_dir),
              "steps_requested": args.steps}
    # Until the run ends, eval.json says it has not: a process killed -9 leaves that, not nothing.
    _write_text_atomic(run_dir / RESULTS, json.dumps(
        {"complete": False, "stopped": "no step recorded: the evaluation is running, or its process was killed",
         "config": {"game": env.id, "policy": policy.name, "runs": args.runs, "seed": args.seed, **config}}, indent=1))

    recorder = None if args.video == "none" else VideoRecorder(
        run_dir, args.runs, fps=args.fps, fmt=args.video, steps=args.steps
    )
    from tqdm import tqdm

    kept: list[EvalResult] = []

    def keep(partial: EvalResult, error: BaseException) -> None:
        partial.config.update(config)
        write_json(partial, run_dir / RESULTS)
        kept.append(partial)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    progress = tqdm(total=args.steps, desc=f"{env.id} {policy.name}", unit="step", disable=args.quiet)
    try:
        result = evaluate(
            env, policy, runs=args.runs, steps=args.steps, seed=args.seed, warmup=args.warmup,
            frame_sink=recorder, progress=progress, on_stop=keep,
        )
    except (PolicyError, KeyboardInterrupt, Terminated) as error:
        code = {KeyboardInterrupt: EXIT_INTERRUPTED, Terminated: EXIT_TERMINATED}.get(type(error), 1)
        progress.close()
        partial = kept[0] if kept else None
        lead = f"error: {error}\n" if isinstance(error, PolicyError) else ""
        done = (f"stopped after {partial.steps} of {args.steps} steps ({stop_reason(error).split(':')[0]}); "
                f"kept them in {run_dir / RESULTS} (\"complete\": false)") if partial else stop_reason(error)
        print(lead + done, file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        progress.close()
        policy.close()
        if recorder is not None:
            recorder.close()
    result.config.update(config)
    write_json(result, run_dir / RESULTS)
    plot_cumulative(result, run_dir / "cumulative.png")
    print(summary_table(result))
    outputs = [RESULTS, "cumulative.png"] + ([p.name for p in recorder.paths] if recorder else [])
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
