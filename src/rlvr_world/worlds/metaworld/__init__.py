"""The Meta-World world: robot-manipulation episodes rendered by MuJoCo and driven by scripted experts."""
