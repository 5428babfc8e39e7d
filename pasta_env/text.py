"""Lazy text: prompt ids that become words only when somebody reads them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulators.text.prompts import PromptSpace


class _Lazy(Sequence):
    """A read-only sequence over ``prompts`` whose items are made on access.

    The caller must not change ``prompts`` afterwards (the simulation core
    makes new arrays every turn).
    """

    __slots__ = ("_space", "_prompts")

    def __init__(self, space: PromptSpace, prompts: np.ndarray):
        self._space = space
        self._prompts = prompts

    def __len__(self) -> int:
        return len(self._prompts)

    @property
    def prompts(self) -> np.ndarray:
        """The prompts in the world's own form (read-only ``(..., S)`` phrase ids).

        The same information as the texts, in the form the world's candidate
        generator and text-to-image model take: agents that plan with the
        simulator pass it to them.
        """
        view = self._prompts.view()
        view.flags.writeable = False
        return view

    def _item(self, prompts: np.ndarray):
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(p) for p in self._prompts[i]]
        return self._item(self._prompts[i])


class LazyTexts(_Lazy):
    """The texts of ``(n, S)`` structured prompts, rendered on access."""

    __slots__ = ()

    def _item(self, prompt: np.ndarray) -> str:
        return self._space.text(prompt)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


class LazyTextBatch(_Lazy):
    """Per-environment :class:`LazyTexts` of a vector env: ``batch[i][j]`` is a text."""

    __slots__ = ()

    def _item(self, prompts: np.ndarray) -> LazyTexts:
        return LazyTexts(self._space, prompts)

    def __repr__(self) -> str:
        return f"LazyTextBatch({len(self)} envs)"
