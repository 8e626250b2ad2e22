"""benchmarks/learning.py: its statistics, and a --quick run end to end (every arm, every output)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import learning


def test_mean_and_standard_error_leave_out_missing_values():
    assert learning.mean_se([1.0, 3.0]) == (2.0, 1.0)
    mean, se = learning.mean_se([2.0, math.nan])
    assert mean == 2.0 and math.isnan(se)
    assert all(math.isnan(v) for v in learning.mean_se([]))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(SystemExit, match="unknown game"):
        learning.main(["--quick", "--games", "chess"])
    with pytest.raises(SystemExit, match="--seeds=0 must be >= 1"):
        learning.main(["--quick", "--seeds", "0"])


@pytest.mark.parametrize("game", sorted(learning.GAMES))
def test_the_full_run_starts_g1_from_the_shipped_cold_start_of_its_board(game):
    from learner.models import shipped_cold_start

    assert learning.FULL.cold_start == "shipped"
    directory, record = shipped_cold_start(learning.GAMES[game]["game"])
    assert learning.shipped_cold_start(game) == str(directory)
    assert record["teacher"] == learning.GAMES[game]["teacher"]


def test_a_shipped_cold_start_for_another_board_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(learning.GAMES, "2048", {**learning.GAMES["2048"], "game_params": {"size": 5}})
    with pytest.raises(SystemExit, match="was built for .* rebuild it"):
        learning.shipped_cold_start("2048")


@pytest.mark.slow
def test_a_quick_run_trains_every_arm_and_writes_curves_and_table(tmp_path, capsys):
    # Two seeds in two worker processes (the full run's way on 2 cores).
    results = learning.main(["--quick", "--games", "2048", "--seeds", "2", "--workers", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"Run directory: {tmp_path.resolve()}" in out and "Total time:" in out
    per_seed = results["per_seed"]["2048"]
    assert [r["seed"] for r in per_seed] == [0, 1]
    for record in per_seed:
        assert set(record["arms"]) == set(learning.ARMS)
        for arm in ("G0", "cold start", "G1"):
            assert -1.0 <= record["arms"][arm]["game"] <= 1.0 and 0.0 <= record["arms"][arm]["P_acc"] <= 1.0
            assert math.isfinite(record["arms"][arm]["protocol"])  # learner/evaluate.py ran on its export
        assert record["curves"]["G1"]["eval_step"] == [0, 1, 2]  # greedy held-out evaluation every step
        # The cold start alone is G1 before its first update, on the same held-out states.
        assert record["arms"]["cold start"]["game"] == record["curves"]["G1"]["eval_game"][0]
    seed0 = tmp_path / "2048" / "seed0"
    assert (seed0 / "cold-start" / "export" / "config.json").is_file()
    g1_config = (seed0 / "G1" / "config.yaml").read_text()
    assert str(seed0 / "cold-start" / "export") in g1_config  # G1 starts from the cold start
    assert (seed0 / "eval-G1" / "eval.json").is_file()
    assert (tmp_path / "curves_2048.png").stat().st_size > 10_000
    table = (tmp_path / "results.md").read_text()
    assert all(f"| 2048 | {arm} |" in table for arm in learning.ARMS) and "Total time:" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["plan"]["seeds"] == 2 and saved["plan"]["workers"] == 2 and saved["seconds"] > 0
