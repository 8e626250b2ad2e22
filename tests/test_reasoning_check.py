"""benchmarks/reasoning_check.py: its two board checks on hand-made boards, and a tiny run."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import jaxgym
from benchmarks import reasoning_check


def _stack(*states):
    return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *states)


def test_the_pair_check_asks_whether_the_partner_holds_the_first_cells_kind():
    env = jaxgym.make("shisensho", size=4, colors=4, shapes=1)
    board = np.array([[1, 1, 2, 2], [3, 3, 4, 4], [1, 1, 2, 2], [3, 3, 4, 4]])
    states = _stack(*[jax.device_get(env.from_board(board))] * 3)
    actions = np.array([env.pair_to_action(0, 0, 0, 1), env.pair_to_action(0, 0, 1, 0), -1])
    measured = reasoning_check.check_pairs(env, states, actions)
    assert measured["partner same kind"] == pytest.approx(1 / 3)  # right, wrong kind, no answer
    assert measured["blind guess"] == pytest.approx(3 / 15)  # 3 of the 15 other tiles are kind 1


def test_the_2048_check_compares_the_claimed_merge_score_with_the_moves():
    env = jaxgym.make("2048", image_size=56)
    board = np.zeros((4, 4), np.int32)
    board[0, :2] = 1  # two 2-tiles side by side: left and right merge for 4, up and down for 0
    states = _stack(*[jax.device_get(env.from_board(board))] * 3)
    texts = ["<think>Moving left merges for 4 points.</think>", "<think>Moving up merges for 4 points.</think>",
             "no think line"]
    measured = reasoning_check.check_2048(env, states, texts)
    assert measured["claimed score right"] == pytest.approx(1 / 3)
    assert measured["blind guess"] == pytest.approx(1 / 3)  # the chosen moves earn 4 and 0: one of three


@pytest.mark.slow
def test_a_run_checks_both_shipped_cold_starts_and_writes_json(tmp_path, capsys):
    rows = reasoning_check.main(["--boards", "4", "--out", str(tmp_path)])
    assert [r["game"] for r in rows] == ["2048", "shisensho"]
    for row in rows:
        assert all(0.0 <= row[k] <= 1.0 for k in ("P_acc", "legal", "positive", "reasoning", "blind guess"))
    assert "| 2048 | 4 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "reasoning_check.json").read_text())[1]["game"] == "shisensho"
    with pytest.raises(SystemExit, match="unknown game"):
        reasoning_check.main(["--games", "chess", "--out", str(tmp_path)])
