"""Test fragments (§2.3 operation 5): bytes the coordinator and the testing peer both derive
from the task's seed, so neither needs to send them to the other."""

from __future__ import annotations

import blake3


def test_fragment(seed: bytes, size: int) -> bytes:
    """The bytes of a test fragment of `size` bytes for `seed`."""
    return blake3.blake3(seed).digest(length=size)
