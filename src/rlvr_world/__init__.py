"""rlvr-world: post-train world models with reinforcement learning on verifiable rewards."""

import os

# OpenMP threads that spin while waiting make every small op 5-10x slower on small CPU
# machines (measured: a [32,128,256] multiply took 8 ms with spinning, 0.6 ms without).
# It must be set before torch starts its thread pool, i.e. before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
