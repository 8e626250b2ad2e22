"""Environment throughput: jaxgym games side by side with their peers, in one run.

For each game and batch size this measures, with ``block_until_ready`` and ``lax.scan`` over
steps of random legal actions (auto-reset on episode end; jaxgym's ``AutoReset.step_batch``,
each peer's own auto-reset wrapper):

- compile time of the scanned program,
- logic-only steps/s,
- step+render frames/s (each step's frames are written to memory, not optimised away).

Peers in the same run: pgx ``2048`` and Jumanji ``Game2048-v1`` (logic), gymnasium-2048
(logic, and with its ``rgb_array`` frames through a gymnasium vector env), gymnax's MinAtar
``Breakout-MinAtar`` next to ``breakout`` (logic; gymnax computes its 10x10x4 observation
every step and has no pixel renderer), Jumanji's Sokoban (its two built-in toy levels,
uniform random moves: it has no legal mask) and Tetris (logic, 10x10 and 20x10, random legal
placements), and the physical
limit: this machine's memory-fill rate for frames of the same size (NumPy ``fill`` of a
preallocated batch of frames).

    python benchmarks/throughput.py --quick                  # under a minute
    python benchmarks/throughput.py --games 2048 shisensho --batch-sizes 1 256 4096

Prints a table, writes JSON rows (library, game, batch, steps_per_s, frames_per_s,
image_hw, compile_s) and a PNG plot into one run directory printed at the start.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxgym
import renderers  # noqa: F401  (registers every game's renderer)

# Game configurations benchmarked per registered game name (others get their defaults).
GAME_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "2048": [dict(size=4)],
    "shisensho": [dict(size=6), dict(size=12)],
    "shisensho-images": [dict(size=6)],
    "swap": [dict(size=8)],
    "sokoban": [dict(size=10, boxes=4), dict(size=10, boxes=4, level_pool=1000)],
    "tetris": [dict(rows=20, cols=10), dict(rows=10, cols=10)],
}
# The paper's released code, per env-step with rendering (as issues 3 and 6 quote it): for the
# ratio lines.
PAPER_MS_PER_RENDERED_STEP = {"shisensho size=12": 16.7, "swap size=8": 8.8}
DEFAULT_BATCHES = (1, 16, 256, 1024, 4096, 16384, 65536)
QUICK_BATCHES = (1, 256, 4096)


@dataclass
class Row:
    library: str
    game: str
    batch: int
    steps_per_s: float | None = None
    frames_per_s: float | None = None
    image_hw: list[int] | None = None
    compile_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def random_legal_action(key: jax.Array, legal: jax.Array) -> jax.Array:
    """A uniformly random legal action (action 0 if none is legal) from one uniform number.

    The k-th legal action is found in two levels: the mask as a square of blocks, a cumulative
    sum over the block counts picks the block, one over that block picks the action. A single
    cumulative sum over all of Shisen-Sho 12x12's 20,736 actions costs XLA:CPU more than the
    step it drives.
    """
    n = legal.shape[-1]
    width = math.isqrt(n - 1) + 1  # blocks of `width` actions, `width` blocks
    blocks = jnp.pad(legal, (0, width * width - n)).reshape(width, width)
    per_block = jnp.sum(blocks, axis=1, dtype=jnp.int32)
    through_block = jnp.cumsum(per_block)
    k = jnp.floor(jax.random.uniform(key) * through_block[-1]).astype(jnp.int32)
    block = jnp.argmax(through_block > k)
    k_in_block = k - (through_block[block] - per_block[block])
    within = jnp.argmax(jnp.cumsum(blocks[block].astype(jnp.int32)) > k_in_block)
    return (block * width + within).astype(jnp.int32)


def measure(fn: Callable, args: tuple, repeats: int) -> tuple[float, float]:
    """(compile seconds, best seconds per call) of ``jax.jit(fn)(*args)``. Compile time is
    the first call's time less the best later call's."""
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        best = min(best, time.perf_counter() - t0)
    return max(0.0, first - best), best


def scan_steps(reset, step, legal_of, batch: int, steps: int, render=None, batch_step=None) -> Callable:
    """A function ``key -> result`` that resets ``batch`` boards and scans ``steps`` vmapped
    steps of random legal actions; with ``render``, every step's frames are written.
    ``batch_step`` replaces ``vmap(step)`` for a library with its own batched step."""
    vreset, vstep = jax.vmap(reset), batch_step or jax.vmap(step)
    vrender = jax.vmap(render) if render is not None else None

    def run(key):
        state = vreset(jax.random.split(key, batch))

        def body(carry, k):
            state, frames = carry
            k_act, k_step = jax.random.split(k)
            actions = jax.vmap(random_legal_action)(jax.random.split(k_act, batch), legal_of(state))
            state = vstep(state, actions, jax.random.split(k_step, batch))
            if vrender is not None:
                frames = vrender(state)
            return (state, frames), None

        frames0 = None
        if vrender is not None:
            frames0 = jnp.zeros(
                (batch, *jax.eval_shape(render, jax.tree_util.tree_map(lambda x: x[0], state)).shape), jnp.uint8
            )
        (state, frames), _ = jax.lax.scan(body, (state, frames0), jax.random.split(key, steps))
        return state, frames

    return run


def carried_render_steps(step, legal_of, render, batch: int, steps: int, batch_step=None) -> Callable:
    """``(state, frames), key -> (state, frames)``: ``steps`` vmapped steps of random legal
    actions from a given batch state, every step's frames written into the carried frames.

    The steady state of a rollout loop: no reset, no fresh frame buffer per call. With the
    carry donated, XLA writes the frames into the buffer it was given, already paged in, as
    the memory-fill reference writes into its own; :func:`scan_steps` instead resets the batch,
    zero-fills a new frame buffer and pages in another for its output on every call, which at
    batch 4096 (2.4 GB of 448x448 frames, two steps in the time budget) costs more than the
    steps it times."""
    vstep = batch_step or jax.vmap(step)
    vrender = jax.vmap(render)

    def run(carry, key):
        def body(carry, k):
            state, _ = carry
            k_act, k_step = jax.random.split(k)
            actions = jax.vmap(random_legal_action)(jax.random.split(k_act, batch), legal_of(state))
            state = vstep(state, actions, jax.random.split(k_step, batch))
            return (state, vrender(state)), None

        carry, _ = jax.lax.scan(body, carry, jax.random.split(key, steps))
        return carry

    return run


def measure_carried(init: Callable, make_run: Callable[[int], Callable], lo: int, hi: int,
                    args) -> tuple[float, float, int]:
    """:func:`measure_scan` for a carried loop (:func:`carried_render_steps`): ``init(key)``
    builds the carry once, every call continues from the last one's (donated) carry."""
    carry = jax.block_until_ready(jax.jit(init)(jax.random.key(0)))

    def timed(steps: int, repeats: int) -> tuple[float, float]:
        nonlocal carry
        run = jax.jit(make_run(steps), donate_argnums=0)
        t0 = time.perf_counter()
        carry = jax.block_until_ready(run(carry, jax.random.key(1)))
        first, best = time.perf_counter() - t0, float("inf")
        for i in range(repeats):
            t0 = time.perf_counter()
            carry = jax.block_until_ready(run(carry, jax.random.key(2 + i)))
            best = min(best, time.perf_counter() - t0)
        return max(0.0, first - best), best

    if args.quick:
        compile_s, sec = timed(2 * lo, args.repeats)
        return compile_s, sec, 2 * lo
    compile_s, probe = timed(lo, 1)
    steps = int(np.clip(args.seconds / max(probe / lo, 1e-9), lo, hi))
    _, sec = timed(steps, args.repeats)
    return compile_s, sec, steps


def steps_for(batch: int, budget: int, lo: int, hi: int) -> int:
    return int(np.clip(budget // batch, lo, hi))


def measure_scan(make_fn: Callable[[int], Callable], lo: int, hi: int, args) -> tuple[float, float, int]:
    """Time ``make_fn(steps)`` with a scan long enough for about ``args.seconds`` per call.

    A short probe of ``lo`` steps estimates the time per step; the timed run then uses the
    number of steps (between ``lo`` and ``hi``) that fills the time budget, so cheap and
    expensive games are measured equally well. Returns (compile s, seconds per call, steps).
    """
    if args.quick:  # no probe: one compile per row keeps --quick under a minute
        compile_s, sec = measure(make_fn(2 * lo), (jax.random.key(0),), args.repeats)
        return compile_s, sec, 2 * lo
    compile_s, probe = measure(make_fn(lo), (jax.random.key(0),), 1)
    steps = int(np.clip(args.seconds / max(probe / lo, 1e-9), lo, hi))
    if steps <= 1.5 * lo:
        _, sec = measure(make_fn(lo), (jax.random.key(0),), args.repeats)
        return compile_s, sec, lo
    _, sec = measure(make_fn(steps), (jax.random.key(0),), args.repeats)
    return compile_s, sec, steps


def bench_jaxgym(game: str, params: dict, batch: int, args, render: bool, per_call: bool = False) -> Row:
    """One jaxgym row. Step+render rows are timed in the steady state (a carried batch and
    frame buffer, :func:`carried_render_steps`) unless ``per_call``: then each timed call also
    resets the batch and allocates its frames (:func:`scan_steps`, the measurement before
    issue 30)."""
    env = jaxgym.AutoReset(jaxgym.make(game, **params, **args.game_extra))
    label = game + "".join(f" {k}={v}" for k, v in params.items())
    legal_of = lambda s: s.legal_action_mask  # noqa: E731

    def make_fn(steps: int) -> Callable:
        renderer = env.render if render else None
        return scan_steps(env.reset, env.step, legal_of, batch, steps, render=renderer, batch_step=env.step_batch)

    if render and not per_call:
        def init(key):
            state = jax.vmap(env.reset)(jax.random.split(key, batch))
            return state, jax.vmap(env.render)(state)

        compile_s, sec, steps = measure_carried(
            init, lambda n: carried_render_steps(env.step, legal_of, env.render, batch, n, env.step_batch), 2, 64, args
        )
    else:
        compile_s, sec, steps = measure_scan(make_fn, 2 if render else 4, 64 if render else 512, args)
    rate = batch * steps / sec
    if render and per_call:
        label += " (per call)"
    row = Row("jaxgym", label, batch, compile_s=compile_s, extra=dict(steps=steps, seconds=sec))
    if render:
        row.frames_per_s, row.image_hw = rate, list(env.image_size)
    else:
        row.steps_per_s = rate
    return row


def bench_pgx(batch: int, args) -> Row:
    import pgx
    from pgx.experimental import auto_reset

    env = pgx.make("2048")
    step = auto_reset(env.step, env.init)
    compile_s, sec, steps = measure_scan(
        lambda n: scan_steps(env.init, step, lambda s: s.legal_action_mask, batch, n), 4, 512, args
    )
    return Row(f"pgx {pgx.__version__}", "2048 size=4", batch, steps_per_s=batch * steps / sec, compile_s=compile_s)


def bench_jumanji_env(env: Any, label: str, batch: int, args, legal_of: Callable, to_action: Callable) -> Row:
    """Logic steps/s of a Jumanji env under its ``AutoResetWrapper``: ``legal_of(timestep)``
    is the flat legal mask the random actions are drawn from, ``to_action(flat)`` the
    action the env takes."""
    import jumanji
    from jumanji.wrappers import AutoResetWrapper

    env = AutoResetWrapper(env)

    def step(carry, action, key):
        state, _ = carry
        return env.step(state, to_action(action))

    compile_s, sec, steps = measure_scan(
        lambda n: scan_steps(env.reset, step, lambda c: legal_of(c[1]), batch, n), 4, 512, args
    )
    return Row(f"jumanji {jumanji.__version__}", label, batch, steps_per_s=batch * steps / sec, compile_s=compile_s)


def bench_jumanji(batch: int, args) -> Row:
    import jumanji

    return bench_jumanji_env(
        jumanji.make("Game2048-v1"), "2048 size=4", batch, args, lambda t: t.observation.action_mask, lambda a: a
    )


def bench_jumanji_sokoban(batch: int, args) -> Row:
    from jumanji.environments.routing.sokoban.env import Sokoban
    from jumanji.environments.routing.sokoban.generator import ToyGenerator

    row = bench_jumanji_env(
        Sokoban(generator=ToyGenerator()),
        "sokoban size=10 boxes=4",
        batch,
        args,
        lambda t: jnp.ones(t.reward.shape + (4,), bool),
        lambda a: a,
    )
    row.note = "random moves, toy levels"
    return row


def bench_jumanji_tetris(rows: int, cols: int, batch: int, args) -> Row:
    from jumanji.environments.packing.tetris.env import Tetris

    return bench_jumanji_env(
        Tetris(num_rows=rows, num_cols=cols),
        f"tetris rows={rows} cols={cols}",
        batch,
        args,
        lambda t: t.observation.action_mask.reshape(t.observation.action_mask.shape[:-2] + (-1,)),
        lambda a: jnp.stack([a // cols, a % cols]),
    )


def bench_gymnax_breakout(batch: int, args) -> Row:
    from importlib.metadata import version

    import gymnax

    env, params = gymnax.make("Breakout-MinAtar")

    def reset(key):
        obs, state = env.reset(key, params)
        return state, obs

    def step(carry, action, key):  # gymnax's step resets finished episodes itself
        obs, state, *_ = env.step(key, carry[0], action, params)
        return state, obs

    legal_of = lambda carry: jnp.ones((carry[1].shape[0], env.num_actions), bool)
    compile_s, sec, steps = measure_scan(lambda n: scan_steps(reset, step, legal_of, batch, n), 4, 512, args)
    return Row(
        f"gymnax {version('gymnax')} (MinAtar)", "breakout", batch, steps_per_s=batch * steps / sec,
        compile_s=compile_s, note="logic + 10x10x4 obs",
    )


def bench_gymnasium_2048(batch: int, args, render: bool) -> Row:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import gymnasium
    from gymnasium_2048.envs import TwentyFortyEightEnv

    mode = "rgb_array" if render else None
    venv = gymnasium.vector.SyncVectorEnv([lambda: TwentyFortyEightEnv(render_mode=mode) for _ in range(batch)])
    rng = np.random.default_rng(0)
    venv.reset(seed=0)
    steps = steps_for(batch, args.python_budget // (8 if render else 1), 2, 200)
    shape = None
    t0 = time.perf_counter()
    for _ in range(steps):
        # gymnasium-2048 exposes no legal mask: uniform random moves (illegal ones are no-ops).
        venv.step(rng.integers(0, 4, size=batch))
        if render:
            frames = venv.render()
            shape = list(np.asarray(frames[0]).shape[:2])
    sec = time.perf_counter() - t0
    venv.close()
    rate = batch * steps / sec
    row = Row(
        f"gymnasium-2048 (SyncVectorEnv{', rgb_array' if render else ''})", "2048 size=4", batch, note="random moves"
    )
    if render:
        row.frames_per_s, row.image_hw = rate, shape
    else:
        row.steps_per_s = rate
    return row


def bench_memory_fill(batch: int, image_hw: tuple[int, int], args) -> Row:
    frames = np.empty((batch, *image_hw, 3), np.uint8)
    frames.fill(1)  # fault the pages in before timing
    reps = max(3, int(args.render_budget // batch))
    best = float("inf")
    for i in range(reps):
        t0 = time.perf_counter()
        frames.fill(1 + i % 254)  # never 0: some CPUs write zeros faster than data
        best = min(best, time.perf_counter() - t0)
    return Row(
        "memory-fill (numpy)",
        f"frames {image_hw[0]}x{image_hw[1]}",
        batch,
        frames_per_s=batch / best,
        image_hw=list(image_hw),
    )


def available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.2f}"


def print_table(rows: list[Row]) -> None:
    head = ["library", "game", "batch", "steps/s", "frames/s", "image", "compile s", "note"]
    body = [
        [
            r.library,
            r.game,
            str(r.batch),
            fmt(r.steps_per_s),
            fmt(r.frames_per_s),
            "x".join(map(str, r.image_hw)) if r.image_hw else "-",
            fmt(r.compile_s),
            r.note,
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("-" * len(line))
    for b in body:
        print("  ".join(x.ljust(w) for x, w in zip(b, widths)))


def summarise(rows: list[Row]) -> list[str]:
    """The README's goal ratios, computed from this run's rows."""
    out = []
    by = {(r.library.split()[0], r.game, r.batch, r.frames_per_s is not None): r for r in rows}
    for batch in sorted({r.batch for r in rows}):
        ours = by.get(("jaxgym", "2048 size=4", batch, False))
        pgx_row = by.get(("pgx", "2048 size=4", batch, False))
        if ours and pgx_row:
            out.append(f"2048 logic, batch {batch}: {ours.steps_per_s / pgx_row.steps_per_s:.2f}x pgx")
    for r in rows:
        if r.library == "jaxgym" and r.frames_per_s is not None:
            fill = by.get(("memory-fill", f"frames {r.image_hw[0]}x{r.image_hw[1]}", r.batch, True))
            if fill:
                out.append(
                    f"{r.game} step+render, batch {r.batch}: {100 * r.frames_per_s / fill.frames_per_s:.0f}% "
                    f"of the memory-fill rate"
                )
            paper_ms = PAPER_MS_PER_RENDERED_STEP.get(r.game)
            if paper_ms:
                out.append(
                    f"{r.game} step+render {r.image_hw[0]}x{r.image_hw[1]}, batch {r.batch}: "
                    f"{1000 / r.frames_per_s:.4f} ms per env-step, "
                    f"{paper_ms * r.frames_per_s / 1000:,.0f}x fewer seconds than the paper's {paper_ms} ms"
                )
    return out


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, key, title in ((axes[0], "steps_per_s", "logic only"), (axes[1], "frames_per_s", "step + render")):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            v = getattr(r, key)
            if v is not None:
                series.setdefault(f"{r.library.split(' (')[0]}: {r.game}", []).append((r.batch, v))
        for name, pts in sorted(series.items()):
            pts.sort()
            style = "--" if name.startswith("memory-fill") else "-o"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name, markersize=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (boards)")
        ax.set_ylabel("steps/s" if key == "steps_per_s" else "frames/s")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"jaxgym throughput on {platform.node() or 'this machine'} ({jax.default_backend()})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_info() -> dict[str, Any]:
    return dict(
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        jax=jax.__version__,
        backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()],
        python=platform.python_version(),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--games", nargs="+", default=None, help="registered game names (default: all; --quick: 2048)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None, help=f"default {DEFAULT_BATCHES}")
    p.add_argument("--quick", action="store_true", help="a run of under a minute: 2048 and small budgets")
    p.add_argument("--no-peers", action="store_true", help="skip pgx, Jumanji, gymnasium-2048 and gymnax")
    p.add_argument("--json", type=Path, default=None, help="where to write the JSON rows (default: in the run dir)")
    p.add_argument("--run-dir", type=Path, default=None, help="default runs/throughput-<timestamp>")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument(
        "--image-size", type=int, nargs="+", default=None, help="frame size H [W] for every game (default: 448)"
    )
    p.add_argument("--render-only", action="store_true", help="only the step+render rows and their memory-fill rows")
    p.add_argument("--per-call", action="store_true",
                   help="also time step+render per call (each call resets the batch and allocates its frames)")
    args = p.parse_args(argv)
    known = jaxgym.registered_names()
    args.games = args.games or (["2048"] if args.quick else known)
    for g in args.games:
        if g not in known:
            p.error(f"unknown game {g!r}; registered: {', '.join(known)}")
    args.batch_sizes = args.batch_sizes or list(QUICK_BATCHES if args.quick else DEFAULT_BATCHES)
    if any(b < 1 for b in args.batch_sizes):
        p.error(f"batch sizes must be >= 1, got {args.batch_sizes}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.image_size is not None and len(args.image_size) not in (1, 2):
        p.error(f"--image-size takes H or H W, got {args.image_size}")
    args.game_extra = (
        {} if args.image_size is None else {"image_size": tuple(args.image_size * (3 - len(args.image_size)))}
    )
    # Work per measurement: env-steps for logic, frames for rendering, env-steps in Python.
    args.seconds = 0.1 if args.quick else 1.0  # per timed call
    args.render_budget = 2_000 if args.quick else 8_000
    args.python_budget = 2_000 if args.quick else 10_000
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    from tqdm import tqdm

    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = args.run_dir or Path("runs") / f"throughput-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or run_dir / "throughput.json"
    print(f"run directory: {run_dir}")
    info = machine_info()
    print(f"machine: {info['processor']}, {info['cpu_count']} cores, JAX {info['jax']} on {info['backend']}")

    mem = available_memory_bytes()
    tasks: list[tuple[str, Callable[[], Row | None]]] = []
    for game in args.games:
        for params in GAME_CONFIGS.get(game, [{}]):
            image_hw = jaxgym.make(game, **params, **args.game_extra).image_size
            frame_bytes = image_hw[0] * image_hw[1] * 3
            for b in args.batch_sizes:
                if not args.render_only:
                    tasks.append((f"{game} {params} b={b} logic",
                                  lambda g=game, p=params, b=b: bench_jaxgym(g, p, b, args, False)))
                if 2 * b * frame_bytes < 0.4 * mem:
                    if args.per_call:
                        tasks.append((f"{game} {params} b={b} render per call",
                                      lambda g=game, p=params, b=b: bench_jaxgym(g, p, b, args, True, per_call=True)))
                    tasks.append(
                        (
                            f"{game} {params} b={b} render",
                            lambda g=game, p=params, b=b: bench_jaxgym(g, p, b, args, True),
                        )
                    )
                    fill = f"memory fill {image_hw} b={b}"
                    if fill not in (name for name, _ in tasks):  # one reference row per frame size and batch
                        tasks.append((fill, lambda b=b, hw=image_hw: bench_memory_fill(b, hw, args)))
    if args.render_only:
        args.no_peers = True
    if not args.no_peers and "2048" in args.games:
        for b in args.batch_sizes:
            tasks.append((f"pgx b={b}", lambda b=b: bench_pgx(b, args)))
            tasks.append((f"jumanji b={b}", lambda b=b: bench_jumanji(b, args)))
            if b <= (16 if args.quick else 256):
                tasks.append((f"gymnasium-2048 b={b}", lambda b=b: bench_gymnasium_2048(b, args, False)))
                tasks.append((f"gymnasium-2048 render b={b}", lambda b=b: bench_gymnasium_2048(b, args, True)))
    if not args.no_peers and "sokoban" in args.games:
        for b in args.batch_sizes:
            tasks.append((f"jumanji sokoban b={b}", lambda b=b: bench_jumanji_sokoban(b, args)))
    if not args.no_peers and "tetris" in args.games:
        for params in GAME_CONFIGS["tetris"]:
            for b in args.batch_sizes:
                tasks.append(
                    (
                        f"jumanji tetris {params} b={b}",
                        lambda b=b, p=params: bench_jumanji_tetris(p["rows"], p["cols"], b, args),
                    )
                )

    if not args.no_peers and "breakout" in args.games:
        tasks += [(f"gymnax breakout b={b}", lambda b=b: bench_gymnax_breakout(b, args)) for b in args.batch_sizes]

    rows: list[Row] = []
    t_start = time.perf_counter()
    for _, task in tqdm(tasks, desc="benchmarks", unit="run"):
        rows.append(task())

    print()
    print_table(rows)
    summary = summarise(rows)
    if summary:
        print("\n" + "\n".join(summary))
    payload = dict(
        machine=machine_info(), command=" ".join(sys.argv), date=stamp, rows=[asdict(r) for r in rows], summary=summary
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2))
    plot_path = run_dir / "throughput.png"
    plot(rows, plot_path)
    print(f"\nwrote {json_path} and {plot_path} in {time.perf_counter() - t_start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
