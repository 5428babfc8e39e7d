"""Requests read as an expander reads them, and each category's rule on phrase and free-text requests."""

from __future__ import annotations

import numpy as np
import pytest

from pasta_env.worlds import make_world
from simulators.text import prompts as P
from simulators.text import vocabulary as V
from simulators.text.requests import kind_of, paraphrases, parse_request

FREE = [
    "king theoden charging on horseback at the front of an army, art by artgerm and greg rutkowski",
    "a long-island ice tea cocktail",
    "an oil painting of a cat sitting on a windowsill, highly detailed, golden hour",
    "a cabin by the lake at sunset",
    # over-specified, with a style: every modifier slot but one is fixed
    "a tiny red robot in a misty forest, watercolor painting, soft morning light, melancholic, pastel colours, "
    "close-up, intricate",
]


def test_a_request_is_split_into_the_parts_it_fixes():
    assert parse_request(FREE[0]).parts == {"base": "king theoden charging on horseback",
                                            "setting": "at the front of an army",
                                            "style": "art by artgerm and greg rutkowski"}
    assert parse_request(FREE[2]).parts == {"style": "oil painting", "base": "a cat sitting",
                                            "setting": "on a windowsill", "detail": "highly detailed",
                                            "lighting": "golden hour"}
    assert parse_request(FREE[3]).parts == {"base": "a cabin by the lake", "setting": "at sunset"}  # where and when
    assert parse_request("bond").parts == {"base": "bond"}
    assert parse_request("a teddybear on a skateboard in Times Square").parts["setting"] == "in Times Square"
    assert kind_of("by wlop") == "style" and kind_of("8k") == "detail" and kind_of("a red hat") is None


def test_paraphrases_change_words_not_just_a_prefix_and_keep_credits_whole():
    for text in ("a red fox", "a cat with a hat", "a big house next to a river"):
        alts = paraphrases(text)
        assert alts and text not in alts and len(set(alts)) == len(alts)
        for alt in alts:
            assert alt.split()[-1] != text.split()[-1] or alt.split()[:-1] != text.split()[:-1]
            assert not any(alt.lower().startswith(f + " ") for f in V.FRAMINGS)
    assert "a cat that has a hat" in paraphrases("a cat with a hat")
    assert all("greg rutkowski and art by" not in a for a in paraphrases("art by artgerm and greg rutkowski"))
    assert paraphrases("bond") == []  # nothing known to reword: none made up


@pytest.fixture(scope="module")
def worlds():
    return {"phrases": make_world("synthetic"), "free": make_world("synthetic", prompts=FREE)}


@pytest.mark.parametrize("kind", ["phrases", "free"])
def test_each_category_follows_its_rule(worlds, kind):
    world = worlds[kind]
    gen, space = world.candidates, world.candidates.space
    k = gen.per_category
    cur = world.initial_prompts.ids[:64]
    cands, emb = gen.expand(cur, np.random.default_rng(1).random((len(cur), 1), np.float32))
    np.testing.assert_allclose(emb, space.embed(cands), atol=1e-5)
    a, b = space.vocab.ranges["subject"]
    styles = set(range(*space.vocab.ranges["style"]))
    rewordings = {i: set(g) - {i} for g in space.groups for i in g}
    for n, req in enumerate(cur):
        texts = [space.text(c) for c in cands[n]]
        assert len(set(texts)) == 25, texts
        reph, detail, style, subject, leap = (cands[n, i * k:(i + 1) * k] for i in range(5))
        for c in reph:  # one part reworded (a paraphrase, or a near phrase of a modifier); a framing only as a fill
            (s,) = np.flatnonzero(c != req)
            if s in (P.BASE, P.SETTING, P.STYLE):
                assert c[s] in rewordings.get(int(req[s]), set()), space.text(c)
        for c in detail:  # a part the request leaves open is filled; what it fixes stays
            changed = np.flatnonzero(c != req)
            assert len(changed) == 1 and (req[changed[0]] < 0 or all(req[P.DETAIL_SLOTS] >= 0))
        for c in style:  # the style replaced (not stacked): one style part, a vocabulary style
            assert c[P.STYLE] in styles and c[P.STYLE] != req[P.STYLE]
            assert (np.delete(c, P.STYLE) == np.delete(req, P.STYLE)).all()
            assert len(parse_request(space.text(c)).parts.get("style", "x").split(",")) == 1
        for c in subject:  # a related subject; setting, style and the rest kept
            assert a <= c[P.BASE] < b and c[P.BASE] in gen.related[req[P.BASE]]
            assert (np.delete(c, P.BASE) == np.delete(req, P.BASE)).all()
        for c in leap:  # the subject in a new setting and style
            assert c[P.BASE] == req[P.BASE] and c[P.STYLE] != req[P.STYLE] and c[P.SETTING] != req[P.SETTING]
            assert c[P.STYLE] >= 0 and c[P.SETTING] >= 0
            assert (np.delete(c, [P.BASE, P.STYLE, P.SETTING]) < 0).all()


def test_a_vocabulary_subject_is_related_to_subjects_of_its_own_group(worlds):
    gen, vocab = worlds["phrases"].candidates, worlds["phrases"].candidates.space.vocab
    a, _ = vocab.ranges["subject"]
    groups = np.array(vocab.subject_groups)
    same = groups[gen.related[a:a + len(groups)] - a] == groups[:, None]
    assert same[:, :10].all()  # the eleven others of its group come first


def test_different_requests_get_different_subject_changes_under_one_draw(worlds):
    world = worlds["free"]
    gen, space = world.candidates, world.candidates.space
    cur = world.initial_prompts.ids
    u = np.full((len(cur), 1), 0.37, np.float32)  # the same draw for every request, as under one seed
    cands, _ = gen.expand(cur, u)
    k = gen.per_category
    lists = [tuple(space.text(c) for c in cands[n, 3 * k:4 * k]) for n in range(len(cur))]
    assert len(set(lists)) == len(lists)
    related = [space.texts[i] for i in gen.related[cur[1, P.BASE]]]  # a cocktail's: drinks and dishes first
    food = set(V.SUBJECTS["food"])
    assert related[0] in food and sum(t in food for t in related) >= 5, related


def test_an_over_specified_free_text_request_loses_details_in_its_images(worlds):
    world = make_world("synthetic", prompts=["a tiny red robot, watercolor painting", FREE[4]])
    space, images = world.candidates.space, world.images
    short, long = world.initial_prompts.ids
    assert short[P.STYLE] == long[P.STYLE] and images.keep_probability(long) < images.keep_probability(short)
    u = np.random.default_rng(0).random((1, 1, 2000), np.float32)
    style = space.table[short[P.STYLE]]
    short_img = images.render_ids(short[None, None], u)[0, 0]
    long_img = images.render_ids(long[None, None], u)[0, 0]
    assert (short_img @ style).mean() > (long_img @ style).mean() + 0.02  # its style rendered less faithfully
