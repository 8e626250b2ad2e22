"""Policies: the built-in tiny Qwen2.5-VL and any Qwen2-VL-family checkpoint.

``load_policy(spec)`` returns ``(model, processor)`` for

- ``"tiny"`` (or ``None``): a tiny random-weight Qwen2.5-VL built from a config alone, with a
  byte-level BPE tokenizer trained on the fly from an embedded corpus (the Qwen special
  tokens, a small chat template) and the PIL image processor. No download, no torchvision,
  built in well under a second, deterministic for a seed. It generates gibberish: it exists
  so that the learner runs end to end on a CPU and its tests can check real behaviour.
- a local directory (our own ``export_policy`` output, or any saved Qwen2-VL, Qwen2.5-VL or
  Qwen3-VL checkpoint),
- a Hugging Face hub id such as ``"Qwen/Qwen2.5-VL-7B-Instruct"`` (downloaded or cached).

The processor is a ``Qwen2VLProcessor`` without a video processor (the video processor
needs torchvision, which must not be installed next to the CPU build of torch): it takes
``text=`` and ``images=`` and expands each ``<|image_pad|>`` into one pad token per merged
patch, like the stock one. Loading the tokenizer and image processor separately is what
round-trips here; ``AutoProcessor`` does not.

``export_policy`` writes a directory that ``from_pretrained`` (and so vLLM, and the
evaluator's ``hf:<path>`` policy) loads: weights under their on-disk names, config,
generation config, tokenizer, chat template and image processor.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY = "tiny"
"""The ``--model`` value that selects the built-in tiny random-weight Qwen2.5-VL."""

COLD_START = "cold-start"
"""The ``--model`` value that selects the cold-started tiny checkpoint the project ships for
the game (``learner/assets/cold-start-<game>/``, rebuilt by the command in its ``jaxgym.json``),
or the random-weight tiny model for a game without one."""

ASSETS = Path(__file__).resolve().parent / "assets"

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen's chat format without the default system prompt: one image placeholder per image
# part, the text parts verbatim.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# What the tiny tokenizer's merges are learnt from: the response protocol's tags and the
# prompts' common words (here), and each registered game's own words, board cells and
# answers (``Env.tokenizer_corpus``, gathered by ``jaxgym.registry.tokenizer_corpus``).
# Byte-level BPE covers any other text. Frozen: together they define the tokenizer the
# shipped cold-start checkpoints were trained with.
_PROTOCOL_CORPUS = """\
You are playing a game on a board, shown in the image. Each tile shows a colour and a shape;
empty cells are blank. First describe the board inside <perception></perception>: one line
per row from top to bottom, cells separated by |. Then reason about your move inside
<think></think>. Finally give your move inside <answer></answer>, for example <answer>3</answer>.
 Rows and columns are numbered from 0 at the
top-left cell.
 score remaining goal points
 row column
0 1 2 3 4 5 6 7 8 9 10 11 12
 (0, 0) (1, 2) (3, 4) (5, 5)
"""


def tiny_tokenizer_corpus() -> list[str]:
    """The lines the tiny tokenizer learns from: the registered games' own lines, then the
    response protocol's (the BPE counts words, so their order changes nothing)."""
    import jaxgym  # registers the games

    return jaxgym.registry.tokenizer_corpus() + _PROTOCOL_CORPUS.splitlines()


# vLLM's paged attention only has kernels for these head sizes.
VLLM_HEAD_DIMS = (32, 64, 80, 96, 112, 120, 128, 160, 192, 224, 256)


@dataclass(frozen=True)
class TinyConfig:
    """The shape of a tiny random-weight Qwen2.5-VL (:func:`build_tiny_policy`).

    Attributes:
        hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads: the text decoder.
            ``head_dim = hidden_size / num_heads``.
        mrope_section: how the ``head_dim / 2`` rotary frequencies split over (time, height,
            width); must sum to ``head_dim / 2``.
        vision_depth, vision_hidden_size, vision_intermediate_size, vision_heads: the vision
            tower (its output is projected to ``hidden_size``).
        vocab_size: size of the byte-level BPE vocabulary (>= 263); every 2048 tile value is
            one token at the default size.
        image_size: the board side in pixels the model is meant to see (a multiple of 28, so
            the processor never resizes; 28 px per cell puts one merged image token on each
            cell of a 4x4 board at 112 px, 6x6 at 168 px). Used by the cold start and the
            benchmark when they render boards; the processor itself accepts any size.
        vllm: require a shape vLLM can serve (head_dim in :data:`VLLM_HEAD_DIMS`).
    """

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 128
    vision_heads: int = 2
    vocab_size: int = 640
    image_size: int = 112
    vllm: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def validate(self) -> TinyConfig:
        """Raise ``ValueError`` naming the first shape transformers (or vLLM) would reject."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"tiny model shape: {message}")

        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "vision_depth",
                     "vision_hidden_size", "vision_intermediate_size", "vision_heads", "image_size"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                 f"{name}={getattr(self, name)!r} must be an int >= 1")
        need(self.hidden_size % self.num_heads == 0,
             f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads}")
        need(self.num_heads % self.num_kv_heads == 0,
             f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        need(self.head_dim % 2 == 0, f"head_dim={self.head_dim} (hidden_size / num_heads) must be even")
        need(len(self.mrope_section) == 3 and sum(self.mrope_section) == self.head_dim // 2,
             f"mrope_section={list(self.mrope_section)} must be 3 numbers summing to head_dim/2={self.head_dim // 2}")
        vision_head_dim = self.vision_hidden_size // self.vision_heads
        need(self.vision_hidden_size % self.vision_heads == 0 and vision_head_dim % 4 == 0,
             f"vision_hidden_size={self.vision_hidden_size} / vision_heads={self.vision_heads} must be a multiple of 4 "
             f"(the vision rotary embedding splits it in quarters)")
        need(self.vocab_size >= 256 + len(SPECIAL_TOKENS), f"vocab_size={self.vocab_size} must be >= "
             f"{256 + len(SPECIAL_TOKENS)} (256 bytes and the special tokens)")
        need(self.image_size % 28 == 0, f"image_size={self.image_size} must be a multiple of 28 (patch 14 x merge 2)")
        need(not self.vllm or self.head_dim in VLLM_HEAD_DIMS,
             f"head_dim={self.head_dim} (hidden_size {self.hidden_size} / num_heads {self.num_heads}) is not one vLLM "
             f"serves ({', '.join(map(str, VLLM_HEAD_DIMS))}); change the sizes, or set vllm=False for an "
             f"HF-only model")
        return self


TINY_PRESETS: dict[str, TinyConfig] = {
    # The default: vLLM can serve it (head_dim 32), and it learns to read a 4x4 board on a CPU.
    TINY: TinyConfig(),
    # The original, smaller shape (head_dim 16: transformers only, no vLLM); ~4x fewer FLOPs.
    "tiny-h64": TinyConfig(hidden_size=64, intermediate_size=128, mrope_section=(2, 3, 3), vision_hidden_size=32,
                           vision_intermediate_size=64, vllm=False),
}
"""``--model`` values that build a tiny random-weight Qwen2.5-VL, and their shapes."""

VL_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
"""``config.model_type`` values the learner supports: the Qwen2-VL family."""


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def build_tiny_tokenizer(vocab_size: int = TinyConfig.vocab_size) -> Any:
    """A byte-level BPE tokenizer with the Qwen special tokens, trained on an embedded corpus.

    Deterministic: the same ``vocab_size`` gives the same vocabulary and merges. At the
    default size every 2048 tile value (2 .. 131072, with its leading space) and every tile
    word of the games' perception texts is one token.

    >>> tok = build_tiny_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("<|im_start|>user")["input_ids"])[:1]
    ['<|im_start|>']
    >>> tok.decode(tok("<answer>(0, 1) (2, 3)</answer>")["input_ids"])
    '<answer>(0, 1) (2, 3)</answer>'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} is too small; allowed: >= {256 + len(SPECIAL_TOKENS)}")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(tiny_tokenizer_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_image_processor(**overrides: Any) -> Any:
    """Qwen2-VL's image processor on the PIL backend (no torchvision), Qwen's defaults.

    Boards whose sides are multiples of 28 (patch 14 x merge 2) within the pixel bounds are
    not resized, so the trainer and any rollout engine see identical pixels."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(**overrides)


def _processor_class() -> type:
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

    class VLProcessor(Qwen2VLProcessor):
        """``Qwen2VLProcessor`` for images only: it accepts ``video_processor=None``."""

        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    return VLProcessor


def make_processor(tokenizer: Any, image_processor: Any, chat_template: str | None = None) -> Any:
    """Combine a tokenizer and an image processor into an image-only Qwen2-VL processor."""
    template = chat_template or getattr(tokenizer, "chat_template", None) or CHAT_TEMPLATE
    if getattr(tokenizer, "chat_template", None) is None:
        tokenizer.chat_template = template
    return _processor_class()(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=template
    )


def tiny_preset(spec: str) -> TinyConfig:
    """The :class:`TinyConfig` of a ``--model`` value in :data:`TINY_PRESETS`.

    >>> tiny_preset("tiny").head_dim
    32
    """
    if spec not in TINY_PRESETS:
        raise ValueError(f"model={spec!r} is not a tiny preset; allowed: {', '.join(TINY_PRESETS)}")
    return TINY_PRESETS[spec]


def tiny_config(tokenizer: Any, shape: TinyConfig | None = None) -> Any:
    """The ``Qwen2_5_VLConfig`` of a tiny Qwen2.5-VL of ``shape`` (default :class:`TinyConfig`:
    text hidden 128, 2 layers, 4 heads, 2 KV heads, head_dim 32; vision depth 2, hidden 64;
    about 0.7 M parameters) for ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    shape = (shape or TinyConfig()).validate()
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=32768,
        vocab_size=len(tokenizer),
        rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=list(shape.mrope_section)),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision = dict(
        depth=shape.vision_depth,
        hidden_size=shape.vision_hidden_size,
        intermediate_size=shape.vision_intermediate_size,
        num_heads=shape.vision_heads,
        out_hidden_size=shape.hidden_size,
        window_size=112,
        fullatt_block_indexes=[shape.vision_depth - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def build_tiny_policy(seed: int = 0, dtype: Any = None, shape: TinyConfig | str | None = None) -> tuple[Any, Any]:
    """A tiny random-weight Qwen2.5-VL and its processor. ``shape``: a :class:`TinyConfig`,
    a name in :data:`TINY_PRESETS`, or ``None`` (the default ``"tiny"``). Weights depend only
    on ``seed`` and the shape (the global torch RNG is left as it was).

    Raises ``ValueError`` naming the offending size for a shape transformers or vLLM rejects."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    shape = tiny_preset(shape) if isinstance(shape, str) else (shape or TinyConfig())
    shape.validate()
    _quiet_transformers()
    tokenizer = build_tiny_tokenizer(shape.vocab_size)
    processor = make_processor(tokenizer, build_image_processor())
    config = tiny_config(tokenizer, shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    if dtype is not None:
        model = model.to(_torch_dtype(dtype))
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    return model, processor


def shipped_cold_start(game: str) -> tuple[Path, dict[str, Any]] | None:
    """The shipped cold-started tiny checkpoint of ``game`` (a bare name) and its record
    (``jaxgym.json``: the game parameters it was trained on, the command that rebuilds it, its
    measures), or ``None`` when the project ships none for that game."""
    directory = ASSETS / f"{COLD_START}-{game}"
    record = directory / "jaxgym.json"
    if not record.is_file():
        return None
    return directory, json.loads(record.read_text())


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: {', '.join(names)}")
    return names[dtype]


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def _looks_like_local_path(spec: str) -> bool:
    """Anything that is not of the hub's ``name`` / ``org/name`` form is meant as a path, and
    so is an ``org/name`` whose ``org`` is a local directory (``runs/export``): asking the hub
    for it would retry the network for half a minute before failing."""
    if _HUB_ID.match(spec) is None or spec.endswith("/") or ".." in spec:
        return True
    parent = Path(spec).expanduser().parent
    return str(parent) not in ("", ".") and parent.is_dir()


def resolve_model_source(spec: str) -> str:
    """A local directory (checked) or a hub id, as ``from_pretrained`` takes it.

    Raises ``ValueError`` naming ``spec`` when it is a path that does not exist or is not a
    model directory."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ValueError(
                f"model path {spec!r} is not a model directory (no config.json in it); pass a directory "
                f"written by save_pretrained / export_policy, a hub id such as Qwen/Qwen2.5-VL-3B-Instruct, "
                f"or {TINY!r}"
            )
        return str(path)
    if _looks_like_local_path(spec):
        raise ValueError(
            f"model path {spec!r} does not exist; pass an existing directory written by save_pretrained / "
            f"export_policy, a hub id such as Qwen/Qwen2.5-VL-3B-Instruct, or {TINY!r}"
        )
    return spec


def check_vision_language_config(config: Any, spec: str) -> None:
    """Raise ``ValueError`` unless ``config`` is a Qwen2-VL-family model with a vision tower."""
    model_type = getattr(config, "model_type", None)
    if getattr(config, "vision_config", None) is None or model_type not in VL_MODEL_TYPES:
        raise ValueError(
            f"model {spec!r} (model_type={model_type!r}) has no vision tower the learner can use; it needs a "
            f"Qwen2-VL-family vision-language model, model_type one of {', '.join(VL_MODEL_TYPES)} "
            f"(for example Qwen/Qwen2.5-VL-7B-Instruct)"
        )


SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
"""The largest safetensors header read (the ``safetensors`` library's own limit)."""


def check_safetensors(path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` unless it is a whole safetensors file: an 8-byte
    header length within the file and :data:`SAFETENSORS_MAX_HEADER`, a JSON header within
    ``bridges.safe_json``'s limits, and every tensor's bytes inside the file. Reads the header
    only, so a file cut short by a killed export is found before ``from_pretrained`` reads it."""
    from bridges.safe_json import loads_bounded

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or length > min(size - 8, SAFETENSORS_MAX_HEADER):
            raise ValueError(f"{path} is not a whole safetensors file: its header claims {length} bytes of "
                             f"{size - 8} in the file (limit {SAFETENSORS_MAX_HEADER}); it was cut short or is "
                             f"corrupt: export the model again")
        raw = f.read(length)
    try:
        header = loads_bounded(raw, max_bytes=SAFETENSORS_MAX_HEADER)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} has an unreadable safetensors header ({error}); export the model again") from None
    ends = [entry.get("data_offsets", [0, 0])[1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict)] if isinstance(header, dict) else None
    if ends is None or any(not isinstance(end, int) for end in ends):
        raise ValueError(f"{path} has a malformed safetensors header; export the model again")
    data = size - 8 - length
    if ends and max(ends) > data:
        raise ValueError(f"{path} is cut short: its tensors need {max(ends)} bytes of data, it holds {data} "
                         f"(an export killed midway?); export the model again")


def check_model_files(source: str) -> None:
    """Check a local model directory's weight files (:func:`check_safetensors`) and that a
    sharded model has every shard its index names; a hub id is left to ``from_pretrained``."""
    local = Path(source)
    if not local.is_dir():
        return
    index = local / "model.safetensors.index.json"
    if index.is_file():
        from bridges.safe_json import loads_bounded

        try:
            shards = sorted(set(loads_bounded(index.read_bytes())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
            raise ValueError(f"{index} is not a safetensors index ({error}); export the model again") from None
        missing = [name for name in shards if not isinstance(name, str) or not (local / name).is_file()]
        if missing:
            raise ValueError(f"model directory {source!r} lacks weight shards {missing[:4]} that its index names "
                             f"(an export killed midway?); export the model again")
    for weights in sorted(local.glob("*.safetensors")):
        check_safetensors(weights)


def _read_chat_template_json(path: Path) -> str | None:
    """The ``chat_template`` string of a ``chat_template.json``; ``ValueError`` naming the file
    for anything else (a list, a number, a template that is no string)."""
    from bridges.safe_json import loads_bounded

    try:
        data = loads_bounded(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it must be {{\"chat_template\": \"...\"}}") from None
    if not isinstance(data, dict) or not isinstance(data.get("chat_template", ""), str):
        raise ValueError(f"{path} must be a JSON object {{\"chat_template\": \"<jinja template>\"}}, got "
                         f"{str(data)[:80]!r}")
    return data.get("chat_template")


def load_processor(source: str) -> Any:
    """The image-only processor of a saved model: its tokenizer, image processor and chat
    template (``chat_template.jinja`` / ``chat_template.json`` if the directory has one)."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(source)
    template = None
    local = Path(source)
    if (local / "chat_template.jinja").is_file():
        template = (local / "chat_template.jinja").read_text()
    elif (local / "chat_template.json").is_file():
        template = _read_chat_template_json(local / "chat_template.json")
    return make_processor(tokenizer, image_processor, template)


def load_policy(spec: str | None = TINY, *, dtype: Any = None, seed: int = 0, **model_kwargs: Any) -> tuple[Any, Any]:
    """``(model, processor)`` for ``spec``: ``"tiny"``/``None`` or another name in
    :data:`TINY_PRESETS` (a random-weight tiny model), a local directory or a hub id.

    ``dtype``: ``None`` (the checkpoint's, fp32 for tiny), ``"bf16"``, ``"fp32"`` or a torch
    dtype. ``seed`` only affects the tiny model's random weights. Extra keyword arguments go
    to ``from_pretrained`` (e.g. ``attn_implementation="flash_attention_2"``).

    Raises ``ValueError`` naming ``spec`` for a missing path, a directory that is not a model,
    or a model without a vision tower.
    """
    if spec is None or spec in TINY_PRESETS:
        return build_tiny_policy(seed=seed, dtype=dtype, shape=spec or TINY)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model must be {TINY!r}, a local directory or a hub id, got {spec!r}")
    source = resolve_model_source(spec)  # before importing transformers: a missing path fails at once
    from transformers import AutoConfig, AutoModelForImageTextToText

    _quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as error:
        raise ValueError(
            f"could not load model {spec!r}: it is neither a local directory nor a hub id found online or in "
            f"the cache ({error}); pass an existing directory, a reachable hub id, or {TINY!r}"
        ) from error
    check_vision_language_config(config, spec)
    check_model_files(source)  # a cut-short weight file: a clear error before from_pretrained reads it
    kwargs = dict(model_kwargs)
    if dtype is not None:
        kwargs["dtype"] = _torch_dtype(dtype)
    from safetensors import SafetensorError

    try:
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
        vision_tower(model)  # a config with vision_config but weights without it fails here
        processor = load_processor(source)
    except (OSError, SafetensorError) as error:
        # A directory missing its weights or tokenizer files: an export killed midway.
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"could not load model {spec!r}: the directory is incomplete or corrupt ({first}); an "
                         f"export killed midway leaves this: export the model again") from None
    return model, processor


def vision_tower(model: Any) -> Any:
    """The vision encoder module of a Qwen2-VL-family model (``model.model.visual``)."""
    inner = getattr(model, "model", None)
    visual = getattr(inner, "visual", None) if inner is not None else None
    if visual is None:
        visual = getattr(model, "visual", None)
    if visual is None:
        raise ValueError(
            f"model of class {type(model).__name__} has no vision tower (no .model.visual); the learner needs a "
            f"Qwen2-VL-family vision-language model"
        )
    return visual


def vision_token_ids(config: Any) -> dict[str, int]:
    """The ids of the vision placeholder tokens: image pad, video pad, vision start and end."""
    return {
        "image": int(config.image_token_id),
        "video": int(config.video_token_id),
        "vision_start": int(config.vision_start_token_id),
        "vision_end": int(config.vision_end_token_id),
    }


def banned_token_ids(config: Any) -> list[int]:
    """Tokens a policy must never sample: the vision placeholders. A sampled
    ``<|image_pad|>`` would break the image-token count of the training forward pass."""
    return sorted(set(vision_token_ids(config).values()))


# transformers >= 4.52 nests the Qwen-VL decoder under ``model.language_model`` and the
# vision tower under ``model.visual`` in memory, but saves (and vLLM loads) the flat names.
_CHECKPOINT_RENAMES = (
    (re.compile(r"^model\.language_model\."), "model."),
    (re.compile(r"^model\.visual\."), "visual."),
    (re.compile(r"^lm_head\."), "lm_head."),
)


def checkpoint_name(name: str) -> str:
    """The on-disk (checkpoint / vLLM) name of an in-memory parameter name.

    >>> checkpoint_name("model.language_model.layers.0.mlp.up_proj.weight")
    'model.layers.0.mlp.up_proj.weight'
    >>> checkpoint_name("model.visual.blocks.0.attn.qkv.weight")
    'visual.blocks.0.attn.qkv.weight'
    >>> checkpoint_name("lm_head.weight")
    'lm_head.weight'
    """
    for pattern, replacement in _CHECKPOINT_RENAMES:
        if pattern.match(name):
            return pattern.sub(replacement, name, count=1)
    return name


def export_policy(model: Any, processor: Any, out_dir: str | os.PathLike, state_dict: dict | None = None) -> Path:
    """Write ``model`` and ``processor`` so that ``from_pretrained`` / ``load_policy`` (and
    vLLM) load them. ``state_dict`` overrides the module's weights (e.g. ZeRO-3 gathered
    ones). Returns the directory."""
    _quiet_transformers()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    processor.tokenizer.save_pretrained(out)
    processor.image_processor.save_pretrained(out)
    template = getattr(processor, "chat_template", None) or getattr(processor.tokenizer, "chat_template", None)
    if template:
        (out / "chat_template.jinja").write_text(template)
    return out
