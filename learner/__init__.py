"""The GRPO learner (entry point: learner/train.py)."""
