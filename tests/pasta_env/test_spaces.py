"""Slates are sets: the documented fill of repeated indices."""

from __future__ import annotations

import hypothesis
import numpy as np
from hypothesis import strategies as st

from pasta_env.spaces import distinct_slates


@hypothesis.given(st.integers(4, 25).flatmap(
    lambda c: st.tuples(st.just(c), st.lists(st.lists(st.integers(0, c - 1), min_size=4, max_size=4),
                                             min_size=1, max_size=20))))
def test_distinct_slates_follow_the_rule(case):
    C, rows = case
    slates = np.array(rows, np.int64)
    out = distinct_slates(slates, C)
    for before, after in zip(slates.tolist(), out.tolist()):
        assert len(set(after)) == 4 and all(0 <= i < C for i in after)
        free = sorted(set(range(C)) - set(before))
        seen: set[int] = set()
        for b, a in zip(before, after):
            if b in seen:  # a repeat: the next lowest index absent from the original slate
                assert a == free.pop(0)
            else:
                assert a == b
                seen.add(b)


def test_slates_without_repeats_are_returned_as_they_are():
    slates = np.array([[0, 5, 10, 15], [24, 3, 2, 1]])
    assert distinct_slates(slates, 25) is slates
