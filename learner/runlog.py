"""Run-directory logging: metrics JSONL (and TensorBoard if installed), rollout dumps, the
reward curve.

Layout of a run directory::

    config.yaml              the resolved config
    metrics.jsonl            one JSON object per step
    rollouts/step_000010/    every dump_every steps: group_<i>.png (the board) and
                             rollouts.json (prompt, responses, parsed actions, rewards)
    checkpoints/step_000025/ DeepSpeed state + RNG states (see learner.trainer)
    export/                  the final policy, loadable with from_pretrained
    reward_curve.png         mean rewards per step, written at the end
    tensorboard/             only when the tensorboard package is installed
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class MetricsLog:
    """Appends one JSON line per step; mirrors scalars to TensorBoard when available."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, purge_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional, not a dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                # purge_step: TensorBoard hides the events a crashed run wrote after its checkpoint.
                self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_logs(run_dir: Path, step: int) -> None:
    """Cut a run's logs back to ``step`` (a resume from that step's checkpoint writes the
    later steps again): metrics lines and rollout dumps of later steps go, and so does an
    unterminated last line of a process killed mid-write. The metrics file is replaced
    atomically."""
    import shutil

    from learner.checkpoint import write_text_atomic

    path = run_dir / "metrics.jsonl"
    if path.is_file():
        kept = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if line.endswith("\n") and isinstance(record, dict) and isinstance(record.get("step"), int) \
                    and record["step"] <= step:
                kept.append(line)
        write_text_atomic(path, "".join(kept))
    for dump in (run_dir / "rollouts").glob("step_*"):
        if dump.name[5:].isdigit() and int(dump.name[5:]) > step:
            shutil.rmtree(dump, ignore_errors=True)


def dump_rollouts(
    out_dir: Path,
    *,
    images: np.ndarray,
    prompt: str,
    perception: Sequence[str],
    responses: Sequence[Sequence[str]],
    scores: Any,
    advantages: np.ndarray,
    groups: int,
) -> None:
    """Write the first ``groups`` groups: their board PNGs and one JSON with the prompt and,
    per response, the text, parsed action and every reward component."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for g in range(min(groups, len(responses))):
        Image.fromarray(np.asarray(images[g])).save(out_dir / f"group_{g}.png")
        records.append({
            "image": f"group_{g}.png",
            "perception_truth": perception[g],
            "responses": [
                {
                    "text": responses[g][j],
                    "parsed": bool(scores.parsed[g, j]),
                    "action": int(scores.actions[g, j]),
                    "raw_reward": float(scores.raw_reward[g, j]),
                    "game": float(scores.game[g, j]),
                    "format": float(scores.format[g, j]),
                    "perception": float(scores.perception[g, j]),
                    "overall": float(scores.overall[g, j]),
                    "advantage": float(advantages[g, j]),
                }
                for j in range(len(responses[g]))
            ],
        })
    (out_dir / "rollouts.json").write_text(json.dumps({"prompt": prompt, "groups": records}, indent=1))


CURVE_KEYS = ("reward/overall", "reward/game", "reward/format", "reward/perception")


def plot_reward_curve(metrics: list[dict[str, Any]], out_png: Path, keys: Sequence[str] = CURVE_KEYS) -> Path | None:
    """Each of ``keys`` (default: the mean overall, game, format and perception reward) per
    step, at the steps where it was logged (matplotlib, headless)."""
    if not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key in keys:
        points = [(m["step"], m[key]) for m in metrics
                  if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=key.removeprefix("reward/"))
    ax.set_xlabel("step")
    ax.set_ylabel("mean per step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
