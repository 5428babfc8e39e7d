"""Lazy text: prompt ids that become words only when somebody reads them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulators.prompts import PromptSpace


class LazyTexts(Sequence):
    """A read-only list of prompt texts rendered on access.

    Args:
        space: The prompt space that knows every phrase's text.
        prompts: ``(n, S)`` structured prompts; the caller must not change them later.
    """

    __slots__ = ("_space", "_prompts")

    def __init__(self, space: PromptSpace, prompts: np.ndarray):
        self._space = space
        self._prompts = prompts

    def __len__(self) -> int:
        return len(self._prompts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._space.text(p) for p in self._prompts[i]]
        return self._space.text(self._prompts[i])

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


class LazyTextBatch(Sequence):
    """Per-environment :class:`LazyTexts` of a vector env: ``batch[i][j]`` is a text."""

    __slots__ = ("_space", "_prompts")

    def __init__(self, space: PromptSpace, prompts: np.ndarray):
        self._space = space
        self._prompts = prompts

    def __len__(self) -> int:
        return len(self._prompts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [LazyTexts(self._space, p) for p in self._prompts[i]]
        return LazyTexts(self._space, self._prompts[i])

    def __repr__(self) -> str:
        return f"LazyTextBatch({len(self)} envs)"
