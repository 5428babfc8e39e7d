"""Batched draws of distinct items from pre-drawn uniforms.

The simulation core draws all of an episode's randomness as one vector of
uniforms per user, so that a batch of users costs one generator call each
and a user's trajectory does not depend on the batch it runs in. These
functions turn such uniforms into draws, batch-first.

Distinct draws use a bank of random permutations fixed when the bank is
built: a uniform picks a row, another a cyclic shift, so each draw is a few
array operations whatever the batch size.
"""

from __future__ import annotations

import numpy as np


class PermutationBank:
    """Draw ``k`` distinct items out of ``n``, batch-first.

    Args:
        n: Number of items.
        rows: Number of stored permutations.
        seed: Seed of the stored permutations (part of the world, not the episode).
    """

    def __init__(self, n: int, rows: int = 512, seed: int = 0):
        if n < 1:
            raise ValueError(f"a permutation bank needs n >= 1, got {n}")
        rng = np.random.default_rng(seed)
        self.n = n
        self.table = np.argsort(rng.random((rows, n)), axis=1).astype(np.int32)

    def _perm(self, u_row: np.ndarray, u_shift: np.ndarray) -> np.ndarray:
        rows = (u_row * self.table.shape[0]).astype(np.intp)
        shift = (u_shift * self.n).astype(np.int32)
        return self.table[rows] + shift[:, None]

    def draw(self, u_row: np.ndarray, u_shift: np.ndarray, k: int) -> np.ndarray:
        """``(B, k)`` distinct items of ``range(n)`` per row."""
        return self._perm(u_row, u_shift)[:, :k] % self.n

    def draw_masked(self, u_row, u_shift, allowed: np.ndarray, k: int) -> np.ndarray:
        """``(B, k)`` distinct items with ``allowed[b, item]`` true.

        Rows with fewer than ``k`` allowed items get allowed ones first, then
        disallowed ones; callers guarantee ``k`` allowed items.
        """
        perm = self._perm(u_row, u_shift) % self.n
        ok = np.take_along_axis(allowed, perm, axis=1)
        first = np.argsort(~ok, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(perm, first, axis=1)


class ExcludingBank:
    """Draw ``k`` distinct items out of ``n`` that differ from one excluded item."""

    def __init__(self, n: int, rows: int = 512, seed: int = 0):
        if n < 2:
            raise ValueError(f"drawing while excluding an item needs n >= 2, got {n}")
        self.n = n
        self.bank = PermutationBank(n - 1, rows, seed)

    def draw(self, u_row, u_shift, exclude: np.ndarray, k: int) -> np.ndarray:
        """``(B, k)`` distinct items, none equal to ``exclude[b]``.

        ``exclude[b] < 0`` means nothing to exclude; one item, drawn from the
        shift, is then left out, which keeps every item equally likely.
        """
        exclude = np.where(exclude < 0, (u_shift * self.n).astype(np.int32), exclude)
        items = self.bank.draw(u_row, u_shift, k)
        return items + (items >= exclude[:, None])
