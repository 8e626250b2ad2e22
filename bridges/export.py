"""Training states as a Hugging Face dataset for other trainers (TRL, EasyR1, verl, OpenRLHF).

    ds = to_dataset("shisensho", 256, seed=0)                         # in memory
    to_dataset("2048", 1000, seed=0, out="exports/2048")              # streamed to parquet
    python -m bridges.export --game shisensho --states 1000 --out exports/shisensho

States come from ``bridges.sampler.StateSampler`` in its ``"paper"`` mode by default, i.e.
exactly as the learner samples them (the game's warm-up protocol from ``bridges.protocol``),
``batch_size`` states per jitted call: with ``seed=s`` and ``batch_size=b`` the rows are the
states the learner draws with a sampler seed ``s`` and ``states_per_step=b`` on one rank. The
same arguments give the same rows, byte for byte.

One row per state (see :data:`COLUMN_DOCS`); each trainer reads the columns it names:

    ==============  ============================================================================
    ``prompt``      TRL: chat messages ``[{"role": "user", "content": <game prompt>}]``; TRL
                    inserts the image placeholder for the ``images`` column itself
    ``images``      TRL, EasyR1, verl: a list of one PNG board image (PIL when read back)
    ``problem``     EasyR1 (``data.prompt_key=problem``): ``"<image>" + prompt``
    ``verl_prompt`` verl (``data.prompt_key=verl_prompt``): ``[{"role": "user", "content":
                    "<image>" + prompt}]``
    ``answer``      the ground truth, a JSON string (:func:`ground_truth`): EasyR1's
                    ``answer_key``, OpenRLHF's ``label_key``, TRL's reward functions' column
    ``reward_model`` verl: ``{"style": "rule", "ground_truth": answer}``
    ``data_source`` verl: ``"jaxgym/<game id>"``
    ``extra_info``  verl: ``{"index": row index, "split": "train"}``
    ``perception``  the exact perception text of the board (``env.describe``)
    ``game``        the versioned game id, e.g. ``"shisensho-v0"``
    ==============  ============================================================================

The ground truth holds the game id, its parameters, every field of the state (dtype, shape,
values) and a scoring seed: :func:`load_state` rebuilds the exact state, and
``bridges.trainer_rewards`` scores any response against it with ``bridges.scoring``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxgym
from bridges.protocol import parse_game_params
from bridges.safe_json import loads_bounded
from bridges.sampler import MODES, StateSampler
from bridges.scoring import unbatch
from bridges.torch_io import images_to_pil
from jaxgym.core import Env, State

FORMAT_VERSION = 1
"""Bumped whenever the ground-truth JSON changes shape."""

DATA_FILE = "data/train-00000-of-00001.parquet"
"""Where an export's rows go under its ``out`` directory. The data sits alone in ``data/``:
EasyR1 reads a directory by the extension of its first file."""

COLUMN_DOCS = {
    "prompt": "TRL chat messages (user turn with the game prompt; TRL adds the image)",
    "images": "one PNG board image",
    "problem": "EasyR1 prompt string: '<image>' + game prompt",
    "verl_prompt": "verl chat messages with an '<image>' placeholder",
    "answer": "ground truth JSON (game, params, state, score_seed, perception)",
    "reward_model": "verl: {'style': 'rule', 'ground_truth': answer}",
    "data_source": "verl: 'jaxgym/<game id>'",
    "extra_info": "verl: {'index': row index, 'split': 'train'}",
    "perception": "exact perception text of the board",
    "game": "versioned game id",
}


def features() -> Any:
    """The ``datasets.Features`` of an export (one schema for every game)."""
    import datasets

    message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
    return datasets.Features({
        "prompt": datasets.List(message),
        "images": datasets.List(datasets.Image()),
        "problem": datasets.Value("string"),
        "verl_prompt": datasets.List(message),
        "answer": datasets.Value("string"),
        "reward_model": {"style": datasets.Value("string"), "ground_truth": datasets.Value("string")},
        "data_source": datasets.Value("string"),
        "extra_info": {"index": datasets.Value("int64"), "split": datasets.Value("string")},
        "perception": datasets.Value("string"),
        "game": datasets.Value("string"),
    })


# -- the state <-> JSON round trip ---------------------------------------------------------


def state_to_json(state: State) -> dict[str, Any]:
    """Every field of one (unbatched) state as ``{name: {"dtype", "shape", "data"}}``."""
    out = {}
    for name, value in _fields(state).items():
        array = np.asarray(value)
        out[name] = {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.reshape(-1).tolist()}
    return out


def _fields(state: State) -> dict[str, Any]:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _template(env: Env) -> State:
    return jax.eval_shape(env.reset, jax.random.key(0))


def state_from_json(env: Env, fields: dict[str, Any]) -> State:
    """The exact state :func:`state_to_json` wrote, as JAX arrays of the game's state class.

    Every field is checked before anything is built: its dtype and shape against ``env``'s
    states, the JSON type of every value (ints are ints: ``"1"``, ``1.5`` and ``true`` are
    refused; bools are bools), and the values against the game's own ranges
    (``env.check_fields``). Raises ``ValueError`` naming the field otherwise."""
    template = _template(env)
    expected = _fields(template)
    if not isinstance(fields, dict) or set(fields) != set(expected):
        names = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
        raise ValueError(f"the serialized state has fields {names}, but {env.id} states have "
                         f"{sorted(expected)}; was it exported from another game?")
    arrays = {name: _field_array(env, name, fields[name], spec) for name, spec in expected.items()}
    env.check_fields(arrays)
    return type(template)(**{name: jax.numpy.asarray(a.astype(expected[name].dtype)) for name, a in arrays.items()})


_INT64 = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))


def _field_array(env: Env, name: str, entry: Any, spec: Any) -> np.ndarray:
    """One serialized field as a NumPy array (int64, bool or float64), its JSON types checked."""
    dtype, shape = np.dtype(spec.dtype), tuple(spec.shape)
    if not isinstance(entry, dict) or not {"dtype", "shape", "data"} <= set(entry):
        raise ValueError(f"state field {name!r} must be {{'dtype', 'shape', 'data'}}, got {str(entry)[:80]!r}")
    if entry["dtype"] != dtype.name or not isinstance(entry["shape"], list) or tuple(entry["shape"]) != shape:
        raise ValueError(f"state field {name!r} is {entry['dtype']!r} {entry['shape']!r}, but {env.id} "
                         f"with these parameters needs {dtype.name} {shape}; "
                         f"check the game parameters in the ground truth")
    data = entry["data"]
    size = int(np.prod(shape, dtype=np.int64))
    if not isinstance(data, list) or len(data) != size:
        raise ValueError(f"state field {name!r} must hold a flat list of {size} values, got "
                         f"{len(data) if isinstance(data, list) else type(data).__name__}")
    # type(v) is exact: bool is a subclass of int, and "1" or 1.5 must not pass as 1.
    if dtype.kind == "b":
        wrong = [v for v in data if type(v) is not bool]
        kind = "true or false"
    elif dtype.kind in "iu":
        wrong = [v for v in data if type(v) is not int or not _INT64[0] <= v <= _INT64[1]]
        kind = "integers"
    else:
        wrong = [v for v in data if type(v) not in (int, float)]
        kind = "numbers"
    if wrong:
        raise ValueError(f"state field {name!r} must hold {kind} ({dtype.name}), got {wrong[0]!r}")
    work = {"b": np.bool_, "i": np.int64, "u": np.int64}.get(dtype.kind, np.float64)
    return np.asarray(data, dtype=work).reshape(shape)


def ground_truth(env: Env, params: dict[str, Any], state: State, score_seed: int) -> str:
    """The ``answer`` column: a JSON string with everything needed to score a response."""
    return json.dumps({
        "format": FORMAT_VERSION,
        "game": env.id,
        "params": params,
        "state": state_to_json(state),
        "score_seed": int(score_seed),
        "perception": env.describe(state),
    }, separators=(",", ":"))


ROW_PARAM_CAPS = {"image_size": 1024, "level_pool": 1000}
"""The largest values of the game parameters that cost time or memory to build, accepted from
a ground truth (a dataset row, which may come from anyone): an ``image_size`` side over
1024 pixels, or a Sokoban ``level_pool`` over 1000 levels (each generated when the game is
built), is refused before anything is built. Build such a game with ``jaxgym.make`` directly."""

_MAX_SCORE_SEED = 2**32 - 1


def check_row_params(game: Any, params: Any) -> None:
    """Raise ValueError unless a ground truth's ``game`` is a string and its ``params`` a dict
    within :data:`ROW_PARAM_CAPS`.

    >>> check_row_params("sokoban", {"level_pool": 20000})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ground truth parameter level_pool=20000 is over the cap of 1000 for parameters from a dataset row; ...
    """
    if not isinstance(game, str):
        raise ValueError(f"ground truth 'game' must be a game id string, got {game!r}")
    if not isinstance(params, dict):
        raise ValueError(f"ground truth 'params' must be a dict of game parameters, got {str(params)[:80]!r}")
    for name, cap in ROW_PARAM_CAPS.items():
        value = params.get(name)
        sides = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) and v > cap for v in sides):
            raise ValueError(f"ground truth parameter {name}={value!r} is over the cap of {cap} for parameters "
                             f"from a dataset row; building it would take minutes (bridges.export.ROW_PARAM_CAPS)")


@functools.lru_cache(maxsize=32)
def _env(game: str, params_json: str) -> Env:
    return jaxgym.make(game, **json.loads(params_json))


def env_for(truth: dict[str, Any]) -> Env:
    """The game a parsed ground truth was exported from (built once per game and parameters),
    its parameters checked against :data:`ROW_PARAM_CAPS` before anything is built."""
    game, params = truth["game"], truth.get("params", {})
    check_row_params(game, params)
    return _env(game, json.dumps(params, sort_keys=True))


def parse_ground_truth(text: str | dict[str, Any]) -> dict[str, Any]:
    """A ground truth (the JSON string or its dict) as a dict, checked; ``ValueError`` otherwise.

    The JSON is parsed within ``bridges.safe_json``'s depth and size limits, so a hostile row
    gives ``ValueError``, never ``RecursionError``."""
    if isinstance(text, dict):
        truth = text
    elif isinstance(text, (str, bytes)):
        try:
            truth = loads_bounded(text)
        except ValueError as error:
            raise ValueError(f"ground truth must be the JSON string of an export's 'answer' column, got "
                             f"{str(text)[:80]!r} ({str(error)[:200]})") from None
    else:
        raise ValueError(f"ground truth must be the JSON string of an export's 'answer' column, got "
                         f"{type(text).__name__} {str(text)[:80]!r}")
    missing = [k for k in ("game", "state", "score_seed") if not isinstance(truth, dict) or k not in truth]
    if missing:
        raise ValueError(f"ground truth lacks {missing}; pass the 'answer' column of a bridges.export dataset")
    if truth.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"ground truth format {truth.get('format')} is not {FORMAT_VERSION}; re-export the dataset")
    seed = truth["score_seed"]
    if type(seed) is not int or not 0 <= seed <= _MAX_SCORE_SEED:
        raise ValueError(f"ground truth score_seed={seed!r} must be an integer in 0..{_MAX_SCORE_SEED}")
    check_row_params(truth["game"], truth.get("params", {}))
    return truth


def load_state(text: str | dict[str, Any]) -> tuple[Env, State]:
    """``(env, state)`` from a ground truth: the game and its exact exported state, every field
    checked against the game's own spec (:func:`state_from_json`) before the state is built."""
    truth = parse_ground_truth(text)
    env = env_for(truth)
    return env, state_from_json(env, truth["state"])


# -- rows ---------------------------------------------------------------------------------


def _row(env: Env, params: dict[str, Any], state: State, image: Any, index: int, score_seed: int) -> dict[str, Any]:
    text = env.prompt()
    truth = ground_truth(env, params, state, score_seed)
    return {
        "prompt": [{"role": "user", "content": text}],
        "images": [image],
        "problem": "<image>" + text,
        "verl_prompt": [{"role": "user", "content": "<image>" + text}],
        "answer": truth,
        "reward_model": {"style": "rule", "ground_truth": truth},
        "data_source": f"jaxgym/{env.id}",
        "extra_info": {"index": index, "split": "train"},
        "perception": env.describe(state),
        "game": env.id,
    }


def _check_count(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name}={value!r} is out of range; allowed: an int >= {lo}")
    return int(value)


def iter_rows(game: str, states: int, *, seed: int = 0, batch_size: int = 64, mode: str = "paper",
              depth: int | None = None, **params: Any) -> Iterator[list[dict[str, Any]]]:
    """Batches of rows (lists of dicts, ``batch_size`` each, the last one shorter).

    Args:
        game: a registered game id; ``params`` go to ``jaxgym.make``.
        states: number of rows.
        seed: the sampler's seed (the scoring seeds derive from it too).
        batch_size: states per sampler call (the learner's ``states_per_step``).
        mode, depth: ``StateSampler``'s (``"paper"``: the game's protocol).
    """
    # Checked here, not on the first next(): bad input fails before anything is written.
    states = _check_count("states", states, 1)
    batch_size = _check_count("batch_size", batch_size, 1)
    env = jaxgym.make(game, **params)
    sampler = StateSampler(env, depth=depth, mode=mode, seed=seed)
    return _rows(env, sampler, params, states, batch_size, seed)


def _rows(env: Env, sampler: StateSampler, params: dict[str, Any], states: int, batch_size: int,
          seed: int) -> Iterator[list[dict[str, Any]]]:
    # Scoring seeds: one per row, drawn apart from the sampler's key so that they never
    # correlate with the states.
    score_seeds = np.random.default_rng([int(seed), 0x5C0AE]).integers(0, 2**31 - 1, states)
    done = 0
    while done < states:
        batch, images = sampler.sample(batch_size)
        host = jax.device_get(batch)
        take = min(batch_size, states - done)
        pil = images_to_pil(images[:take])
        yield [_row(env, params, unbatch(host, i), pil[i], done + i, int(score_seeds[done + i])) for i in range(take)]
        done += take


def to_dataset(game: str, states: int, *, seed: int = 0, out: str | Path | None = None, batch_size: int = 64,
               mode: str = "paper", depth: int | None = None, progress: bool = True, **params: Any) -> Any:
    """A ``datasets.Dataset`` of ``states`` sampled states of ``game`` (see module doc).

    With ``out``, rows stream to ``out/data/train-00000-of-00001.parquet`` (one batch in
    memory at a time) next to ``out/export.json`` (the arguments), and the dataset is read
    back from there (memory-mapped). ``out`` must not hold an export already.
    """
    import datasets

    if out is not None:  # before any state is sampled: a bad directory fails at once
        out = _writable_out(Path(out))
    feats = features()
    batches = iter_rows(game, states, seed=seed, batch_size=batch_size, mode=mode, depth=depth, **params)
    bar = _progress(states, f"export {game}", progress)
    if out is None:
        rows: list[dict[str, Any]] = []
        for batch in batches:
            rows.extend(batch)
            bar.update(len(batch))
        bar.close()
        return datasets.Dataset.from_list(rows, features=feats)

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = out / DATA_FILE
    schema = feats.arrow_schema
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            table = pa.Table.from_pylist([feats.encode_example(row) for row in batch], schema=schema)
            writer.write_table(table)
            bar.update(len(batch))
    bar.close()
    meta = {"game": game, "params": params, "states": states, "seed": seed, "batch_size": batch_size,
            "mode": mode, "depth": depth, "format": FORMAT_VERSION, "columns": COLUMN_DOCS}
    (out / "export.json").write_text(json.dumps(meta, indent=2) + "\n")
    return datasets.Dataset.from_parquet(str(path), features=feats, keep_in_memory=False)


def _writable_out(out: Path) -> Path:
    """``out`` with its ``data/`` directory made, or ValueError naming it: a file, an earlier
    export, a directory that cannot be created or written (permissions, a read-only file system)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file, not a directory; choose a new directory for the export")
    if (out / DATA_FILE).exists():
        raise ValueError(f"out={str(out)!r} already holds an export ({DATA_FILE}); choose another directory")
    try:
        (out / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ValueError(f"out={str(out)!r} cannot be written ({error.strerror or error}); choose a directory you "
                         f"can write to") from None
    return out


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="state", disable=not enabled)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridges.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", required=True, help=f"game id, one of {jaxgym.registered_games()}")
    parser.add_argument("--states", type=int, required=True, help="number of rows")
    parser.add_argument("--out", required=True, help="output directory (a new one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="states per sampler call (the learner's "
                        "states_per_step); part of what a seed means")
    parser.add_argument("--mode", default="paper", choices=MODES)
    parser.add_argument("--depth", type=int, default=None, help="random actions after reset (default: the protocol's)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="game parameter for jaxgym.make, e.g. --param size=6 (repeatable)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    print(f"Export directory: {out.resolve()}")
    start = time.perf_counter()
    try:
        ds = to_dataset(args.game, args.states, seed=args.seed, out=out, batch_size=args.batch_size, mode=args.mode,
                        depth=args.depth, **parse_game_params(args.param))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = (out / DATA_FILE).stat().st_size
    print(f"Wrote {len(ds)} states of {args.game} to {out / DATA_FILE} ({size / 2**20:.1f} MiB) in "
          f"{time.perf_counter() - start:.1f} s; columns: {', '.join(ds.column_names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
