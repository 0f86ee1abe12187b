"""Seeds that make every sample reproducible on its own: keyed by what it is, not by what ran before.

A training sample's noise depends on (seed, stream position); a long video's clip on (seed, clip index); an
interpolation pass on (seed, pass, clip). So a resumed run or render draws exactly what an uninterrupted
one would, whatever the number of processes.
"""
from __future__ import annotations

import torch


def sample_generator(seed: int, position: int, salt: int = 0) -> torch.Generator:
    """The generator of one sample of a stream: depends on (seed, position, salt) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + position * 7_919 + salt * 104_729) % (2**63 - 1))


def interpolation_seed(seed: int, pass_index: int = 0, clip: int = 0) -> int:
    """The seed of one interpolation run: pass ``pass_index`` over a whole video (counted from 1), or the
    interpolation of rollout clip ``clip`` (pass 0)."""
    return seed * 1_000_003 + 7919 * pass_index + clip
