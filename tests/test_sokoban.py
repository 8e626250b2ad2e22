"""Sokoban: Jumanji's step as a differential oracle, a breadth-first solver on generated
levels, hypothesis invariants, rewards, the Boxoban text loader, parsing and pictures."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgym
from jaxgym import sokoban as S
from jaxgym.core import INVALID_ACTION, UNPARSEABLE
from tests.golden import assert_matches_golden

# Three levels in the Boxoban file format, written for this test (not taken from the dataset).
BOXOBAN_TEXT = """; 0
##########
##########
####    ##
#### $  ##
###  .# ##
##  $ .@##
##  #   ##
##   .$ ##
##########
##########

; 1
##########
#@   #####
# $$ #####
#  ..#####
##  ######
##  ######
##########
##########
##########
##########

; 2
##########
#   ######
# $ ##  ##
# .  *  ##
#  #  $ ##
##.   # ##
##   +  ##
###$ ## ##
###     ##
##########
"""

TINY = "#####\n#@$.#\n#####"


_JITTED: dict = {}


def _jit_step(env):
    """``jax.jit(env.step)``, one per game configuration (eager steps compile op by op)."""
    return _JITTED.setdefault(("step", env.id, repr(vars(env))), jax.jit(env.step))


def _jit_render(env):
    return _JITTED.setdefault(("render", env.id, repr(vars(env))), jax.jit(env.render))


def oracle_env():
    from jumanji.environments.routing.sokoban.env import Sokoban as JumanjiSokoban
    from jumanji.environments.routing.sokoban.generator import ToyGenerator

    return JumanjiSokoban(generator=ToyGenerator(), time_limit=10**6)


def to_jumanji(board, key):
    """Jumanji's state of one of our boards (fixed grid: walls and targets; variable grid:
    agent and boxes)."""
    from jumanji.environments.routing.sokoban import constants as C
    from jumanji.environments.routing.sokoban.types import State as JState

    walls, targets, boxes, player = S.decode(board)
    fixed = jnp.where(walls, C.WALL, jnp.where(targets, C.TARGET, C.EMPTY)).astype(jnp.uint8)
    variable = jnp.where(player, C.AGENT, jnp.where(boxes, C.BOX, C.EMPTY)).astype(jnp.uint8)
    return JState(
        key=key,
        fixed_grid=fixed,
        variable_grid=variable,
        agent_location=S.player_position(board),
        step_count=jnp.int32(0),
    )


def from_jumanji(state):
    from jumanji.environments.routing.sokoban import constants as C

    fixed, variable = state.fixed_grid, state.variable_grid
    return S.encode(fixed == C.WALL, fixed == C.TARGET, variable == C.BOX, variable == C.AGENT)


@pytest.mark.slow
def test_step_matches_jumanji_on_random_play():
    """>= 10,000 random steps on generated 10x10 levels with 4 boxes (Jumanji's fixed size),
    a third of them easy (4 reverse steps) so that solves and the bonus occur."""
    env = jaxgym.make("sokoban")
    easy = jaxgym.make("sokoban", reverse_steps=4)
    oracle = oracle_env()
    batch, steps = 256, 48
    keys = jax.random.split(jax.random.key(0), batch)
    ours = jax.vmap(env.reset)(keys[: 2 * batch // 3])
    ours_easy = jax.vmap(easy.reset)(keys[2 * batch // 3 :])
    ours = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ours, ours_easy)
    theirs = jax.vmap(to_jumanji)(ours.board, keys)
    our_step = jax.jit(jax.vmap(env.step))
    their_step = jax.jit(jax.vmap(oracle.step))
    actions = jax.random.randint(jax.random.key(1), (steps, batch), 0, 4)
    solved_seen = boxes_gained = 0
    for t in range(steps):
        before, was_done = ours.board, ours.terminated
        ours = our_step(ours, actions[t], keys)
        theirs, timestep = their_step(theirs, actions[t])
        np.testing.assert_array_equal(ours.board, from_jumanji(theirs), err_msg=f"board differs at step {t}")
        # Rewards are compared inside episodes: after a solve, an illegal move is jaxgym's
        # penalised no-op (-0.1), where Jumanji pays the solved bonus again.
        live = ~np.asarray(was_done)
        np.testing.assert_array_equal(
            np.asarray(ours.reward)[live], np.asarray(timestep.reward, np.float32)[live], err_msg=f"reward, step {t}"
        )
        np.testing.assert_array_equal(ours.terminated, timestep.last(), err_msg=f"termination, step {t}")
        np.testing.assert_array_equal(ours.last_action_legal, np.any(np.asarray(ours.board != before), axis=(1, 2)))
        solved_seen += int(jnp.sum(ours.terminated))
        boxes_gained += int(jnp.sum(ours.reward > 0))
    assert batch * steps >= 10_000
    assert solved_seen > 0 and boxes_gained > 0, "the random play should solve some easy levels"


def solve_bfs(board: np.ndarray, limit: int = 200_000) -> int | None:
    """Length of a shortest solution (moves) by breadth-first search over (player, boxes), or
    None if there is none (or the search space exceeds ``limit`` states)."""
    board = np.asarray(board)
    rows, cols = board.shape
    walls = {(r, c) for r in range(rows) for c in range(cols) if board[r, c] == S.WALL}
    on_target = (S.TARGET, S.BOX_ON_TARGET, S.PLAYER_ON_TARGET)
    targets = frozenset((r, c) for r in range(rows) for c in range(cols) if board[r, c] in on_target)
    boxes = frozenset((r, c) for r in range(rows) for c in range(cols) if board[r, c] in (S.BOX, S.BOX_ON_TARGET))
    (pr,), (pc,) = np.nonzero(board >= S.PLAYER)
    start = ((int(pr), int(pc)), boxes)
    seen = {start}
    queue = collections.deque([(start, 0)])

    def blocked(cell):
        r, c = cell
        return cell in walls or not (0 <= r < rows and 0 <= c < cols)

    while queue:
        (player, boxes), depth = queue.popleft()
        if boxes <= targets:
            return depth
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            ahead = (player[0] + dr, player[1] + dc)
            if blocked(ahead):
                continue
            new_boxes = boxes
            if ahead in boxes:
                beyond = (ahead[0] + dr, ahead[1] + dc)
                if blocked(beyond) or beyond in boxes:
                    continue
                new_boxes = (boxes - {ahead}) | {beyond}
            nxt = (ahead, new_boxes)
            if nxt not in seen:
                if len(seen) >= limit:
                    return None
                seen.add(nxt)
                queue.append((nxt, depth + 1))
    return None


def test_bfs_oracle_on_hand_levels():
    assert solve_bfs(S.parse_level(TINY)) == 1
    assert solve_bfs(S.parse_level("######\n#@$-.#\n######")) == 2
    assert solve_bfs(S.parse_level("#####\n#$--#\n#.-@#\n#####")) is None  # box in a corner


@pytest.mark.slow
@pytest.mark.parametrize("size,boxes,reverse_steps", [(6, 1, 12), (6, 2, 10), (7, 2, 16), (7, 3, 8)])
def test_generated_levels_are_solvable_within_their_reverse_steps(size, boxes, reverse_steps):
    """Every sampled level has a solution, and the reversed walk bounds its length."""
    env = jaxgym.make("sokoban", size=size, boxes=boxes, reverse_steps=reverse_steps)
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(size * 10 + boxes), 24))
    for board in np.asarray(states.board):
        assert int(np.sum(board >= S.PLAYER)) == 1
        assert int(np.sum((board == S.BOX) | (board == S.BOX_ON_TARGET))) == boxes
        assert not S.is_solved(jnp.asarray(board))
        length = solve_bfs(board)
        assert length is not None, env.describe(env.from_board(board))
        assert 2 <= length <= reverse_steps


def test_fallback_level_is_solvable_and_unsolved():
    for size, boxes in [(5, 1), (5, 3), (10, 4), (16, 14)]:
        board = S.fallback_level(size, boxes)
        jaxgym.make("sokoban", size=size, boxes=boxes).from_board(board)  # passes the checks
        if size <= 10:
            assert solve_bfs(board) >= 2


@pytest.mark.slow
def test_generator_rarely_needs_a_second_draw():
    keys = jax.random.split(jax.random.key(2), 1000)
    _, ok = jax.jit(jax.vmap(lambda k: S.generate_candidate(k, 10, 4, 34)))(keys)
    # Draws are independent: the chance that all MAX_ATTEMPTS fail is (1 - rate)**16.
    assert float(jnp.mean(ok)) > 0.8


@pytest.mark.slow
def test_fresh_levels_are_valid_and_vary():
    env = jaxgym.make("sokoban")
    boards = np.asarray(jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(3), 512)).board)
    assert (boards[:, [0, -1], :] == S.WALL).all() and (boards[:, :, [0, -1]] == S.WALL).all()
    assert ((boards == S.BOX) | (boards == S.BOX_ON_TARGET)).sum(axis=(1, 2)).tolist() == [4] * 512
    assert (boards == S.BOX).any(axis=(1, 2)).all()
    assert len({b.tobytes() for b in boards}) > 500
    fallback = S.fallback_level(10, 4)
    assert sum(np.array_equal(b, fallback) for b in boards) <= 1


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), actions=st.lists(st.integers(-2, 5), min_size=1, max_size=40))
def test_invariants_under_any_actions(seed, actions):
    """Boxes are conserved, walls and targets fixed, exactly one player never on a wall or
    box; a move is legal exactly when it changes the board, and the mask predicts it."""
    env = jaxgym.make("sokoban", size=7, boxes=2)
    state = _reset(env, seed)
    walls0, targets0, boxes0, _ = (np.asarray(x) for x in S.decode(state.board))
    for action in actions:
        predicted = bool(state.legal_action_mask[action]) if 0 <= action < 4 else False
        before = np.asarray(state.board)
        state = _step(env, state, action)
        walls, targets, boxes, player = (np.asarray(x) for x in S.decode(state.board))
        assert (walls == walls0).all() and (targets == targets0).all()
        assert boxes.sum() == boxes0.sum() and player.sum() == 1
        assert not (player & (walls | boxes)).any() and not (boxes & walls).any()
        assert bool(state.last_action_legal) == predicted == (not np.array_equal(before, state.board))
        assert int(state.score) == int((boxes & targets).sum())
        assert bool(state.terminated) == bool((boxes <= targets).all())


_reset_jit = {}


def _reset(env, seed):
    fn = _reset_jit.setdefault(("reset", env.size), jax.jit(env.reset))
    return fn(jax.random.key(seed))


def _step(env, state, action):
    fn = _reset_jit.setdefault(("step", env.size), jax.jit(env.step))
    return fn(state, jnp.int32(action), jax.random.key(0))


def test_rewards_follow_the_documented_numbers():
    env = jaxgym.make("sokoban", size=5, boxes=2)
    level = "#####\n#@$.#\n#-$-#\n#-.-#\n#####"
    state = env.from_board(level)
    assert int(state.score) == 0 and not bool(state.terminated)
    state = _jit_step(env)(state, S.RIGHT, jax.random.key(0))  # box onto a target
    assert float(state.reward) == pytest.approx(S.BOX_ON_TARGET_REWARD + S.STEP_COST)
    assert int(state.score) == 1 and not bool(state.terminated)
    state = _jit_step(env)(state, S.RIGHT, jax.random.key(0))  # blocked by the box: a no-op
    assert not bool(state.last_action_legal) and float(state.reward) == pytest.approx(S.STEP_COST)
    state = _jit_step(env)(state, S.DOWN, jax.random.key(0))  # pushes the second box onto (3, 2)
    assert env.describe(state) == "#####\n#--*#\n#-@-#\n#-*-#\n#####"
    assert float(state.reward) == pytest.approx(S.BOX_ON_TARGET_REWARD + S.SOLVED_BONUS + S.STEP_COST)
    assert bool(state.terminated) and int(state.score) == 2
    state = _jit_step(env)(state, INVALID_ACTION, jax.random.key(0))
    assert not bool(state.last_action_legal) and int(state.step_count) == 4
    off = _jit_step(env)(env.from_board("#####\n#@*-#\n#-$.#\n#---#\n#####"), S.RIGHT, jax.random.key(0))
    assert float(off.reward) == pytest.approx(-S.BOX_ON_TARGET_REWARD + S.STEP_COST)


def test_truncation_at_max_steps():
    env = jaxgym.make("sokoban", size=5, boxes=1, max_steps=3)
    state = env.from_board("#####\n#@--#\n#-$-#\n#-.-#\n#####")
    for t in range(3):
        assert not bool(state.truncated)
        state = _jit_step(env)(state, S.LEFT, jax.random.key(t))
    assert bool(state.truncated) and not bool(state.terminated)


def test_boxoban_loader_reads_every_level():
    levels = S.load_boxoban(BOXOBAN_TEXT)
    assert len(levels) == 3
    env = jaxgym.make("sokoban")
    for board, (boxes, on_target) in zip(levels, [(3, 0), (2, 0), (4, 1)], strict=True):
        assert board.shape == (10, 10)
        state = env.from_board(board)
        assert int(np.sum((board == S.BOX) | (board == S.BOX_ON_TARGET))) == boxes
        assert int(state.score) == on_target
    first = env.describe(env.from_board(levels[0])).split("\n")
    assert first[5] == "##--$-.@##" and first[2] == "####----##"
    assert S.parse_level(env.describe(env.from_board(levels[2]))).tolist() == levels[2].tolist()
    assert levels[2][6, 5] == S.PLAYER_ON_TARGET
    assert solve_bfs(levels[1]) is not None


def test_from_board_text_pads_small_levels_with_wall():
    state = jaxgym.make("sokoban", size=6, boxes=1).from_board(TINY)
    assert jaxgym.make("sokoban", size=6, boxes=1).describe(state).split("\n") == [
        "######",
        "#@$.##",
        "######",
        "######",
        "######",
        "######",
    ]
    assert state.legal_action_mask.tolist() == [False, True, False, False]


@pytest.mark.parametrize(
    "board,message",
    [
        ("#####\n#-$.#\n#####", "exactly one player"),
        ("#####\n#@$$#\n#####", "as many targets"),
        ("#####\n#@-.#\n#####", "at least one box"),
        ("#####\n#@$x#\n#####", "character 'x'"),
        (np.zeros((4, 4), np.int32), "shape"),
        (np.full((5, 5), 9), "0..6"),
        (np.full((5, 5), 0.5), "integer"),
    ],
)
def test_from_board_rejects_bad_levels(board, message):
    with pytest.raises(ValueError, match=message):
        jaxgym.make("sokoban", size=5, boxes=1).from_board(board)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"size": 4}, "size=4"),
        ({"boxes": 0}, "boxes=0"),
        ({"size": 6, "boxes": 5}, "boxes=5"),
        ({"reverse_steps": 0}, "reverse_steps=0"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"size": 2.5}, "size"),
        ({"level_pool": -1}, "level_pool=-1"),
        ({"level_pool": 100_001}, "level_pool=100001"),
        ({"pool_seed": -1}, "pool_seed=-1"),
    ],
)
def test_parameters_are_validated(params, message):
    with pytest.raises(ValueError, match=message):
        jaxgym.make("sokoban", **params)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<answer>up</answer>", S.UP),
        ("<perception>...</perception><think>go left</think><answer> Left </answer>", S.LEFT),
        ("<answer>move DOWN, then right</answer>", S.DOWN),
        ("<answer>1</answer>", S.RIGHT),
        ("<answer>right</answer> on second thought <answer>down</answer>", S.DOWN),
        ("<answer>７</answer>", 7),
        ("<answer>-1</answer>", INVALID_ACTION),
        ("<answer>support</answer>", UNPARSEABLE),
        ("<answer>north</answer>", UNPARSEABLE),
        ("up", UNPARSEABLE),
        ("<answer>up", UNPARSEABLE),
        (None, UNPARSEABLE),
    ],
)
def test_parse_answer_is_lenient_and_defined(text, expected):
    assert jaxgym.make("sokoban").parse_answer(text) == expected


def test_format_answer_round_trips_and_prompt_states_the_rules():
    env = jaxgym.make("sokoban")
    for action in range(4):
        assert env.parse_answer(env.format_answer(action)) == action
    assert env.format_answer(INVALID_ACTION) == "<answer>-1</answer>"
    prompt = env.prompt()
    for needed in ("10x10", "up, right, down, left", "<perception>", "<answer>", "# wall", "costs 0.1"):
        assert needed in prompt


LITERAL_LEVEL = S.load_boxoban(BOXOBAN_TEXT)[2]


def test_golden_image():
    env = jaxgym.make("sokoban")
    state = env.from_board(LITERAL_LEVEL).replace(step_count=jnp.int32(17))
    assert_matches_golden(np.asarray(jax.jit(env.render)(state)), "sokoban_10x10")


def test_golden_image_small_and_rectangular():
    env = jaxgym.make("sokoban", size=7, boxes=2, image_size=(112, 168))
    state = env.from_board("#######\n#@-$-.#\n#-*---#\n#--$-.#\n#######")
    assert_matches_golden(np.asarray(_jit_render(env)(state)), "sokoban_7x7_112x168")


@pytest.mark.slow
def test_render_tracks_the_board():
    env = jaxgym.make("sokoban", size=5, boxes=1, image_size=112)
    state = env.from_board("#####\n#@$.#\n#---#\n#---#\n#####")
    moved = _jit_step(env)(state, S.RIGHT, jax.random.key(0))
    before, after = np.asarray(_jit_render(env)(state)), np.asarray(_jit_render(env)(moved))
    assert not np.array_equal(before, after)
    same = env.from_board("#####\n#-@*#\n#---#\n#---#\n#####").replace(step_count=jnp.int32(1))
    assert np.array_equal(after, np.asarray(_jit_render(env)(same)))


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="too small"):
        jaxgym.make("sokoban", size=16, image_size=56)


@pytest.mark.slow
def test_a_level_pool_is_generated_once_and_resets_draw_from_it():
    env = jaxgym.make("sokoban", size=6, boxes=2, level_pool=5, pool_seed=3)
    keys = jax.random.split(jax.random.key(3), 5)
    expected = jax.vmap(lambda k: S.generate_level(k, 6, 2, env.reverse_steps))(keys)
    np.testing.assert_array_equal(env.pool, expected)
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 64))
    boards = np.asarray(states.board)
    index = [next(i for i, level in enumerate(env.pool) if (level == board).all()) for board in boards]
    assert len(set(index)) >= 4  # uniform over 5 levels: 64 draws miss one with probability ~1e-6
    fresh = env.from_board(boards[0])
    for field in ("legal_action_mask", "score", "terminated", "step_count"):
        np.testing.assert_array_equal(getattr(states, field)[0], getattr(fresh, field), err_msg=field)
    assert jaxgym.make("sokoban", size=6, boxes=2).pool is None
