"""`check --read-data-subset` (restic's): n/m groups split the packs by id so that 1/m to
m/m read every pack exactly once; N% reads that share (rounded up); bad values are refused
with one line."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.datapath.check import GROUPS_MAX, Subset, parse_subset
from p2pbak.errors import ExitCode, P2pbakError

pack_ids = st.sets(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=60)


@given(pack_ids, st.integers(1, GROUPS_MAX))
def test_the_m_groups_read_every_pack_exactly_once(ids: set[str], m: int) -> None:
    chosen = [parse_subset(f"{n}/{m}").choose(list(ids)) for n in range(1, m + 1)]
    assert sorted(p for group in chosen for p in group) == sorted(ids)


@given(pack_ids, st.floats(0.01, 100), st.integers(0, 2**32))
def test_a_percentage_reads_that_share_rounded_up(ids: set[str], pct: float, seed: int) -> None:
    got = Subset(percent=pct).choose(list(ids), random.Random(seed))
    assert len(got) == math.ceil(len(ids) * pct / 100) and len(set(got)) == len(got)
    assert set(got) <= ids


def test_the_same_group_is_the_same_packs_whatever_their_order() -> None:
    ids = [f"{i:02x}" + "0" * 62 for i in range(256)]
    assert Subset(3, 7).choose(ids) == Subset(3, 7).choose(list(reversed(ids)))
    assert Subset(1, 256).choose(ids) == [ids[0]]


@pytest.mark.parametrize("text", ["1/2", "5/5", "256/256", "10%", "2.5%", "100%", " 3/4 "])
def test_good_values_are_read(text: str) -> None:
    assert isinstance(parse_subset(text), Subset)


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/257", "150%", "0%", "x", "", "1/", "²/3",
                                  "-1/2", "10", "1.5/2"])
def test_bad_values_are_one_line_and_exit_1(text: str) -> None:
    with pytest.raises(P2pbakError) as exc:
        parse_subset(text)
    assert exc.value.exit_code == ExitCode.FAILED and "\n" not in str(exc.value)
    assert "--read-data-subset" in str(exc.value)
