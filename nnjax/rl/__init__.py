"""Reinforcement learning in pure JAX: a CartPole-v1 port and PPO trained in one jitted function."""
