"""Worlds: the bundle of simulators an environment runs on, and their registry.

A :class:`World` holds the candidate generator, the image model, the user
model, the pool of initial prompts and a text encoder, each typed by its
protocol in :mod:`simulators.contract`. Worlds register by name;
``make_world("synthetic")`` builds the offline default, ``make_world("clip")``
the one on open_clip, diffusers and a language model. Parts swap without
touching the environment.
"""

from __future__ import annotations

import csv
import functools
import inspect
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from simulators.candidates.synthetic import CATEGORIES, PER_CATEGORY, SyntheticCandidateGenerator
from simulators.contract import CandidateGenerator, ImageModel, PromptEncoder, Prompts, UserSimulator
from simulators.errors import AssetError, ShapeError
from simulators.images.synthetic import ImageModelConfig, SyntheticImageModel
from simulators.text import prompts as P
from simulators.text.encoders import LazyStaticTextEncoder, PhraseTable
from simulators.text.requests import build_space
from simulators.users.checkpoint import load_user_model
from simulators.users.user_model import TasteUserModel, UserModel

PromptsArg = str | os.PathLike | Sequence[str] | None


@dataclass(frozen=True)
class World:
    """Everything an episode needs besides the agent: five parts behind the world contract.

    Each part is typed by its protocol in :mod:`simulators.contract` (shapes,
    and who owns randomness, are written there); the environment calls
    nothing else, so a world made of other parts (CLIP encoders, a diffusion
    model, a language model) runs the same env, agents and datasets.

    Attributes:
        name: Registry name of the world.
        candidates: Proposes the candidate prompts of each turn, in the
            world's categories.
        images: Renders image embeddings (and, with pixels, images) for prompts.
        user_model: Scores images and picks columns, per latent user type.
        initial_prompts: ``(N,)`` prompts the users start from.
        encoder: Embeds free text in the world's space (a researcher's prompts).
        thread_safe: Whether the parts may be called from several threads at
            once (the vector env then shards users over threads); worlds
            whose models batch users themselves (on a GPU) say ``False``.
        remake: ``prompts -> World``: the same world with other initial
            prompts, sharing its loaded parts (what :meth:`with_prompts`
            calls; a factory sets it, ``None`` where a world cannot).

    Raises:
        ShapeError: The parts disagree on the embedding dimension.
    """

    name: str
    candidates: CandidateGenerator
    images: ImageModel
    user_model: UserSimulator
    initial_prompts: Prompts
    encoder: PromptEncoder | None = None
    thread_safe: bool = True
    remake: Callable[[PromptsArg], World] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        prompts = self.initial_prompts
        if not isinstance(prompts, Prompts) or len(prompts.shape) != 1 or len(prompts) == 0:
            raise ShapeError(f"world {self.name!r}: initial_prompts must be a non-empty (N,) Prompts batch")
        if self.user_model.dim != self.dim:
            raise ShapeError(f"world {self.name!r}: the user model takes {self.user_model.dim}-d embeddings "
                             f"but the prompts are {self.dim}-d; train or load a user model for this world")
        if self.encoder is not None and self.encoder.dim != self.dim:
            raise ShapeError(f"world {self.name!r}: the encoder gives {self.encoder.dim}-d embeddings but the "
                             f"prompts are {self.dim}-d")

    @property
    def dim(self) -> int:
        """Embedding dimension of prompts and images."""
        return self.initial_prompts.dim

    @property
    def categories(self) -> tuple[str, ...]:
        """The candidate categories' names."""
        return tuple(self.candidates.categories)

    def prompt_text(self, i: int) -> str:
        """Text of the ``i``-th initial prompt."""
        return self.initial_prompts[i].text()

    def with_prompts(self, prompts: PromptsArg) -> World:
        """The same world with ``prompts`` as its initial prompts, its loaded models shared (no reload).

        Raises:
            ValueError: The world was not made by a factory that can remake it.
        """
        if self.remake is None:
            raise ValueError(f"world {self.name!r} cannot be remade with other prompts; build it again with "
                             "prompts=... instead")
        return self.remake(prompts)


_WORLDS: dict[str, Callable[..., World]] = {}
#: The entry-point group through which other packages register worlds: ``name = "module:factory"``.
ENTRY_POINT_GROUP = "pasta_t2i.worlds"


def register_world(name: str, factory: Callable[..., World]) -> None:
    """Register a world factory under ``name``.

    The factory takes ``prompts=`` and ``num_candidates=`` (the env's ``L_C``;
    it raises a ``ValueError`` naming the counts it supports) and its own
    keyword options. A package can instead declare it in its metadata, in the
    entry-point group ``pasta_t2i.worlds`` (``my_world = "my_pkg.world:make"``):
    it is found by name, and imported only when first built.

    Raises:
        ValueError: Another factory is already registered under ``name``.
    """
    if _WORLDS.get(name, factory) is not factory:
        raise ValueError(f"a world named {name!r} is already registered; give yours another name")
    _WORLDS[name] = factory


def _entry_points() -> dict[str, Any]:
    """Worlds other packages declare (entry points not yet loaded), by name; the registered ones win."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _WORLDS}


def world_names() -> tuple[str, ...]:
    """Names of the registered worlds, those other packages declare included."""
    return tuple(sorted({*_WORLDS, *_entry_points()}))


def world_factory(name: str) -> Callable[..., World]:
    """The factory of world ``name`` (a declared one is imported and registered now).

    Raises:
        ValueError: No world has that name; the message lists the known worlds.
    """
    if name not in _WORLDS:
        declared = _entry_points().get(name) if isinstance(name, str) else None
        if declared is None:
            raise ValueError(f"unknown world {name!r}; registered worlds: {', '.join(world_names())}")
        register_world(name, declared.load())
    return _WORLDS[name]


def make_world(name: str = "synthetic", **kwargs) -> World:
    """Build a registered world.

    Args:
        name: Registry name, e.g. ``"synthetic"``.
        **kwargs: Passed to the world's factory (e.g. ``prompts``).

    Raises:
        ValueError: ``name`` is not registered; the message lists the known worlds.
    """
    return world_factory(name)(**kwargs)


def build_world(world: str | World, prompts: PromptsArg, num_candidates: int,
                world_kwargs: dict | None) -> World:
    """The world an env runs on, from a name or a ready :class:`World`.

    Raises:
        ValueError: An unknown world, options given with a ready world, or
            an option the world's factory does not take (the message lists
            those it takes).
    """
    if isinstance(world, World):
        if prompts is not None or world_kwargs:
            raise ValueError("pass prompts and world options to the world factory, not with a ready World")
        return world
    kwargs = dict(world_kwargs or {})
    kwargs.setdefault("num_candidates", num_candidates)
    check_world_options(world, kwargs)
    return make_world(world, prompts=prompts, **kwargs)


def world_takes(name: str, option: str) -> bool:
    """Whether world ``name``'s factory takes ``option`` (by name, or through ``**kwargs``).

    Raises:
        ValueError: No world has that name.
    """
    params = inspect.signature(world_factory(name)).parameters
    return option in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_world_options(name: str, options: dict) -> None:
    """Raise a ``ValueError`` for an unknown world, or naming the options its factory does not take, or a value
    of another kind than an option's default."""
    factory = world_factory(name)
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        takes = ", ".join(n for n in params if n != "prompts")
        raise ValueError(f"world {name!r} takes no option {', '.join(map(repr, unknown))}; its options are: {takes}")
    for key, value in options.items():
        _check_option_type(name, key, value, params[key].default)


def _check_option_type(world: str, key: str, value: Any, default: Any) -> None:
    """Refuse a value of another kind than the option's default (``seed=true`` is not seed 1)."""
    import math

    if default is None or default is inspect.Parameter.empty or value is None:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a text"
    else:
        return
    if not ok:
        raise ValueError(f"world {world!r} option {key!r} takes {kind}, got {value!r}")


def read_prompts(source: PromptsArg) -> list[str]:
    """Read initial prompts from a list of strings or a file.

    A file is either plain text, one prompt per line (blank lines and lines
    starting with ``#`` are skipped), or a ``.csv``/``.tsv`` table with a
    ``Prompt`` column (matched case-insensitively).

    Args:
        source: A sequence of strings, or a path.

    Raises:
        ValueError: The list or file holds no prompt, a table lacks a
            ``Prompt`` column, an entry is not a string, the path is a
            folder, or the file is not UTF-8.
        FileNotFoundError: The path does not exist.
    """
    if source is None:
        raise ValueError("prompts is None; give a list of strings or a file")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"prompt file {str(path)!r} is a folder; give a text, CSV or TSV file")
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {str(path)!r} does not exist")
        try:
            texts = _read_prompt_file(path)
        except UnicodeDecodeError as exc:
            raise ValueError(f"prompt file {str(path)!r} is not UTF-8 text (byte {exc.start}: "
                             f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8") from exc
        where = f"prompt file {str(path)!r}"
    else:
        texts = list(source)
        where = "prompts"
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"{where}[{i}] is {type(t).__name__}, expected a string")
    for i, t in enumerate(texts):
        bad = next((ch for ch in t if unicodedata.category(ch) == "Cc" and ch not in "\t\r\n"), None)
        if bad is not None:
            raise ValueError(f"{where}: prompt {i + 1} holds the control character {bad!r}; prompts are plain "
                             "text (is this a binary file?)")
    texts = [" ".join(t.split()) for t in texts]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"{where} holds no prompt; give at least one non-empty prompt")
    return texts


def _read_prompt_file(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark (Excel's CSV) is dropped
        if suffix not in (".csv", ".tsv"):
            return [line for line in fh.read().splitlines() if not line.lstrip().startswith("#")]
        reader = csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ",")
        header = next(reader, None)
        if header is None:
            return []
        names = [h.strip().lower() for h in header]
        if "prompt" not in names:
            raise ValueError(
                f"{str(path)!r} has no 'Prompt' column (columns: {', '.join(header)}); "
                "add one, or use a plain text file with one prompt per line"
            )
        col = names.index("prompt")
        return [row[col] for row in reader if len(row) > col]


def _default_initial_prompts(vocab: P.Vocabulary, seed: int) -> np.ndarray:
    """Each subject alone and each subject in a random setting."""
    rng = np.random.default_rng(seed)
    s0, s1 = vocab.slot_range(P.BASE)
    n = s1 - s0
    ids = P.empty_prompts((2 * n,))
    ids[:, P.BASE] = np.tile(np.arange(s0, s1), 2)
    ids[n:, P.SETTING] = rng.integers(*vocab.slot_range(P.SETTING), size=n)
    return ids


def planted_user_model(num_types: int = 8, seed: int = 0, scale: float = 20.0, intent: float = 12.0,
                       temperature: float = 1.0) -> TasteUserModel:
    """The hand-set taste model that plants the synthetic world's preferences.

    ``s(k, p0, I) = scale * <w_k, I> + intent * <p0, I>``: every user wants
    images of what they asked for, and types differ in how they complete an
    open request. Eight types with the eight taste descriptions (animals,
    landscapes, food, portraits, abstract, vintage, anime, photoreal),
    uniform prior. With fewer types the first ``num_types`` tastes are used;
    with more, each extra type is a random blend of two tastes (seeded).
    """
    if num_types < 1:
        raise ValueError(f"num_types must be >= 1, got {num_types}")
    table = PhraseTable.load()
    tastes, names = list(table.tastes[:num_types]), list(table.taste_names[:num_types])
    rng = np.random.default_rng(seed)
    while len(tastes) < num_types:
        i, j = rng.choice(len(table.tastes), 2, replace=False)
        w = rng.uniform(0.3, 0.7)
        mix = w * table.tastes[i] + (1 - w) * table.tastes[j]
        tastes.append(mix / np.linalg.norm(mix))
        names.append(f"{table.taste_names[i]}+{table.taste_names[j]}")
    return TasteUserModel(prior=np.full(num_types, 1.0 / num_types), temperature=temperature,
                          aggregation="mean", type_names=tuple(names), tastes=np.stack(tastes),
                          scale=scale, intent=intent)


#: How the shipped checkpoint was made (rerun it to reproduce the file).
DEFAULT_USER_MODEL_COMMAND = (
    "pasta make-synthetic-data --k 8 --users 2000 --test-users 500 --seed 0 --out data/planted && "
    "pasta train-user-model --data data/planted/train --k 8 --seed 0 --out simulators/assets/user_model.npz"
)


@functools.cache
def default_user_model() -> UserModel:
    """The synthetic world's user model: the EM-trained checkpoint shipped with the package.

    Eight types learned by mini-batch EM from synthetic preference data of
    :func:`planted_user_model`; reproduced by ``DEFAULT_USER_MODEL_COMMAND``.
    Loaded once per process (the model is immutable).
    """
    path = resources.files("simulators").joinpath("assets").joinpath("user_model.npz")
    with resources.as_file(path) as local:
        return load_user_model(local, dim=PhraseTable.load().dim)


def make_synthetic_world(prompts: PromptsArg = None, user_model: UserModel | str | os.PathLike | None = None,
                         image_config: ImageModelConfig = ImageModelConfig(),
                         num_candidates: int = 25, seed: int = 0,
                         candidates: str | os.PathLike | None = None) -> World:
    """The offline default world.

    Args:
        prompts: Initial prompts (strings or a file); ``None`` uses the
            built-in pool of 192 prompts composed from the vocabulary.
        user_model: Replaces the default user model (the shipped EM-trained
            checkpoint): a :class:`UserModel` or a checkpoint path (as
            ``--world-option user_model=PATH`` gives it); its embedding
            dimension must match the world's (64).
        image_config: Noise and prompt adherence of the image stand-in.
        num_candidates: Candidates per turn: 5, 10, 15, 20 or 25 (as many in
            each of the five categories).
        seed: Seed of the world's fixed tables (not of episodes).
        candidates: A candidate bank made for ``prompts`` (``pasta
            build-candidates``): the first turn shows its language model's
            candidates, split into the world's parts.

    Raises:
        BankError: The bank is damaged or was made for other prompts.
    """
    table = PhraseTable.load()
    vocab = P.Vocabulary.default()
    if len(vocab) != len(table.phrases) or tuple(vocab.phrases) != table.phrases:
        raise AssetError("the phrase table does not match the vocabulary; rebuild it with "
                         "`pasta build-assets`")
    encoder = LazyStaticTextEncoder(table.dim)
    # Requests are split into their parts (subject, setting, style...), every part and vocabulary phrase
    # gets its paraphrases (simulators.text.requests).
    texts = None if prompts is None else read_prompts(prompts)
    k, rest = divmod(num_candidates, len(CATEGORIES))
    first = None
    if candidates is not None:
        from simulators.candidates.bank import BankError, bank_candidates, read_bank

        if texts is None:
            raise BankError("a candidate bank belongs to a prompt file: give prompts=FILE with candidates=BANK")
        first = bank_candidates(read_bank(candidates, texts, per_category=k))
    space, initial, first_ids = build_space(vocab, table.embeddings, table.slot_weights, encoder, texts, first)
    if initial is None:
        initial = _default_initial_prompts(vocab, seed)
    if isinstance(user_model, (str, os.PathLike)):
        user_model = load_user_model(user_model, dim=table.dim)
    elif user_model is not None and not isinstance(user_model, UserModel):
        raise ValueError(f"user_model must be a UserModel or a checkpoint path, got {type(user_model).__name__}")
    users = user_model or default_user_model()
    if users.dim != space.dim:
        raise ValueError(f"the user model takes {users.dim}-d embeddings but the synthetic world's "
                         f"are {space.dim}-d; train or load a model for this world")
    if rest or not 1 <= k <= PER_CATEGORY:
        raise ValueError(f"the synthetic world proposes 5, 10, 15, 20 or 25 candidates per turn (the same number "
                         f"in each of its {len(CATEGORIES)} categories), got num_candidates={num_candidates}")
    generator = SyntheticCandidateGenerator(space, seed=seed, per_category=k,
                                            first_turn=None if first_ids is None else (initial, first_ids))
    remake = functools.partial(make_synthetic_world, user_model=users, image_config=image_config,
                               num_candidates=num_candidates, seed=seed)  # (a bank belongs to its prompts only)
    return World("synthetic", generator, SyntheticImageModel(space, image_config, seed=seed), users,
                 space.prompts(initial), encoder, remake=remake)


def synthetic_space(world: World) -> P.PromptSpace:
    """The phrase space of a synthetic world (tools that work on phrase ids need it).

    Raises:
        ValueError: ``world`` is not made of the synthetic parts.
    """
    space = getattr(world.candidates, "space", None)
    if not isinstance(space, P.PromptSpace) or not isinstance(world.initial_prompts, P.PhrasePrompts):
        raise ValueError(f"this needs the synthetic world's phrase prompts; world {world.name!r} has "
                         f"{type(world.initial_prompts).__name__}")
    return space


register_world("synthetic", make_synthetic_world)
