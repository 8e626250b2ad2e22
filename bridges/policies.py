"""Policies for evaluation: boards in, response texts out.

Every policy is called once per evaluation step with an :class:`Observation` of the k
parallel runs and returns k response strings, which the evaluator parses with
``env.parse_answer`` like any model's text, so baselines and models share one pipeline.

``make_policy(spec, env, ...)`` builds one from a string:

- ``random``: uniform over the game's answer space, i.e. answers a person could type
  (2048: a direction 0..3; pair games: two uniformly random cells of the board). See
  ``GameProtocol.random_answer``.
- ``legal-random``: uniform over the legal actions.
- ``greedy``: the legal action with the best immediate raw reward, ties broken at random.
- ``openai:<base_url>``: an OpenAI-compatible chat-completions server (``vllm serve``,
  ...) given ``model=``; images go as base64 PNG data URLs, requests run concurrently,
  with timeouts and retries. The API key is read from the environment (``api_key_env``).
- ``hf:<path>``: a local transformers checkpoint, batched generation (``learner.hf_policy``,
  registered when the learner is imported: policies from a layer above register themselves
  with :func:`register_policy`, bridges never imports them).
- ``module:function``: any callable ``(images, prompts) -> responses`` where ``images``
  is a read-only ``(k, H, W, 3)`` uint8 numpy array and ``prompts`` k strings.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import http.client
import importlib
import importlib.util
import io
import json
import math
import os
import socket
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bridges.protocol import GameProtocol, protocol_for
from bridges.safe_json import loads_bounded
from bridges.sampler import random_action
from bridges.torch_io import images_to_numpy
from jaxgym.core import Env, PRNGKey, State

BUILTIN = ("random", "legal-random", "greedy")


@dataclass
class Observation:
    """What a policy sees at one evaluation step, for k parallel runs.

    Attributes:
        images: ``(k, H, W, 3)`` uint8 JAX array, the rendered boards (never modify it).
        prompts: k prompt strings.
        states: the k game states (a batched pytree): baselines read legal masks from it;
            a model policy must not (it sees only the images and prompts).
        key: a JAX key for this step's randomness.
    """

    images: jax.Array
    prompts: list[str]
    states: State
    key: PRNGKey

    @property
    def size(self) -> int:
        return len(self.prompts)


class Policy:
    """Base class: ``policy(observation) -> list of k response strings``."""

    name: str = "policy"

    def __call__(self, obs: Observation) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (threads, models)."""


class PolicyError(RuntimeError):
    """A policy could not produce responses (a server down, a bad callable)."""


class RequestFailure(str):
    """The response of a request that failed every attempt: empty text (scored as an
    unparseable answer) that carries the failure in ``error``, so the evaluator can count
    request errors apart from answers a model really gave."""

    error: str

    def __new__(cls, error: str) -> RequestFailure:
        failure = super().__new__(cls, "")
        failure.error = error
        return failure


# Compiled programs are cached per env, so policies rebuilt for every evaluation (a learner
# evaluating every N updates) compile once.
@functools.lru_cache(maxsize=32)
def _legal_pick_fn(env: Env) -> Callable[..., jax.Array]:
    num_actions = env.num_actions
    return jax.jit(jax.vmap(lambda s, k: random_action(s, k, "legal", num_actions)))


@functools.lru_cache(maxsize=32)
def _candidate_rewards_fn(env: Env) -> Callable[..., jax.Array]:
    def rewards(state: State, candidates: jax.Array, key: PRNGKey) -> jax.Array:
        return jax.vmap(env.step, in_axes=(None, 0, None))(state, candidates, key).reward

    return jax.jit(jax.vmap(rewards))


class RandomPolicy(Policy):
    """Uniform over the answer space of the game (``GameProtocol.random_answer``)."""

    name = "random"

    def __init__(self, env: Env, protocol: GameProtocol | None = None, seed: int = 0):
        self.env = env
        self.answer = (protocol or protocol_for(env)).random_answer
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Observation) -> list[str]:
        if self.answer is not None:
            return list(self.answer(self.env, self.rng, obs.size))
        return [self.env.format_answer(int(a)) for a in self.rng.integers(0, self.env.num_actions, obs.size)]


class LegalRandomPolicy(Policy):
    """Uniform over the legal actions (uniform over all where none is legal)."""

    name = "legal-random"

    def __init__(self, env: Env):
        self.env = env
        self._pick = _legal_pick_fn(env)

    def __call__(self, obs: Observation) -> list[str]:
        actions = self._pick(obs.states, jax.random.split(obs.key, obs.size))
        return [self.env.format_answer(int(a)) for a in np.asarray(actions)]


class GreedyPolicy(Policy):
    """The legal action with the best immediate raw reward; ties broken uniformly at random.

    Only legal actions are stepped (gathered on the host and padded to a power of two, so a
    game with many flat actions costs what its legal moves cost), each with the same key."""

    name = "greedy"

    def __init__(self, env: Env):
        self.env = env
        self._rewards = _candidate_rewards_fn(env)

    def __call__(self, obs: Observation) -> list[str]:
        mask = np.asarray(obs.states.legal_action_mask)
        legal = [np.flatnonzero(row) for row in mask]
        width = 1 << max(0, int(max(len(c) for c in legal) - 1).bit_length())
        candidates = np.zeros((obs.size, width), np.int32)
        valid = np.zeros((obs.size, width), bool)
        for i, c in enumerate(legal):
            if len(c) == 0:  # a finished board: any action is as good as another
                c = np.arange(min(self.env.num_actions, width))
            candidates[i, : len(c)] = c
            candidates[i, len(c) :] = c[0]
            valid[i, : len(c)] = True
        step_key, tie_key = jax.random.split(obs.key)
        rewards = np.asarray(self._rewards(obs.states, jnp.asarray(candidates), jax.random.split(step_key, obs.size)))
        rewards = np.where(valid, rewards, -np.inf)
        best = valid & (rewards == rewards.max(axis=1, keepdims=True))
        noise = np.asarray(jax.random.uniform(tie_key, best.shape))
        choice = np.argmax(np.where(best, noise, -1.0), axis=1)
        return [self.env.format_answer(int(candidates[i, j])) for i, j in enumerate(choice)]


class CallablePolicy(Policy):
    """Wraps ``fn(images, prompts) -> responses`` (images a read-only numpy batch)."""

    def __init__(self, fn: Callable[[np.ndarray, list[str]], Sequence[str]], name: str = "callable"):
        self.fn = fn
        self.name = name

    def __call__(self, obs: Observation) -> list[str]:
        responses = self.fn(images_to_numpy(obs.images), list(obs.prompts))
        if isinstance(responses, str) or not isinstance(responses, Sequence) or len(responses) != obs.size:
            raise PolicyError(
                f"policy {self.name} must return a list of {obs.size} strings (one per image), got "
                f"{type(responses).__name__}"
                + (f" of length {len(responses)}" if hasattr(responses, "__len__") else "")
            )
        # A non-string response becomes a counted request error where every policy's responses are checked
        # (bridges.evaluation.checked_responses), never a silent empty answer.
        return list(responses)


def png_data_url(image: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL of one ``(H, W, 3)`` uint8 image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(prompt: str, image_url: str) -> list[dict[str, Any]]:
    """One user turn with the board image and the prompt, in the OpenAI chat format."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": prompt},
            ],
        }
    ]


RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
READ_CHUNK = 1 << 16


MAX_REPLY_BYTES = 8 * 1024 * 1024  # a chat completion of a few thousand tokens is kilobytes


def not_text(value: Any) -> str:
    """What came back instead of a response text, for an error message.

    >>> not_text(None), not_text(b"up"), not_text(3)
    ('None', "bytes (b'up')", 'int (3)')
    """
    if value is None:
        return "None"
    shown = repr(value)
    return f"{type(value).__name__} ({shown[:80]}{'...' if len(shown) > 80 else ''})"


def message_text(content: Any) -> str | None:
    """The text of an OpenAI chat message's ``content``: a string as it is, a list of parts as its
    ``{"type": "text", "text": ...}`` parts joined (the API allows both); None for anything else.

    >>> message_text([{"type": "text", "text": "<answer>"}, {"type": "text", "text": "up</answer>"}])
    '<answer>up</answer>'
    >>> message_text(None) is None, message_text([{"type": "image_url"}]) is None
    (True, True)
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part["text"] for part in content
                 if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)]
        if texts:
            return "".join(texts)
    return None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP date), None if absent
    or unreadable; a date in the past is 0.

    >>> retry_after_seconds("7"), retry_after_seconds("soon"), retry_after_seconds(None)
    (7.0, None, None)
    >>> retry_after_seconds("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0)
    60.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _StatusError(Exception):
    def __init__(self, code: int, reason: str, detail: bytes, retry_after: float | None = None):
        super().__init__(f"HTTP {code} {reason}: {detail[:300].decode('utf-8', 'replace')}")
        self.code = code
        self.retry_after = retry_after


class _ReplyRefused(Exception):
    """A reply that is no use however often it is asked for: too large, too deep, not text."""


class _DeadlineExceeded(Exception):
    pass


class _Cancelled(Exception):
    pass


class OpenAIPolicy(Policy):
    """An OpenAI-compatible ``/chat/completions`` server (standard library HTTP only).

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is
            appended unless the URL already ends with it).
        model: the served model name.
        api_key_env: environment variable holding the API key (sent as a Bearer token if
            set; local servers usually need none).
        max_tokens, temperature: sampling settings sent with every request.
        concurrency: requests in flight at once (a thread pool).
        timeout: seconds per request attempt, a wall-clock deadline from connecting to the
            last byte of the reply (a server that drips bytes is cut off too).
        retries: further attempts after a failed one (connection errors, timeouts, HTTP 408,
            409, 425, 429 and 5xx, and replies that are broken in transport: bad status
            lines, truncated bodies, bodies that are not UTF-8 or not JSON), with exponential
            backoff from ``backoff`` seconds, or after the server's ``Retry-After`` (seconds or an
            HTTP date) where it sends one, unless that is beyond ``timeout``.
        max_reply_bytes: a longer reply is refused while it is read (a request error, not retried),
            as are replies whose JSON nests deeper than ``bridges.safe_json.MAX_DEPTH`` levels and
            message contents that are not text (a list of parts is joined from its text parts).
        on_error: ``"raise"`` (a :class:`PolicyError` naming the URL and the last failure; the
            requests still in flight are aborted at once) or ``"unparseable"`` (the failed
            request's response is a :class:`RequestFailure`, empty text scored as an
            unparseable answer, and the error is kept in ``self.errors``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 2048,
        temperature: float = 0.0,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        on_error: str = "raise",
        extra_body: dict[str, Any] | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"openai base URL must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError(
                "an openai: policy needs a model name (--model NAME, as the server lists it at /v1/models)"
            )
        if on_error not in ("raise", "unparseable"):
            raise ValueError(f"on_error={on_error!r} is not one of ('raise', 'unparseable')")
        if concurrency < 1 or retries < 0 or not 0 < timeout < math.inf or max_reply_bytes < 1:
            raise ValueError(f"need concurrency >= 1, retries >= 0, a finite timeout > 0, max_reply_bytes >= 1; got "
                             f"{concurrency}, {retries}, {timeout}, {max_reply_bytes}")
        if not math.isfinite(temperature) or temperature < 0 or max_tokens < 1:
            raise ValueError(f"need a finite temperature >= 0 and max_tokens >= 1; got {temperature}, {max_tokens}")
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.name = f"openai-{model}"
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.max_reply_bytes = int(max_reply_bytes)
        self.on_error = on_error
        self.extra_body = dict(extra_body or {})
        self.errors: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai-policy")
        self._live: set[http.client.HTTPConnection] = set()  # connections in flight, aborted by close()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def request_body(self, prompt: str, image: np.ndarray) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": chat_messages(prompt, png_data_url(image)),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            **self.extra_body,
        }

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return kind(parts.hostname, parts.port, timeout=self.timeout), path

    @staticmethod
    def _abort(connection: http.client.HTTPConnection) -> None:
        """Unblock whatever the connection's thread is waiting on (connect, send or recv)."""
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _post(self, body: bytes) -> dict[str, Any]:
        """One attempt: POST ``body`` and return the decoded JSON reply, within ``timeout``
        seconds of wall-clock time however slowly the server sends."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        connection, path = self._connection()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self._abort(connection)

        # A per-read socket timeout never fires for a server that sends a byte now and then:
        # the timer shuts the socket down at the deadline, whatever the thread is blocked on.
        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        with self._lock:
            if self._stop.is_set():
                raise _Cancelled()
            self._live.add(connection)
        timer.start()
        try:
            connection.connect()
            with self._lock:  # close() may have run while connecting, when there was no socket to shut down
                if self._stop.is_set():
                    raise _Cancelled()
            connection.request("POST", path, body=body, headers=headers)
            reply = connection.getresponse()
            if reply.length is not None and reply.length > self.max_reply_bytes:
                raise _ReplyRefused(self._too_large(f"announces {reply.length} bytes"))
            chunks, size = [], 0
            while not expired.is_set():
                chunk = reply.read1(READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_reply_bytes:  # refused while reading: a huge reply is never held whole
                    raise _ReplyRefused(self._too_large(f"went past {size} bytes"))
                chunks.append(chunk)
            if not expired.is_set() and reply.length:  # the server closed before Content-Length bytes
                raise http.client.IncompleteRead(b"".join(chunks), reply.length)
            data = b"".join(chunks)
        except (_Cancelled, _ReplyRefused):
            raise
        except Exception:
            if self._stop.is_set():
                raise _Cancelled() from None
            if expired.is_set():
                raise _DeadlineExceeded() from None
            raise
        finally:
            timer.cancel()
            with self._lock:
                self._live.discard(connection)
            connection.close()
        if self._stop.is_set():
            raise _Cancelled()
        if expired.is_set():
            raise _DeadlineExceeded()
        if reply.status >= 400:
            raise _StatusError(reply.status, reply.reason, data, retry_after_seconds(reply.getheader("Retry-After")))
        text = data.decode("utf-8")
        try:
            return loads_bounded(text, max_bytes=self.max_reply_bytes)
        except json.JSONDecodeError:
            raise
        except ValueError as error:  # the limits: a reply nested too deep
            raise _ReplyRefused(f"the reply is refused: {error}") from None

    def _too_large(self, seen: str) -> str:
        return (f"the reply is refused: it {seen}, over the {self.max_reply_bytes}-byte limit (max_reply_bytes; "
                f"a chat completion is far smaller)")

    def complete(self, prompt: str, image: np.ndarray) -> str:
        """One chat completion's text, retrying transient failures (see class doc)."""
        body = json.dumps(self.request_body(prompt, image)).encode("utf-8")
        failure = "no attempt made"
        delay = None  # the server's Retry-After, where the last reply had one
        for attempt in range(self.retries + 1):
            wait_s = self.backoff * 2 ** (attempt - 1) if delay is None else delay
            if attempt and self._stop.wait(wait_s):
                failure = "cancelled (the evaluation stopped)"
                break
            delay = None
            try:
                reply = self._post(body)
            except _Cancelled:
                failure = "cancelled (the evaluation stopped)"
                break
            except _ReplyRefused as error:
                failure = str(error)
                break
            except _StatusError as error:
                failure = str(error)
                if error.code not in RETRY_STATUS:
                    break
                if error.retry_after is not None and attempt < self.retries:
                    if error.retry_after > self.timeout:  # honoured up to the request's deadline, no further
                        failure += (f" (the server asks to retry after {error.retry_after:g}s, beyond the "
                                    f"{self.timeout:g}s timeout)")
                        break
                    delay = error.retry_after
                continue
            except _DeadlineExceeded:
                failure = f"timed out after {self.timeout:g}s"
                continue
            except UnicodeDecodeError as error:
                failure = f"the reply is not UTF-8 text ({error})"
                continue
            except json.JSONDecodeError as error:
                failure = f"the reply is not JSON ({error})"
                continue
            except http.client.IncompleteRead as error:
                failure = f"the reply was cut off ({len(error.partial)} bytes, {error.expected} more expected)"
                continue
            except http.client.HTTPException as error:  # bad status line, closed connection, ...
                failure = f"broken HTTP reply ({type(error).__name__}: {str(error)[:200]})"
                continue
            except (TimeoutError, OSError) as error:  # refused, reset, unreachable, DNS
                reason = getattr(error, "reason", None) or error.strerror or error
                failure = f"timed out after {self.timeout:g}s" if isinstance(error, TimeoutError) else f"{reason}"
                continue
            try:
                content = reply["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                failure = f"the reply has no choices[0].message.content: {json.dumps(reply)[:300]}"
                break
            text = message_text(content)
            if text is not None:
                return text
            failure = f"the reply's message content is {not_text(content)}, not text"
            warnings.warn(f"{self.url}: {failure}; counted as a request error", RuntimeWarning, stacklevel=2)
            break
        message = f"request to {self.url} (model {self.model!r}) failed after {attempt + 1} attempt(s): {failure}"
        if self.on_error == "raise":
            raise PolicyError(message + " (check that the server is up and serves this model; "
                              "--on-request-error unparseable scores failed requests as unparseable instead)")
        with self._lock:
            self.errors.append(message)
        return RequestFailure(message)

    def __call__(self, obs: Observation) -> list[str]:
        images = images_to_numpy(obs.images)
        futures = [self._pool.submit(self.complete, p, image) for p, image in zip(obs.prompts, images, strict=True)]
        try:
            # The first failure ends the wait, in whatever order the requests finish.
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f.exception() for f in done if f.exception() is not None), None)
            if failed is not None:
                raise failed
            return [f.result() for f in futures]
        except BaseException:
            # Stop now: without this the process waits for every request still in flight.
            for f in futures:
                f.cancel()
            self.close()
            raise

    def close(self) -> None:
        """Cancel queued requests and abort the ones in flight (their threads end at once)."""
        self._stop.set()
        with self._lock:
            live = list(self._live)
        for connection in live:
            self._abort(connection)
        self._pool.shutdown(wait=False, cancel_futures=True)


def load_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` (or ``path/to/file.py:function``) to the callable."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"a callable policy is 'module:function', got {spec!r}")
    if module_name.endswith(".py"):
        spec_obj = importlib.util.spec_from_file_location(os.path.basename(module_name)[:-3], module_name)
        if spec_obj is None or spec_obj.loader is None or not os.path.exists(module_name):
            raise ValueError(f"cannot load {module_name!r}: no such Python file")
        module = importlib.util.module_from_spec(spec_obj)
        spec_obj.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"cannot import module {module_name!r} for policy {spec!r}: {error}") from error
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (policy {spec!r})")
    if not callable(fn):
        raise ValueError(f"{spec!r} is not callable")
    return fn


PolicyFactory = Callable[..., Policy]
"""``factory(rest, env, *, seed, model, **options) -> Policy`` for a spec ``<kind>:<rest>``."""

_POLICY_KINDS: dict[str, PolicyFactory] = {}


def register_policy(kind: str, factory: PolicyFactory) -> None:
    """Make ``make_policy("<kind>:<rest>", ...)`` call ``factory``.

    This is how a layer above bridges adds a policy without bridges importing it: the learner
    registers ``hf:`` when ``learner.hf_policy`` is imported (``learner/evaluate.py`` does).
    Registering a kind again replaces it, so a module reloaded in a test stays registered.
    """
    if not kind.isidentifier() or kind in BUILTIN:
        raise ValueError(f"policy kind {kind!r} is invalid; it must be an identifier other than {', '.join(BUILTIN)}")
    _POLICY_KINDS[kind] = factory


def policy_kinds() -> tuple[str, ...]:
    """The ``<kind>:`` prefixes ``make_policy`` knows now (registered ones included)."""
    return tuple(_POLICY_KINDS)


def _openai_policy(base_url: str, env: Env, *, seed: int, model: str | None, **options: Any) -> Policy:
    return OpenAIPolicy(base_url, model or "", **options)


register_policy("openai", _openai_policy)


def make_policy(spec: str, env: Env, *, seed: int = 0, model: str | None = None, **options: Any) -> Policy:
    """Build a policy from its spec string (see module doc). ``options`` go to the policy
    its kind names: the OpenAI policy (``api_key_env``, ``max_tokens``, ``temperature``,
    ``concurrency``, ``timeout``, ``retries``, ``on_error``), a registered one (``hf:``:
    ``max_new_tokens``, ``batch_size``, ...)."""
    if spec == "random":
        return RandomPolicy(env, seed=seed)
    if spec == "legal-random":
        return LegalRandomPolicy(env)
    if spec == "greedy":
        return GreedyPolicy(env)
    kind, sep, rest = spec.partition(":")
    if sep and kind in _POLICY_KINDS:
        return _POLICY_KINDS[kind](rest, env, seed=seed, model=model, **options)
    if sep:
        try:
            return CallablePolicy(load_callable(spec), name=spec.rpartition(":")[2])
        except ValueError as error:
            if kind != "hf":
                raise
            raise ValueError(
                f"policy {spec!r}: no policy kind 'hf' is registered ({error}); the learner registers it: "
                f"import learner.hf_policy first, or run python learner/evaluate.py"
            ) from None
    raise ValueError(
        f"unknown policy {spec!r}; use one of {', '.join(BUILTIN)}, "
        f"{', '.join(f'{k}:<...>' for k in _POLICY_KINDS)} (openai: with --model), or module:function"
    )
