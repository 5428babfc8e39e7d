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

from pasta_env.datasets.store import require


def turn_table(space, start: int, arrays: dict[str, np.ndarray], ids: dict[str, np.ndarray],
               category_names: Sequence[str], categories: np.ndarray):
    """The Arrow table of a chunk of episodes.

    Args:
        space: The world's prompt space (renders prompts to texts).
        start: Dataset index of the chunk's first episode.
        arrays: The chunk's episode arrays (``seeds``, ``user_type``,
            ``actions``, ``last_choice``, ``rewards``, ``explored``).
        ids: The chunk's prompts in the world's form: ``initial`` ``(N, S)``,
            ``prompt`` ``(N, H, S)`` and ``candidates`` ``(N, H, C, S)``.
        category_names: Name of each category.
        categories: ``(C,)`` category of each candidate.
    """
    pa = require("pyarrow")
    actions = arrays["actions"]
    N, H, L = actions.shape
    C = ids["candidates"].shape[2]
    rows = N * H

    def texts(x: np.ndarray):
        return space.texts_of(x.reshape(-1, x.shape[-1]))

    def lists(values, width: int):
        return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32)), values)

    choice = arrays["last_choice"][:, 1:]
    chosen = np.take_along_axis(actions, choice[..., None], axis=2)[..., 0]
    picked = np.take_along_axis(ids["candidates"], chosen[:, :, None, None], axis=2)[:, :, 0]
    cats = pa.DictionaryArray.from_arrays(pa.array(np.tile(np.asarray(categories, np.int8), rows)),
                                          pa.array(list(category_names), pa.string()))
    initial = texts(ids["initial"]).take(pa.array(np.repeat(np.arange(N), H)))
    columns = {
        "episode": pa.array(np.repeat(np.arange(start, start + N, dtype=np.int64), H)),
        "seed": pa.array(np.repeat(arrays["seeds"].astype(np.int64), H)),
        "turn": pa.array(np.tile(np.arange(H, dtype=np.int32), N)),
        "user_type": pa.array(np.repeat(arrays["user_type"].astype(np.int32), H)),
        "initial_prompt": initial,
        "prompt": texts(ids["prompt"]),
        "candidates": lists(texts(ids["candidates"]), C),
        "categories": lists(cats, C),
        "slate": lists(pa.array(actions.reshape(-1).astype(np.int32)), L),
        "choice": pa.array(choice.reshape(-1).astype(np.int32)),
        "chosen_prompt": texts(picked),
        "reward": pa.array(arrays["rewards"].reshape(-1).astype(np.float64)),
        "explored": pa.array(arrays["explored"].reshape(-1)),
    }
    return pa.table(columns)
