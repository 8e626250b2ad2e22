"""jaxgym rewards with the exact signatures other trainers call (one scoring core).

    bridges.rewards.trl.REWARD_FUNCS        TRL GRPOTrainer(reward_funcs=...), one per component
    bridges/rewards/easyr1.py:compute_score  EasyR1 batch reward function
    bridges/rewards/verl.py:compute_score    verl custom_reward_function
    bridges/rewards/openrlhf.py:reward_func  OpenRLHF --remote_rm_url reward_func.py
    bridges.rewards.trl_env.GameEnvironment  TRL environment_factory: multi-turn play with a move tool

All of them score a response against an exported row's ground truth (``bridges.export``)
with ``bridges.scoring.GroupScorer``; see :mod:`bridges.rewards.core`.
"""
