"""benchmarks/gpu_check.py's CPU-checkable parts: arguments, the model shapes, the trainer
config, and its refusal to start without a GPU. (The check itself needs one.)"""

from __future__ import annotations

import pytest

from benchmarks import gpu_check


def test_defaults_give_a_valid_bf16_vllm_config():
    args = gpu_check.parse_args([])
    assert (args.shape, args.steps, args.states, args.group_size) == ("3b", 3, 4, 4)
    config = gpu_check.train_config(args, "runs/gpu_check/model")
    assert (config.rollout_engine, config.precision, config.model) == ("vllm", "bf16", "runs/gpu_check/model")
    assert config.vllm_max_pixels == 448 * 448 and config.game_params == {"image_size": 448}
    assert config.steps * config.states_per_step * config.group_size == 48


@pytest.mark.parametrize(("shape", "layers", "billions"), [("3b", 36, (3.3, 3.6)), ("7b", 28, (7.0, 7.5))])
@pytest.mark.slow
def test_shapes_are_qwen25_vl_sized(shape, layers, billions):
    """The real decoder and vision sizes (head_dim 128, which vLLM serves) and their
    parameter count: Qwen2.5-VL-3B / 7B's minus the embedding of their 151,936-token vocabulary."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from learner.models import build_tiny_tokenizer, tiny_config

    model_shape = gpu_check.model_shape(gpu_check.parse_args(["--shape", shape]))
    assert model_shape.head_dim == 128 and model_shape.num_layers == layers
    tokenizer = build_tiny_tokenizer(model_shape.vocab_size)
    with torch.device("meta"):  # sizes only, no memory
        model = Qwen2_5_VLForConditionalGeneration(tiny_config(tokenizer, model_shape))
    count = sum(p.numel() for p in model.parameters()) / 1e9
    assert billions[0] < count < billions[1], count


def test_layers_override_and_bad_arguments():
    assert gpu_check.model_shape(gpu_check.parse_args(["--layers", "4"])).num_layers == 4
    for bad in (["--layers", "0"], ["--group-size", "1"], ["--gpu-memory-utilization", "1.5"], ["--shape", "1b"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_without_a_gpu_it_stops_with_what_to_run_instead(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match=r"needs a CUDA GPU.*pytest tests/rollout_vllm"):
        gpu_check.main(["--out", "unused"])


def test_length_reward_spreads_a_group():
    scores = gpu_check.LengthReward().score(None, [["", "ab", "abcd"]], None)
    assert scores.overall.shape == (1, 3) and scores.overall[0].tolist() == pytest.approx([0.0, 0.02, 0.04])
