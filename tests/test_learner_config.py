"""Config parsing (presets, YAML, CLI overrides), bad input, and the CLI end to end."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from learner import train
from learner.config import PRESETS, TrainConfig, field_docs, from_dict, parse_args
from learner.models import load_policy


def test_cli_forms_yaml_and_presets(tmp_path):
    config = parse_args(["--game", "swap", "steps=3", "--lr=0.5", "--kl-coef", "0", "--dual_clip", "3",
                         "--game_params", '{"size": 6}', "--drop_zero_variance_groups", "true"])
    assert (config.game, config.steps, config.lr, config.kl_coef, config.dual_clip) == ("swap", 3, 0.5, 0.0, 3.0)
    assert config.game_params == {"size": 6} and config.drop_zero_variance_groups is True
    assert parse_args(["--dual_clip", "none"]).dual_clip is None

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "g1", "steps": 7, "micro_batch_size": 2}))
    config = parse_args(["--config", str(path), "--steps", "9"])  # the command line wins over the file
    assert config.preset == "g1" and config.steps == 9 and config.micro_batch_size == 2
    assert config.model == "Qwen/Qwen2.5-VL-7B-Instruct" and config.zero_stage == 3 and config.kl_coef == 0.01

    g1 = parse_args(["--preset", "g1", "--game", "shisensho"])
    assert (g1.states_per_step, g1.group_size, g1.lr, g1.clip_low, g1.clip_high, g1.kl_estimator) == (
        128, 5, 1e-6, 0.2, 0.2, "k3")
    assert (g1.max_prompt_tokens, g1.max_response_tokens, g1.precision, g1.gradient_checkpointing) == (
        1024, 8192, "bf16", True)
    assert set(PRESETS) == {"default", "g1", "cold-start"}
    default = parse_args([])
    assert default.model == "cold-start" and default.game == "2048" and default.zero_stage == 0


def test_unknown_keys_are_named_with_a_suggestion(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key 'learning_rate'.*") as info:
        parse_args(["--learning_rate", "1e-3"])
    with pytest.raises(ValueError, match=r"unknown config key 'grup_size'; did you mean group_size"):
        parse_args(["grup_size=4"])
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 2\nkl_coeff: 0.1\n")
    with pytest.raises(ValueError, match="unknown config key 'kl_coeff'; did you mean kl_coef"):
        parse_args(["--config", str(path)])
    assert "learning_rate" in str(info.value)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="steps='three' is not a valid int"):
        parse_args(["--steps", "three"])
    with pytest.raises(ValueError, match="progress='maybe' is not a boolean"):
        parse_args(["--progress", "maybe"])
    with pytest.raises(ValueError, match="preset='g2' is unknown; allowed: default, g1"):
        parse_args(["--preset", "g2"])
    with pytest.raises(ValueError, match="write --key value"):
        parse_args(["shisensho"])
    with pytest.raises(ValueError, match="group_size=1 is invalid; allowed: >= 2"):
        from_dict({"group_size": 1}).validate()
    with pytest.raises(ValueError, match="zero_stage=4 is invalid"):
        from_dict({"zero_stage": 4}).validate()
    with pytest.raises(ValueError, match="states_per_step=6 is invalid; allowed: a multiple of the number"):
        from_dict({"states_per_step": 6}).validate(world_size=4)
    with pytest.raises(ValueError, match="loss_aggregation='sum'"):
        from_dict({"loss_aggregation": "sum"}).validate()
    with pytest.raises(ValueError, match="kl_estimator='k9'"):
        from_dict({"kl_estimator": "k9"}).validate()
    with pytest.raises(ValueError, match="temperature=0.0 is invalid"):
        from_dict({"temperature": 0}).validate()
    assert TrainConfig().validate() == TrainConfig()


@pytest.mark.slow
def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    missing = str(tmp_path / "no" / "model")
    assert train.main(["--model", missing, "--run_dir", str(tmp_path / "run"), "--game", "2048"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and missing in err and "does not exist" in err and "Traceback" not in err
    assert train.main(["--group_size", "1"]) == 2
    assert "group_size=1" in capsys.readouterr().err
    assert train.main(["--game", "chess", "--run_dir", str(tmp_path / "run2")]) == 2
    assert "unknown game 'chess'" in capsys.readouterr().err
    assert train.main(["--help"]) == 0
    assert "--kl_coef" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_run_writes_logs_dumps_curve_checkpoint_and_export(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = train.main([
        "--game", "2048", "--model", "tiny", "--game_params", '{"image_size": 56}', "--steps", "2",
        "--states_per_step", "2", "--group_size", "2", "--max_response_tokens", "4", "--dump_every", "1",
        "--run_dir", str(run_dir),
        "--tensorboard", "false",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "built-in tiny random-weight Qwen2.5-VL" in out and "--model" in out
    assert f"Run directory: {run_dir.resolve()}" in out
    assert "Done: 2 steps" in out and "Mean overall reward" in out

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for key in ("reward/overall", "reward/game", "reward/format", "reward/perception", "response_length/mean",
                "entropy", "clip_fraction/low", "clip_fraction/high", "kl", "grad_norm", "seconds/rollout",
                "seconds/update", "rollout_logprob_gap/mean"):
        assert key in records[0], key
    dump = json.loads((run_dir / "rollouts" / "step_000002" / "rollouts.json").read_text())
    assert dump["prompt"].startswith("You are playing 2048")
    group = dump["groups"][0]
    assert (run_dir / "rollouts" / "step_000002" / group["image"]).is_file()
    truth_rows = group["perception_truth"].split("\n")  # the board the group answered, as describe writes it
    assert len(truth_rows) == 4 and all(row.count("|") == 3 for row in truth_rows)
    assert len(group["responses"]) == 2 and {"text", "action", "parsed", "overall"} <= set(group["responses"][0])
    assert (run_dir / "reward_curve.png").stat().st_size > 0
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000002"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["steps"] == 2
    model, processor = load_policy(str(run_dir / "export"))
    assert model.config.model_type == "qwen2_5_vl" and processor.tokenizer.pad_token == "<|endoftext|>"

    # Starting a fresh run over it is refused, with the way to continue it.
    assert train.main(["--game", "2048", "--run_dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and f"--resume {run_dir}" in err


def test_reading_a_command_line_imports_neither_torch_nor_deepspeed_nor_jax():
    # The help and the config come from the dataclass alone: no engine, algorithm or game is imported.
    code = (
        "import sys\n"
        "from learner.config import parse_args\n"
        "from learner import train\n"
        "config = parse_args(['--game', 'swap', '--zero_stage', '2', '--kl_estimator=k1', 'precision=bf16'])\n"
        "assert (config.zero_stage, config.kl_estimator, config.precision) == (2, 'k1', 'bf16')\n"
        "assert '--zero_stage' in train._help()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'deepspeed', 'jax', 'transformers'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stderr


def test_help_text_lives_in_field_metadata_not_in_the_source(monkeypatch, capsys):
    import inspect

    def no_source(*args, **kwargs):
        raise OSError("only .pyc files are installed")

    monkeypatch.setattr(inspect, "getsource", no_source)
    docs = field_docs()
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)} and all(docs.values())
    assert docs["kl_coef"] == "0 disables the KL term and no reference model is loaded."
    assert train.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--kl_estimator (str, 'k3'; one of k1, k2, k3)" in out and "Presets: default, g1, cold-start" in out


def test_train_and_evaluate_share_one_grammar(capsys):
    from bridges.evaluation import parse_args as eval_args

    config = parse_args(["--progress", "--steps", "2", "--export=false", "tensorboard=off"])
    assert (config.progress, config.steps, config.export, config.tensorboard) == (True, 2, False, False)
    args = eval_args(["--game", "2048", "policy=random", "--image-size=64", "--quiet", "--param", "size=4",
                      "--param=spawn_four=0.2", "runs=3"])
    assert (args.game, args.policy, args.image_size, args.quiet, args.runs) == ("2048", "random", 64, True, 3)
    assert args.param == ["size=4", "spawn_four=0.2"]
    for bad, message in ((["--steps"], "option --steps needs a value"), (["stepz=3"], "did you mean steps"),
                         (["--precision", "fp8"], "precision='fp8' is invalid; allowed: fp32, bf16")):
        with pytest.raises(ValueError, match=message):
            parse_args(bad)
    with pytest.raises(ValueError, match="--policy is required"):
        eval_args(["--game", "2048"])
