"""``python -m bridges.serve --game G`` (or ``jaxgym-serve``): serve a jaxgym game as an OpenEnv
environment; see ``docs/serving.md``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bridges.serve",
                                     description="Serve a jaxgym game as an OpenEnv environment (HTTP + /ws sessions); "
                                                 "all sessions' moves run in one batched, vmapped call.")
    parser.add_argument("--game", required=True, help="a registered game, e.g. shisensho, 2048, swap")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a game parameter, repeatable (--param size=6); values are JSON where they parse")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-sessions", type=int, default=1024, help="concurrent sessions (device pool slots)")
    parser.add_argument("--batch-window-ms", type=float, default=2.0,
                        help="how long a request waits for others to share its batch")
    parser.add_argument("--idle-timeout-s", type=float, default=600.0,
                        help="a session idle this long is closed and its slot freed (0: never)")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="largest WebSocket message accepted; larger closes the connection (code 1009)")
    parser.add_argument("--serial", action="store_true",
                        help="one session at a time, no batching (the benchmark's baseline)")
    parser.add_argument("--no-warmup", action="store_true", help="compile the batch sizes on first use instead")
    args = parser.parse_args(argv)
    if args.max_sessions < 1:
        parser.error(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if args.batch_window_ms < 0:
        parser.error(f"--batch-window-ms must be >= 0, got {args.batch_window_ms}")
    if args.max_message_bytes < 1024:
        parser.error(f"--max-message-bytes must be >= 1024, got {args.max_message_bytes}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import jaxgym
    from bridges.protocol import parse_game_params

    try:
        env = jaxgym.make(args.game, **parse_game_params(args.param))
    except (ValueError, TypeError) as error:  # an unknown game or parameter: the message names it
        raise SystemExit(f"--game {args.game} {' '.join('--param ' + p for p in args.param)}: {error}") from error

    import uvicorn

    from bridges.serve.app import build_app
    from bridges.serve.engine import BatchEngine

    engine = BatchEngine(env, max_sessions=args.max_sessions, window_ms=args.batch_window_ms, serial=args.serial)
    if not args.no_warmup:
        start = time.perf_counter()
        engine.warmup()
        print(f"compiled batch sizes {engine.buckets} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    idle = args.idle_timeout_s if args.idle_timeout_s > 0 else None
    app = build_app(engine, idle_timeout_s=idle)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    print(f"serving {env.id} on http://{args.host}:{args.port} (ws /ws, max {args.max_sessions} sessions)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, ws_max_size=args.max_message_bytes, log_level="warning")
    engine.close()


if __name__ == "__main__":
    main()
