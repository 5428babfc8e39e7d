"""Lazy text: prompts that become words only when somebody reads them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulators.contract import Prompts


class _Lazy(Sequence):
    """A read-only sequence over a :class:`~simulators.contract.Prompts` batch whose items are made on access.

    The batch may come in parts (the shards of a sharded core), joined only
    if somebody asks for the whole batch. The simulation core makes new
    prompt batches every turn, so a kept sequence keeps describing the turn
    it came from.
    """

    __slots__ = ("_parts", "_joined", "_starts", "_row_of")

    def __init__(self, prompts: Prompts | Sequence[Prompts], row: int | None = None):
        self._parts = [prompts] if isinstance(prompts, Prompts) else list(prompts)
        one = len(self._parts) == 1
        self._row_of = row  # the sequence is row ``row`` of a batch (indexed only when read)
        self._joined = None if row is not None or not one else self._parts[0]
        self._starts = None if one else np.cumsum([0] + [len(p) for p in self._parts])

    def __len__(self) -> int:
        if self._row_of is not None:
            return self._parts[0].shape[1]
        return len(self._parts[0]) if self._starts is None else int(self._starts[-1])

    @property
    def prompts(self) -> Prompts:
        """The prompts in the world's own form (texts, embeddings and the generator's arrays).

        The same information as the texts, in the form the world's candidate
        generator and image model take: agents that plan with the simulator
        pass it to them.
        """
        if self._joined is None:
            first = self._parts[0]
            self._joined = first[self._row_of] if self._row_of is not None else first.concat(self._parts[1:])
        return self._joined

    def _item(self, prompts: Prompts):
        raise NotImplementedError

    def _row(self, i: int) -> Prompts:
        if self._row_of is not None:
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of range for {len(self)} items")
            return self._parts[0][self._row_of, i]
        if self._starts is None:
            return self._parts[0][i]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {n} items")
        i %= n
        part = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self._parts[part][i - int(self._starts[part])]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(self._row(j)) for j in range(len(self))[i]]
        return self._item(self._row(int(i)))


class LazyTexts(_Lazy):
    """The texts of ``(n,)`` prompts (or row ``row`` of ``(B, n)`` prompts), rendered on access."""

    __slots__ = ()

    def _item(self, prompt: Prompts) -> str:
        return prompt.text()

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


class LazyTextBatch(_Lazy):
    """Per-environment :class:`LazyTexts` of a vector env: ``batch[i][j]`` is a text."""

    __slots__ = ()

    def _item(self, prompts: Prompts) -> LazyTexts:
        return LazyTexts(prompts)

    def __repr__(self) -> str:
        return f"LazyTextBatch({len(self)} envs)"
