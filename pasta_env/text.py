"""Lazy text: prompts that become words only when somebody reads them."""

from __future__ import annotations

from collections.abc import Sequence

from simulators.contract import Prompts


class _Lazy(Sequence):
    """A read-only sequence over a :class:`~simulators.contract.Prompts` batch whose items are made on access.

    The simulation core makes new prompt batches every turn, so a kept
    sequence keeps describing the turn it came from.
    """

    __slots__ = ("_prompts",)

    def __init__(self, prompts: Prompts):
        self._prompts = prompts

    def __len__(self) -> int:
        return len(self._prompts)

    @property
    def prompts(self) -> Prompts:
        """The prompts in the world's own form (texts, embeddings and the generator's arrays).

        The same information as the texts, in the form the world's candidate
        generator and image model take: agents that plan with the simulator
        pass it to them.
        """
        return self._prompts

    def _item(self, prompts: Prompts):
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(self._prompts[j]) for j in range(len(self))[i]]
        return self._item(self._prompts[i])


class LazyTexts(_Lazy):
    """The texts of ``(n,)`` prompts, rendered on access."""

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
