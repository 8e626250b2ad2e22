"""The GRPO learner: train a vision-language model to play jaxgym games.

Entry point: ``python learner/train.py --game shisensho`` (see ``learner/train.py``).

Modules, bottom up (torch is needed; DeepSpeed and vLLM are imported only when used):

- ``models``: the built-in tiny Qwen2.5-VL, ``load_policy`` for any Qwen2-VL-family
  checkpoint, ``export_policy``, checkpoint parameter names;
- ``algorithms``: GRPO advantages, clipped policy loss, KL estimators, loss aggregation;
- ``logprobs``: response log-probs of a VLM batch with a chunked LM head;
- ``batching``: prompts with board images -> token ids and patches -> training batches;
- ``rollout``: the rollout-engine interface, the transformers engine, the vLLM engine;
- ``engine``: the DeepSpeed training engine (ZeRO 0-3, fp32/bf16, CPU or GPUs);
- ``config``: the typed config, presets, YAML and command-line overrides;
- ``run``: ``Run``, what every training run shares (ranks, seeds, run directory, engines,
  checkpoints and resume, metrics, held-out evaluation, the loop); ``trainer``: GRPO, and
  ``sft``: the perception cold start, its sibling trainers; ``runlog``: the run directory's logs;
- ``hf_policy``: the evaluator's ``hf:<path>`` policy, registered with ``bridges.policies``
  on import; ``evaluate``: the evaluator's documented entry (its code and command line are
  ``bridges.evaluation``).

The learner is the top layer with ``benchmarks``: it imports bridges, renderers and jaxgym,
none of which imports it (``tests/test_layers.py``).
"""
