"""The world contract: prompt batches, shape checks, seeds; the synthetic parts fill it."""

from __future__ import annotations

import numpy as np
import pytest

from pasta_env.worlds import make_world
from simulators.contract import (
    CandidateGenerator,
    ImageModel,
    PromptEncoder,
    TextPrompts,
    UserSimulator,
    check_candidates,
    seeds_from_uniforms,
)
from simulators.errors import ShapeError
from simulators.text import prompts as P


def _prompts(n: int = 3, d: int = 4) -> TextPrompts:
    emb = np.eye(n, d, dtype=np.float32)
    return TextPrompts([f"prompt {i}" for i in range(n)], emb)


def test_text_prompts_index_join_stack_and_broadcast_texts_with_embeddings():
    p = _prompts()
    assert p.shape == (3,) and p.dim == 4 and len(p) == 3
    one = p[1]
    assert one.shape == () and one.text() == "prompt 1" and one.embeddings.tolist() == [0, 1, 0, 0]
    picked = p[np.array([[2, 0], [1, 1]])]
    assert picked.shape == (2, 2) and picked.texts().tolist() == [["prompt 2", "prompt 0"], ["prompt 1"] * 2]
    np.testing.assert_array_equal(picked.embeddings[0, 0], p.embeddings[2])
    joined = p.concat([p[:1]])
    assert joined.texts().tolist()[-1] == "prompt 0" and joined.embeddings.shape == (4, 4)
    stacked = p.stack([p], axis=1)
    assert stacked.shape == (3, 2) and stacked[2, 1].text() == "prompt 2"
    wide = p[0].broadcast_to((5, 7))
    assert wide.shape == (5, 7) and wide[4, 6].text() == "prompt 0"
    assert p.reshape(3, 1).shape == (3, 1)
    with pytest.raises(ValueError, match="texts"):
        p.text()


@pytest.mark.parametrize("batch", [1, 3])
def test_text_prompts_take_columns_keeps_texts_as_arrays(batch):
    texts = np.array([[f"prompt {b}-{c}" for c in range(5)] for b in range(batch)], dtype=object)
    p = TextPrompts(texts, np.arange(batch * 5 * 2, dtype=np.float32).reshape(batch, 5, 2))
    for cols in (np.full((batch, 2), 3), np.full(batch, 4)):
        got = p.take_columns(cols)
        assert got.shape == cols.shape and isinstance(got.texts(), np.ndarray)
        np.testing.assert_array_equal(got.texts(), texts[np.arange(batch).reshape(-1, *[1] * (cols.ndim - 1)), cols])
        np.testing.assert_array_equal(got.embeddings, p.embeddings[np.arange(batch).reshape(-1, *[1] * (cols.ndim - 1)),
                                                                   cols])


def test_text_prompts_refuse_mismatched_texts_and_embeddings():
    with pytest.raises(ShapeError, match=r"texts: expected shape \(3,\)"):
        TextPrompts(["a", "b"], np.zeros((3, 4), np.float32))


def test_the_synthetic_parts_fill_the_protocols_and_their_outputs_have_the_declared_shapes():
    world = make_world("synthetic")
    assert isinstance(world.candidates, CandidateGenerator)
    assert isinstance(world.images, ImageModel)
    assert isinstance(world.user_model, UserSimulator)
    assert isinstance(world.encoder, PromptEncoder)
    rng = np.random.default_rng(0)
    cur = world.initial_prompts[np.arange(3)]
    cands = world.candidates.generate(cur, rng.random((3, 1), dtype=np.float32))
    check_candidates(world.candidates, cands, 3, world.dim)
    assert world.candidates.keeps_request(cur, cur).all()
    images = world.images.render(cands[:, :4], rng.random((3, 4, 2), dtype=np.float32))
    assert images.shape == (3, 4, 2, world.dim)
    np.testing.assert_allclose(np.linalg.norm(images, axis=-1), 1.0, atol=1e-5)
    # Texts come out on demand and match the ids' rendering.
    assert cands[0, 0].text() == world.candidates.space.text(cands.ids[0, 0])
    # Indexing takes the same rows of every field (the ids beside the embeddings).
    rows, cols = np.array([[0], [2]]), np.array([[3, 1], [0, 24]])
    sub = cands[rows, cols]
    np.testing.assert_array_equal(sub.ids, cands.ids[rows, cols])
    np.testing.assert_array_equal(sub[1, 0].embeddings, cands.embeddings[2, 0])
    assert sub.reshape(4).ids.shape == (4, P.NUM_SLOTS)
    # A per-row column gather (what the core does with slates) equals fancy indexing, field by field.
    cols = np.array([[3, 1, 0, 24], [2, 2, 7, 0], [5, 4, 3, 2]])
    for picked, want in ((cands.take_columns(cols), cands[np.arange(3)[:, None], cols]),
                         (cands.take_columns(cols[:, 1]), cands[np.arange(3), cols[:, 1]]),
                         (cands[:1].take_columns(cols[:1]), cands[:1][np.zeros((1, 1), int), cols[:1]]),
                         (cands[:1].take_columns(cols[:1, 0]), cands[:1][np.zeros(1, int), cols[:1, 0]])):
        assert picked.shape == want.shape
        np.testing.assert_array_equal(picked.ids, want.ids)
        np.testing.assert_array_equal(picked.embeddings, want.embeddings)


def test_shape_checks_say_what_was_expected():
    world = make_world("synthetic")
    cands = world.candidates.generate(world.initial_prompts[np.arange(2)], np.zeros((2, 1), np.float32))
    with pytest.raises(ShapeError, match=r"candidates: expected shape \(2, 24, 64\), got \(2, 25, 64\)"):
        check_candidates(_Short(world.candidates), cands, 2, world.dim)


class _Short:
    """A generator that claims one candidate fewer than it makes."""

    def __init__(self, inner):
        self.inner = inner
        self.num_candidates = inner.num_candidates - 1
        self.categories = inner.categories
        self.category_of = inner.category_of[:-1]


def test_the_synthetic_parts_refuse_free_text_prompts_with_a_hint():
    world = make_world("synthetic")
    with pytest.raises(TypeError, match="TemplateCandidateGenerator"):
        world.candidates.generate(_prompts(2, world.dim), np.zeros((2, 1), np.float32))


def test_seeds_from_uniforms_are_deterministic_in_range_and_salted():
    u = np.random.default_rng(0).random((100,))
    a, b = seeds_from_uniforms(u), seeds_from_uniforms(u)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() < 2 ** 31 and len(set(a.tolist())) == 100
    assert (seeds_from_uniforms(u, salt=7) != a).mean() > 0.95
