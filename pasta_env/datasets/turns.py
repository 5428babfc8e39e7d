"""The readable export: one row per turn with the texts, as Parquet.

Columns of ``turns.parquet``:

================== ============== ====================================================
column             type           what
================== ============== ====================================================
``episode``        int64          episode index in the dataset
``seed``           int64          the episode's env seed
``turn``           int32          0..H-1
``user_type``      int32          the hidden user type (a label for analysis)
``initial_prompt`` string         the user's request
``prompt``         string         the prompt being expanded this turn
``candidates``     list<string>   the candidate prompts of the turn
``categories``     list<string>   the category of each candidate (dictionary-encoded)
``slate``          list<int32>    the shown candidate indices
``choice``         int32          the chosen column
``chosen_prompt``  string         ``candidates[slate[choice]]``
``reward``         float64        the reward of the turn
``explored``       bool           the slate was random (epsilon mixing)
================== ============== ====================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulators.backends import require
from simulators.contract import Prompts


def arrow_texts(prompts: Prompts):
    """The texts of a flattened prompt batch as a pyarrow string array (the world's fast renderer if it has one)."""
    pa = require("pyarrow")
    fast = getattr(prompts, "arrow_texts", None)
    return fast() if fast is not None else pa.array(prompts.texts().reshape(-1).tolist(), pa.string())


def turn_table(start: int, arrays: dict[str, np.ndarray], texts: dict[str, list],
               category_names: Sequence[str], categories: np.ndarray):
    """The Arrow table of a chunk of episodes.

    Args:
        start: Dataset index of the chunk's first episode.
        arrays: The chunk's episode arrays (``seeds``, ``user_type``,
            ``actions``, ``last_choice``, ``rewards``, ``explored``).
        texts: The chunk's prompts as pyarrow string arrays
            (:func:`arrow_texts`): ``initial`` a list of one ``(N,)`` array,
            ``prompt`` ``H`` arrays of ``(N,)`` and ``candidates`` ``H`` arrays of
            ``(N * C,)``, turn by turn.
        category_names: Name of each category.
        categories: ``(C,)`` category of each candidate.
    """
    pa = require("pyarrow")
    actions = arrays["actions"]
    N, H, L = actions.shape
    C = len(categories)
    rows = N * H

    def lists(values, width: int):
        return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32)), values)

    episode, turn = np.arange(N)[:, None], np.arange(H)[None, :]
    choice = arrays["last_choice"][:, 1:]
    chosen = np.take_along_axis(actions, choice[..., None], axis=2)[..., 0]  # (N, H) candidate index
    # Texts arrive turn by turn; rows are episode-major: index the joined per-turn arrays.
    prompts = pa.concat_arrays(texts["prompt"]).take(pa.array((turn * N + episode).reshape(-1)))
    cand_all = pa.concat_arrays(texts["candidates"])
    base = (turn * N + episode) * C  # (N, H)
    candidates = cand_all.take(pa.array((base[..., None] + np.arange(C)).reshape(-1)))
    chosen_prompt = cand_all.take(pa.array((base + chosen).reshape(-1)))
    cats = pa.DictionaryArray.from_arrays(pa.array(np.tile(np.asarray(categories, np.int8), rows)),
                                          pa.array(list(category_names), pa.string()))
    initial = texts["initial"][0].take(pa.array(np.repeat(np.arange(N), H)))
    columns = {
        "episode": pa.array(np.repeat(np.arange(start, start + N, dtype=np.int64), H)),
        "seed": pa.array(np.repeat(arrays["seeds"].astype(np.int64), H)),
        "turn": pa.array(np.tile(np.arange(H, dtype=np.int32), N)),
        "user_type": pa.array(np.repeat(arrays["user_type"].astype(np.int32), H)),
        "initial_prompt": initial,
        "prompt": prompts,
        "candidates": lists(candidates, C),
        "categories": lists(cats, C),
        "slate": lists(pa.array(actions.reshape(-1).astype(np.int32)), L),
        "choice": pa.array(choice.reshape(-1).astype(np.int32)),
        "chosen_prompt": chosen_prompt,
        "reward": pa.array(arrays["rewards"].reshape(-1).astype(np.float64)),
        "explored": pa.array(arrays["explored"].reshape(-1)),
    }
    return pa.table(columns)
