"""Resume that tells the truth: the saved config is the base and only safe keys change, logs
are cut back to the checkpoint, a run without a checkpoint restarts, config edges are one
line, and a run killed -9 anywhere (checkpoint writes included) resumes to the same bits."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from learner import checkpoint as ckpt
from learner import train
from learner.config import RESUME_SAFE_KEYS, TrainConfig, coerce, parse_args
from learner.runlog import truncate_logs

REPO = Path(__file__).resolve().parents[1]


def _saved_run(tmp_path: Path, **values) -> Path:
    run = tmp_path / "runs" / "shisensho-1"
    run.mkdir(parents=True)
    saved = dict(TrainConfig(game="shisensho", steps=6, lr=0.01, **values).to_dict())
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return run


def test_resume_takes_the_saved_config_and_allows_only_safe_changes(tmp_path):
    run = _saved_run(tmp_path)
    before = (run / "config.yaml").read_text()
    config = parse_args(["--resume", str(run), "--steps", "12", "--save_every", "3"])
    assert (config.game, config.lr, config.steps, config.save_every) == ("shisensho", 0.01, 12, 3)
    assert config.resume == str(run) and config.run_dir == ""
    with pytest.raises(ValueError) as info:
        parse_args(["--resume", str(run), "--lr", "0.5", "--game", "swap"])
    message = str(info.value)
    assert "lr: saved 0.01, now 0.5" in message and "game: saved 'shisensho', now 'swap'" in message
    assert all(key in message for key in RESUME_SAFE_KEYS)
    assert (run / "config.yaml").read_text() == before  # a refused resume rewrites nothing
    with pytest.raises(ValueError, match="no config.yaml"):
        parse_args(["--resume", str(tmp_path / "nowhere")])


def test_truncate_logs_cuts_back_to_the_checkpoint_step(tmp_path):
    lines = [json.dumps({"step": s, "reward/overall": s / 10}) + "\n" for s in (1, 2, 3, 4, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(lines) + '{"step": 4, "rew')  # killed mid-line
    for s in (2, 4):
        (tmp_path / "rollouts" / f"step_{s:06d}").mkdir(parents=True)
    truncate_logs(tmp_path, 2)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == ["step_000002"]


def test_config_edges_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"group_size='1.5e0' is not a whole number"):
        coerce("group_size", "1.5e0")
    assert coerce("steps", "1e3") == 1000 and coerce("lr", "1e-3") == 0.001
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\nlr: 3\n")
    for argv, message in ((["--config", str(bad)], "is not valid YAML at line"),
                          (["--config", str(tmp_path / "missing.yaml")], "cannot read config file"),
                          (["--group_size", "1.5e0"], "is not a whole number")):
        assert train.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_a_failed_start_leaves_no_run_directory(tmp_path):
    from learner.trainer import GRPOTrainer
    from tests.learner_support import small_config

    source = tmp_path / "source"
    (source / "checkpoints" / "step_000001").mkdir(parents=True)  # a checkpoint that never completed
    (source / "config.yaml").write_text(yaml.safe_dump(small_config(str(source)).to_dict()))
    run_dir = tmp_path / "run"
    with pytest.raises(ckpt.CheckpointError, match="none is complete"):  # found after the model is built
        GRPOTrainer(small_config(str(run_dir), resume=str(source)), echo=lambda _: None)
    assert not run_dir.exists()


# ---------------------------------------------------------------- kill -9 at random points


def _job(run_dir: Path, *args: str, kill_after: float | None = None) -> int:
    command = [sys.executable, "-m", "tests.reliability_train_job", str(run_dir), *args]
    # Not this process's torch.distributed rendezvous (set by any trainer built in it): a fresh one.
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    if kill_after is None:
        out, _ = process.communicate(timeout=300)
    else:  # wait until training runs, then kill -9 from outside at a random moment
        for line in process.stdout:
            if line.startswith(("Resumed from", "warning:")) or "responses per step" in line:
                break
        time.sleep(kill_after)
        process.send_signal(signal.SIGKILL)
        out, _ = process.communicate(timeout=60)
    assert process.returncode in (0, -signal.SIGKILL), out
    return process.returncode


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    newest = ckpt.step_dirs(run_dir)[0]
    assert newest.name == "step_000004"
    ckpt.verify(newest)
    states = ckpt.safe_torch_load(next((newest / "state").glob("*model_states.pt")))
    return states["module"]


def _metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("seconds/")} for r in records]


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_equals_the_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    assert _job(straight) == 0
    killed = tmp_path / "killed"
    # Inside the first checkpoint's write: no checkpoint yet, the resume starts the run again.
    assert _job(killed, "--kill", "deepspeed:1") == -signal.SIGKILL
    assert not ckpt.step_dirs(killed) and (killed / "config.yaml").is_file()
    # Between the manifest and the rename of step 3: step 2 is the newest complete one.
    assert _job(killed, "--resume", "--kill", "rename:3") == -signal.SIGKILL
    assert [p.name for p in ckpt.step_dirs(killed)] == ["step_000002", "step_000001"]
    # From outside at a random moment, then to the end.
    _job(killed, "--resume", kill_after=random.Random(0).uniform(0.0, 2.0))
    assert _job(killed, "--resume") == 0
    expected, got = _final_weights(straight), _final_weights(killed)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert _metrics(killed) == _metrics(straight) and [m["step"] for m in _metrics(killed)] == [1, 2, 3, 4]
    assert not list((killed / "checkpoints").glob(f".*{ckpt.PARTIAL_SUFFIX}"))
