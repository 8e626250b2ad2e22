"""learner.run.Run: what every training run shares, and trainers that write only their step."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from learner.run import Run, StepTimer
from tests.learner_support import small_config

LEARNER = Path(__file__).resolve().parents[1] / "learner"


def test_the_trainers_are_siblings_on_run_and_the_cold_start_uses_no_private_name_of_grpo():
    from learner.sft import ColdStartTrainer
    from learner.trainer import GRPOTrainer

    assert issubclass(GRPOTrainer, Run) and issubclass(ColdStartTrainer, Run)
    assert not issubclass(ColdStartTrainer, GRPOTrainer)
    tree = ast.parse((LEARNER / "sft.py").read_text())
    from_trainer = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.module == "learner.trainer" for alias in node.names]
    assert from_trainer == []


def test_the_maths_owns_its_option_names_and_imports_no_config():
    import subprocess
    import sys

    code = ("import sys, learner.algorithms as a\n"
            "assert 'learner.config' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
            "from learner import config\n"
            "assert config.AGGREGATION_MODES is a.AGGREGATION_MODES and config.KL_ESTIMATORS is a.KL_ESTIMATORS\n"
            "print(a.AGGREGATION_MODES, a.KL_ESTIMATORS)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=LEARNER.parent)
    assert out.stdout.strip() == "('token-mean', 'seq-mean-token-mean') ('k1', 'k2', 'k3')", out.stderr


@pytest.mark.parametrize("stages", ["abc", [{"teacher": "expert"}], ["a stage"], {"command": "x"}])
def test_a_stage_record_that_is_not_a_list_of_stages_is_refused_naming_the_file(tmp_path, stages):
    from learner.config import parse_args
    from learner.sft import STAGES_FILE, record_stages, stages_of

    model = tmp_path / "model"
    model.mkdir()
    (model / STAGES_FILE).write_text(json.dumps({"stages": stages}))
    with pytest.raises(ValueError, match=rf"{STAGES_FILE}: 'stages' must be a list of objects"):
        stages_of(str(model))
    (model / STAGES_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{STAGES_FILE} must hold a JSON object, got list"):
        stages_of(str(model))
    (model / STAGES_FILE).write_text('{"stages": [')
    with pytest.raises(ValueError, match=rf"{STAGES_FILE} is not readable JSON"):
        stages_of(str(model))
    # A well-formed record's stages are carried over whole, this run's stage after them.
    earlier = {"command": "python learner/sft.py --game 2048", "teacher": "expert", "steps": 5}
    (model / STAGES_FILE).write_text(json.dumps({"stages": [earlier]}))
    export = tmp_path / "export"
    export.mkdir()
    argv = ["--game", "2048", "--model", str(model), "--steps", "3"]
    stages = record_stages({"export": str(export), "seconds": 1.0}, parse_args(["--preset", "cold-start", *argv]), argv)
    assert stages[0] == earlier and stages[1]["steps"] == 3 and len(stages) == 2


class _CountingStep(Run):
    """A third kind of run in a few lines: one optimizer step on a made-up loss per step."""

    PROGRESS_NAME = "count"
    CURVE_KEYS = ("loss/square",)

    def optimize_step(self, timer: StepTimer) -> dict[str, float]:
        with timer("update"):
            parameter = next(p for p in self.engine.policy.parameters() if p.requires_grad)
            loss = parameter.float().square().mean()
            self.engine.backward(loss, last=True)
            grad_norm = self.engine.step()
        self.weights_changed()
        return {"loss/square": float(loss.detach()), "grad_norm": grad_norm, "sequences_trained": 1}


@pytest.mark.slow
def test_a_new_trainer_writes_only_its_step_and_gets_the_run(tmp_path, monkeypatch):
    """Run gives any step the loop, metrics, evaluation, checkpoints, a bit-for-bit resume and
    a run directory of its own; a trainer that does not use them builds no scorer and no
    reference model."""
    monkeypatch.chdir(tmp_path)
    values = dict(steps=3, eval_every=0, kl_coef=0.0)

    def parameters(run):
        return {name: t.detach().clone() for name, t in run.engine.named_checkpoint_tensors()}

    straight = _CountingStep(small_config("", **values), echo=lambda _: None)
    assert straight.run_dir.parent == Path("runs") and straight.run_dir.name.startswith("2048-")
    summary = straight.train()
    assert straight._scorer is None and straight.engine.reference is None
    lines = [json.loads(line) for line in (straight.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    assert all({"loss/square", "seconds/update", "seconds/step"} <= set(m) for m in lines)
    assert summary["checkpoint"].endswith("step_000003")

    halves = _CountingStep(small_config(str(tmp_path / "halves"), **{**values, "steps": 2}), echo=lambda _: None)
    assert halves.run_dir == tmp_path / "halves"
    halves.train()
    resumed = _CountingStep(small_config(str(tmp_path / "halves"), **{**values, "resume": str(tmp_path / "halves")}),
                            echo=lambda _: None)
    assert resumed.step == 2
    resumed.train()
    expected, got = parameters(straight), parameters(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    again = [json.loads(line) for line in (tmp_path / "halves" / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss/square"] for m in again] == [m["loss/square"] for m in lines]

    # A refused start (here the cold start's unknown teacher) leaves no run directory of its own.
    from learner.sft import ColdStartTrainer

    before = sorted(Path("runs").iterdir())
    with pytest.raises(ValueError, match="teacher='best' is unknown"):
        ColdStartTrainer(small_config("", **{**values, "teacher": "best"}), echo=lambda _: None)
    assert sorted(Path("runs").iterdir()) == before
    with pytest.raises(ValueError, match="kl_coef=0.01: the cold start has no KL term"):
        ColdStartTrainer(small_config("", **{**values, "kl_coef": 0.01}), echo=lambda _: None)


@pytest.mark.slow
def test_the_cold_start_builds_no_scorer_and_no_reference_until_it_evaluates(tmp_path):
    from learner.sft import ColdStartTrainer

    trainer = ColdStartTrainer(small_config(str(tmp_path / "run"), kl_coef=0.0, max_response_tokens=0, eval_states=2),
                               echo=lambda _: None)
    metrics = trainer.train_step()
    assert np.isfinite(metrics["loss/sft"])
    assert trainer._scorer is None and trainer.engine.reference is None
    measured = trainer.evaluate()  # the held-out measures score greedy answers: now a scorer exists
    assert trainer._scorer is not None and 0.0 <= measured["legal"] <= 1.0
