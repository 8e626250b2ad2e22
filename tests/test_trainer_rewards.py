"""bridges.rewards: each trainer's adapter, called the way that trainer calls it, gives
GroupScorer's rewards on the same responses."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("datasets")

import bridges.rewards  # noqa: E402
from bridges import export  # noqa: E402
from bridges.rewards import core  # noqa: E402
from bridges.scoring import GroupScorer  # noqa: E402
from tests.bridges_support import small_env  # noqa: E402

N = 4
REWARDS_DIR = Path(bridges.rewards.__file__).parent


@functools.cache
def _rows(game: str) -> list[dict]:
    ds = export.to_dataset(game, 2, seed=11, mode="legal", depth=3, progress=False,
                           image_size=small_env(game).image_size[0])
    return [ds[i] for i in range(len(ds))]


def _responses(env, state) -> list[str]:
    """Four responses: right perception and a legal move, a wrong perception and an illegal
    move, no format at all, and a well-formed block with an unparseable answer."""
    legal = int(np.flatnonzero(np.asarray(state.legal_action_mask))[0])
    illegal = np.flatnonzero(~np.asarray(state.legal_action_mask))
    bad = env.format_answer(int(illegal[0])) if illegal.size else "<answer>99</answer>"
    truth = env.describe(state)
    return [
        f"<perception>\n{truth}\n</perception><think>a legal move</think>{env.format_answer(legal)}",
        f"<perception>nothing</perception><think>hm</think>{bad}",
        "gibberish",
        f"<perception>{truth}</perception><think>x</think><answer>none</answer>",
    ]


def _case(game: str):
    """Rows, the flat responses (N per row, row-major) and GroupScorer's scores per row."""
    rows = _rows(game)
    flat, expected = [], []
    for row in rows:
        env, state = export.load_state(row["answer"])
        group = _responses(env, state)
        flat.extend(group)
        seed = json.loads(row["answer"])["score_seed"]
        expected.append(GroupScorer(env).score(jax.tree.map(lambda x: x[None], state), [group], jax.random.key(seed)))
    return rows, flat, expected


def _expected(expected, name: str) -> list[float]:
    return [float(v) for s in expected for v in np.asarray(getattr(s, name))[0]]


def _load_by_path(name: str):
    """Load an adapter by file path, as EasyR1, verl and OpenRLHF do (not as a package import)."""
    spec = importlib.util.spec_from_file_location(f"custom_reward_fn_{name}", REWARDS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("game", ["2048-v0", "swap-v0"])
def test_trl_reward_funcs_equal_group_scorer(game):
    trl = pytest.importorskip("bridges.rewards.trl")
    rows, flat, expected = _case(game)
    # TRL 1.16 trl/trainer/grpo_trainer.py:1585 builds reward_kwargs from every column but
    # "prompt" (repeated per generation) and :1626-1627 calls
    # reward_func(prompts=prompts, completions=completions, completion_ids=..., **reward_kwargs);
    # conversational completions are [{"role": "assistant", "content": text}].
    inputs = [row for row in rows for _ in range(N)]
    keys = [k for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")]
    reward_kwargs = {k: [x[k] for x in inputs] for k in keys}
    reward_kwargs.update(trainer_state=None, log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None)
    prompts = [x["prompt"] for x in inputs]
    completions = [[{"role": "assistant", "content": text}] for text in flat]
    got = {}
    for func in trl.REWARD_FUNCS:
        out = func(prompts=prompts, completions=completions, completion_ids=[[1]] * len(flat), **reward_kwargs)
        assert isinstance(out, list) and len(out) == len(flat)
        got[func.__name__] = out
    assert got["game_reward"] == _expected(expected, "game")
    assert got["format_reward"] == _expected(expected, "format")
    assert got["perception_reward"] == _expected(expected, "perception")
    # TRL sums the components with reward_weights: the protocol's weights give overall.
    w = trl.reward_weights(rows[0]["answer"])
    total = [w[0] * g + w[1] * f + w[2] * p for g, f, p in zip(*got.values(), strict=True)]
    np.testing.assert_allclose(total, _expected(expected, "overall"), rtol=0, atol=1e-6)
    assert len(set(got["game_reward"])) > 1 and len(set(got["format_reward"])) == 2


@pytest.mark.parametrize("game", ["2048-v0", "swap-v0"])
@pytest.mark.slow
def test_easyr1_batch_compute_score_equals_group_scorer(game):
    easyr1 = _load_by_path("easyr1")
    rows, flat, expected = _case(game)
    # EasyR1 verl/workers/reward/function.py:87-95 (hiyouga/EasyR1 b44b311): the batch manager
    # appends {"response", "response_length", "ground_truth"} per response (ground_truth is the
    # answer_key column, verl/utils/dataset.py:313) and calls self.reward_fn(reward_inputs),
    # wrapped in partial(reward_fn, **config.reward_function_kwargs) at :133; :130 reads the
    # module's REWARD_TYPE ("batch" selects this path, :140).
    assert easyr1.REWARD_TYPE == "batch"
    reward_fn = functools.partial(easyr1.compute_score, **{})
    inputs = [{"response": text, "response_length": len(text), "ground_truth": rows[i // N]["answer"]}
              for i, text in enumerate(flat)]
    scores = reward_fn(inputs)
    assert [s["overall"] for s in scores] == _expected(expected, "overall")
    for name in ("game", "format", "perception"):
        assert [s[name] for s in scores] == _expected(expected, name)
    # reward_function_kwargs reach the protocol.
    no_format = functools.partial(easyr1.compute_score, w_format=0.0)(inputs)
    assert [s["overall"] for s in no_format] == [o - f * 1.0 for o, f in zip(_expected(expected, "overall"),
                                                                              _expected(expected, "format"),
                                                                              strict=True)]


@pytest.mark.slow
def test_verl_compute_score_equals_group_scorer():
    verl = _load_by_path("verl")
    rows, flat, expected = _case("swap-v0")
    got = []
    for i, text in enumerate(flat):
        row = rows[i // N]
        # verl verl/workers/reward_manager/naive.py:77-93 (volcengine/verl b178a3c): ground_truth
        # from non_tensor_batch["reward_model"]["ground_truth"], data_source from reward_fn_key,
        # compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...),
        # and a dict result's "score" is the reward.
        result = verl.compute_score(data_source=row["data_source"], solution_str=text,
                                    ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])
        got.append(result)
    assert [r["score"] for r in got] == _expected(expected, "overall")
    assert [r["perception"] for r in got] == _expected(expected, "perception")
    with pytest.raises(ValueError, match="not a jaxgym export"):
        verl.compute_score(data_source="openai/gsm8k", solution_str="", ground_truth="", extra_info=None)


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_openrlhf_reward_func_equals_group_scorer():
    pytest.importorskip("torch")
    openrlhf = _load_by_path("openrlhf")
    rows, flat, expected = _case("2048-v0")
    prompt = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" + rows[0]["problem"][7:] + \
        "<|im_end|>\n<|im_start|>assistant\n"
    # OpenRLHF openrlhf/utils/agent.py:283-285 (OpenRLHF/OpenRLHF 3c3be62): query = decode(prompt +
    # response tokens, skip_special_tokens=False), then _fetch_rewards_via_func([query], [prompt],
    # [label]) calls reward_func(queries, prompts, labels) (:313-317) and reads rewards/scores/extra_logs.
    got = []
    for i, text in enumerate(flat):
        out = openrlhf.reward_func([prompt + text + "<|im_end|>"], [prompt], [rows[i // N]["answer"]])
        assert set(out) == {"rewards", "scores", "extra_logs"} and out["rewards"].shape == (1,)
        got.append((float(out["rewards"][0]), float(out["extra_logs"]["game"][0])))
    assert [g[0] for g in got] == _expected(expected, "overall")
    assert [g[1] for g in got] == _expected(expected, "game")
    # The prompt's own tag examples never count: a bare prompt scores as an unformatted response.
    bare = openrlhf.reward_func([prompt], [prompt], [rows[0]["answer"]])
    assert float(bare["extra_logs"]["format"][0]) == 0.0


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_groups_are_found_in_any_order_and_split():
    rows, flat, expected = _case("swap-v0")
    truths = [rows[i // N]["answer"] for i in range(len(flat))]
    order = np.random.default_rng(0).permutation(len(flat))
    shuffled = core.score_responses([truths[i] for i in order], [flat[i] for i in order])
    np.testing.assert_array_equal(shuffled["overall"][np.argsort(order)], _expected(expected, "overall"))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one ground truth per response"):
        core.score_responses(["x"], [])
    with pytest.raises(ValueError, match="JSON string"):
        core.score_responses(["not json"], ["r"])
    with pytest.raises(ValueError, match="a string or a list of chat messages"):
        core.completion_text(3)
    with pytest.raises(ValueError, match="wrap it in a list"):
        _load_by_path("easyr1").compute_score({"response": "", "ground_truth": ""})
