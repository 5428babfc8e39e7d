"""The user-model interface and the hand-set taste model."""

from __future__ import annotations

import numpy as np
import pytest

from pasta_env.worlds import default_user_model, planted_user_model
from simulators.errors import AssetError, ShapeError
from simulators.users.user_model import TasteUserModel, aggregate, choice_probabilities


def test_scores_shapes_are_checked():
    model = planted_user_model()
    p = np.zeros((3, 64), np.float32)
    i = np.zeros((3, 4, 64), np.float32)
    assert model.scores(p, i).shape == (3, 4, 8)
    assert model.utilities(p, i).shape == (3, 8)
    with pytest.raises(ShapeError, match=r"images: expected shape \(3, \*, 64\), got \(3, 4, 32\)"):
        model.scores(p, np.zeros((3, 4, 32), np.float32))


def test_type_scores_agree_with_all_type_scores():
    model = planted_user_model()
    rng = np.random.default_rng(0)
    p = rng.standard_normal((5, 4, 64)).astype(np.float32)
    i = rng.standard_normal((5, 4, 3, 64)).astype(np.float32)
    types = rng.integers(0, 8, 5)
    full = model.scores(p, i)
    want = np.stack([full[b, ..., types[b]] for b in range(5)])
    np.testing.assert_allclose(model.type_scores(p, i, types), want, rtol=1e-5, atol=1e-4)


def test_aggregations_and_choice():
    s = np.array([[1.0, 2.0, 6.0]])
    assert aggregate(s, "mean")[0] == pytest.approx(3.0)
    assert aggregate(s, "max")[0] == 6.0
    assert 3.0 < aggregate(s, "softmax")[0] < 6.0
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate(s, "median")
    p = choice_probabilities(np.array([0.0, 1.0]), 2.0)
    assert p[1] / p[0] == pytest.approx(np.exp(2.0))


def test_save_load_round_trip(tmp_path):
    model = planted_user_model()
    path = tmp_path / "users.npz"
    model.save(path)
    back = TasteUserModel.load(path)
    np.testing.assert_array_equal(back.tastes, model.tastes)
    assert back.type_names == model.type_names and back.temperature == model.temperature


def test_corrupt_checkpoint_is_named(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(AssetError, match=r"bad.npz: not a taste user model \(not an .npz archive\)"):
        TasteUserModel.load(path)


def test_invalid_prior_and_tastes():
    with pytest.raises(ValueError, match="prior must be"):
        TasteUserModel(prior=np.array([0.5, 0.6]), temperature=1.0, tastes=np.zeros((2, 4)))
    with pytest.raises(ShapeError, match=r"tastes: expected shape \(2, d\)"):
        TasteUserModel(prior=np.array([0.5, 0.5]), temperature=1.0, tastes=np.zeros((3, 4)))


def test_default_world_uses_the_em_trained_checkpoint():
    from simulators.users.neural import TrunkHeadsUserModel

    model = default_user_model()
    assert isinstance(model, TrunkHeadsUserModel) and model.dim == 64
    assert sorted(model.type_names) == sorted(planted_user_model().type_names)
    assert model.info["train_records"] == {"pairs": 40000, "ratings": 20000, "choices": 40000}


@pytest.mark.parametrize("model", [default_user_model, planted_user_model], ids=["em-trained", "planted"])
def test_images_faithful_to_the_request_score_higher_than_images_that_drop_it(model):
    """Users judge images against what they asked for: s(k, p0, I) depends on p0."""
    from pasta_env.worlds import make_world

    users = model()
    world = make_world("synthetic")
    rng = np.random.default_rng(0)
    requests = world.initial_prompts.ids
    n = len(requests)
    p0 = world.candidates.space.embed(requests)
    cands, _ = world.candidates.expand(requests, rng.random((n, 1), np.float32))
    k = world.candidates.per_category
    subject = world.candidates.categories.index("change subject")
    style = world.candidates.categories.index("change style")
    dropped = cands[:, subject * k]  # another subject, the rest of the request kept
    kept = cands[:, style * k]  # the request kept, another style

    def mean_scores(prompts):
        images = world.images.render_ids(prompts[:, None, :], rng.random((n, 1, 8), np.float32))[:, 0]
        return users.scores(p0, images).mean(axis=1)  # (n, K)

    faithful, unfaithful = mean_scores(kept), mean_scores(dropped)
    assert faithful.shape == (n, users.num_types)
    # On average over types, and for every type on average over requests.
    assert (faithful - unfaithful).mean() > 1.0
    assert np.all((faithful - unfaithful).mean(axis=0) > 0)
    # The same image is worth more to the user who asked for it than to one who asked for something else.
    images = world.images.render_ids(requests[:, None, :], rng.random((n, 1, 4), np.float32))[:, 0]
    own = users.scores(p0, images).mean(axis=(1, 2))
    other = users.scores(p0[rng.permutation(n)], images).mean(axis=(1, 2))
    assert own.mean() > other.mean() + 1.0
