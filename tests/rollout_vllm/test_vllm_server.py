"""The evaluator (learner/evaluate.py, its openai: policy) against a real vLLM
OpenAI-compatible server serving the tiny model on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rollout_vllm.support import require_vllm, subprocess_env

require_vllm()

GAMES = ("2048", "swap")
RUNS, STEPS, IMAGE_SIZE = 2, 2, 112


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def vllm_server(model_dir: Path, log_path: Path, *, timeout: float = 420.0) -> Iterator[tuple[int, subprocess.Popen]]:
    """``python -m vllm.entrypoints.openai.api_server`` for ``model_dir`` on a free local port,
    ready to answer; stopped (its whole process group) on exit, also when the body fails.
    Yields ``(port, process)``."""
    port = _free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
               "--max-model-len", "2048", "--enforce-eager", "--limit-mm-per-prompt", '{"image": 1}', "--seed", "0"]
    env = subprocess_env(VLLM_CPU_KVCACHE_SPACE="1")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the vLLM server was not ready after {timeout:.0f} s:\n"
                                   f"{log_path.read_text()[-4000:]}")
            time.sleep(1.0)
        yield port, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _metric(port: int, name: str) -> float:
    """The sum of a counter's samples on the server's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        lines = reply.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{") or
               line.startswith(name + " "))


def _expected_prompt_tokens(tiny, game: str) -> int:
    """The tokens of the evaluator's prompt for ``game`` with its image, as the trainer encodes it."""
    import numpy as np

    import jaxgym
    from learner.batching import chat_prompt, encode_prompts

    env = jaxgym.make(game, image_size=IMAGE_SIZE)
    board = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return len(encode_prompts(tiny.processor, [chat_prompt(tiny.processor, env.prompt())], [board]).token_ids[0])


@pytest.mark.slow
def test_evaluator_against_a_vllm_server(tiny, tmp_path):
    from learner import evaluate

    with vllm_server(tiny.path, tmp_path / "server.log") as (port, server):
        expected_tokens = 0
        for game in GAMES:
            run_dir, result = evaluate.main([
                "--game", game, "--policy", f"openai:http://127.0.0.1:{port}/v1", "--model", "tiny",
                "--runs", str(RUNS), "--steps", str(STEPS), "--image-size", str(IMAGE_SIZE), "--max-tokens", "16",
                "--temperature", "0", "--retries", "0", "--video", "none", "--quiet", "--out", str(tmp_path / game),
            ])
            records = json.loads((run_dir / "eval.json").read_text())["runs"]
            steps = [step for run in records for step in run["steps"]]
            assert len(steps) == RUNS * STEPS  # every request answered (a failed one raises, --retries 0)
            assert all(isinstance(step["response"], str) for step in steps)
            expected_tokens += RUNS * STEPS * _expected_prompt_tokens(tiny, game)
        requests = RUNS * STEPS * len(GAMES)
        assert _metric(port, "vllm:request_success_total") == requests
        # The server built exactly the trainer's prompts, image tokens included: the boards
        # were sent, decoded and expanded (16 pad tokens per 112 px board).
        assert _metric(port, "vllm:prompt_tokens_total") == expected_tokens
        assert "POST /v1/chat/completions HTTP/1.1\" 200" in (tmp_path / "server.log").read_text()
    assert server.poll() is not None  # stopped
    assert not _port_open(port)
