"""Answer parsers of every game: table-driven formats, out-of-range answers, adversarial input.

The parsers live in the game files (``jaxgym/<game>.py``) over the shared helpers of
``jaxgym/parsing.py``; these tests hold every registered game to the response protocol of
``shared/spec/games.md``.
"""

from __future__ import annotations

import re
import time

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridges.protocol import protocol_for
from bridges.sampler import StateSampler
from bridges.scoring import GroupScorer
from jaxgym import INVALID_ACTION, UNPARSEABLE
from tests.bridges_support import GAMES, small_env

FULLWIDTH = str.maketrans("0123456789,()", "０１２３４５６７８９，（）")

# 2048: the first integer of the last <answer> block; anything else is unparseable.
TABLE_2048 = [
    ("<answer>0</answer>", 0),
    ("<answer>3</answer>", 3),
    ("<answer> 2 </answer>", 2),
    ("<answer>\n1\n</answer>", 1),
    ("<ANSWER>1</Answer>", 1),
    ("<answer>move 2 (down)</answer>", 2),
    ("<answer>0</answer> no wait <answer>3</answer>", 3),
    ("<think><answer>1</answer> is the format</think><answer>2</answer>", 2),
    ("<answer>２</answer>", 2),
    ("<answer>+1</answer>", 1),
    ("<answer>007</answer>", 7),
    ("<answer>4</answer>", 4),                      # out of range: stays 4, an illegal no-op
    ("<answer>-1</answer>", -1),
    ("<answer>99999999999999999999</answer>", 2**31 - 1),
    ("<answer>-99999999999999999999</answer>", -(2**31)),
    ("<answer>up</answer>", UNPARSEABLE),
    ("<answer></answer>", UNPARSEABLE),
    ("<answer>3", UNPARSEABLE),
    ("3", UNPARSEABLE),
    ("", UNPARSEABLE),
    ("</answer>3<answer>", UNPARSEABLE),
    ("<answer>٣</answer>", UNPARSEABLE),             # Arabic-Indic digits are not NFKC-folded to ASCII
]


@pytest.mark.parametrize("text, expected", TABLE_2048)
def test_2048_parser_table(text, expected):
    assert small_env("2048").parse_answer(text) == expected


def answer_content(env, action: int) -> str:
    canonical = env.format_answer(action)
    match = re.fullmatch(r"<answer>(.*)</answer>", canonical, flags=re.S)
    assert match, f"format_answer must give one <answer> block, got {canonical!r}"
    return match.group(1)


def variants(content: str) -> dict[str, str]:
    """Ways a model writes the same answer: whitespace, separators, tag case, unicode."""
    return {
        "canonical": f"<answer>{content}</answer>",
        "padded": f"<answer>  \n{content}\t </answer>",
        "upper-tags": f"<ANSWER>{content}</ANSWER>",
        "tight-commas": f"<answer>{content.replace(', ', ',')}</answer>",
        "comma-between-pairs": f"<answer>{content.replace(') (', '),(')}</answer>",
        "one-per-line": f"<answer>{content.replace(') (', ')' + chr(10) + '(')}</answer>",
        "fullwidth": f"<answer>{content.translate(FULLWIDTH)}</answer>",
        "after-full-response": (
            f"<perception>x</perception>\n<think>a <answer>bad</answer></think>\n<answer>{content}</answer>"
        ),
        "last-of-two": f"<answer>{content}</answer> then <answer>{content}</answer>",
    }


@pytest.mark.parametrize("game_id", GAMES)
def test_every_action_round_trips_through_its_answer_text(game_id):
    env = small_env(game_id)
    actions = np.arange(env.num_actions)
    if env.num_actions > 5000:
        actions = np.random.default_rng(0).integers(0, env.num_actions, 5000)
    for action in actions:
        assert env.parse_answer(env.format_answer(int(action))) == int(action)


@pytest.mark.parametrize("game_id", GAMES)
def test_answer_variants_parse_to_the_same_action(game_id):
    env = small_env(game_id)
    rng = np.random.default_rng(1)
    for action in rng.integers(0, env.num_actions, 20):
        content = answer_content(env, int(action))
        for name, text in variants(content).items():
            assert env.parse_answer(text) == int(action), (name, text)
        # A different earlier answer does not win over the last one.
        other = (int(action) + 1) % env.num_actions
        assert env.parse_answer(f"{env.format_answer(other)} {env.format_answer(int(action))}") == int(action)


@pytest.mark.parametrize("game_id", GAMES)
@pytest.mark.slow
def test_out_of_range_numbers_are_illegal_never_wrapped(game_id):
    env = small_env(game_id)
    texts = []
    for action in np.random.default_rng(2).integers(0, env.num_actions, 10):
        content = answer_content(env, int(action))
        if not re.search(r"\d", content):  # a word answer (Sokoban's directions): its number form
            content = str(int(action))
        for match in re.finditer(r"\d+", content):
            for bad in ("99", "-1", "4294967296", "100000000000000000000"):
                texts.append("<answer>" + content[: match.start()] + bad + content[match.end() :] + "</answer>")
    for text in texts:
        parsed = env.parse_answer(text)
        assert parsed != UNPARSEABLE, text
        assert isinstance(parsed, int) and -(2**31) <= parsed < 2**31
        assert parsed == INVALID_ACTION or not 0 <= parsed < env.num_actions, text
    # Stepping them is the penalised no-op (scored in groups of the scoring tests' shape).
    states, _ = StateSampler(env, mode="legal", depth=4, seed=11).sample(16)
    groups = [(texts * 80)[i * 5 : i * 5 + 5] for i in range(16)]
    scores = GroupScorer(env).score(states, groups, jax.random.key(1))
    assert scores.parsed.all() and not scores.legal.any()
    # The game's penalised no-op (-1 in the paper's games), shaped by its protocol.
    np.testing.assert_array_equal(scores.raw_reward, np.float32(env.invalid_action_reward))
    shaped = protocol_for(env).shape_reward(scores.raw_reward, scores.legal)
    np.testing.assert_array_equal(scores.game, np.asarray(shaped))


ADVERSARIAL = {
    "open-tags": "<answer>" * 125_000,
    "close-tags": "</answer>" * 110_000,
    "huge-number": "<answer>" + "9" * 1_000_000 + "</answer>",
    "many-numbers": "<answer>" + "(1, 2) " * 150_000 + "</answer>",
    "repeated-blocks": "<answer>1</answer>" * 55_000,
    "nested": "<answer>" * 60_000 + "1" + "</answer>" * 60_000,
    "signs": "<answer>" + "-+" * 500_000 + "</answer>",
    "spaces": "<answer>" + " " * 1_000_000 + "0</answer>",
    "fullwidth": "<answer>" + "１" * 330_000 + "</answer>",
    "combining": "<answer>" + "1\u0301" * 500_000 + "</answer>",
    "lt": "<" * 1_000_000,
    "perception-tags": "<perception>" * 80_000 + "</perception>" * 5,
}
PARSE_BOUND_S = 3.0  # a quadratic scan of 1 MB would take hours; a linear one milliseconds


@pytest.mark.parametrize("game_id", GAMES)
def test_adversarial_inputs_parse_in_bounded_time(game_id):
    env = small_env(game_id)
    for name, text in ADVERSARIAL.items():
        assert len(text.encode()) >= 900_000, name  # about 1 MB of UTF-8
        start = time.perf_counter()
        parsed = env.parse_answer(text)
        elapsed = time.perf_counter() - start
        assert parsed == UNPARSEABLE or isinstance(parsed, int), name
        assert elapsed < PARSE_BOUND_S, f"{name}: {elapsed:.2f}s"


@pytest.mark.slow
def test_adversarial_responses_score_in_bounded_time():
    env = small_env("2048")
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2))
    texts = list(ADVERSARIAL.values())[:6]
    start = time.perf_counter()
    scores = GroupScorer(env).score(states, [texts, texts[::-1]], jax.random.key(0))
    assert time.perf_counter() - start < 6 * PARSE_BOUND_S
    assert scores.overall.shape == (2, 6) and not scores.perception.any()


tagged_text = st.lists(
    st.one_of(
        st.sampled_from(["<answer>", "</answer>", "<ANSWER>", "(", ")", ",", " ", "\n", "-", "+", "０", "<think>"]),
        st.integers(-(10**15), 10**15).map(str),
        st.text(max_size=8),
    ),
    max_size=30,
).map("".join)


@pytest.mark.parametrize("game_id", GAMES)
@settings(max_examples=150, deadline=None)
@given(text=tagged_text)
def test_parsers_never_raise(game_id, text):
    parsed = small_env(game_id).parse_answer(text)
    assert parsed == UNPARSEABLE or (isinstance(parsed, int) and -(2**31) <= parsed < 2**31)


@pytest.mark.parametrize("game_id", GAMES)
def test_non_strings_are_unparseable(game_id):
    env = small_env(game_id)
    for junk in (None, 3, b"<answer>1</answer>", ["<answer>1</answer>"]):
        assert env.parse_answer(junk) == UNPARSEABLE
