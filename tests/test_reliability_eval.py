"""The evaluator against a misbehaving OpenAI-compatible server on 127.0.0.1: every failure
mode ends within its deadline, leaves a complete eval.json whose error counts say what
happened, and the exit status says whether the run is usable."""

from __future__ import annotations

import email.utils
import functools
import json
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bridges.evaluation import EvalResult, summary_table, write_json
from bridges.policies import OpenAIPolicy, PolicyError, RequestFailure
from learner import evaluate as evaluate_cli

REPO = Path(__file__).resolve().parents[1]
GOOD = "<answer>1</answer>"


def _reply(content: str) -> bytes:
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def _ok_headers(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length


def _reply_raw(payload: object) -> bytes:
    body = json.dumps(payload).encode()
    return _ok_headers(len(body)) + body


def _nested(depth: int) -> object:
    value: object = GOOD
    for _ in range(depth):
        value = [value]
    return value


def _huge_unannounced(sock: socket.socket) -> None:
    # No Content-Length: the body ends when the server closes, so only a cap while reading stops it.
    sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
    for _ in range(200):  # up to 200 MB, 1 MB at a time
        sock.sendall(b" " * 1_000_000)


# What the server does with a request, by mode. Each gets the socket after the request was read.
def _drip(sock: socket.socket) -> None:
    body = _reply(GOOD).split(b"\r\n\r\n", 1)[1]
    sock.sendall(_ok_headers(len(body)))
    for byte in body:  # one byte every 0.25 s: a per-read timeout never fires
        sock.sendall(bytes([byte]))
        time.sleep(0.25)


MODES = {
    "http500": lambda s: s.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}"),
    "invalid_json": lambda s: s.sendall(_ok_headers(9) + b"not json{"),
    "slow_drip": _drip,
    "hang": lambda s: time.sleep(30),
    "closed": lambda s: None,  # closes without a byte
    "invalid_utf8": lambda s: s.sendall(_ok_headers(5) + b'{"\xff\xfe"'),
    "truncated": lambda s: s.sendall(_ok_headers(1000) + _reply(GOOD).split(b"\r\n\r\n", 1)[1][:20]),
    "bad_status_line": lambda s: s.sendall(b"HTTP/1.1 abc what\r\n\r\n"),
    "surrogates": lambda s: s.sendall(_reply("\ud800 gar\udfffbage \x00 " + GOOD)),
    "ok": lambda s: s.sendall(_reply(GOOD)),
    "http404": lambda s: s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"),
    "http429_retry_after_1s": lambda s: s.sendall(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n{}"),
    "http503_retry_after_date": lambda s: s.sendall(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %s\r\nContent-Length: 2\r\n\r\n{}"
        % email.utils.formatdate(time.time() + 2, usegmt=True).encode()),
    "http429_retry_after_1h": lambda s: s.sendall(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3600\r\nContent-Length: 2\r\n\r\n{}"),
    "deep_json": lambda s: s.sendall(_ok_headers(200_000) + b"[" * 100_000 + b"]" * 100_000),
    "deep_content": lambda s: s.sendall(_reply_raw({"choices": [{"message": {"content": _nested(100)}}]})),
    "list_content": lambda s: s.sendall(_reply_raw({"choices": [{"message": {"content": [
        {"type": "text", "text": "<answer>"}, {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "1</answer>"}]}}]})),
    "null_content": lambda s: s.sendall(_reply_raw({"choices": [{"message": {"content": None}}]})),
    "int_content": lambda s: s.sendall(_reply_raw({"choices": [{"message": {"content": 7}}]})),
    "huge_announced": lambda s: s.sendall(_ok_headers(50_000_000) + b"x" * 1_000_000),
    "huge_unannounced": _huge_unannounced,
}


class MisbehavingServer:
    """A raw-socket HTTP server: ``mode(request_number)`` picks what each request gets."""

    def __init__(self, mode):
        self.mode = mode
        self.count = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, rest = data.split(b"\r\n\r\n", 1)
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                while len(rest) < length:
                    rest += self.request.recv(65536)
                with outer.lock:
                    number = outer.count
                    outer.count += 1
                try:
                    MODES[outer.mode(number)](self.request)
                except OSError:  # the client gave up: expected for the slow modes
                    pass

        socketserver.ThreadingTCPServer.daemon_threads = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _run_cli(tmp_path: Path, url: str, *extra: str) -> tuple[int, dict]:
    # A new --out each call: a directory that holds an eval.json is refused (exit 2).
    out = tmp_path / f"eval-{len(list(tmp_path.glob('eval*')))}"
    argv = ["--game", "2048", "--policy", f"openai:{url}", "--model", "m", "--runs", "2", "--steps", "2",
            "--image-size", "64", "--video", "none", "--quiet", "--out", str(out), "--timeout", "0.6",
            "--retries", "1", "--on-request-error", "unparseable", *extra]
    try:
        evaluate_cli.main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, json.loads((out / "eval.json").read_text(encoding="utf-8"))


IMAGE = np.zeros((8, 8, 3), np.uint8)
BROKEN_TRANSPORT = ("invalid_utf8", "truncated", "bad_status_line", "closed", "invalid_json", "slow_drip", "hang")


@pytest.mark.parametrize("mode", ["invalid_utf8", "truncated", "bad_status_line", "closed", "invalid_json"])
def test_transport_errors_are_retried_not_raised(mode):
    with MisbehavingServer(lambda n: mode if n == 0 else "ok") as server:
        policy = OpenAIPolicy(server.url, "m", retries=1, backoff=0.01, timeout=5)
        assert policy.complete("p", IMAGE) == GOOD
        policy.close()
    assert server.count == 2
    with MisbehavingServer(lambda n: mode) as server:
        lenient = OpenAIPolicy(server.url, "m", retries=1, backoff=0.01, timeout=5, on_error="unparseable")
        failed = lenient.complete("p", IMAGE)
        assert isinstance(failed, RequestFailure) and failed == "" and "2 attempt(s)" in failed.error
        lenient.close()


def test_timeout_is_a_wall_clock_deadline_per_attempt():
    with MisbehavingServer(lambda n: "slow_drip") as server:
        policy = OpenAIPolicy(server.url, "m", retries=1, backoff=0.01, timeout=0.5)
        start = time.perf_counter()
        with pytest.raises(PolicyError, match=r"2 attempt\(s\): timed out after 0.5s"):
            policy.complete("p", IMAGE)
        assert time.perf_counter() - start < 1.6  # two attempts of 0.5 s, not 0.25 s per byte forever


def _result(responses: list[list[str]]) -> EvalResult:
    """An EvalResult whose records carry ``responses`` (failures as RequestFailure)."""
    records = [[{"step": t, "response": str(text), "action": None, "answer": "unparseable", "legal": False,
                 "raw_reward": 0.0, "points": 0.0, "cumulative": 0.0, "episode_end": False, "format": 0,
                 "perception": 0, "request_error": getattr(text, "error", None)} for t, text in enumerate(run)]
               for run in responses]
    return EvalResult(game="2048-v0", policy="p", runs=len(responses), steps=len(responses[0]), seed=0, warmup=0,
                      eval_score="raw", records=records, scores=np.zeros(len(responses)))


def test_write_json_stores_any_model_text_and_never_truncates(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"previous": "result"}')
    text = "\ud800 lone \udfff surrogates, NUL \x00, emoji \U0001f600 <answer>up</answer>"
    write_json(_result([[text, "b"]]), path)
    data = json.loads(path.read_text(encoding="utf-8"))  # strict UTF-8 on disk
    assert data["runs"][0]["steps"][0]["response"] == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]  # no temporary file left


def test_request_errors_are_counted_per_run_and_make_the_result_unusable():
    failure = RequestFailure("request to x failed after 2 attempt(s): HTTP 500")
    outage = _result([[failure, failure], [failure, failure]])
    summary = outage.summary()
    assert summary["request_errors"] == 4 and summary["request_error_rate"] == 1.0
    assert summary["runs_without_a_successful_request"] == 2
    assert [t["request_errors"] for t in outage.run_totals()] == [2, 2]
    assert "no successful request" in evaluate_cli.unusable(outage, 0.1)
    assert "request errors: 4 of 4" in summary_table(outage)
    assert "first request error: request to x failed after 2 attempt(s): HTTP 500" in summary_table(outage)
    partial = _result([[failure, GOOD], [GOOD, GOOD]])
    assert partial.summary()["runs_without_a_successful_request"] == 0
    assert "1 of 4 requests failed (25% > --max-request-error-rate 0.1)" in evaluate_cli.unusable(partial, 0.1)
    assert evaluate_cli.unusable(partial, 0.5) == ""
    assert evaluate_cli.unusable(_result([[GOOD]]), 0.0) == ""


def test_evaluate_cli_refuses_bad_counts_in_one_line(capsys):
    for argv, message in ((["--runs", "0"], "runs=0 is out of range; allowed: >= 1"),
                          (["--warmup", "-5"], "warmup=-5 is out of range; allowed: >= 0"),
                          (["--steps", "x"], "steps='x' is not a valid int"),
                          (["--video", "avi"], "video='avi' is invalid; allowed: auto, mp4, gif, none"),
                          (["--runz", "3"], "unknown config key 'runz'; did you mean runs?")):
        with pytest.raises(SystemExit) as info:
            evaluate_cli.main(["--game", "2048", "--policy", "random", *argv])
        assert info.value.code == 2
        assert capsys.readouterr().err == f"error: {message}\n"
    with pytest.raises(ValueError, match="warmup=-5 is out of range"):
        from bridges.evaluation import evaluate

        evaluate(None, None, warmup=-5)


@pytest.mark.slow
def test_a_model_text_with_unpaired_surrogates_is_stored_in_a_complete_eval_json(tmp_path):
    with MisbehavingServer(lambda n: "surrogates") as server:
        code, data = _run_cli(tmp_path, server.url)
    assert code == 0
    response = data["runs"][0]["steps"][0]["response"]
    assert response == "\ud800 gar\udfffbage \x00 " + GOOD  # read back exactly what the model sent
    assert data["summary"]["request_errors"] == 0 and data["runs"][0]["steps"][0]["action"] == 1
    assert not list((tmp_path / "eval").glob(".*tmp"))


@pytest.mark.slow
def test_a_total_outage_is_counted_and_exits_non_zero(tmp_path, capsys):
    with MisbehavingServer(lambda n: "http500") as server:
        code, data = _run_cli(tmp_path, server.url)
    assert code == evaluate_cli.EXIT_UNUSABLE
    summary = data["summary"]
    assert summary["request_errors"] == 4 and summary["request_error_rate"] == 1.0
    assert summary["runs_without_a_successful_request"] == 2
    assert all(r["request_errors"] == 2 for r in data["runs"])
    assert all("HTTP 500" in s["request_error"] for r in data["runs"] for s in r["steps"])
    captured = capsys.readouterr()
    assert "request errors: 4 of 4 requests" in captured.out
    assert "no successful request" in captured.err


@pytest.mark.slow
def test_errors_above_the_threshold_exit_non_zero_below_it_not(tmp_path):
    # Request 0 of 4 fails (25%): above 0.1, below 0.5.
    with MisbehavingServer(lambda n: "http500" if n < 2 else "ok") as server:
        code, data = _run_cli(tmp_path, server.url, "--retries", "1", "--concurrency", "1")
    assert data["summary"]["request_errors"] == 1 and data["summary"]["runs_without_a_successful_request"] == 0
    assert code == evaluate_cli.EXIT_UNUSABLE
    with MisbehavingServer(lambda n: "http500" if n < 2 else "ok") as server:
        code, data = _run_cli(tmp_path, server.url, "--retries", "1", "--concurrency", "1",
                              "--max-request-error-rate", "0.5")
    assert code == 0 and data["summary"]["request_errors"] == 1


@pytest.mark.slow
def test_a_policy_error_stops_the_process_promptly(tmp_path):
    # One request fails for good (404) while the others hang (20 s timeout, 3 retries):
    # the process must end at once, not wait for them.
    first_request = []

    def mode(number):
        first_request.append(time.perf_counter())
        return "hang" if number else "http404"

    with MisbehavingServer(mode) as server:
        done = subprocess.run(
            [sys.executable, "learner/evaluate.py", "--game", "2048", "--policy", f"openai:{server.url}", "--model",
             "m", "--runs", "4", "--steps", "1", "--image-size", "64", "--video", "none", "--quiet", "--out",
             str(tmp_path / "eval"), "--timeout", "20", "--concurrency", "4"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )
        ended = time.perf_counter()
    assert done.returncode == 1, done.stderr
    assert "HTTP 404" in done.stderr and "Traceback" not in done.stderr
    # From the first request to the process's exit: no wait for the hanging requests' 20 s.
    assert ended - first_request[0] < 5, ended - first_request[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(set(BROKEN_TRANSPORT) | {"http500"}))
def test_every_failure_mode_ends_in_time_with_counted_errors(tmp_path, mode):
    start = time.perf_counter()
    with MisbehavingServer(lambda n: mode) as server:
        code, data = _run_cli(tmp_path, server.url)
    elapsed = time.perf_counter() - start
    # 2 steps x (2 attempts x 0.6 s + backoff 1 s) at most, plus the compile.
    assert elapsed < 20, elapsed
    assert code == evaluate_cli.EXIT_UNUSABLE
    summary = data["summary"]
    assert summary["request_errors"] == 4 and summary["runs_without_a_successful_request"] == 2
    assert len(data["runs"]) == 2 and all(len(r["steps"]) == 2 for r in data["runs"])
    assert all(s["request_error"] and s["action"] is None for r in data["runs"] for s in r["steps"])


# ---------------------------------------------------------------- round three: limits, non-text output, kept results


def _lenient(url: str, **options) -> OpenAIPolicy:
    return OpenAIPolicy(url, "m", retries=2, backoff=0.01, timeout=5, on_error="unparseable", **options)


@pytest.mark.parametrize("mode", ["deep_json", "deep_content"])
def test_a_deeply_nested_reply_is_a_counted_request_error_not_a_recursion_error(mode):
    with MisbehavingServer(lambda n: mode) as server:
        failed = _lenient(server.url).complete("p", IMAGE)
        assert isinstance(failed, RequestFailure) and "nested deeper than 64 levels" in failed.error
        assert server.count == 1  # refused for good, not retried
        strict = OpenAIPolicy(server.url, "m", retries=2, backoff=0.01, timeout=5)
        with pytest.raises(PolicyError, match="nested deeper than 64 levels"):
            strict.complete("p", IMAGE)


def test_message_content_as_parts_is_joined_and_non_text_content_is_a_request_error():
    with MisbehavingServer(lambda n: "list_content") as server:
        assert _lenient(server.url).complete("p", IMAGE) == GOOD  # the text parts, joined as OpenAI allows
    for mode, named in (("null_content", "content is None"), ("int_content", "content is int (7)")):
        with MisbehavingServer(lambda n, mode=mode: mode) as server:
            with pytest.warns(RuntimeWarning, match=re.escape(named)):
                failed = _lenient(server.url).complete("p", IMAGE)
        assert isinstance(failed, RequestFailure) and named in failed.error


@pytest.mark.parametrize("mode, seen", [("huge_announced", "announces 50000000 bytes"),
                                        ("huge_unannounced", "went past")])
def test_a_reply_over_the_size_limit_is_refused_while_it_is_read(mode, seen):
    with MisbehavingServer(lambda n: mode) as server:
        start = time.perf_counter()
        failed = _lenient(server.url, max_reply_bytes=100_000).complete("p", IMAGE)
        assert time.perf_counter() - start < 3  # not the 200 MB the server would send
    assert isinstance(failed, RequestFailure) and seen in failed.error and "100000-byte limit" in failed.error
    assert server.count == 1


def test_retry_after_is_honoured_in_seconds_and_as_a_date_up_to_the_deadline():
    for mode, least in (("http429_retry_after_1s", 0.9), ("http503_retry_after_date", 0.9)):
        times = []

        def record(n, mode=mode, times=times):
            times.append(time.perf_counter())
            return mode if n == 0 else "ok"

        with MisbehavingServer(record) as server:
            assert _lenient(server.url).complete("p", IMAGE) == GOOD
        assert times[1] - times[0] >= least, (mode, times)  # backoff alone would wait 0.01 s
    with MisbehavingServer(lambda n: "http429_retry_after_1h") as server:
        start = time.perf_counter()
        failed = _lenient(server.url).complete("p", IMAGE)
    assert time.perf_counter() - start < 2 and server.count == 1
    assert "retry after 3600s, beyond the 5s timeout" in failed.error


@functools.cache
def _two_boards():  # one env for these tests: the evaluator's compiled step is cached per env
    import jaxgym

    return jaxgym.make("2048", image_size=56)


def test_non_text_responses_become_request_errors_naming_what_came_back():
    from bridges.evaluation import checked_responses

    with pytest.warns(RuntimeWarning) as caught:
        checked = checked_responses(["ok", b"up", None], "p")
    assert [str(w.message) for w in caught] == [
        "policy p returned bytes (b'up') for board 1, not a response text; counted as a request error",
        "policy p returned None for board 2, not a response text; counted as a request error"]
    assert checked[0] == "ok" and not isinstance(checked[0], RequestFailure)
    assert [type(c) for c in checked[1:]] == [RequestFailure, RequestFailure] and checked[1:] == ["", ""]
    assert "returned None for board 2" in checked[2].error


@pytest.mark.slow
@pytest.mark.parametrize("returned, named", [(b"<answer>1</answer>", "bytes (b'<answer>1</answer>')"),
                                             (None, "returned None"), (3, "int (3)")])
def test_a_callable_policy_returning_non_text_is_a_counted_request_error(returned, named):
    from bridges.evaluation import evaluate
    from bridges.policies import CallablePolicy

    policy = CallablePolicy(lambda images, prompts: [returned, GOOD], name="odd")
    with pytest.warns(RuntimeWarning, match=r"policy odd returned .*for board 0"):
        result = evaluate(_two_boards(), policy, runs=2, steps=2, seed=0)
    summary = result.summary()
    assert summary["request_errors"] == 2 and summary["runs_without_a_successful_request"] == 1
    assert all(named in rec["request_error"] for rec in result.records[0])
    assert result.records[1][0]["request_error"] is None and result.records[1][0]["action"] == 1
    assert "no successful request" in evaluate_cli.unusable(result, 0.1)


@pytest.mark.slow
def test_a_stopped_evaluation_hands_over_the_whole_steps_it_did():
    from bridges.evaluation import evaluate
    from bridges.policies import CallablePolicy

    calls = []

    def fails_third(images, prompts):
        calls.append(1)
        if len(calls) == 3:
            raise PolicyError("server gone")
        return ["x" * 100_000, GOOD]

    kept = []
    with pytest.raises(PolicyError, match="server gone"):
        evaluate(_two_boards(), CallablePolicy(fails_third), runs=2, steps=5, seed=0,
                 on_stop=lambda partial, error: kept.append((partial, error)))
    (partial, error), = kept
    assert isinstance(error, PolicyError) and partial.steps == 2 and partial.stopped == "policy error: server gone"
    assert [len(run) for run in partial.records] == [2, 2] and partial.cumulative.shape == (2, 2)
    data = partial.to_json()
    assert data["complete"] is False and data["stopped"] == "policy error: server gone"
    first = data["runs"][0]["steps"][0]
    assert len(first["response"]) == 32_768 and first["response_cut"] == 100_000 - 32_768  # eval.json stays small
    assert "response_cut" not in data["runs"][1]["steps"][0]


@pytest.mark.parametrize("argv, message", [
    (["--timeout", "inf"], "timeout=inf is out of range; allowed: a finite number of seconds > 0"),
    (["--timeout", "nan"], "timeout=nan is out of range"),
    (["--temperature", "nan"], "temperature=nan is out of range; allowed: a finite number >= 0"),
    (["--max_tokens", "-5"], "max_tokens=-5 is out of range; allowed: >= 1"),
    (["--max_request_error_rate", "nan"], "max_request_error_rate=nan is out of range"),
])
def test_invalid_numbers_are_refused_at_parse_time_naming_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        evaluate_cli.main(["--game", "2048", "--policy", "random", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith(f"error: {message}") and len(err.splitlines()) == 1, err


def test_non_finite_reward_weights_are_refused_where_they_are_read():
    from bridges.protocol import protocol_for
    from bridges.scoring import GroupScorer
    from learner.config import TrainConfig

    with pytest.raises(ValueError, match=r"w_game=nan must be a finite number"):
        GroupScorer(_two_boards(), w_game=float("nan"))
    with pytest.raises(ValueError, match=r"w_perception=inf must be a finite number"):
        protocol_for("2048").replace(w_perception=float("inf"))
    with pytest.raises(ValueError, match=r"w_format=nan is invalid; allowed: a finite number"):
        TrainConfig(w_format=float("nan")).validate()


def test_out_that_holds_an_eval_json_is_refused_and_a_claim_is_exclusive(tmp_path, capsys):
    out = tmp_path / "done"
    out.mkdir()
    (out / "eval.json").write_text('{"kept": true}')
    with pytest.raises(SystemExit) as info:
        evaluate_cli.main(["--game", "2048", "--policy", "random", "--out", str(out)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "already holds an evaluation (eval.json)" in err and str(out) in err
    assert (out / "eval.json").read_text() == '{"kept": true}'
    from bridges.evaluation import claim_run_dir

    fresh = tmp_path / "fresh"
    assert claim_run_dir(str(fresh), "2048", "random") == fresh  # of two claims of one --out, one wins
    with pytest.raises(ValueError, match="already holds an evaluation"):
        claim_run_dir(str(fresh), "2048", "random")


def _eval_process(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "learner/evaluate.py"), "--game", "2048", "--image-size", "56",
                           "--video", "none", "--quiet", "--out", str(tmp_path / "eval"), *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_a_server_that_404s_after_six_requests_leaves_the_steps_done(tmp_path):
    with MisbehavingServer(lambda n: "ok" if n < 6 else "http404") as server:
        done = _eval_process(tmp_path, "--policy", f"openai:{server.url}", "--model", "m", "--runs", "2",
                             "--steps", "10", "--concurrency", "1", "--timeout", "5")
    assert done.returncode == 1, done.stderr
    assert "HTTP 404" in done.stderr and "Traceback" not in done.stderr
    assert "stopped after 3 of 10 steps (policy error)" in done.stderr
    data = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert data["complete"] is False and "HTTP 404" in data["stopped"]
    assert data["summary"]["steps"] == 3 and [len(r["steps"]) for r in data["runs"]] == [3, 3]
    assert data["config"]["steps_requested"] == 10
    assert all(s["action"] == 1 for r in data["runs"] for s in r["steps"])


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, reason", [(signal.SIGINT, 130, "interrupted (SIGINT, Ctrl-C)"),
                                               (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_and_sigterm_keep_the_steps_done_and_exit_in_one_line(tmp_path, sig, code, reason):
    # The policy signals its own process on its 4th call: the signal lands mid-run, as a user's would.
    policy = tmp_path / "signalling.py"
    policy.write_text(
        "import os, signal\ncalls = []\n"
        "def answer(images, prompts):\n"
        "    calls.append(1)\n"
        f"    if len(calls) == 4:\n        os.kill(os.getpid(), {int(sig)})\n"
        "    return ['<answer>1</answer>'] * len(prompts)\n")
    done = _eval_process(tmp_path, "--policy", f"{policy}:answer", "--runs", "2", "--steps", "50")
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    data = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert data["complete"] is False and data["stopped"] == reason
    assert 3 <= data["summary"]["steps"] < 50 and len(data["runs"][0]["steps"]) == data["summary"]["steps"]
    assert f"stopped after {data['summary']['steps']} of 50 steps" in done.stderr
