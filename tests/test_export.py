"""bridges.export: sampled states as a Hugging Face dataset, the ground truth round trip."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("datasets")

from bridges import export  # noqa: E402
from bridges.sampler import StateSampler  # noqa: E402
from bridges.scoring import unbatch
from tests.bridges_support import GAMES, leaves_equal, small_env  # noqa: E402


def _small(game: str) -> dict:
    return {"image_size": small_env(game).image_size[0]}


@pytest.mark.slow
@pytest.mark.parametrize("game", GAMES)
def test_ground_truth_loads_back_the_exact_sampled_state(game):
    # A short legal warm-up keeps the compile small; the paper's protocol is the default
    # mode and goes through the same sampler (test_paper_protocol_states_are_the_learners).
    params = _small(game)
    ds = export.to_dataset(game, 3, seed=5, batch_size=2, mode="legal", depth=4, progress=False, **params)
    # The learner's sampler with the same seed, mode and batch size draws these states.
    sampler = StateSampler(small_env(game), seed=5, mode="legal", depth=4)
    first, _ = sampler.sample(2)
    second, _ = sampler.sample(2)
    expected = [unbatch(first, 0), unbatch(first, 1), unbatch(second, 0)]
    for row, want in zip(ds, expected, strict=True):
        env, state = export.load_state(row["answer"])
        assert env.id == row["game"] == small_env(game).id
        assert type(state) is type(want)
        assert leaves_equal(state, want)
        assert row["perception"] == env.describe(want) == json.loads(row["answer"])["perception"]
        assert np.array_equal(np.asarray(row["images"][0]), np.asarray(env.render(want)))


@pytest.mark.slow
def test_paper_protocol_states_are_the_learners():
    ds = export.to_dataset("2048", 2, seed=9, batch_size=2, progress=False, image_size=64)
    states, _ = StateSampler(small_env("2048-v0"), seed=9).sample(2)
    assert [leaves_equal(export.load_state(t)[1], unbatch(states, i)) for i, t in enumerate(ds["answer"])] == [True] * 2


@pytest.mark.slow
def test_rows_carry_each_trainers_columns():
    ds = export.to_dataset("2048", 2, seed=0, mode="legal", depth=2, progress=False, image_size=64)
    row = ds[0]
    env = small_env("2048-v0")
    assert row["prompt"] == [{"role": "user", "content": env.prompt()}]
    assert row["problem"] == "<image>" + env.prompt()
    assert row["verl_prompt"] == [{"role": "user", "content": "<image>" + env.prompt()}]
    assert row["reward_model"] == {"style": "rule", "ground_truth": row["answer"]}
    assert row["data_source"] == "jaxgym/2048-v0"
    assert row["extra_info"] == {"index": 0, "split": "train"}
    assert len(row["images"]) == 1 and row["images"][0].size == (64, 64)
    assert ds[1]["extra_info"]["index"] == 1
    assert json.loads(row["answer"])["params"] == {"image_size": 64}


@pytest.mark.slow
def test_same_seed_same_dataset_other_seed_other_states(tmp_path):
    small = _small("swap-v0")
    a = export.to_dataset("swap", 5, seed=3, batch_size=4, out=tmp_path / "a", progress=False, **small)
    b = export.to_dataset("swap", 5, seed=3, batch_size=4, out=tmp_path / "b", progress=False, **small)
    c = export.to_dataset("swap", 5, seed=4, batch_size=4, progress=False, **small)
    assert (tmp_path / "a" / export.DATA_FILE).read_bytes() == (tmp_path / "b" / export.DATA_FILE).read_bytes()
    assert a["answer"] == b["answer"]
    assert a["answer"] != c["answer"]
    scoring_seeds = [json.loads(t)["score_seed"] for t in a["answer"]]
    assert len(set(scoring_seeds)) == 5


@pytest.mark.slow
def test_streamed_export_equals_in_memory_and_records_its_arguments(tmp_path):
    kw = dict(seed=1, batch_size=2, mode="legal", depth=2, progress=False, image_size=64)
    streamed = export.to_dataset("2048", 3, out=tmp_path, **kw)
    memory = export.to_dataset("2048", 3, **kw)
    assert streamed["answer"] == memory["answer"]
    assert [np.asarray(r["images"][0]).tolist() for r in streamed] == [np.asarray(r["images"][0]).tolist()
                                                                        for r in memory]
    meta = json.loads((tmp_path / "export.json").read_text())
    assert meta["game"] == "2048" and meta["states"] == 3 and meta["seed"] == 1 and meta["batch_size"] == 2
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    with pytest.raises(ValueError, match="already holds an export"):
        export.to_dataset("2048", 1, out=tmp_path, progress=False, image_size=64)


@pytest.mark.slow
def test_cli_writes_a_dataset_that_datasets_loads(tmp_path, capsys):
    import datasets

    out = tmp_path / "ex"
    assert export.main(["--game", "2048", "--states", "3", "--out", str(out), "--param", "image_size=64",
                        "--batch-size", "2", "--mode", "legal", "--depth", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Export directory:" in printed and "Wrote 3 states" in printed
    loaded = datasets.load_dataset("parquet", data_files=str(out / export.DATA_FILE), split="train")
    assert len(loaded) == 3 and loaded.features == export.features()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="states=0 is out of range"):
        export.to_dataset("2048", 0)
    with pytest.raises(ValueError, match="unknown game"):
        export.to_dataset("chess", 1)
    with pytest.raises(ValueError, match="JSON string"):
        export.load_state("not json")
    with pytest.raises(ValueError, match="lacks"):
        export.load_state(json.dumps({"game": "2048-v0"}))
    env = small_env("2048-v0")
    truth = json.loads(export.ground_truth(env, {"size": 5}, env.reset(jax.random.key(0)), 0))
    with pytest.raises(ValueError, match="check the game parameters"):
        export.load_state(truth)
    assert export.main(["--game", "2048", "--states", "-1", "--out", "x"]) == 2
