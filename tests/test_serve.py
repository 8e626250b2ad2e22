"""bridges.serve as a real OpenEnv server: `python -m bridges.serve` in a subprocess, checked with
openenv-core's own validator and generic client, and with raw WebSocket messages for bad input
and faults. Needs the serve extra (`pip install -e ".[serve]"`; CI installs it)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openenv", reason='the serve extra: pip install -e ".[serve]"')
import requests  # noqa: E402  (openenv-core depends on it)
import websockets  # noqa: E402

pytestmark = pytest.mark.slow  # each server compiles its batched step and render at start

SMALL_SHISENSHO = ["size=4", "colors=4", "shapes=2", "copies=2", "image_size=128"]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m bridges.serve` on a free loopback port, up until stop()."""

    def __init__(self, game: str, params: list[str], *extra: str, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        args = [sys.executable, "-m", "bridges.serve", "--game", game, "--port", str(self.port), *extra]
        for p in params:
            args += ["--param", p]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
        self.log = tempfile.TemporaryFile()  # not a pipe: a full pipe would stall the server
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read().decode()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("server did not come up in 600 s")

    def capacity(self) -> dict:
        return requests.get(f"{self.url}/capacity", timeout=10).json()

    def proc_status(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server():
    server = Server("shisensho", SMALL_SHISENSHO, "--max-sessions", "4", "--max-message-bytes", "65536")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def game():
    import jaxgym

    return jaxgym.make("shisensho", **{k: int(v) for k, v in (p.split("=") for p in SMALL_SHISENSHO)})


async def send(ws, message) -> dict:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return json.loads(await ws.recv())


def openenv_validate(url: str) -> dict:
    cli = shutil.which("openenv", path=str(Path(sys.executable).parent)) or "openenv"
    out = subprocess.run([cli, "validate", "--url", url, "--json"], capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_openenv_validate_passes_for_shisensho_and_2048(server):
    report = openenv_validate(server.url)
    assert report["passed"], report
    other = Server("2048", ["image_size=128"], "--max-sessions", "2")
    try:
        report = openenv_validate(other.url)
        assert report["passed"], report
    finally:
        other.stop()


def test_generic_client_resets_steps_with_an_answer_and_gets_image_and_reward(server, game):
    import jax
    from openenv.core.generic_client import GenericEnvClient
    from PIL import Image

    schema = requests.get(f"{server.url}/schema", timeout=10).json()
    assert schema["action"]["required"] == ["answer"]  # verifiers' taskset sends the raw reply as it
    with GenericEnvClient(base_url=server.url).sync() as client:
        first = client.reset(seed=5)
        obs = first.observation
        want = game.reset(jax.random.key(5))
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(obs["image_png"]))).convert("RGB"))
        np.testing.assert_array_equal(pixels, np.asarray(jax.jit(game.render)(want)))
        assert obs["perception"] == game.describe(want) and obs["prompt"] == game.prompt()
        assert obs["legal_actions"] == np.flatnonzero(np.asarray(want.legal_action_mask)).tolist()
        reply = (f"<perception>{obs['perception']}</perception><think>a pair</think>"
                 f"{game.format_answer(obs['legal_actions'][0])}")
        result = client.step({"answer": reply})
        parts = result.observation["reward_components"]
        assert (parts["format"], parts["perception"], parts["legal"], parts["parsed"]) == (1.0, 1.0, True, True)
        assert result.reward == pytest.approx(parts["overall"]) and result.reward > 0
        assert result.observation["step_count"] == 1 and result.done is False
        bad = client.step({"answer": "I give up"})
        assert bad.observation["reward_components"]["parsed"] is False and bad.reward < result.reward
        by_id = client.step({"action_id": bad.observation["legal_actions"][0]})
        assert by_id.observation["reward_components"]["legal"] is True


def test_bad_input_gets_clear_errors_and_the_session_survives(server):
    async def go():
        async with websockets.connect(server.ws_url) as ws:
            error = await send(ws, "{not json")
            assert error["type"] == "error" and error["data"]["code"] == "INVALID_JSON"
            error = await send(ws, {"type": "step", "data": {"answer": "<answer>1 1 1 2</answer>"}})
            assert "send reset first" in error["data"]["message"] and "restart" in error["data"]["message"]
            assert (await send(ws, {"type": "reset", "data": {"seed": 1}}))["type"] == "observation"
            for wrong in ({"answer": 5}, {"action_id": "left"}, {"answer": "x", "move": 1}, {}):
                error = await send(ws, {"type": "step", "data": wrong})
                assert error["type"] == "error" and error["data"]["code"] == "VALIDATION_ERROR", wrong
            error = await send(ws, {"type": "jump"})
            assert error["data"]["code"] == "UNKNOWN_TYPE"
            error = await send(ws, {"type": "reset", "data": {"seed": -3}})
            assert error["type"] == "error" and "seed" in error["data"]["message"]
            ok = await send(ws, {"type": "step", "data": {"answer": "<answer>1 1 1 2</answer>"}})
            assert ok["type"] == "observation" and ok["data"]["observation"]["step_count"] == 1

    asyncio.run(go())
    response = requests.post(f"{server.url}/step", json={"action": {"answer": "x"}}, timeout=30)
    assert response.status_code == 409 and "stateless" in response.json()["detail"]
    assert requests.post(f"{server.url}/step", json={"action": {"answer": 5}}, timeout=30).status_code == 422
    assert requests.post(f"{server.url}/reset", data="{oops", timeout=30).status_code == 422
    assert wait_for(lambda: server.capacity()["active_sessions"] == 0)


def test_oversized_message_closes_only_that_connection(server):
    async def go():
        async with websockets.connect(server.ws_url, max_size=None) as ws:
            await send(ws, {"type": "reset", "data": {"seed": 2}})
            await ws.send(json.dumps({"type": "step", "data": {"answer": "x" * 100_000}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1009  # message too big
        async with websockets.connect(server.ws_url) as ws:
            assert (await send(ws, {"type": "reset", "data": {"seed": 2}}))["type"] == "observation"

    asyncio.run(go())
    assert wait_for(lambda: server.capacity()["active_sessions"] == 0)


def test_session_limit_is_a_clear_error_and_frees_up(server):
    async def go():
        sockets = [await websockets.connect(server.ws_url) for _ in range(4)]
        for ws in sockets:
            assert (await send(ws, {"type": "reset", "data": {}}))["type"] == "observation"
        async with websockets.connect(server.ws_url) as extra:
            error = json.loads(await extra.recv())
            assert error["data"]["code"] == "CAPACITY_REACHED" and error["data"]["max_sessions"] == 4
        await sockets.pop().close()
        await asyncio.sleep(0.5)
        async with websockets.connect(server.ws_url) as again:
            assert (await send(again, {"type": "reset", "data": {}}))["type"] == "observation"
        for ws in sockets:
            await ws.close()

    asyncio.run(go())
    assert wait_for(lambda: server.capacity()["active_sessions"] == 0)


def test_client_vanishing_mid_episode_frees_its_slot(server):
    async def go():
        ws = await websockets.connect(server.ws_url)
        await send(ws, {"type": "reset", "data": {"seed": 4}})
        await send(ws, {"type": "step", "data": {"answer": "<answer>1 1 1 2</answer>"}})
        assert server.capacity()["active_sessions"] == 1
        ws.transport.abort()  # no close frame: the TCP connection just drops

    asyncio.run(go())
    assert wait_for(lambda: server.capacity() == {**server.capacity(), "active_sessions": 0, "free_slots": 4})


def test_ten_thousand_connect_disconnect_cycles_leak_nothing(server):
    cycles, workers = 10_000, 4

    played = refused = 0

    async def worker(n: int):
        nonlocal played, refused
        for i in range(n):
            ws = await websockets.connect(server.ws_url)
            try:
                if i % 3:
                    reply = await send(ws, {"type": "reset", "data": {"seed": i}})
                    played += reply["type"] == "observation"
                    refused += reply["type"] == "error"
            except websockets.ConnectionClosed:  # at capacity: a dropped session's slot not yet back
                refused += 1
            if i % 2:
                ws.transport.abort()
            else:
                await ws.close()

    async def run(n_total: int):
        await asyncio.gather(*(worker(n_total // workers) for _ in range(workers)))

    asyncio.run(run(400))  # warm: allocator arenas, first connections
    assert wait_for(lambda: server.capacity()["active_sessions"] == 0)
    rss, threads = server.proc_status("VmRSS"), server.proc_status("Threads")
    asyncio.run(run(cycles))
    assert wait_for(lambda: server.capacity()["active_sessions"] == 0)
    capacity = server.capacity()
    assert capacity["free_slots"] == capacity["max_sessions"] == 4
    assert server.proc_status("Threads") <= threads + 2
    grown_mb = (server.proc_status("VmRSS") - rss) / 1024
    assert grown_mb < 40, f"server RSS grew {grown_mb:.0f} MB over {cycles} cycles"
    assert played > cycles // 2 and refused < cycles // 10, (played, refused)


def test_restart_loses_sessions_and_the_error_says_so():
    first = Server("shisensho", SMALL_SHISENSHO, "--max-sessions", "2", "--no-warmup")
    port = first.port

    async def before():
        ws = await websockets.connect(first.ws_url)
        await send(ws, {"type": "reset", "data": {"seed": 9}})
        return ws

    async def after(old_ws, url):
        with pytest.raises(websockets.ConnectionClosed):
            await send(old_ws, {"type": "step", "data": {"answer": "<answer>1 1 1 2</answer>"}})
        async with websockets.connect(url) as ws:  # a reconnecting client: its old episode is gone
            return await send(ws, {"type": "step", "data": {"answer": "<answer>1 1 1 2</answer>"}})

    loop = asyncio.new_event_loop()
    try:
        old = loop.run_until_complete(before())
        first.stop()
        second = Server("shisensho", SMALL_SHISENSHO, "--max-sessions", "2", "--no-warmup", port=port)
        try:
            error = loop.run_until_complete(after(old, second.ws_url))
        finally:
            second.stop()
    finally:
        loop.close()
    assert error["type"] == "error" and "restart" in error["data"]["message"]


def test_cli_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "bridges.serve", "--game", "chess"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode != 0 and "unknown game 'chess'" in out.stderr
    out = subprocess.run([sys.executable, "-m", "bridges.serve", "--game", "2048", "--max-sessions", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "--max-sessions must be >= 1" in out.stderr


def test_benchmark_quick_mode_writes_rows_for_both_modes(tmp_path):
    out = tmp_path / "serve.json"
    run = subprocess.run([sys.executable, "benchmarks/serve.py", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["mode"], r["clients"]) for r in rows} == {(m, c) for m in ("batched", "serial") for c in (1, 4)}
    assert all(r["steps"] > 0 and r["errors"] == 0 and r["p99_ms"] >= r["p50_ms"] > 0 for r in rows)
    assert out.with_suffix(".png").stat().st_size > 0 and "| batched | 4 |" in run.stdout
