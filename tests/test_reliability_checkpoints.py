"""Checkpoints under attack and damage: crafted payloads run nothing, truncated or corrupt
checkpoints fall back to the newest intact one, partial writes are never used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from learner import checkpoint as ckpt
from learner.config import saved_run_config
from learner.trainer import GRPOTrainer
from tests.learner_support import TextRewardScorer, small_config


class _Payload:
    """Pickles as a call that writes ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _reseal(directory: Path) -> None:
    """Rewrite the manifest's sizes and hashes so a tampered file passes the integrity check
    and reaches the loader itself."""
    manifest = json.loads((directory / ckpt.MANIFEST).read_text())
    manifest["files"] = {name: (directory / name).stat().st_size for name in manifest["files"]}
    manifest["sha256"] = {name: ckpt.sha256_of(directory / name) for name in manifest["files"]}
    (directory / ckpt.MANIFEST).write_text(json.dumps(manifest))


def test_safe_torch_load_reads_deepspeed_data_and_refuses_code(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    state = {"zero_stage": ZeroStageEnum.gradients, "loss_scaler": LossScaler(1.0), "w": torch.arange(3.0),
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99)}]}
    torch.save(state, tmp_path / "optim_states.pt")
    loaded = ckpt.safe_torch_load(tmp_path / "optim_states.pt")
    assert loaded["zero_stage"] == ZeroStageEnum.gradients and loaded["loss_scaler"].cur_scale == 1.0
    assert torch.equal(loaded["w"], state["w"])
    marker = tmp_path / "ran"
    torch.save({"module": _Payload(marker)}, tmp_path / "model_states.pt")
    with pytest.raises(ckpt.CheckpointError, match="refusing to load .*model_states.pt"):
        ckpt.safe_torch_load(tmp_path / "model_states.pt")
    assert not marker.exists()
    (tmp_path / "cut.pt").write_bytes((tmp_path / "optim_states.pt").read_bytes()[:100])
    with pytest.raises(ckpt.CheckpointError, match="corrupt or truncated"):
        ckpt.safe_torch_load(tmp_path / "cut.pt")


def test_rng_state_round_trips_through_json_and_refuses_garbage(tmp_path):
    import random

    import numpy as np

    state = json.loads(json.dumps(ckpt.rng_state({"key": [0, 1]}, np.array([3, 4], np.uint32))))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    sampler, key = ckpt.set_rng_state(state, "rng.json")
    assert sampler == {"key": [0, 1]} and key.tolist() == [3, 4]
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    for broken in ({}, {**state, "numpy": "MT19937"}, {**state, "torch": [1, 2, "x"]}):
        with pytest.raises(ckpt.CheckpointError, match="rng.json is not a valid RNG state file"):
            ckpt.set_rng_state(broken, "rng.json")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ZeRO-2 run (its optimizer file names DeepSpeed classes) with checkpoints at steps 1, 2, 3."""
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    config = small_config(str(run_dir), steps=3, zero_stage=2, save_every=1, keep_checkpoints=3, kl_coef=0.0)
    trainer = GRPOTrainer(config, scorer=TextRewardScorer(), echo=lambda _: None)
    threads = torch.get_num_threads()
    trainer.train()
    torch.set_num_threads(threads)
    return trainer, run_dir


@pytest.mark.slow
def test_checkpoint_files_hold_no_pickled_objects(trained):
    _, run_dir = trained
    newest = run_dir / "checkpoints" / "step_000003"
    names = sorted(str(p.relative_to(newest)) for p in newest.rglob("*") if p.is_file())
    assert "rng_rank0.json" in names and ckpt.MANIFEST in names and not any(n.startswith("rng_") and
                                                                            n.endswith(".pt") for n in names)
    for pt in newest.rglob("*.pt"):  # every DeepSpeed file loads with the weights-only unpickler
        ckpt.safe_torch_load(pt)


@pytest.mark.slow
def test_a_crafted_payload_in_any_file_a_resume_reads_is_refused_and_runs_nothing(trained, tmp_path):
    trainer, run_dir = trained
    source = run_dir / "checkpoints" / "step_000003"
    # What a resume reads (DeepSpeed's zero_to_fp32.py and its tag file "latest" are for users, never loaded).
    files = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.suffix in (".pt", ".json"))
    assert any(f.endswith("optim_states.pt") for f in files) and any(f.endswith("model_states.pt") for f in files)
    marker = tmp_path / "ran"
    for name in files:
        copy = tmp_path / "checkpoints" / f"step_{len(name):06d}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy)
        if name.endswith(".pt"):
            torch.save({"module": _Payload(marker)}, copy / name)
        else:  # JSON files: an object pickle cannot hide in them, so the payload is a pickle where JSON belongs
            import pickle

            (copy / name).write_bytes(pickle.dumps(_Payload(marker)))
        if name != ckpt.MANIFEST:
            _reseal(copy)
        with pytest.raises(ckpt.CheckpointError) as info:
            trainer.resume(str(copy))
        assert not marker.exists(), f"loading {name} ran code"
        message = str(info.value)
        assert str(copy) in message, message
        if name.endswith(".pt"):
            assert "refusing to load" in message and name.split("/")[-1] in message, message
    # The run's config.yaml: YAML's python tags are refused too.
    (tmp_path / "config.yaml").write_text(f"game: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        saved_run_config(str(tmp_path))
    assert not marker.exists()


def test_old_pickled_rng_checkpoints_are_refused_with_a_reason(tmp_path):
    old = tmp_path / "checkpoints" / "step_000002"
    (old / "state").mkdir(parents=True)
    torch.save({"torch": torch.get_rng_state()}, old / "rng_rank0.pt")
    with pytest.raises(ckpt.CheckpointError, match="older version"):
        ckpt.candidates(tmp_path, print)


@pytest.mark.slow
def test_a_truncated_or_corrupt_newest_checkpoint_falls_back_with_a_warning(trained, tmp_path):
    trainer, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    checkpoints = copy / "checkpoints"
    # A write killed midway leaves only a partial directory: never looked at.
    shutil.copytree(checkpoints / "step_000003", ckpt.partial_dir(checkpoints, "step_000004"))
    newest_model = next((checkpoints / "step_000003" / "state").glob("*model_states.pt"))
    newest_model.write_bytes(newest_model.read_bytes()[:1000])  # truncated
    # Same size, garbage content, resealed as if written so: only the loader can tell.
    middle_optim = next((checkpoints / "step_000002" / "state").glob("*optim_states.pt"))
    middle_optim.write_bytes(b"\0" * middle_optim.stat().st_size)
    _reseal(checkpoints / "step_000002")
    messages: list[str] = []
    trainer.echo = messages.append
    trainer.resume(str(copy))
    assert trainer.step == 1
    text = "\n".join(messages)
    assert "skipping checkpoint" in text and "step_000003" in text and "truncated" in text, text
    assert "falling back to" in text and "step_000002" in text and "not a readable checkpoint" in text, text
    assert "Resumed from" in text and "step_000001" in text
    # Nothing intact at all: a clear error naming each checkpoint and its defect.
    for directory in ckpt.step_dirs(copy):
        (directory / ckpt.MANIFEST).unlink()
    with pytest.raises(ckpt.CheckpointError, match="none is complete"):
        trainer.resume(str(copy))


@pytest.mark.slow
def test_one_flipped_byte_in_the_weights_is_found_and_the_previous_checkpoint_used(trained, tmp_path):
    trainer, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    newest = copy / "checkpoints" / "step_000003"
    model = next((newest / "state").glob("*model_states.pt"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit: torch would load it as a changed weight
    model.write_bytes(bytes(data))
    name = str(model.relative_to(newest))
    with pytest.raises(ckpt.CheckpointError, match=f"{name} has changed since it was written"):
        ckpt.verify(newest)
    messages: list[str] = []
    trainer.echo = messages.append
    trainer.resume(str(copy))
    assert trainer.step == 2
    text = "\n".join(messages)
    assert "skipping checkpoint" in text and name in text and "step_000002" in text, text
    with pytest.raises(ckpt.CheckpointError, match="has changed since it was written"):
        trainer.resume(str(newest))  # that checkpoint named: no fallback, a clear error
