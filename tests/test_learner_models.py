"""The built-in tiny policy, loading any Qwen2-VL-family checkpoint, and the export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from learner import models


def _prompt_inputs(processor, images):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the board."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text] * len(images), images=list(images), return_tensors="pt", padding=True)


@pytest.fixture(scope="module")
def tiny():
    return models.load_policy(models.TINY)


def test_tiny_policy_is_deterministic_per_seed():
    a, _ = models.build_tiny_policy(seed=3)
    b, _ = models.build_tiny_policy(seed=3)
    c, _ = models.build_tiny_policy(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert models.build_tiny_tokenizer().get_vocab() == models.build_tiny_tokenizer().get_vocab()


def test_processor_expands_one_pad_token_per_merged_patch(tiny):
    model, processor = tiny
    images = np.random.default_rng(0).integers(0, 256, (2, 112, 168, 3), dtype=np.uint8)
    inputs = _prompt_inputs(processor, images)
    # 112 x 168 pixels: 8 x 12 patches of 14, merged 2 x 2 -> 24 image tokens per image; no resize.
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 12], [1, 8, 12]]
    pads = (inputs["input_ids"] == model.config.image_token_id).sum(dim=1)
    assert pads.tolist() == [24, 24]
    assert models.vision_token_ids(model.config)["image"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.image_token_id in models.banned_token_ids(model.config)


def test_export_round_trips_through_from_pretrained(tiny, tmp_path):
    from safetensors import safe_open
    from transformers import Qwen2_5_VLForConditionalGeneration

    model, processor = tiny
    out = models.export_policy(model, processor, tmp_path / "export")
    images = np.random.default_rng(1).integers(0, 256, (1, 56, 84, 3), dtype=np.uint8)
    inputs = _prompt_inputs(processor, images)
    with torch.no_grad():
        expected = model(**inputs).logits

    loaded, loaded_processor = models.load_policy(str(out))
    reloaded_inputs = _prompt_inputs(loaded_processor, images)
    assert all(torch.equal(inputs[k], reloaded_inputs[k]) for k in inputs)
    with torch.no_grad():
        assert torch.equal(loaded(**reloaded_inputs).logits, expected)
    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(out)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values(), strict=True))

    # The on-disk names (what vLLM loads) are exactly checkpoint_name of the in-memory names.
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        disk_names = set(f.keys())
    assert disk_names == {models.checkpoint_name(n) for n, _ in model.named_parameters()}
    assert "visual.patch_embed.proj.weight" in disk_names and "model.embed_tokens.weight" in disk_names


def test_missing_model_path_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no" / "such" / "model")
    with pytest.raises(ValueError, match="does not exist") as info:
        models.load_policy(missing)
    assert missing in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json") as info:
        models.load_policy(str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(info.value)


def test_model_without_vision_tower_is_a_clear_error(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    text_only = Qwen2ForCausalLM(
        Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1)
    )
    text_only.save_pretrained(tmp_path / "text-only")
    assert json.loads((tmp_path / "text-only" / "config.json").read_text())["model_type"] == "qwen2"
    with pytest.raises(ValueError, match="no vision tower") as info:
        models.load_policy(str(tmp_path / "text-only"))
    assert "text-only" in str(info.value) and "'qwen2'" in str(info.value)
    with pytest.raises(ValueError, match="no vision tower"):
        models.vision_tower(text_only)


def test_tiny_presets_build_their_shapes_and_the_default_is_one_vllm_serves():
    default = models.tiny_preset(models.TINY)
    assert default.vllm and default.head_dim in models.VLLM_HEAD_DIMS
    model, _ = models.build_tiny_policy()
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_attention_heads, text.num_key_value_heads) == (128, 4, 2)
    assert text.rope_parameters["mrope_section"] == [4, 6, 6] and vision.hidden_size == 64
    small, _ = models.load_policy("tiny-h64")
    assert small.config.text_config.hidden_size == 64
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "sizes, message",
    [
        (dict(hidden_size=64, mrope_section=(2, 3, 3)), "head_dim=16 .* vLLM"),
        (dict(num_heads=3), "hidden_size=128 must be a multiple of num_heads=3"),
        (dict(num_kv_heads=3), "num_heads=4 must be a multiple of num_kv_heads=3"),
        (dict(mrope_section=(4, 4, 4)), r"mrope_section=\[4, 4, 4\] .* head_dim/2=16"),
        (dict(vision_hidden_size=60), "vision_hidden_size=60"),
        (dict(image_size=100), "image_size=100 must be a multiple of 28"),
        (dict(vocab_size=100), "vocab_size=100"),
    ],
)
def test_tiny_shapes_that_transformers_or_vllm_reject_are_clear_errors(sizes, message):
    with pytest.raises(ValueError, match=message):
        models.build_tiny_policy(shape=models.TinyConfig(**sizes))
    # Without the vLLM requirement, head_dim 16 is a valid transformers model.
    models.TinyConfig(hidden_size=64, mrope_section=(2, 3, 3), vllm=False).validate()
    with pytest.raises(ValueError, match="not a tiny preset"):
        models.tiny_preset("tiny-huge")


def test_every_board_number_and_tile_word_is_one_token():
    tokenizer = models.build_tiny_tokenizer()
    for exponent in range(1, 18):
        row = f" {2**exponent} | - "
        assert tokenizer.tokenize(row)[0] == f"Ġ{2**exponent}", row
    for word in ("Red", "circle", "Dark", "green", "Steel", "star", "airplane"):
        assert len(tokenizer.tokenize(f" {word}")) == 1, word


def test_the_tiny_tokenizer_from_the_games_corpus_is_the_one_the_shipped_cold_starts_saved():
    from transformers import AutoTokenizer

    built = json.loads(models.build_tiny_tokenizer().backend_tokenizer.to_str())["model"]
    for game in ("2048", "shisensho"):
        directory, _ = models.shipped_cold_start(game)
        shipped = AutoTokenizer.from_pretrained(directory)
        assert json.loads(shipped.backend_tokenizer.to_str())["model"] == built, game


def test_a_registered_games_corpus_teaches_the_tiny_tokenizer_its_words(monkeypatch):
    import jaxgym
    from jaxgym import registry

    assert len(models.build_tiny_tokenizer().tokenize(" quokkaquill")) > 1

    class Quokka(jaxgym.Game2048):
        name = "quokka"
        tokenizer_corpus = (" quokkaquill",) * 40

    class Silent(jaxgym.Game2048):  # inherits 2048's lines: they still count once
        name = "silent"

    monkeypatch.setitem(registry._REGISTRY, "quokka", {0: Quokka})
    monkeypatch.setitem(registry._REGISTRY, "silent", {0: Silent})
    corpus = registry.tokenizer_corpus()
    assert corpus.count(" quokkaquill") == 40
    assert corpus.count(jaxgym.Game2048.tokenizer_corpus[-1]) == 1
    assert len(models.build_tiny_tokenizer().tokenize(" quokkaquill")) == 1


def test_a_missing_path_under_a_local_directory_fails_at_once_without_the_hub(tmp_path, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="'runs/export' does not exist"):
        models.load_policy("runs/export")
    assert time.perf_counter() - start < 2.0
    assert models.resolve_model_source("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
