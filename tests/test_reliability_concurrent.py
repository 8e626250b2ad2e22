"""Commands started together never share a run directory: three evaluations and three training
runs released at the same instant, each into its default directory, finish as six complete,
separate runs; a training start that fails leaves no empty default directory behind."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Each process imports everything first, says "ready", then waits for the go file's instant, so
# all six reach their run directory in the same second: the collision a shell loop makes by chance.
LAUNCHER = """
import sys, time
from pathlib import Path
if sys.argv[1] == "evaluate":
    from learner import evaluate as command
else:
    from learner import train as command
    from learner.engine import init_distributed
    init_distributed()  # DeepSpeed's start-up (seconds), before the barrier; the trainer finds it done
print("ready", flush=True)
go = Path(sys.argv[2])
while not go.exists() or not go.read_text():
    time.sleep(0.01)
time.sleep(max(0.0, float(go.read_text()) - time.time()))
code = command.main(sys.argv[3:])
sys.exit(code if isinstance(code, int) else 0)
"""

EVAL = ["--game", "2048", "--policy", "random", "--runs", "2", "--steps", "3", "--image-size", "56", "--video",
        "none", "--quiet"]
TRAIN = ["--game", "2048", "--model", "tiny", "--game_params", '{"image_size": 56}', "--steps", "2",
         "--states_per_step", "2", "--group_size", "2", "--max_response_tokens", "4", "--micro_batch_size", "4",
         "--tensorboard", "false", "--export", "false", "--dump_every", "0", "--progress", "false"]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "PYTHONPATH": str(REPO)}


def _until_ready(process: subprocess.Popen) -> str:
    """The process's output up to its "ready" line (start-up logs may come first)."""
    lines = []
    for line in process.stdout:
        if line.strip() == "ready":
            return "".join(lines)
        lines.append(line)
    raise AssertionError("the process ended before it was ready:\n" + "".join(lines))


@pytest.mark.slow
def test_three_evaluations_and_three_trainings_started_together_get_separate_complete_runs(tmp_path):
    go = tmp_path / "go"
    commands = [("evaluate", [*EVAL, "--seed", str(seed)]) for seed in (11, 12, 13)]
    commands += [("train", [*TRAIN, "--seed", str(seed)]) for seed in (21, 22, 23)]
    processes = [subprocess.Popen([sys.executable, "-c", LAUNCHER, kind, str(go), *argv], cwd=tmp_path,
                                  env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for kind, argv in commands]
    try:
        before = [_until_ready(process) for process in processes]
        go.write_text(str(math.ceil(time.time()) + 1.05))  # just after a second starts: all six inside it
        outputs = [out + process.communicate(timeout=900)[0] for process, out in zip(processes, before, strict=True)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, out in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out

    evals = sorted((tmp_path / "runs").glob("eval-2048-random-*"))
    seeds = sorted(json.loads((d / "eval.json").read_text())["config"]["seed"] for d in evals)
    assert seeds == [11, 12, 13]  # three directories, one evaluation each
    for directory in evals:
        data = json.loads((directory / "eval.json").read_text())
        assert data["complete"] is True and [len(run["steps"]) for run in data["runs"]] == [3, 3]
    trains = sorted((tmp_path / "runs").glob("2048-*"))
    assert len(trains) == 3
    train_seeds = []
    for directory in trains:
        steps = [json.loads(line)["step"] for line in (directory / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2], directory  # not interleaved with another run's lines
        assert (directory / "checkpoints" / "latest").read_text() == "step_000002"
        assert json.loads((directory / "summary.json").read_text())["steps"] == 2
        train_seeds.append(yaml.safe_load((directory / "config.yaml").read_text())["seed"])
    assert sorted(train_seeds) == [21, 22, 23]
    # The evaluations collided: the same second's name, told apart by the -2 and -3 suffixes. (A loaded
    # machine may spread the trainers' model loading over seconds; the next test collides them for certain.)
    names = [d.name for d in evals]
    assert names[1:] == [f"{names[0]}-2", f"{names[0]}-3"], names


def test_trainers_resolving_their_default_directory_in_one_second_get_separate_ones(tmp_path, monkeypatch):
    from learner.config import TrainConfig
    from learner.trainer import GRPOTrainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20261208-010203")  # one second for all three
    starts = [SimpleNamespace(config=TrainConfig(), rank=0, world_size=1, env=SimpleNamespace(name="2048"))
              for _ in range(3)]
    dirs = [GRPOTrainer._resolve_run_dir(start) for start in starts]
    assert [str(d) for d in dirs] == ["runs/2048-20261208-010203", "runs/2048-20261208-010203-2",
                                      "runs/2048-20261208-010203-3"]
    assert all(d.is_dir() for d in dirs)


@pytest.mark.slow
def test_a_training_start_that_fails_leaves_no_empty_default_directory(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "learner/train.py"), "--game", "2048", "--model",
                           str(tmp_path / "no" / "model")], cwd=tmp_path, env=_environment(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "does not exist" in done.stderr, done.stderr
    assert "Run directory:" in done.stdout  # the directory was made, then removed when the start failed
    assert list((tmp_path / "runs").iterdir()) == []
