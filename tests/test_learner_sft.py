"""The perception cold start (learner/sft.py), its teachers, and the paper's measures."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest
import torch

import jaxgym
from bridges.scoring import GroupScorer, parse_action, perception_ok
from bridges.teachers import Teacher, board_cells, target_text
from learner.batching import chat_prompt, format_token_budget
from learner.measures import cell_accuracy, paper_measures
from learner.models import build_tiny_tokenizer
from tests.learner_support import small_config

# 2048 exponents: row 0 merges left/right (2+2), nothing merges vertically except column 3 (4 over 4).
BOARD_2048 = [[1, 1, 0, 2], [0, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 0]]


def _state_2048(env):
    state = env.reset(jax.random.key(0))
    return state.replace(board=jax.numpy.asarray(BOARD_2048, dtype=state.board.dtype))


def _batch(state):
    return jax.tree_util.tree_map(lambda x: x[None], state)


def test_2048_teachers_pick_the_best_merge_or_any_legal_move():
    env = jaxgym.make("2048", image_size=56)
    states = _batch(_state_2048(env))
    actions = {int(Teacher(env, "expert").act(states, jax.random.key(k))[0][0]) for k in range(12)}
    # Up merges the 4s in column 3 (8 points); left/right merge the 2s (4 points); down merges the 4s too.
    assert actions <= {0, 2} and actions
    raws = {int(Teacher(env, "expert").act(states, jax.random.key(k))[1][0]) for k in range(4)}
    assert raws == {8}
    legal = {int(Teacher(env, "legal-random").act(states, jax.random.key(k))[0][0]) for k in range(40)}
    assert legal == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="same-kind"):
        Teacher(env, "same-kind")
    with pytest.raises(ValueError, match="teacher='best'"):
        Teacher(env, "best")


@pytest.mark.slow
def test_same_kind_teacher_names_two_cells_of_one_kind_and_expert_a_connectable_pair():
    env = jaxgym.make("shisensho", size=4, colors=2, shapes=2, image_size=112)
    from bridges.sampler import StateSampler

    states, _ = StateSampler(env, seed=3).sample(16)
    host = jax.device_get(states)
    for name in ("same-kind", "expert"):
        actions, raw = Teacher(env, name).act(states, jax.random.key(1))
        for b, action in enumerate(actions):
            r1, c1, r2, c2 = (int(v) for v in env.action_to_pair(int(action)))
            board = np.asarray(host.board[b])
            assert (r1, c1) != (r2, c2) and board[r1, c1] == board[r2, c2] > 0
        if name == "expert":
            assert (raw > 0).all()


@pytest.mark.slow
def test_reading_order_teachers_name_the_first_tile_and_one_of_its_kind():
    env = jaxgym.make("shisensho", size=4, colors=2, shapes=2, image_size=112)
    state = env.reset(jax.random.key(0))
    # The first tile is (0, 1), kind 3; the other 3s sit at (1, 3), (2, 0) and (3, 3) in
    # reading order.
    board = [[0, 3, 1, 2], [1, 2, 4, 3], [3, 4, 1, 2], [4, 1, 2, 3]]
    states = _batch(state.replace(board=jax.numpy.asarray(board, dtype=state.board.dtype)))
    pairs = lambda name, keys: {tuple(int(v) for v in env.action_to_pair(int(Teacher(env, name).act(  # noqa: E731
        states, jax.random.key(k))[0][0]))) for k in range(keys)}
    assert pairs("first-next", 8) == {(0, 1, 1, 3)}
    assert pairs("first-same-kind", 40) == {(0, 1, 1, 3), (0, 1, 2, 0), (0, 1, 3, 3)}
    with pytest.raises(ValueError, match="first-next"):
        Teacher(jaxgym.make("2048", image_size=56), "first-next")


def test_target_text_is_exact_perception_and_the_teachers_answer():
    env = jaxgym.make("2048", image_size=56)
    state = _state_2048(env)
    text = target_text(env, jax.device_get(state), 0, 8.0)
    assert perception_ok(text, env.describe(state))
    assert parse_action(env, text) == (0, True)
    assert "<think>Moving up merges for 8 points.</think>" in text
    shisen = jaxgym.make("shisensho", size=4, colors=2, shapes=2, image_size=112)
    board = shisen.reset(jax.random.key(0))
    pair = int(shisen.pair_to_action(0, 0, 0, 1))
    line = target_text(shisen, jax.device_get(board), pair, 1.0)
    cells = board_cells(shisen.describe(board))
    assert f"<think>(0, 0) is {cells[0][0]} and (0, 1) is {cells[0][1]}.</think>" in line
    assert parse_action(shisen, line) == (pair, True)


def test_the_default_response_budget_fits_the_format():
    tokenizer = build_tiny_tokenizer()
    for game, params in (("2048", {}), ("shisensho", {})):
        env = jaxgym.make(game, **params)
        state = jax.device_get(env.reset(jax.random.key(0)))
        needed = len(tokenizer(target_text(env, state, 0, 2048.0), add_special_tokens=False)["input_ids"]) + 1
        assert needed < format_token_budget(env, tokenizer) < 2 * needed + 16


def test_paper_measures_on_hand_made_responses():
    env = jaxgym.make("2048", image_size=56)
    state = _state_2048(env)
    truth = env.describe(state)
    wrong = truth.replace(" 4 ", " 8 ", 1)
    responses = [[
        f"<perception>{truth}</perception><think>x</think><answer>0</answer>",  # exact, merges: +
        f"<perception>{truth}</perception><think>x</think><answer>7</answer>",  # exact, invalid action
        f"<perception>{wrong}</perception><think>x</think><answer>0</answer>",  # one cell wrong, merges
        "gibberish",
    ]]
    scores = GroupScorer(env).score(_batch(state), responses, jax.random.key(0))
    measured = paper_measures(scores, responses, [truth])
    assert measured["P_acc"] == 0.5
    assert measured["R_acc"] == 0.5  # of the two exact perceptions, one earns a positive reward
    assert measured["cell_accuracy"] == pytest.approx((1 + 1 + 15 / 16 + 0) / 4)
    assert measured["format"] == 0.75 and measured["legal"] == 0.5 and measured["positive"] == 0.5
    assert measured["game"] == pytest.approx(np.mean(scores.game))
    assert math.isnan(paper_measures(
        GroupScorer(env).score(_batch(state), [responses[0][2:]], jax.random.key(0)), [responses[0][2:]], [truth],
    )["R_acc"])
    assert cell_accuracy("no block", truth) == 0.0
    assert cell_accuracy("<perception> 2 </perception>", " 2 | - \n 4 | 4 ") == 0.25


@pytest.mark.slow
def test_the_reasoning_measure_checks_the_think_line_against_the_board():
    from bridges.teachers import reasoning_line

    env = jaxgym.make("2048", image_size=56)
    state = _state_2048(env)
    truth = env.describe(state)
    merged = int(env.step(state, 0, jax.random.key(0)).reward)
    right = reasoning_line(env, truth, 0, merged)
    assert right == f"Moving up merges for {merged} points." and merged > 0
    responses = [[
        f"<perception>{truth}</perception><think>{right}</think><answer>0</answer>",
        f"<perception>{truth}</perception><think>Moving up merges for {merged + 2} points.</think><answer>0</answer>",
        f"<perception>{truth}</perception><think>{right}</think><answer>7</answer>",  # no such move
        f"<perception>{truth}</perception><answer>0</answer>",  # no think line
    ]]
    scores = GroupScorer(env).score(_batch(state), responses, jax.random.key(0))
    assert paper_measures(scores, responses, [truth], env=env)["reasoning"] == 0.25
    assert "reasoning" not in paper_measures(scores, responses, [truth])

    shisen = jaxgym.make("shisensho", size=4, colors=4, shapes=1)
    board = jax.device_get(shisen.reset(jax.random.key(1)))
    truth = shisen.describe(board)
    cells = board_cells(truth)
    pair = int(shisen.pair_to_action(0, 0, 0, 1))
    right = reasoning_line(shisen, truth, pair, 0.0)
    assert right == f"(0, 0) is {cells[0][0]} and (0, 1) is {cells[0][1]}."
    other = next(kind for kind in ("Red circle", "Green circle") if kind != cells[0][1])
    responses = [[f"<think>{right}</think><answer>(0, 0) (0, 1)</answer>",
                  f"<think>(0, 0) is {cells[0][0]} and (0, 1) is {other}.</think><answer>(0, 0) (0, 1)</answer>"]]
    scores = GroupScorer(shisen).score(_batch(board), responses, jax.random.key(0))
    assert paper_measures(scores, responses, [truth], env=shisen)["reasoning"] == 0.5


def _cold_start(tmp_path, name, **overrides):
    from learner.sft import ColdStartTrainer

    values = dict(steps=40, states_per_step=2, micro_batch_size=1, lr=3e-3, warmup_steps=0, kl_coef=0.0,
                  max_response_tokens=0, teacher="expert", eval_states=2)
    values.update(overrides)
    return ColdStartTrainer(small_config(str(tmp_path / name), **values), echo=lambda _: None)


def _fixed_batch(trainer):
    """Make the trainer's sampler return the same two states every step."""
    fixed = trainer.sampler.sample(trainer.local_states)
    trainer.sampler.sample = lambda batch_size: fixed
    return fixed


@pytest.mark.slow
def test_cold_start_loss_falls_on_a_fixed_tiny_batch(tmp_path):
    trainer = _cold_start(tmp_path, "fixed")
    _fixed_batch(trainer)
    losses = [trainer.train_step()["loss/sft"] for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


@pytest.mark.slow
def test_a_run_stopped_early_keeps_the_cosine_of_its_schedule(tmp_path):
    """``lr_schedule_steps``: 3 steps of a 6-step cosine take the learning rates of its first 3
    steps, not those of a cosine squeezed into 3."""
    from learner.engine import warmup_then_cosine

    trainer = _cold_start(tmp_path, "cosine", steps=3, lr_schedule_steps=6, min_lr_ratio=0.5, eval_every=0)
    _fixed_batch(trainer)
    rates = [trainer.train_step()["lr"] for _ in range(3)]
    expected = [3e-3 * warmup_then_cosine(0, 6, 0.5)(step) for step in (1, 2, 3)]  # logged after each update
    assert rates == pytest.approx(expected), (rates, expected)
    assert rates[-1] == pytest.approx(3e-3 * 0.75)  # half-way down; a 3-step cosine would be at its floor


@pytest.mark.slow
def test_the_cold_start_forward_path_agrees_with_generation(tmp_path):
    """The blindness pitfall: training must score tokens exactly as generation produces them.

    After a few cold-start steps, greedy generation's own log-probs of its tokens equal the
    cold start's training log-probs of the same tokens (same multimodal rotary positions).
    A plain HF forward without ``mm_token_type_ids`` (the pitfall) does not agree."""
    from bridges.torch_io import images_to_numpy
    from learner.rollout import SamplingParams

    trainer = _cold_start(tmp_path, "agree")
    states, images = _fixed_batch(trainer)
    for _ in range(6):
        trainer.train_step()
    boards = images_to_numpy(images)
    texts, prompts = trainer.encode_boards(boards)
    generation = trainer.rollout.generate(texts, boards, 1, SamplingParams(temperature=0.0, max_new_tokens=24))
    with torch.no_grad():
        logp, mask = trainer.forward(prompts, [0, 1], generation.token_ids)
    gaps = []
    for row, expected in enumerate(generation.logprobs):
        assert mask[row].sum() == len(expected)
        gaps.append(np.abs(logp[row, : len(expected)].numpy() - np.asarray(expected)).max())

    # The pitfall the test guards against: without the multimodal positions the numbers differ.
    model, processor = trainer.engine.policy, trainer.processor
    tokens = generation.token_ids[0]
    inputs = processor(text=[chat_prompt(processor, texts[0])], images=[boards[0]], return_tensors="pt")
    ids = torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=inputs["pixel_values"],
                       image_grid_thw=inputs["image_grid_thw"]).logits[0, inputs["input_ids"].shape[1] - 1 : -1]
    plain = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)
    plain_gap = np.abs(plain.numpy() - np.asarray(generation.logprobs[0])).max()
    assert max(gaps) < 1e-5 and plain_gap > 20 * max(gaps), (gaps, plain_gap)


@pytest.mark.slow
def test_image_use_is_the_loss_of_swapping_the_held_out_images(tmp_path):
    """eval/image_use compares the held-out targets' NLL with each board's own image and with
    another board's: exactly 0 when every board looks the same, nonzero otherwise (even a
    random model's NLL depends on its image)."""
    import jax

    trainer = _cold_start(tmp_path, "image-use", eval_states=2)
    states, boards = trainer.held_out()
    measured = trainer.evaluate()
    assert measured["image_use"] == pytest.approx(measured["nll_swapped"] - measured["nll"])
    assert abs(measured["image_use"]) > 1e-6 and measured["nll"] > 0
    same = jax.tree.map(lambda x: np.stack([np.asarray(x)[0]] * 2), states)
    trainer._held_out = (same, np.stack([boards[0]] * 2))
    assert trainer.evaluate()["image_use"] == 0.0


@pytest.mark.slow
def test_cold_start_cli_evaluates_exports_and_resumes(tmp_path, capsys):
    from learner import sft
    from learner.models import load_policy

    run = tmp_path / "run"
    args = ["--game", "2048", "--game_params", '{"image_size": 56}', "--states_per_step", "2", "--eval_states", "2",
            "--eval_every", "2", "--run_dir", str(run), "--progress", "false", "--tensorboard", "false",
            "--save_every", "0"]
    assert sft.main([*args, "--steps", "2"]) == 0
    assert sft.main([*args, "--steps", "3", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Resumed from" in out and "Last evaluation (greedy, held-out states): P_acc" in out
    # One teacher target per state: the banner names no GRPO group and no rollout engine.
    assert "2 states per step (one 'expert' target each)" in out
    assert "responses per step" not in out and "rollouts:" not in out
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2, 3]  # step 0: the evaluation before any update
    assert {"eval/P_acc", "eval/cell_accuracy", "eval/format", "eval/legal", "eval/game", "eval/nll",
            "eval/nll_swapped", "eval/image_use"} <= set(lines[0])
    assert lines[2]["eval/image_use"] == pytest.approx(lines[2]["eval/nll_swapped"] - lines[2]["eval/nll"])
    assert "eval/P_acc" in lines[2] and "eval/P_acc" in lines[3] and "eval/P_acc" not in lines[1]
    model, _ = load_policy(str(run / "export"))
    assert model.config.text_config.hidden_size == 128
    # A finished run shipped from its last checkpoint, with no more steps: the README's way to
    # ship a run stopped early (--lr_schedule_steps keeps the cosine of its launch).
    shipped = tmp_path / "shipped"
    assert sft.main(["--resume", str(run), "--steps", "3", "--lr_schedule_steps", "5", "--progress", "false",
                     "--ship_to", str(shipped)]) == 0
    record = json.loads((shipped / "jaxgym.json").read_text())
    assert record["steps"] == 3 and "--lr_schedule_steps 5 --ship_to" in record["command"]
    assert "--resume" not in record["command"]
    assert sft.main(["--teacher", "best", "--run_dir", str(tmp_path / "bad")]) == 2
    assert "teacher='best' is unknown" in capsys.readouterr().err


def test_greedy_decoding_does_not_warn_about_sampling_flags(capfd):
    from transformers.utils import logging as hf_logging

    from learner.models import build_tiny_policy
    from learner.rollout import HFRolloutEngine, SamplingParams

    model, processor = build_tiny_policy(seed=0)
    model.generation_config.top_k, model.generation_config.temperature = 1, 0.1  # as real checkpoints ship
    engine = HFRolloutEngine(model, processor)
    board = np.zeros((56, 56, 3), np.uint8)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        capfd.readouterr()
        greedy = engine.generate(["Play."], [board], 2, SamplingParams(temperature=0.0, max_new_tokens=4))
        err = capfd.readouterr().err
    finally:
        hf_logging.set_verbosity(verbosity)
    assert "generation flags are not valid" not in err, err
    assert greedy.token_ids[0] == greedy.token_ids[1]
    assert model.generation_config.top_k == 1  # the model's own config is restored


def test_grpo_step_metrics_carry_p_acc_and_r_acc():
    from types import SimpleNamespace

    from learner.trainer import GRPOTrainer

    env = jaxgym.make("2048", image_size=56)
    state = _state_2048(env)
    truth = env.describe(state)
    responses = [[f"<perception>{truth}</perception><think>x</think><answer>{a}</answer>" for a in (0, 1)]
                 + ["<answer>0</answer>", "junk"]]
    scores = GroupScorer(env).score(_batch(state), responses, jax.random.key(0))
    measured = GRPOTrainer._measures(SimpleNamespace(env=env), _batch(state), responses, scores)
    metrics = GRPOTrainer._with_r_acc(dict(measured))
    assert metrics["P_acc"] == 0.5 and metrics["R_acc"] == 1.0  # both exact responses merge (up 8, right 4)
    assert metrics["positive_fraction"] == 0.75 and metrics["legal_fraction"] == 0.75
    assert "R_acc" not in GRPOTrainer._with_r_acc({"P_acc": 0.0, "P_and_positive": 0.0})


def test_model_cold_start_resolves_to_the_shipped_checkpoint_and_its_board(tmp_path, monkeypatch):
    from learner import models
    from learner.config import from_dict
    from learner.run import resolve_cold_start

    monkeypatch.setattr(models, "ASSETS", tmp_path)
    config = from_dict({"game": "shisensho"})
    assert config.model == models.COLD_START
    resolved, note = resolve_cold_start(config)
    assert resolved.model == models.TINY and "No cold-started checkpoint ships for 'shisensho'" in note

    shipped = tmp_path / "cold-start-shisensho"
    shipped.mkdir()
    record = {"game": "shisensho", "game_params": {"size": 4, "colors": 4, "shapes": 1, "image_size": 112},
              "teacher": "same-kind", "command": "python learner/sft.py --game shisensho",
              "train": {"sample_depth": 16}}
    (shipped / "jaxgym.json").write_text(json.dumps(record))
    resolved, note = resolve_cold_start(config)
    assert resolved.model == str(shipped) and resolved.game_params == record["game_params"]
    assert resolved.sample_depth == 16 and "rebuild: python learner/sft.py --game shisensho" in note
    # The user's own board or settings win over the record's.
    mine, _ = resolve_cold_start(from_dict({"game": "shisensho", "game_params": {"size": 6}, "sample_depth": 3}))
    assert mine.game_params == {"size": 6} and mine.sample_depth == 3
    explicit, note = resolve_cold_start(from_dict({"game": "shisensho", "model": "tiny"}))
    assert explicit.model == "tiny" and note == ""


@pytest.mark.slow
def test_the_main_job_starts_from_the_shipped_cold_start_and_the_tiny_smoke_run_still_works(tmp_path, capsys):
    import yaml

    from learner import train

    small = ["--steps", "2", "--states_per_step", "2", "--group_size", "2", "--tensorboard", "false",
             "--progress", "false"]
    assert train.main(["--game", "shisensho", *small, "--eval_every", "2", "--eval_states", "2",
                       "--run_dir", str(tmp_path / "main")]) == 0
    out = capsys.readouterr().out
    assert "the shipped cold-started tiny checkpoint" in out and "rebuild: python learner/sft.py" in out
    assert "Greedy game reward on the held-out states:" in out and "at step 0" in out
    config = yaml.safe_load((tmp_path / "main" / "config.yaml").read_text())
    assert config["game_params"] == {"size": 4, "colors": 8, "shapes": 1, "image_size": 168, "prompt": "brief"}
    assert config["sample_mode"] == "random-depth" and config["sample_depth"] == 6
    assert config["max_response_tokens"] > 32  # fits the format, not the old 32
    # The old main job: the random-weight tiny model, a pipeline smoke run.
    assert train.main(["--game", "shisensho", "--model", "tiny", *small, "--max_response_tokens", "8",
                       "--run_dir", str(tmp_path / "smoke")]) == 0
    out = capsys.readouterr().out
    assert "built-in tiny random-weight Qwen2.5-VL" in out and "Done: 2 steps" in out
    assert "2 states x 2 responses per step (rollouts: hf)" in out


@pytest.mark.slow
@pytest.mark.parametrize("game", ["2048", "shisensho"])
def test_the_shipped_cold_start_reads_its_board(tmp_path, game):
    """The shipped checkpoint left the perception plateau: on held-out boards it writes most
    cells right and its targets score worse with another board's image (a model on the plateau
    writes the average board, cell accuracy at chance and image_use ~ 0)."""
    from learner.models import shipped_cold_start
    from learner.sft import ColdStartTrainer

    directory, record = shipped_cold_start(game)
    config = small_config(str(tmp_path / game), game=game, game_params=record["game_params"], model=str(directory),
                          teacher=record["teacher"], sample_depth=record["train"]["sample_depth"],
                          sample_mode=record["train"]["sample_mode"], eval_states=16,
                          max_response_tokens=0, kl_coef=0.0)
    measured = ColdStartTrainer(config, echo=lambda _: None).evaluate()
    assert measured["cell_accuracy"] > 0.7 and measured["format"] == 1.0, measured
    assert measured["image_use"] > 0.2, measured


def test_ship_records_the_command_and_the_game_s_grpo_run_settings(tmp_path):
    from learner.config import parse_args
    from learner.sft import SHIPPED_RUN, SHIPPED_RUN_PER_GAME, ship

    export = tmp_path / "export"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"weights")
    for game in ("2048", "shisensho"):
        argv = ["--game", game, "--teacher", "legal-random", "--steps", "5", "--ship_to", str(tmp_path / game)]
        config = parse_args(["--preset", "cold-start", *argv])
        target = ship({"export": str(export), "last_eval": {"eval/P_acc": 0.5}, "seconds": 1.0}, config, argv,
                      tmp_path / game)
        record = json.loads((target / "jaxgym.json").read_text())
        assert (target / "model.safetensors").read_bytes() == b"weights"
        assert record["command"].startswith(f"python learner/sft.py --game {game} ")
        assert record["train"]["sample_mode"] == "paper" and record["last_eval"] == {"eval/P_acc": 0.5}
        for key, value in {**SHIPPED_RUN, **SHIPPED_RUN_PER_GAME.get(game, {})}.items():
            assert record["train"][key] == value, key
        # Shisen-Sho's main job keeps the perception reward on (its paper protocol has none).
        assert record["train"].get("w_perception") == (1.0 if game == "shisensho" else None)
    with pytest.raises(ValueError, match="needs the run's export"):
        ship({"export": None}, config, argv, tmp_path / "none")


def test_a_cold_start_continued_from_another_records_every_stage(tmp_path):
    """Stage 1's export carries its stage; stage 2 (``--model`` = that export) ships a record
    whose command rebuilds both, in order, in one line."""
    from learner.config import parse_args
    from learner.sft import STAGES_FILE, record_stages, ship

    first, second = tmp_path / "one" / "export", tmp_path / "two" / "export"
    for export in (first, second):
        export.mkdir(parents=True)
        (export / "model.safetensors").write_bytes(b"weights")
    argv_one = ["--game", "shisensho", "--teacher", "same-kind", "--steps", "5", "--seed", "0"]
    record_stages({"export": str(first), "seconds": 2.0}, parse_args(["--preset", "cold-start", *argv_one]), argv_one)
    assert json.loads((first / STAGES_FILE).read_text())["stages"][0]["teacher"] == "same-kind"
    argv_two = ["--game", "shisensho", "--teacher", "first-next", "--model", str(first), "--steps", "3", "--seed", "1"]
    target = ship({"export": str(second), "seconds": 1.0}, parse_args(["--preset", "cold-start", *argv_two]), argv_two,
                  tmp_path / "shipped")
    record = json.loads((target / "jaxgym.json").read_text())
    one, two = record["command"].split(" && ")
    assert "--teacher same-kind" in one and "--seed 0" in one and f"--model {first}" in two
    assert (record["steps"], record["seconds"], record["model"], record["seed"]) == (8, 3.0, "tiny", 0)
    assert [stage["teacher"] for stage in record["stages"]] == ["same-kind", "first-next"]
    assert not (target / STAGES_FILE).exists()


def test_a_resumed_multi_rank_cold_start_records_the_command_that_rebuilds_it(tmp_path):
    """A cold start started on 2 ranks, stopped and resumed to more steps, then shipped: its
    stage's command is the original launch (torchrun, 2 ranks) at the final step count, not the
    resume's arguments, and its seconds are every step's, not the last invocation's."""
    import dataclasses

    from learner.config import parse_args
    from learner.sft import LAUNCH_FILE, launcher, ship, write_launch

    run, export = tmp_path / "run", tmp_path / "run" / "export"
    export.mkdir(parents=True)
    (export / "model.safetensors").write_bytes(b"weights")
    argv = ["--game", "shisensho", "--teacher", "first-next", "--steps", "4", "--seed", "5", "--run_dir", str(run)]
    write_launch(run, argv, world_size=2)
    assert json.loads((run / LAUNCH_FILE).read_text())["world_size"] == 2
    # Steps 3-4 were logged twice (a run stopped after step 4's log, resumed from step 2's checkpoint).
    rows = [(0, 0.0), (1, 2.0), (2, 2.0), (3, 9.0), (4, 9.0), (3, 2.5), (4, 2.5), (5, 2.5), (6, 2.5)]
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "seconds/step": t}) + "\n" for s, t in rows))
    config = dataclasses.replace(parse_args(["--preset", "cold-start", *argv]), resume=str(run), steps=6,
                                 ship_to=str(tmp_path / "shipped"))
    resume_argv = ["--resume", str(run), "--steps", "6", "--ship_to", str(tmp_path / "shipped")]
    target = ship({"export": str(export), "seconds": 1.0}, config, resume_argv, tmp_path / "shipped", world_size=2,
                  run_dir=run)
    record = json.loads((target / "jaxgym.json").read_text())
    assert record["command"].startswith("python -m torch.distributed.run --nproc_per_node 2 learner/sft.py --game ")
    assert "--steps 6 --seed 5" in record["command"] and "--resume" not in record["command"]
    assert record["command"].endswith(f"--ship_to {tmp_path / 'shipped'}")
    assert record["steps"] == 6 and record["seconds"] == pytest.approx(2.0 + 2.0 + 4 * 2.5)
    # Stopped at step 3 of its 4-step cosine and shipped from there: the rebuild keeps the schedule.
    early = dataclasses.replace(config, steps=3, lr_schedule_steps=4, ship_to=f"{tmp_path / 'early'}")
    early_argv = ["--resume", str(run), "--steps", "3", "--lr_schedule_steps", "4", f"--ship_to={tmp_path / 'early'}"]
    target = ship({"export": str(export)}, early, early_argv, tmp_path / "early", world_size=2, run_dir=run)
    command = json.loads((target / "jaxgym.json").read_text())["command"]
    assert "--steps 3 --seed 5" in command and command.count("--ship_to") == 1, command
    assert command.endswith(f"--lr_schedule_steps 4 --ship_to {tmp_path / 'early'}"), command
    assert launcher(1) == "python learner/sft.py"
