"""The evaluator: end-to-end runs on every game, baselines, and the OpenAI-compatible client
against a local HTTP server started here (127.0.0.1 only)."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import imageio.v2 as imageio
import jax
import numpy as np
import pytest
from PIL import Image

import jaxgym
from bridges import evaluation
from bridges.evaluation import evaluate, summary_table
from bridges.policies import (
    CallablePolicy,
    GreedyPolicy,
    LegalRandomPolicy,
    Observation,
    OpenAIPolicy,
    PolicyError,
    make_policy,
)
from bridges.protocol import protocol_for
from bridges.sampler import StateSampler
from bridges.torch_io import images_to_numpy
from jaxgym import INVALID_ACTION
from learner import evaluate as cli
from tests.bridges_support import GAMES, small_env

RUNS, STEPS = 16, 2  # 16 boards: the sampler tests compile the same warm-up programs


@pytest.mark.parametrize("game_id", GAMES)
@pytest.mark.slow
def test_cli_random_policy_writes_readable_outputs(game_id, tmp_path, capsys, monkeypatch):
    env = small_env(game_id)
    if game_id != GAMES[0]:
        # The CLI builds exactly this env; handing it the cached one reuses the programs the
        # other tests compiled (a fresh env object compiles everything again).
        monkeypatch.setattr(evaluation.jaxgym, "make", lambda name, image_size: small_env(name))
    out = tmp_path / "run"
    run_dir, result = cli.main(
        ["--game", game_id, "--policy", "random", "--runs", str(RUNS), "--steps", str(STEPS),
         "--image-size", str(env.image_size[0]), "--out", str(out), "--seed", "3", "--quiet"]
    )
    printed = capsys.readouterr().out
    assert run_dir == out and f"run directory: {out}" in printed.splitlines()[0]
    assert "mean" in printed and "standard error" in printed

    log = json.loads((out / "eval.json").read_text())
    assert log["config"]["game"] == env.id and log["config"]["runs"] == RUNS
    assert len(log["runs"]) == RUNS
    for run in log["runs"]:
        assert len(run["steps"]) == STEPS
        for step in run["steps"]:
            assert {"response", "action", "answer", "raw_reward", "points", "legal", "cumulative"} <= set(step)
            # The random policy types answers of the game's format, which parse.
            assert step["action"] is not None and env.parse_answer(step["response"]) == step["action"]
        assert run["score"] == pytest.approx(sum(s["points"] for s in run["steps"]))
        assert run["steps"][-1]["cumulative"] == pytest.approx(run["score"])
    assert log["summary"]["mean"] == pytest.approx(np.mean([r["score"] for r in log["runs"]]))

    plot = np.asarray(Image.open(out / "cumulative.png"))
    assert plot.ndim == 3 and plot.shape[0] > 100 and plot.std() > 0
    videos = sorted(out.glob("run*.mp4")) or sorted(out.glob("run*.gif"))
    assert [v.stem for v in videos] == [f"run{r:02d}" for r in range(RUNS)]
    with warnings.catch_warnings():  # ffmpeg is a subprocess: JAX's fork warning is noise
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        frames = [frame for frame in imageio.get_reader(videos[0])]
    assert len(frames) == STEPS + 1
    height, width, _ = env.image_shape
    assert frames[0].shape[0] >= height and frames[0].shape[1] >= width


@pytest.mark.slow
def test_evaluation_is_seeded_and_scores_follow_the_protocol():
    env = small_env("2048")
    # 16 runs: the sampler tests compile the same warm-up program.
    a = evaluate(env, make_policy("random", env, seed=1), runs=16, steps=3, seed=1)
    b = evaluate(env, make_policy("random", env, seed=1), runs=16, steps=3, seed=1)
    assert [[r["response"] for r in run] for run in a.records] == [[r["response"] for r in run] for run in b.records]
    np.testing.assert_array_equal(a.scores, b.scores)
    # 2048 scores raw merge points; every step's record matches its points.
    for run in a.records:
        for rec in run:
            assert rec["points"] == rec["raw_reward"]
            assert rec["raw_reward"] == 0 or rec["legal"]
    assert "mean" in summary_table(a)


@pytest.mark.slow
def test_games_that_end_restart_inside_the_run():
    # A 2-move time limit ends every episode at its second move; the runs go on through
    # fresh boards and the score keeps accumulating across episodes.
    env = jaxgym.TimeLimit(small_env("2048"), max_steps=2)
    frames = []
    result = evaluate(
        env, make_policy("legal-random", env), runs=2, steps=5, seed=0, warmup=0,
        frame_sink=lambda t, images, records: frames.append(images),
    )
    for run in result.records:
        assert [rec["episode_end"] for rec in run] == [False, True, False, True, False]
        cumulative = [rec["cumulative"] for rec in run]
        assert cumulative == sorted(cumulative)
    # The frame after an episode end shows a fresh board (two tiles), as a reset renders it.
    fresh = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2))
    assert len(frames) == 6
    assert frames[2].shape == np.asarray(jax.vmap(env.render)(fresh)).shape


@pytest.mark.parametrize("game_id", GAMES)
@pytest.mark.slow
def test_baselines_choose_legal_best_moves(game_id):
    env = small_env(game_id)
    # Boards after some legal play, where rewards differ between moves.
    states, images = StateSampler(env, mode="legal", depth=4, seed=11).sample(16)
    obs = Observation(images=images, prompts=[env.prompt()] * 16, states=states, key=jax.random.key(1))
    mask = np.asarray(states.legal_action_mask)
    for policy in (LegalRandomPolicy(env), GreedyPolicy(env)):
        actions = np.array([env.parse_answer(r) for r in policy(obs)])
        assert mask[np.arange(16), actions].all(), policy.name
    # Greedy: no legal action has a higher immediate reward than the chosen one (the
    # oracle steps every flat action of every board, with the per-board step keys that the
    # policy derives from obs.key, since Swap's cascades depend on the refill draws).
    greedy = np.array([env.parse_answer(r) for r in GreedyPolicy(env)(obs)])
    every = np.arange(env.num_actions, dtype=np.int32)
    step_keys = jax.random.split(jax.random.split(obs.key)[0], 16)
    rewards = jax.jit(jax.vmap(jax.vmap(env.step, in_axes=(None, 0, None)), in_axes=(0, None, 0)))(
        states, every, step_keys
    ).reward
    best = np.where(mask, np.asarray(rewards), -np.inf).max(axis=1)
    np.testing.assert_array_equal(np.asarray(rewards)[np.arange(16), greedy], best)


def test_greedy_breaks_ties_at_random():
    env = small_env("2048")
    state = env.from_tiles([[2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 4]])  # 4 legal moves, no merge
    states = jax.tree_util.tree_map(lambda x: np.stack([x] * 16), state)
    obs = Observation(images=None, prompts=[""] * 16, states=states, key=jax.random.key(0))
    chosen = {env.parse_answer(r) for r in GreedyPolicy(env)(obs)}
    assert chosen == {0, 1, 2, 3}


def test_random_policy_answers_like_a_person_would():
    for game_id in GAMES:
        env = small_env(game_id)
        policy = make_policy("random", env, seed=0)
        obs = Observation(images=None, prompts=[""] * 2000, states=None, key=jax.random.key(0))
        responses = policy(obs)
        actions = np.array([env.parse_answer(r) for r in responses])
        if protocol_for(env).random_answer is None:
            # Uniform over the flat actions: every action appears about equally often.
            counts = np.bincount(actions, minlength=env.num_actions)
            assert counts.sum() == 2000 and len(counts) == env.num_actions
            if env.num_actions <= 10:
                assert counts.min() > 2000 / env.num_actions * 0.8
        else:
            # Two uniformly random cells of the board, whatever the game makes of them.
            cells = np.array([[int(v) for v in re.findall(r"-?\d+", r)] for r in responses])
            assert cells.shape == (2000, 4)
            assert set(np.unique(cells).tolist()) == set(range(env.size))
            assert ((actions == INVALID_ACTION) | ((actions >= 0) & (actions < env.num_actions))).all()
            if game_id.startswith("swap"):
                adjacent = np.abs(cells[:, 0] - cells[:, 2]) + np.abs(cells[:, 1] - cells[:, 3]) == 1
                np.testing.assert_array_equal(actions != INVALID_ACTION, adjacent)


@pytest.mark.slow
def test_callable_policy_from_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_agent.py").write_text(
        "def answer(images, prompts):\n"
        "    assert images.dtype.name == 'uint8' and images.ndim == 4 and len(prompts) == len(images)\n"
        "    return ['<answer>3</answer>'] * len(prompts)\n"
        "def wrong(images, prompts):\n"
        "    return ['x']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = small_env("2048")
    result = evaluate(env, make_policy("my_agent:answer", env), runs=16, steps=2, seed=0)
    assert all(rec["action"] == 3 for run in result.records for rec in run)
    with pytest.raises(PolicyError, match="must return a list of 16 strings"):
        evaluate(env, make_policy("my_agent:wrong", env), runs=16, steps=1, seed=0)
    with pytest.raises(ValueError, match="no attribute"):
        make_policy("my_agent:missing", env)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("nonsense", env)
    assert isinstance(make_policy(f"{tmp_path / 'my_agent.py'}:answer", env), CallablePolicy)


# ------------------------------------------------------------- OpenAI-compatible client


class FakeServer:
    """A chat-completions endpoint on 127.0.0.1: records requests, answers by a script."""

    def __init__(self, script):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.script = script  # (request number) -> ("ok", text) | ("status", code) | ("sleep", s)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    number = len(outer.requests)
                    outer.requests.append(body)
                    outer.headers.append(dict(self.headers))
                kind, value = outer.script(number, self.path)
                if kind == "sleep":
                    time.sleep(value)
                    kind, value = "ok", "<answer>1</answer>"
                if kind == "status":
                    self.send_response(value)
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted failure"}')
                    return
                reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": value}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def decode_data_url(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix):]))))


@pytest.mark.slow  # several seconds of compiles: the full tier only
def test_openai_policy_request_shape_and_images(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "sekrit")
    env = small_env("2048")

    def script(number, path):
        assert path == "/v1/chat/completions"
        return "ok", f"<perception>x</perception><think>y</think><answer>{number % 4}</answer>"

    runs = 16  # the warm-up program is shared with the other 2048 evaluations
    with FakeServer(script) as server:
        args = cli.parse_args(
            ["--game", "2048", "--policy", f"openai:{server.url}", "--model", "tiny-vlm", "--api-key-env", "TEST_KEY",
             "--max-tokens", "77", "--concurrency", "4"]
        )
        policy = make_policy(args.policy, env, model=args.model, **cli.policy_options(args))
        result = evaluate(env, policy, runs=runs, steps=1, seed=0)
        policy.close()
    assert len(server.requests) == runs
    for body, headers in zip(server.requests, server.headers, strict=True):
        assert body["model"] == "tiny-vlm" and body["max_tokens"] == 77 and body["temperature"] == 0.0
        (message,) = body["messages"]
        assert message["role"] == "user"
        kinds = [part["type"] for part in message["content"]]
        assert kinds == ["image_url", "text"]
        assert message["content"][1]["text"] == env.prompt()
        image = decode_data_url(message["content"][0]["image_url"]["url"])
        assert image.shape == env.image_shape and image.dtype == np.uint8
        assert headers["Authorization"] == "Bearer sekrit"
    # The images sent are the boards the runs saw: the warm-up boards of this seed.
    urls = [body["messages"][0]["content"][0]["image_url"]["url"] for body in server.requests]
    sent = sorted(decode_data_url(url).tobytes() for url in urls)
    _, warm = StateSampler(env, mode="paper", depth=protocol_for(env).eval_warmup, seed=0).sample(runs)
    assert sent == sorted(np.asarray(image).tobytes() for image in warm)
    assert all(rec["format"] == 1 for run in result.records for rec in run)


def test_openai_policy_retries_http_500_then_succeeds():
    failures = {"count": 0}

    def script(number, path):
        if number < 2:
            failures["count"] += 1
            return "status", 500
        return "ok", "<answer>2</answer>"

    with FakeServer(script) as server:
        policy = OpenAIPolicy(server.url, "m", retries=3, backoff=0.01, api_key_env="")
        image = np.zeros((8, 8, 3), np.uint8)
        assert policy.complete("p", image) == "<answer>2</answer>"
        policy.close()
    assert failures["count"] == 2 and len(server.requests) == 3


def test_openai_policy_gives_up_with_a_clear_error_or_unparseable():
    image = np.zeros((8, 8, 3), np.uint8)
    with FakeServer(lambda number, path: ("status", 503)) as server:
        policy = OpenAIPolicy(server.url, "m", retries=2, backoff=0.01)
        with pytest.raises(PolicyError, match=r"failed after 3 attempt\(s\): HTTP 503"):
            policy.complete("p", image)
        lenient = OpenAIPolicy(server.url, "m", retries=0, backoff=0.01, on_error="unparseable")
        assert lenient.complete("p", image) == ""
        assert "HTTP 503" in lenient.errors[0]
    # A client error is not retried.
    with FakeServer(lambda number, path: ("status", 404)) as server:
        policy = OpenAIPolicy(server.url, "m", retries=3, backoff=0.01)
        with pytest.raises(PolicyError, match="HTTP 404"):
            policy.complete("p", image)
        assert len(server.requests) == 1


def test_openai_policy_times_out_and_retries():
    image = np.zeros((8, 8, 3), np.uint8)

    def script(number, path):
        return ("sleep", 1.0) if number == 0 else ("ok", "<answer>0</answer>")

    with FakeServer(script) as server:
        policy = OpenAIPolicy(server.url, "m", timeout=0.2, retries=1, backoff=0.01)
        start = time.perf_counter()
        assert policy.complete("p", image) == "<answer>0</answer>"
        assert time.perf_counter() - start < 1.0
    with FakeServer(lambda number, path: ("sleep", 1.0)) as server:
        policy = OpenAIPolicy(server.url, "m", timeout=0.2, retries=0)
        with pytest.raises(PolicyError, match="timed out after 0.2s"):
            policy.complete("p", image)


def test_openai_policy_unreachable_server_and_bad_config():
    image = np.zeros((8, 8, 3), np.uint8)
    with FakeServer(lambda n, p: ("ok", "")) as server:
        url = server.url  # the port is free again once the server is closed
    policy = OpenAIPolicy(url, "m", retries=1, backoff=0.01, timeout=1.0)
    with pytest.raises(PolicyError, match="failed after 2 attempt"):
        policy.complete("p", image)
    with pytest.raises(ValueError, match="model name"):
        OpenAIPolicy("http://127.0.0.1:1/v1", "")
    with pytest.raises(ValueError, match="http://"):
        OpenAIPolicy("127.0.0.1:8000", "m")


# ------------------------------------------------------------- local transformers checkpoints


@pytest.mark.parametrize(
    "options, named",
    [(dict(temperature=-1.0), "temperature=-1"), (dict(max_new_tokens=0), "max_new_tokens=0"),
     (dict(batch_size=0), "batch_size=0")],
)
def test_hf_policy_rejects_bad_settings_before_loading_a_model(tmp_path, options, named):
    # The path does not exist: the settings error must come first, before any loading.
    with pytest.raises(ValueError, match=named):
        make_policy(f"hf:{tmp_path / 'missing'}", small_env("2048"), **options)


@pytest.mark.slow
def test_hf_policy_loads_the_learners_export_and_generates(tmp_path):
    from learner import models
    from learner.hf_policy import HFPolicy

    env = small_env("2048")
    model, processor = models.build_tiny_policy(seed=5)
    export = models.export_policy(model, processor, tmp_path / "ckpt")
    policy = make_policy(f"hf:{export}", env, max_new_tokens=6, batch_size=2)
    assert isinstance(policy, HFPolicy) and policy.name == "hf-ckpt"
    result = evaluate(env, policy, runs=2, steps=1, seed=0, warmup=0)
    responses = [run[0]["response"] for run in result.records]
    assert all(isinstance(r, str) for r in responses)
    # The same weights in memory give the same greedy responses to the same boards.
    states, images = StateSampler(env, mode="paper", depth=0, seed=0).sample(2)
    from learner.rollout import HFRolloutEngine

    direct = HFRolloutEngine(model.eval(), processor)
    generation = direct.generate([env.prompt()] * 2, list(images_to_numpy(images)), 1, policy.sampling, logprobs=False)
    assert generation.texts == responses
