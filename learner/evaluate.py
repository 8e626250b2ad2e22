"""Evaluate a policy on a game under the paper's protocol ("avg@10").

    python learner/evaluate.py --game 2048 --policy random
    python learner/evaluate.py --game shisensho --policy greedy --runs 10 --steps 100 --seed 0
    python learner/evaluate.py --game swap --policy openai:http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct
    python learner/evaluate.py --game 2048 --policy hf:runs/train-2048/checkpoint-final
    python learner/evaluate.py --game 2048 --policy mypackage.agents:answer   # fn(images, prompts) -> responses

Writes to a run directory (printed first; ``--out`` to choose it, refused if it already holds an
``eval.json``; default a new ``runs/eval-<game>-<policy>-<timestamp>[-N]/``, suffixed when
evaluations start in the same second):
    ``eval.json``       config, summary, per run totals and every step (response, parsed
                        action, legal, raw reward, points, cumulative score, ...);
    ``cumulative.png``  each run's cumulative score over the steps, and the mean;
    ``run00.mp4`` ...   one video per run (GIF if no ffmpeg encoder is installed);
and prints a table of the runs with the mean and standard error. See
``bridges/evaluation.py`` for the protocol, ``bridges/policies.py`` for the policies.

Exit status: 0 for a usable result; 2 for bad arguments; 3 when the score does not measure
the policy because requests failed (``--on-request-error unparseable``): a run had no
successful request at all, or more than ``--max-request-error-rate`` of all requests
failed (default 0.1). ``eval.json`` is written either way, with the error counts. A run that
stops early (a policy error: exit 1; Ctrl-C: 130; SIGTERM: 143) keeps the steps it did in
``eval.json`` with ``"complete": false`` and the reason in ``"stopped"``.
"""

from __future__ import annotations

import sys

# The command line lives beside the evaluator it runs (bridges.evaluation); importing
# learner.hf_policy registers the hf: policy kind, which bridges cannot import.
from bridges.evaluation import (
    EXIT_UNUSABLE,
    default_run_dir,
    game_params,
    main,
    parse_args,
    policy_options,
    unusable,
)
from learner.hf_policy import HFPolicy

__all__ = ["EXIT_UNUSABLE", "HFPolicy", "console", "default_run_dir", "game_params", "main", "parse_args",
           "policy_options", "unusable"]


def console() -> int:
    """The ``jaxgym-evaluate`` command: :func:`main` with its exit status (0 for a usable result;
    errors leave through ``SystemExit`` with theirs)."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(console())
