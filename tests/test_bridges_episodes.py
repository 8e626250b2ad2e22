"""Multi-turn episodes (``bridges.episodes``): the batched play loop on a scripted Sokoban
level, the bounded history prompt, and exact state groups (hand-made and property-tested)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgym
from bridges.episodes import (
    EpisodeRunner,
    Move,
    exact_state_groups,
    history_prompt,
    move_text,
    state_hash,
)
from jaxgym.sokoban import SokobanState
from jaxgym.wrappers import Wrapper

# Player, box, target in a row: "right" solves it (+1 box on target, +10 solved, -0.1 step).
LEVEL = "#####\n#@$.#\n#---#\n#---#\n#####"
SOLVE, STEP = 10.9, -0.1


def answer(word: str) -> str:
    return f"<perception>?</perception><think>go</think><answer>{word}</answer>"


# Episode scripts from the one start state (n = 4, K = 4):
SCRIPTS = [
    ["right"],                                  # solved on turn 0
    ["down", "up", "right"],                    # a step away and back, then solved
    ["left", "no answer", "right"],             # a wall (illegal), unparseable text, solved
    ["down", "down", "down", "up"],             # down twice, into the wall, up: never solved
]
EXPECTED_RETURNS = [SOLVE, 2 * STEP + SOLVE, 2 * STEP + SOLVE, 4 * STEP]
# Turn 0: all saw the start. Episodes 1 and 3 stand on the same board after one "down"
# (id 1); episodes 1 and 2 are back on the start board at step 2, one by legal moves and one
# by illegal ones (id 2: the transition fields do not count); episode 2's start board at
# step 1 is new (3: the step count differs from turn 0's); episode 3's later boards are new.
EXPECTED_GROUPS = [[0, -1, -1, -1], [0, 1, 2, -1], [0, 3, 2, -1], [0, 1, 4, 5]]


class CountingEnv(Wrapper):
    """Counts how often ``step`` is traced (once per compile, whatever the batch)."""

    def __init__(self, env):
        super().__init__(env)
        self.step_traces = 0

    def step(self, state, action, key):
        self.step_traces += 1
        return self.env.step(state, action, key)


class ScriptedPolicy:
    """Answers each episode's script; fails the test if asked about a finished episode."""

    def __init__(self, scripts):
        self.scripts = scripts
        self.seen = []

    def __call__(self, observation):
        self.seen.append(observation)
        texts = []
        for e in observation.episodes:
            script = self.scripts[int(e) % len(self.scripts)]
            assert observation.turn < len(script), f"episode {e} asked on turn {observation.turn} after it ended"
            word = script[observation.turn]
            texts.append("none" if word == "no answer" else answer(word))
        return texts


@pytest.fixture(scope="module")
def played():
    env = CountingEnv(jaxgym.make("sokoban", size=5, boxes=1, image_size=56))
    runner = EpisodeRunner(env, history=2, w_format=0.0, w_perception=0.0)
    starts = two_copies(env.from_board(LEVEL))  # G = 2 identical starts
    calls = {"observe": 0, "turn": 0}
    observe, turn = runner._compiled(len(SCRIPTS))

    def counted(name, fn):
        def call(*args):
            calls[name] += 1
            return fn(*args)
        return call

    runner._compiled = lambda n: (counted("observe", observe), counted("turn", turn))
    policy = ScriptedPolicy(SCRIPTS)
    episodes = runner.play(starts, policy, group_size=len(SCRIPTS), turns=4, key=jax.random.key(0))
    first = dict(calls)
    again = runner.play(starts, ScriptedPolicy(SCRIPTS), group_size=len(SCRIPTS), turns=4, key=jax.random.key(1))
    return env, episodes, again, policy, first, calls


@pytest.mark.slow
def test_turns_take_one_jitted_call_each_and_compile_once(played):
    env, episodes, again, _, first, calls = played
    assert first == {"observe": 1, "turn": 4}  # 4 turns of 2 x 4 episodes: 4 calls, not 32
    assert episodes.env_calls == 5 and again.env_calls == 5
    assert calls == {"observe": 2, "turn": 8}
    assert env.step_traces == 1  # two plays, every batch size the same: one trace of step


@pytest.mark.slow
def test_scripted_policy_gives_the_expected_returns(played):
    _, episodes, again, _, _, _ = played
    expected = np.array(EXPECTED_RETURNS * 2, np.float32)
    np.testing.assert_allclose(episodes.returns(), expected, rtol=1e-5)
    np.testing.assert_allclose(episodes.raw_reward.sum(axis=1), expected, rtol=1e-5)
    assert episodes.lengths.tolist() == [1, 3, 3, 4] * 2
    assert episodes.actions[:4].tolist() == [[1, -1, -1, -1], [2, 0, 1, -1], [3, -1, 1, -1], [2, 2, 2, 0]]
    assert episodes.legal[2].tolist() == [False, False, True, False]
    assert episodes.parsed[2].tolist() == [True, False, True, False]
    np.testing.assert_array_equal(again.overall, episodes.overall)  # Sokoban ignores the key
    assert episodes.grouped(episodes.returns()).shape == (2, 4)


@pytest.mark.slow
def test_finished_episodes_stay_finished(played):
    _, episodes, _, policy, _, _ = played
    assert episodes.mask[:4].tolist() == [[True, False, False, False], [True, True, True, False],
                                         [True, True, True, False], [True, True, True, True]]
    assert episodes.dones[:4].tolist() == [[True, False, False, False], [False, False, True, False],
                                          [False, False, True, False], [False, False, False, False]]
    assert [obs.episodes.tolist() for obs in policy.seen] == [list(range(8)), [1, 2, 3, 5, 6, 7],
                                                              [1, 2, 3, 5, 6, 7], [3, 7]]
    assert [obs.images.shape[0] for obs in policy.seen] == [8, 6, 6, 2]
    board = episodes.states.board
    for t in range(1, 5):  # the solved board of episode 0 never changes again, nor does its count
        np.testing.assert_array_equal(board[0, t], board[0, 1])
        assert episodes.states.step_count[0, t] == 1
    assert episodes.overall[0, 1:].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(np.asarray(episodes.images[4][0]), np.asarray(episodes.images[1][0]))


@pytest.mark.slow
def test_step_groups_are_where_states_are_equal(played):
    _, episodes, _, _, _, _ = played
    groups = episodes.step_groups()
    assert groups.shape == (2, 4, 4)
    assert groups[0].tolist() == EXPECTED_GROUPS
    assert groups[1].tolist() == EXPECTED_GROUPS  # ids are local to each start state


@pytest.mark.slow
def test_prompts_show_the_bounded_history(played):
    env, episodes, _, _, _, _ = played
    instruction = env.prompt()
    assert episodes.prompts[2][0] == instruction  # the first turn is the bandit's prompt
    assert episodes.prompts[2][2] == history_prompt(
        instruction, [Move(0, "left", STEP, False), Move(1, "no valid answer", STEP, False)], 2)
    last = episodes.prompts[3][3]
    assert "turn 1:" not in last and "turn 2: down, reward -0.1\nturn 3: down, reward -0.1, illegal" in last
    assert episodes.responses[2][1] == "none"


def test_history_prompt_is_bounded():
    moves = [Move(t, "up" * 100, -0.1, t % 2 == 0) for t in range(500)]
    text = history_prompt("Play.", moves, history=3)
    assert text.count("\nturn ") == 3 and "turn 498:" in text and "turn 500:" in text
    assert len(text) < len("Play.") + 80 + 3 * (20 + 64 + 30)
    assert history_prompt("Play.", moves, history=0) == "Play."
    assert history_prompt("Play.", [], history=3) == "Play."
    assert "Your last 1 move in" in history_prompt("Play.", moves[:1], history=3)
    with pytest.raises(ValueError, match="history=-1"):
        history_prompt("Play.", moves, history=-1)


def test_move_text_names_every_outcome():
    env = jaxgym.make("2048")
    assert [move_text(env, a) for a in (0, 3, -1, 4)] == ["0", "3", "no valid answer", "4 (no such move)"]


def test_runner_rejects_bad_arguments():
    env = jaxgym.make("sokoban", size=5, boxes=1, image_size=56)
    with pytest.raises(ValueError, match="history=-2"):
        EpisodeRunner(env, history=-2)
    runner = EpisodeRunner(env)
    start = env.from_board(LEVEL)
    with pytest.raises(ValueError, match="leading dim G"):
        runner.play(start, ScriptedPolicy(SCRIPTS), group_size=2, turns=2, key=jax.random.key(0))
    batch = jax.tree_util.tree_map(lambda leaf: leaf[None], start)
    with pytest.raises(ValueError, match="turns=0"):
        runner.play(batch, ScriptedPolicy(SCRIPTS), group_size=2, turns=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="group_size=0"):
        runner.play(batch, ScriptedPolicy(SCRIPTS), group_size=0, turns=2, key=jax.random.key(0))


# -- exact state groups on synthetic states ----------------------------------------------------

G, N, T = 2, 3, 4
_hashes = jax.jit(jax.vmap(jax.vmap(state_hash)))


def synthetic_states(boards, counts, rewards, legal):
    """Sokoban-shaped host states with leading dims (E, T) from the varying fields."""
    e, t = counts.shape
    return SokobanState(
        board=boards,
        reward=rewards,
        terminated=np.zeros((e, t), bool),
        truncated=np.zeros((e, t), bool),
        legal_action_mask=np.ones((e, t, 4), bool),
        step_count=counts,
        score=np.zeros((e, t), np.int32),
        last_action_legal=legal,
    )


@st.composite
def shared_prefix_episodes(draw):
    """Boards from a pool of 3 tiny boards; each episode may copy a same-group episode's
    prefix; a random played-turn prefix per episode; random transition fields."""
    pool = np.array(draw(st.lists(st.lists(st.integers(0, 2), min_size=4, max_size=4), min_size=3, max_size=3)),
                    np.int32).reshape(3, 2, 2)
    picks = np.array(draw(st.lists(st.integers(0, 2), min_size=G * N * T, max_size=G * N * T))).reshape(G * N, T)
    counts = np.array(draw(st.lists(st.integers(0, 1), min_size=G * N * T, max_size=G * N * T)),
                      np.int32).reshape(G * N, T) + np.arange(T, dtype=np.int32)
    for e in range(G * N):
        source = draw(st.integers(0, N - 1))
        prefix = draw(st.integers(0, T))
        group_start = e - e % N
        picks[e, :prefix] = picks[group_start + source, :prefix]
        counts[e, :prefix] = counts[group_start + source, :prefix]
    lengths = np.array(draw(st.lists(st.integers(0, T), min_size=G * N, max_size=G * N)))
    mask = np.arange(T)[None, :] < lengths[:, None]
    rewards = np.array(draw(st.lists(st.sampled_from([0.0, -0.1, 1.0]), min_size=G * N * T, max_size=G * N * T)),
                       np.float32).reshape(G * N, T)
    legal = np.array(draw(st.lists(st.booleans(), min_size=G * N * T, max_size=G * N * T))).reshape(G * N, T)
    return pool[picks], counts, rewards, legal, mask, draw(st.booleans())


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(shared_prefix_episodes())
def test_groups_found_where_and_only_where_positions_are_equal(example):
    boards, counts, rewards, legal, mask, collide = example
    states = synthetic_states(boards, counts, rewards, legal)
    hashes = np.asarray(_hashes(jax.tree_util.tree_map(jnp.asarray, states)))
    if collide:  # every hash equal: only the byte comparison can keep different states apart
        hashes = np.zeros_like(hashes)
    ids = exact_state_groups(states, hashes, mask, N).reshape(G * N, T)
    assert (ids[~mask] == -1).all() and (ids[mask] >= 0).all()
    played = [(e, t) for e in range(G * N) for t in range(T) if mask[e, t]]
    for e1, t1 in played:
        for e2, t2 in played:
            if e1 // N != e2 // N:
                continue
            same = np.array_equal(boards[e1, t1], boards[e2, t2]) and counts[e1, t1] == counts[e2, t2]
            assert (ids[e1, t1] == ids[e2, t2]) == same, (e1, t1, e2, t2)
            if same and not collide:
                assert (hashes[e1, t1] == hashes[e2, t2]).all()


def test_exact_state_groups_rejects_bad_shapes():
    states = synthetic_states(np.zeros((4, 2, 2, 2), np.int32), np.tile(np.arange(2, dtype=np.int32), (4, 1)),
                              np.zeros((4, 2), np.float32), np.ones((4, 2), bool))
    hashes = np.zeros((4, 2, 2), np.uint32)
    with pytest.raises(ValueError, match="group_size=3"):
        exact_state_groups(states, hashes, np.ones((4, 2), bool), 3)
    with pytest.raises(ValueError, match="hashes must have shape"):
        exact_state_groups(states, hashes[:, :1], np.ones((4, 2), bool), 2)
    assert exact_state_groups(states, hashes, np.ones((4, 2), bool), 2).tolist() == [[[0, 1], [0, 1]]] * 2


@pytest.mark.slow
def test_equal_moves_from_equal_states_stay_equal_in_a_random_game():
    """2048 spawns a tile at random after each move: the episodes of one start state share
    the step key of each turn, so equal move sequences reach equal states (one step group
    per turn) while the other start state's episodes draw their own spawns."""
    env = jaxgym.make("2048", image_size=64)
    starts = two_copies(env.reset(jax.random.key(0)))
    scripts = [["up", "left", "down"], ["up", "left", "down"], ["up", "right", "down"]]
    words = {"up": 0, "right": 1, "down": 2, "left": 3}

    def policy(observation):
        return [answer(str(words[scripts[int(e) % 3][observation.turn]])) for e in observation.episodes]

    episodes = EpisodeRunner(env, history=1).play(starts, policy, group_size=3, turns=3, key=jax.random.key(5))
    assert episodes.mask.all()
    groups = episodes.step_groups()
    for g in range(2):
        assert groups[g, 0].tolist() == groups[g, 1].tolist()  # the same moves: the same states throughout
        assert groups[g, 2, :2].tolist() == groups[g, 0, :2].tolist()  # the shared first move
        board = episodes.grouped(episodes.states.board)[g]
        assert (groups[g, 2, 2] == groups[g, 0, 2]) == np.array_equal(board[2, 2], board[0, 2])
    # The two start states are equal, but their spawns come from different keys.
    board = episodes.grouped(episodes.states.board)
    assert not np.array_equal(board[0, 0, 1:], board[1, 0, 1:])


def two_copies(state):
    """A batch of two copies of one state (G = 2)."""
    return jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf, leaf]), state)
