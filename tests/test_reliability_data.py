"""Reliability round three, the data side: ground truths parsed within limits and checked
against the game's own spec before anything is built, trainer adapters on malformed input,
linear end-token stripping, the TRL environment's jitted step, clear errors for bad boards."""

from __future__ import annotations

import functools
import json
import time
import warnings

import jax
import numpy as np
import pytest

import jaxgym
from bridges import export
from jaxgym.sokoban import load_boxoban
from tests.bridges_support import small_env


@functools.cache
def _truth_text(game: str) -> str:
    env = small_env(game)
    return export.ground_truth(env, {"image_size": env.image_size[0]}, env.reset(jax.random.key(0)), 7)


def _truth(game: str, state=None) -> dict:
    if state is None:
        return json.loads(_truth_text(game))
    env = small_env(game)
    return json.loads(export.ground_truth(env, {"image_size": env.image_size[0]}, state, 7))


def _board_shape(env) -> tuple[int, int]:
    return (env.rows, env.cols) if hasattr(env, "rows") else (env.size, env.size)


def _with(truth: dict, field: str, data) -> dict:
    bad = json.loads(json.dumps(truth))
    bad["state"][field]["data"] = data
    return bad


# -- ground truths: bounded JSON, fields checked against the game ---------------------------


def test_deeply_nested_ground_truth_is_a_value_error_not_a_recursion_error():
    for text in ("[" * 100_000 + "]" * 100_000, '{"game": ' + "[" * 5000 + "]" * 5000 + "}"):
        with pytest.raises(ValueError, match="nested deeper"):
            export.load_state(text)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    from bridges.rewards import core

    with pytest.raises(ValueError, match="response 0 is nested deeper"):
        core.score_responses([{"game": "2048", "state": deep, "score_seed": 0}], ["x"])


def test_2048_exponents_out_of_range_are_refused():
    truth = _truth("2048")
    n = len(truth["state"]["board"]["data"])
    for value in (-1, 18, 2**31 - 1):
        with pytest.raises(ValueError, match=r"state field 'board' values must be in 0\.\.17"):
            export.load_state(_with(truth, "board", [value] * n))
    with pytest.raises(ValueError, match="state field 'board' must hold integers"):
        export.load_state(_with(truth, "board", [10**30] * n))  # past int64: refused, not OverflowError


@pytest.mark.parametrize("value", ["1", 1.5, 1.0, True, None])
def test_integer_fields_hold_integers_only(value):
    truth = _truth("2048")
    data = truth["state"]["board"]["data"]
    with pytest.raises(ValueError, match="'board' must hold integers"):
        export.load_state(_with(truth, "board", [value, *data[1:]]))


def test_bool_and_float_fields_are_checked():
    truth = _truth("2048")
    with pytest.raises(ValueError, match="'terminated' must hold true or false"):
        export.load_state(_with(truth, "terminated", [1]))
    with pytest.raises(ValueError, match="'reward' must be finite"):
        export.load_state(_with(truth, "reward", [float("nan")]))
    with pytest.raises(ValueError, match="'step_count' values must be in"):
        export.load_state(_with(truth, "step_count", [-3]))
    with pytest.raises(ValueError, match="flat list of 16 values"):
        export.load_state(_with(truth, "board", [0] * 15))
    with pytest.raises(ValueError, match="'board' is 'int32' \\[4\\]"):
        bad = json.loads(json.dumps(truth))
        bad["state"]["board"]["shape"] = [4]
        export.load_state(bad)


def test_shisensho_kinds_out_of_range_are_refused_before_describe():
    env = small_env("shisensho")
    board = np.repeat(np.arange(1, 10), 4).reshape(6, 6)
    truth = _truth("shisensho", env.from_board(board))
    for kind in (-1, 999, env.num_kinds + 1):
        with pytest.raises(ValueError, match=rf"'board' values must be in 0\.\.{env.num_kinds}"):
            export.load_state(_with(truth, "board", [kind] * 36))
    loaded_env, state = export.load_state(truth)  # the honest row still loads, exactly
    assert np.array_equal(np.asarray(state.board), board)


def test_expensive_parameters_from_a_row_are_refused_before_anything_is_built(monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("a game was built from a row over the cap")

    monkeypatch.setattr(export.jaxgym, "make", built)
    truth = _truth("2048")
    for game, params, name in (("sokoban", {"level_pool": 20000, "size": 16, "reverse_steps": 1000}, "level_pool"),
                               ("2048", {"image_size": 4096}, "image_size"),
                               ("2048", {"image_size": [64, 4096]}, "image_size")):
        row = {**truth, "game": game, "params": params}
        with pytest.raises(ValueError, match=f"parameter {name}=.* over the cap"):
            export.load_state(row)
    with pytest.raises(ValueError, match="'params' must be a dict"):
        export.load_state({**truth, "params": [1]})
    with pytest.raises(ValueError, match="score_seed='3' must be an integer"):
        export.load_state({**truth, "score_seed": "3"})


# -- trainer adapters on malformed input ----------------------------------------------------


def test_easyr1_names_a_missing_key():
    from tests.test_trainer_rewards import _load_by_path

    easyr1 = _load_by_path("easyr1")
    with pytest.raises(ValueError, match=r"reward input 1 lacks \['ground_truth'\]"):
        easyr1.compute_score([{"response": "", "ground_truth": "x"}, {"response": ""}])


@pytest.mark.slow  # compiles a game's step or reset
def test_non_text_completion_gets_the_penalty_with_a_warning_naming_it():
    from bridges.rewards import core

    truth = json.dumps(_truth("2048"))
    with pytest.warns(RuntimeWarning, match="response 1 is a bytes"):
        scores = core.score_responses([truth, truth], ["gibberish", b"<answer>0</answer>"])
    for name in core.FIELDS:  # exactly what unparseable text scores
        assert scores[name][1] == scores[name][0], name
    assert not scores["parsed"][1]
    with pytest.raises(ValueError, match="ground truth of response 0"):
        core.score_responses(["{}"], ["x"])


@pytest.mark.slow  # compiles a game's step or reset
def test_openrlhf_non_string_query_gets_the_penalty():
    pytest.importorskip("torch")
    from tests.test_trainer_rewards import _load_by_path

    truth = json.dumps(_truth("2048"))
    with pytest.warns(RuntimeWarning, match="response 0 is a NoneType"):
        out = _load_by_path("openrlhf").reward_func([None], ["p"], [truth])
    assert out["rewards"].shape == (1,)


def test_openrlhf_end_token_stripping_is_linear():
    from tests.test_trainer_rewards import _load_by_path

    openrlhf = _load_by_path("openrlhf")
    body = "<answer>1</answer>"
    tail = "".join(openrlhf.END_TOKENS) * 500_000  # 1 M end tokens: 255 s when every cut copied the rest
    start = time.perf_counter()
    assert openrlhf.response_of("p" + body + tail, "p") == body
    assert time.perf_counter() - start < 30  # linear: about a second on one loaded core
    assert openrlhf.strip_end_tokens("<|im_end|>" * 3) == ""
    assert openrlhf.strip_end_tokens("a<|im_end|>b<|im_end|>") == "a<|im_end|>b"


# -- the TRL multi-turn environment -------------------------------------------------------------


@pytest.mark.slow  # compiles a game's step or reset
def test_trl_environment_steps_jitted_once_per_game():
    from bridges.rewards.trl_env import GameEnvironment, compiled_play

    truth = json.dumps(_truth("2048"))
    env = GameEnvironment()
    with pytest.raises(RuntimeError, match="before reset"):
        env.get_reward()
    env.reset(answer=truth)
    game, state = export.load_state(truth)
    key = jax.random.key(7)
    for action in (0, 1, 2, 3, 2 ** 40):
        env.move(game.format_answer(action) if action < 4 else f"<answer>{action}</answer>")
        key, sub = jax.random.split(key)
        state = game.step(state, min(action, 2**31 - 1), sub)
        assert np.array_equal(np.asarray(env.state.board), np.asarray(state.board))
    step, render = compiled_play(env.env)
    assert step._cache_size() == 1 and render._cache_size() == 1  # five moves, one compile each
    second = GameEnvironment()
    second.reset(answer=truth)
    second.move(game.format_answer(0))
    assert step._cache_size() == 1  # a new rollout of the same game reuses it


# -- clear errors for bad boards ------------------------------------------------------------------


@pytest.mark.parametrize("game", ["2048", "swap", "tetris", "sokoban"])
def test_from_board_refuses_string_and_object_arrays(game):  # object and bool arrays too
    env = small_env(game)
    shape = _board_shape(env)
    for board in (np.full(shape, "1"), np.full(shape, None, dtype=object), np.ones(shape, bool)):
        with pytest.raises(ValueError, match="board must hold integer"):
            env.from_board(board)


def test_image_tile_pictures_refuse_string_object_and_bool_arrays():
    import jaxgym

    env = jaxgym.make("shisensho-images", size=2)
    board = np.array([[1, 1], [1, 1]])
    for picture in (np.full((2, 2), "1"), np.full((2, 2), None, dtype=object), np.ones((2, 2), bool)):
        with pytest.raises(ValueError, match="picture must hold integer"):
            env.from_board(board, picture=picture)
    top = env.images_per_class - 1
    with pytest.raises(ValueError, match=f"picture image indices must be in 0..{top}"):
        env.from_board(board, picture=np.full((2, 2), top + 1))


def test_breakout_waiting_must_be_a_bool():
    env = small_env("breakout")
    board = np.zeros((10, 10), int)
    board[5, 5], board[9, 4] = 3, 2  # a ball and the paddle
    for waiting in ("yes", 1, None):
        with pytest.raises(ValueError, match="waiting=.* must be True or False"):
            env.from_board(board, waiting=waiting)
    assert bool(env.from_board(board, waiting=True).waiting)


def test_load_boxoban_refuses_bytes():
    with pytest.raises(ValueError, match="decode bytes first"):
        load_boxoban(b"; 0\n#####\n#@$.#\n#####\n")
    assert len(load_boxoban("; 0\n#####\n#@$.#\n#####\n")) == 1


@pytest.mark.slow  # compiles a game's step or reset
def test_every_games_own_states_pass_its_field_check():
    for game in jaxgym.registered_games():
        env = small_env(game)
        state = jax.device_get(env.reset(jax.random.key(1)))
        env.check_fields({name: getattr(state, name) for name in type(state).__dataclass_fields__})


@pytest.mark.slow  # compiles a game's step or reset
def test_warnings_filter_does_not_hide_the_second_rows_warning():
    from bridges.rewards import core

    truth = json.dumps(_truth("2048"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        core.score_responses([truth] * 3, [None, "x", 5])
    assert [str(w.message).split(" is ")[0] for w in caught] == ["response 0", "response 2"]


# -- export directories and model directories ---------------------------------------------------


def test_export_out_that_is_a_file_or_read_only_is_named(tmp_path, monkeypatch, capsys):
    import errno
    from pathlib import Path

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert export.main(["--game", "2048", "--states", "1", "--out", str(afile)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "touch", read_only)  # a read-only mount cannot be made here
    with pytest.raises(ValueError, match="cannot be written \\(Read-only file system\\)"):
        export.to_dataset("2048", 1, out=tmp_path / "new", progress=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("torch")
    from learner import models

    model, processor = models.build_tiny_policy(seed=0)
    return models.export_policy(model, processor, tmp_path_factory.mktemp("model") / "export")


def _copy(exported, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(exported, copy)
    return copy


@pytest.mark.slow  # builds and exports the tiny model once (slow on a loaded machine)
def test_truncated_or_huge_header_safetensors_is_a_clear_error(exported, tmp_path):
    from learner import models

    copy = _copy(exported, tmp_path)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # an export killed midway
    with pytest.raises(ValueError, match="is cut short.*export the model again"):
        models.load_policy(str(copy))
    weights.write_bytes((2**62).to_bytes(8, "little") + data[8:])  # a header length of exabytes
    with pytest.raises(ValueError, match="not a whole safetensors file"):
        models.load_policy(str(copy))
    weights.write_bytes(data[:5])
    with pytest.raises(ValueError, match="not a whole safetensors file"):
        models.load_policy(str(copy))


@pytest.mark.slow  # builds and exports the tiny model once (slow on a loaded machine)
def test_partial_export_without_weights_or_tokenizer_is_a_clear_error(exported, tmp_path):
    from learner import models

    copy = _copy(exported, tmp_path)
    (copy / "model.safetensors").unlink()  # killed after config.json, before the weights
    with pytest.raises(ValueError, match="incomplete or corrupt.*export the model again"):
        models.load_policy(str(copy))
    copy = _copy(exported, tmp_path / "b")
    (copy / "preprocessor_config.json").unlink()  # killed before the processor's files
    with pytest.raises(ValueError, match="incomplete or corrupt.*preprocessor_config.json"):
        models.load_policy(str(copy))


@pytest.mark.slow  # builds and exports the tiny model once (slow on a loaded machine)
def test_chat_template_json_that_is_not_an_object_is_a_clear_error(exported, tmp_path):
    from learner import models

    copy = _copy(exported, tmp_path)
    (copy / "chat_template.jinja").unlink()
    (copy / "chat_template.json").write_text('["{{ messages }}"]')
    with pytest.raises(ValueError, match="chat_template.json must be a JSON object"):
        models.load_processor(str(copy))
    (copy / "chat_template.json").write_text('{"chat_template": "{{ messages }}"}')
    assert models.load_processor(str(copy)).chat_template == "{{ messages }}"
