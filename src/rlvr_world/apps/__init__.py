"""Downstream uses of trained world models: a web agent that plans with one (MPC)."""
