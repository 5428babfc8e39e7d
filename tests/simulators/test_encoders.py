"""The sentence-transformers text encoder, on the offline all-MiniLM-L6-v2 package."""

from __future__ import annotations

import numpy as np

from simulators.contract import PromptEncoder
from simulators.text.minilm import SentenceTransformerEncoder


def test_minilm_encoder_gives_unit_384_d_embeddings_that_carry_meaning():
    enc = SentenceTransformerEncoder(device="cpu")
    assert isinstance(enc, PromptEncoder) and enc.dim == 384
    emb = enc.encode(["a red fox in a forest", "a small fox among trees", "a bowl of hot ramen"])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
    assert enc.encode([]).shape == (0, 384)
    assert enc.identity() == {"model": "sentence-transformers/all-MiniLM-L6-v2"}
