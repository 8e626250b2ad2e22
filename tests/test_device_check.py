"""benchmarks/device_check.py on this CPU: its dry run (tiny sizes) end to end, what it says
when DeepSpeed is missing (the device machine has none), and its arguments."""

from __future__ import annotations

import json
import sys

import pytest

import jaxgym
from benchmarks import device_check


def test_defaults_are_the_device_sizes_and_the_dry_run_is_tiny():
    args = device_check.parse_args([])
    assert (args.batch_sizes, args.image_size, args.shape) == ([1024, 4096, 16384, 65536], 448, "3b")
    dry = device_check.parse_args(["--dry-run"])
    assert (dry.batch_sizes, dry.image_size, dry.shape) == ([8, 16], 112, "tiny")
    assert (args.env_budget, dry.env_budget) == (240.0, float("inf"))  # a dry run checks every row
    for bad in (["--image-size", "100"], ["--batch-sizes", "0"], ["--skip", "nothing"]):
        with pytest.raises(SystemExit):
            device_check.parse_args(bad)


@pytest.mark.slow
def test_dry_run_measures_every_game_and_the_pixel_path(tmp_path):
    report = device_check.main(["--dry-run", "--batch-sizes", "8", "--skip", "grpo", "--out", str(tmp_path)])
    games = {g.rsplit("-v", 1)[0] for g in jaxgym.registered_games()}
    rows = report["envs"]["rows"]
    assert {r["game"] for r in rows if r.get("steps_per_s", 0) > 0} == games
    assert {r["game"] for r in rows if r.get("frames_per_s", 0) > 0} == games
    assert all(0 < r["share_of_fill"] and 0 < r["share_of_copy"] for r in rows if "frames_per_s" in r)
    pixels = report["pixel_values"]
    assert pixels["equal"] and pixels["dlpack_zero_copy"] and pixels["jax_ms_per_board"] > 0
    assert report["grpo"] == {"skipped": "--skip"}
    saved = json.loads((tmp_path / "device_check.json").read_text())
    assert saved["envs"]["rows"] == json.loads(json.dumps(rows))
    text = device_check.summary(report)
    assert "| 2048 | 8 |" in text and "boards -> pixel_values (112x112)" in text


def test_env_budget_skips_and_lists_what_it_left_out(tmp_path):
    args = device_check.parse_args(["--dry-run", "--batch-sizes", "8", "--env-budget", "0"])
    section = device_check.env_section(args)
    assert section["rows"] == [] and len(section["skipped"]) == 2 * len(jaxgym.registered_games())
    assert all("env budget of 0 s was spent" in s for s in section["skipped"])


def test_without_deepspeed_the_grpo_section_says_it_was_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import deepspeed now raises ImportError
    args = device_check.parse_args(["--dry-run"])
    section = device_check.grpo_section(args, tmp_path)
    assert "DeepSpeed does not import" in section["skipped"] and "pip wheel --no-deps deepspeed" in section["skipped"]
    report = {"device": "cpu", "platform": "cpu", "total_seconds": 0.0, "grpo": section}
    assert "GRPO step SKIPPED: DeepSpeed does not import" in device_check.summary(report)


@pytest.mark.slow
def test_dry_run_grpo_step_reports_every_phase(tmp_path):
    pytest.importorskip("deepspeed")
    args = device_check.parse_args(["--dry-run"])
    section = device_check.grpo_section(args, tmp_path)
    assert {"sample", "prepare", "rollout", "update", "step"} <= set(section["step"])
    assert section["step"]["step"] > 0 and section["shape"] == "tiny"
