"""The multi-turn benchmark's machinery on a tiny run (its speed numbers are measured by
running it, never asserted here)."""

from __future__ import annotations

import json

import pytest

from benchmarks import multiturn


@pytest.mark.slow
def test_a_tiny_run_writes_both_rows_and_says_a_stand_in_played(tmp_path, capsys):
    rows = multiturn.main(["--game-params", '{"size": 5, "boxes": 1, "image_size": 56}', "--states", "2",
                           "--group", "2", "--turns", "3", "--repeats", "1", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "multiturn.json").read_text())
    assert [row["mode"] for row in payload["rows"]] == ["bandit", "multi-turn"] == [row["mode"] for row in rows]
    bandit, episodes = payload["rows"]
    assert bandit["responses_per_step"] == 4 and bandit["turns"] == 1
    assert 4 <= episodes["responses_per_step"] <= 12 and episodes["turns"] == 3
    for row in payload["rows"]:
        assert 0 < row["env_s"] <= row["loop_s"] and 0 < row["env_share"] <= 1
    printed = capsys.readouterr().out
    assert "stands in for the model" in printed and "stands in for the model" in payload["note"]
    assert "| multi-turn | 3 |" in printed


def test_bad_sizes_are_refused():
    with pytest.raises(SystemExit):
        multiturn.main(["--turns", "0"])
