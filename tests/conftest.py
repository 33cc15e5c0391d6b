"""Test-wide settings: one intra-op thread.

The models in the tests are tiny, where OpenMP threads only add overhead, and several test
processes (the CLI tests start subprocesses) must not oversubscribe CI's two cores.
"""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI subprocesses
torch.set_num_threads(1)
