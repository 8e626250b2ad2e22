"""The throughput benchmark's own machinery: its action sampler and a tiny end-to-end run.
(Its speed numbers are measured by running it, never asserted here.)"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import throughput


@pytest.mark.parametrize("num_actions", [1, 4, 7, 112, 1296, 20736])
def test_random_legal_action_is_uniform_over_the_legal_actions(num_actions):
    rng = np.random.default_rng(num_actions)
    legal = rng.random(num_actions) < 0.3
    legal[rng.integers(num_actions)] = True
    draws = 6000
    picks = np.asarray(
        jax.jit(jax.vmap(throughput.random_legal_action, in_axes=(0, None)))(
            jax.random.split(jax.random.key(num_actions), draws), jnp.asarray(legal)
        )
    )
    assert legal[picks].all()
    counts = np.bincount(picks, minlength=num_actions)[legal]
    if len(counts) <= 50:  # every legal action drawn about equally often (chi-square, 5 sigma)
        expected = draws / len(counts)
        chi2 = ((counts - expected) ** 2 / expected).sum()
        dof = len(counts) - 1
        assert chi2 < dof + 5 * np.sqrt(2 * max(dof, 1))
    else:  # too many to count each: the spread of picks over the legal actions is uniform
        ranks = np.searchsorted(np.flatnonzero(legal), picks) / len(counts)
        assert abs(ranks.mean() - 0.5) < 0.02 and abs((ranks < 0.25).mean() - 0.25) < 0.03


def test_random_legal_action_without_legal_actions_is_zero():
    assert int(throughput.random_legal_action(jax.random.key(0), jnp.zeros(20736, bool))) == 0


@pytest.mark.slow
def test_a_tiny_run_writes_rows_table_and_plot(tmp_path, capsys):
    rows = throughput.main(
        [
            "--games",
            "2048",
            "--batch-sizes",
            "2",
            "--quick",
            "--no-peers",
            "--image-size",
            "56",
            "--run-dir",
            str(tmp_path),
        ]
    )
    payload = json.loads((tmp_path / "throughput.json").read_text())
    assert (tmp_path / "throughput.png").stat().st_size > 0
    kinds = {(r["library"], r["steps_per_s"] is not None, r["frames_per_s"] is not None) for r in payload["rows"]}
    assert ("jaxgym", True, False) in kinds and ("jaxgym", False, True) in kinds
    rendered = [r for r in payload["rows"] if r["library"] == "jaxgym" and r["frames_per_s"]]
    assert rendered[0]["image_hw"] == [56, 56] and rendered[0]["compile_s"] >= 0
    assert all(r["batch"] == 2 for r in payload["rows"]) and len(rows) == len(payload["rows"])
    assert "run directory" in capsys.readouterr().out


@pytest.mark.slow
def test_carried_render_steps_write_the_frames_of_the_state_they_return():
    """The steady-state step+render loop renders every step (its frames are the returned
    state's, not a stale or optimised-away buffer) and continues from the carry it is given."""
    import jaxgym

    env = jaxgym.AutoReset(jaxgym.make("2048", image_size=56))
    state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2))
    frames = jnp.zeros((2, 56, 56, 3), jnp.uint8)
    before = jax.tree_util.tree_map(np.asarray, state)  # the carry is donated: its buffers are gone after the call
    run = jax.jit(throughput.carried_render_steps(env.step, lambda s: s.legal_action_mask, env.render, 2, 3,
                                                  env.step_batch), donate_argnums=0)
    new_state, new_frames = run((state, frames), jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(new_frames), np.asarray(jax.vmap(env.render)(new_state)))
    from tests.bridges_support import leaves_equal

    assert not leaves_equal(new_state, before)  # three moves later
