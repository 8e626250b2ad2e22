"""The OpenEnv server (``python -m bridges.serve``) under many concurrent WebSocket clients.

For each client count (1, 16, 256, 1024) the clients connect over loopback, reset, and play
random legal moves (``{"action_id": a}``, ``a`` drawn from the observation's ``legal_actions``,
resetting when an episode ends) for a fixed time. Reported per count: steps/s, p50/p99 step
latency (send to reply, client side) and the server's CPU seconds per step (its process's
user + system time over the measured window), for the batched server and for the same server in
one-session-at-a-time mode (``--serial``: every request runs alone, as an OpenEnv environment
does today). The clients run in this process, on the same cores as the server: their JSON
parsing is part of every number.

    python benchmarks/serve.py                      # shisensho, 1/16/256/1024 clients, 10 s each
    python benchmarks/serve.py --quick              # seconds: a small board, 1 and 4 clients

Writes ``benchmarks/results/serve.json`` (or ``--out``) and a plot beside it, and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_PARAMS = ["size=4", "colors=4", "shapes=2", "copies=2", "image_size=128"]


@dataclass
class Row:
    mode: str
    clients: int
    steps: int
    seconds: float
    steps_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_s_per_step: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def start_server(game: str, params: list[str], max_sessions: int, serial: bool, window_ms: float):
    import requests

    port = free_port()
    args = [sys.executable, "-m", "bridges.serve", "--game", game, "--port", str(port),
            "--max-sessions", str(max_sessions), "--batch-window-ms", str(window_ms)]
    args += ["--serial"] if serial else []
    for p in params:
        args += ["--param", p]
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, port
        except requests.RequestException:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not come up in 900 s")


async def play(url: str, pid: int, clients: int, seconds: float, seed: int) -> tuple[list[float], int, float, float]:
    """Latencies (s) of the steps done inside the measured window, the errors, the window's
    length and the server's CPU seconds in it. The window opens once every client has reset."""
    import websockets

    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    ready = 0
    all_ready = asyncio.Event()
    window = {"end": float("inf")}

    async def client(index: int) -> None:
        nonlocal errors, ready
        try:
            async with websockets.connect(url, max_size=None, open_timeout=300, ping_interval=None) as ws:
                await ws.send(json.dumps({"type": "reset", "data": {"seed": seed + index}}))
                obs = json.loads(await ws.recv())["data"]
                ready += 1
                if ready == clients:
                    all_ready.set()
                await all_ready.wait()
                while time.perf_counter() < window["end"]:
                    legal = obs["observation"]["legal_actions"]
                    if obs["done"] or not legal:
                        message = {"type": "reset", "data": {}}
                    else:
                        message = {"type": "step", "data": {"action_id": rng.choice(legal)}}
                    sent = time.perf_counter()
                    await ws.send(json.dumps(message))
                    reply = json.loads(await ws.recv())
                    done_at = time.perf_counter()
                    if reply["type"] != "observation":
                        errors += 1
                        return
                    obs = reply["data"]
                    if message["type"] == "step" and done_at <= window["end"]:
                        latencies.append(done_at - sent)
        except Exception:
            errors += 1
            ready += 1
            if ready == clients:
                all_ready.set()

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.wait_for(all_ready.wait(), timeout=900)
    begin, cpu_begin = time.perf_counter(), cpu_seconds(pid)
    window["end"] = begin + seconds
    await asyncio.sleep(seconds)
    end, cpu_end = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*tasks)
    return latencies, errors, end - begin, cpu_end - cpu_begin


def measure(mode: str, port: int, pid: int, clients: int, seconds: float) -> Row:
    latencies, errors, window_s, cpu = asyncio.run(play(f"ws://127.0.0.1:{port}/ws", pid, clients, seconds, clients))
    steps = len(latencies)
    latencies.sort()
    pick = lambda q: 1000 * latencies[min(steps - 1, int(q * steps))] if steps else float("nan")
    return Row(mode, clients, steps, round(window_s, 2), round(steps / window_s, 1), round(pick(0.5), 2),
               round(pick(0.99), 2), round(cpu / steps, 6) if steps else float("nan"), errors)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in sorted({r.mode for r in rows}):
        mine = [r for r in rows if r.mode == mode]
        left.plot([r.clients for r in mine], [r.steps_per_s for r in mine], "o-", label=mode)
        right.plot([r.clients for r in mine], [r.p99_ms for r in mine], "o-", label=mode)
    for axis, label in ((left, "steps/s"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrent WebSocket clients")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.suptitle("bridges.serve: batched vs one session at a time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(rows: list[Row]) -> str:
    lines = ["| mode | clients | steps/s | p50 ms | p99 ms | server CPU ms/step | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.mode} | {r.clients} | {r.steps_per_s:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
                     f"{1000 * r.server_cpu_s_per_step:.2f} | {r.errors} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="shisensho")
    p.add_argument("--param", action="append", default=None, metavar="NAME=VALUE")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 16, 256, 1024])
    p.add_argument("--seconds", type=float, default=10.0, help="measured time per client count and mode")
    p.add_argument("--window-ms", type=float, default=5.0, help="the batched server's --batch-window-ms")
    p.add_argument("--modes", nargs="+", default=["batched", "serial"], choices=["batched", "serial"])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    p.add_argument("--quick", action="store_true", help="seconds: a 4x4 board, 1 and 4 clients, 1.5 s each")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = [1, 4], 1.5
        args.param = args.param if args.param is not None else QUICK_PARAMS
    args.param = args.param or []
    if min(args.clients) < 1 or max(args.clients) > 4096:
        p.error(f"--clients must be in 1..4096 (bounded), got {args.clients}")
    if not 0 < args.seconds <= 600:
        p.error(f"--seconds must be in (0, 600], got {args.seconds}")
    return args


def write(args: argparse.Namespace, rows: list[Row]) -> None:
    meta = {"game": args.game, "params": args.param, "seconds": args.seconds, "window_ms": args.window_ms,
            "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    rows: list[Row] = []
    for mode in args.modes:
        proc, port = start_server(args.game, args.param, max(args.clients), mode == "serial", args.window_ms)
        try:
            for clients in args.clients:
                row = measure(mode, port, proc.pid, clients, args.seconds)
                print(f"{mode:8s} {clients:5d} clients: {row.steps_per_s:9.1f} steps/s  p50 {row.p50_ms:8.1f} ms  "
                      f"p99 {row.p99_ms:8.1f} ms  {1000 * row.server_cpu_s_per_step:.2f} server-CPU ms/step",
                      flush=True)
                rows.append(row)
                write(args, rows)  # after every row: a cut-short run keeps what it measured
        finally:
            proc.terminate()
            proc.wait(60)
    print(table(rows))
    by = {(r.mode, r.clients): r for r in rows}
    top = max(args.clients)
    if ("batched", top) in by and ("serial", top) in by and by[("serial", top)].steps_per_s > 0:
        print(f"batched / serial steps/s at {top} clients: "
              f"{by[('batched', top)].steps_per_s / by[('serial', top)].steps_per_s:.1f}x")
    write(args, rows)
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return rows


if __name__ == "__main__":
    main()
