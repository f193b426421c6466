"""Reinforcement learning on verifiable rewards: GRPO math, sampler and trainer."""
