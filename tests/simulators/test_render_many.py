"""Rendering many prompts at once gives exactly the texts of one-by-one rendering."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from pasta_env.worlds import make_world  # noqa: E402
from simulators.text import prompts as P  # noqa: E402


def test_render_many_equals_render_including_empty_slots():
    world = make_world("synthetic", prompts=["my own cat", "a city at night"])
    ids = P.random_prompts(world.candidates.space.vocab, 3000, np.random.default_rng(0))
    ids[:40, P.BASE] = P.EMPTY  # no subject
    ids[40:50] = P.EMPTY  # nothing at all
    ids[50:60, P.BASE] = world.initial_prompts.ids[0, P.BASE]  # a researcher's free text
    ids[60:70, P.FRAMING] = world.candidates.space.vocab.slot_range(P.FRAMING)[0]
    ids[60:70, P.SETTING] = P.EMPTY
    texts = world.candidates.space.texts_of(ids).to_pylist()
    assert texts == [world.candidates.space.text(row) for row in ids]
    assert texts[45] == "" and texts[55].startswith("my own cat")


def test_render_many_checks_the_shape():
    world = make_world("synthetic")
    with pytest.raises(ValueError, match=r"shape \(n, 10\)"):
        world.candidates.space.texts_of(np.zeros((3, 4), np.int32))
