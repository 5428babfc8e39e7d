"""Candidate banks: a language model's candidates for a list of requests, written once, read offline.

``pasta build-candidates --prompts FILE --generator transformers:MODEL|gemini[:MODEL] --out BANK``
asks a language model (:mod:`simulators.candidates.language_model`) for
PASTA's 25 first-turn candidates of every request of ``FILE``; a reply that
is malformed, short or repetitive is repaired from the offline generator as
the clip world repairs it (the bank records which were). The synthetic world
then reads the bank offline::

    gym.make("PastaT2I-v0", prompts=FILE, candidates=BANK)

Its first turn shows the model's candidates (each split into the world's
parts, so later turns expand them as any prompt); a bank made for another
prompt file is refused.

Layout (JSON)::

    {"format": "pasta-t2i candidate bank", "version": 1, "generator": {...},
     "categories": [...], "per_category": 5, "prompts_sha256": "...",
     "requests": [{"request": TEXT, "candidates": {CATEGORY: [TEXT, ...]}, "note": TEXT | null}, ...]}

The build writes every few requests (to a temporary file, then renamed)
and resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from simulators.candidates.synthetic import CATEGORIES
from simulators.errors import PastaError

FORMAT, VERSION = "pasta-t2i candidate bank", 1


class BankError(PastaError, ValueError):
    """A candidate bank that cannot be used (damaged, another format, made for other requests)."""


def prompts_digest(requests: Sequence[str]) -> str:
    """SHA-256 of a request list (a bank belongs to one list, in its order)."""
    return hashlib.sha256(json.dumps(list(requests), ensure_ascii=False).encode("utf-8")).hexdigest()


def read_bank(path: str | os.PathLike, requests: Sequence[str] | None = None,
              per_category: int | None = None) -> dict[str, Any]:
    """A bank, checked: its format, whole lists, and (given ``requests``) that it was made for them.

    Raises:
        BankError: The file is not a bank, is cut short, or belongs to other requests (the message
            says which request first differs and how to make a matching bank).
    """
    path = Path(path)
    try:
        bank = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BankError(f"no candidate bank at {str(path)!r}; make one with pasta build-candidates") from exc
    except (OSError, ValueError) as exc:
        raise BankError(f"{path}: not a candidate bank ({exc}); make it again with pasta build-candidates") from exc
    if not isinstance(bank, dict) or bank.get("format") != FORMAT or bank.get("version") != VERSION:
        raise BankError(f"{path}: not a {FORMAT} of version {VERSION}; make it with pasta build-candidates")
    rows = bank.get("requests")
    k = int(bank.get("per_category", 0))
    if not isinstance(rows, list) or k < 1 or list(bank.get("categories", [])) != list(CATEGORIES):
        raise BankError(f"{path}: damaged (no request list, or other categories than {', '.join(CATEGORIES)})")
    for i, row in enumerate(rows):
        cands = row.get("candidates") if isinstance(row, dict) else None
        if not isinstance(cands, dict) or any(len(cands.get(c, [])) != k for c in CATEGORIES):
            raise BankError(f"{path}: request {i + 1} does not hold {k} candidates in each category; "
                            "make the bank again with pasta build-candidates")
    if per_category is not None and k != per_category:
        raise BankError(f"{path} holds {k} candidates per category; the world proposes {per_category} "
                        f"(num_candidates={5 * k} matches it)")
    if requests is not None:
        have = [str(r.get("request")) for r in rows]
        if have != list(requests):
            first = next((i for i, (a, b) in enumerate(zip(have, requests)) if a != b), min(len(have), len(requests)))
            what = (f"request {first + 1} is {requests[first]!r} in the prompts but "
                    f"{have[first] if first < len(have) else 'missing'!r} in the bank"
                    if first < len(requests) else f"the bank holds {len(have)} requests, the prompts {len(requests)}")
            raise BankError(f"{path} was made for other requests ({what}); make it for these with "
                            f"pasta build-candidates --prompts FILE --out {path}")
    return bank


def bank_candidates(bank: dict[str, Any]) -> list[list[str]]:
    """Per request, its candidate texts in category blocks (the order a generator returns them)."""
    return [[t for c in CATEGORIES for t in row["candidates"][c]] for row in bank["requests"]]


def build_bank(requests: Sequence[str], generator, out: str | os.PathLike, seed: int = 0, every: int = 10,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Ask ``generator`` (:class:`~simulators.candidates.language_model.LanguageModelCandidateGenerator`) for
    every request's candidates and write the bank to ``out``; a bank there for the same requests is resumed.

    Args:
        requests: The request texts, in the order of the prompt file.
        generator: Has ``candidates_for(text, seed) -> (texts, note)``, ``per_category`` and ``identity()``.
        out: The bank file.
        seed: Seeds request ``i``'s reply with ``seed + i``.
        every: Requests between writes.
        progress: Called with (done, total) after each request.

    Raises:
        BankError: ``out`` holds a bank for other requests or another generator.
    """
    from simulators.atomic import write_json

    k = generator.per_category
    bank: dict[str, Any] = {"format": FORMAT, "version": VERSION, "generator": generator.identity(),
                            "categories": list(CATEGORIES), "per_category": k,
                            "prompts_sha256": prompts_digest(requests), "seed": seed, "requests": []}
    partial = Path(str(out) + ".partial")
    for where in (partial, Path(out)):
        if where.is_file():
            old = json.loads(where.read_text(encoding="utf-8"))
            if old.get("prompts_sha256") != bank["prompts_sha256"] or old.get("generator") != bank["generator"] \
                    or old.get("seed") != seed:
                raise BankError(f"{where} holds a bank of other requests, another generator or seed; "
                                "give another --out, or delete it to start again")
            bank["requests"] = old["requests"]
            break
    done = len(bank["requests"])
    for i in range(done, len(requests)):
        texts, note = generator.candidates_for(requests[i], seed + i)
        bank["requests"].append({"request": requests[i], "note": note,
                                 "candidates": {c: texts[j * k:(j + 1) * k] for j, c in enumerate(CATEGORIES)}})
        if progress:
            progress(i + 1, len(requests))
        if (i + 1) % every == 0 and i + 1 < len(requests):
            write_json(partial, bank)
    write_json(out, bank)
    partial.unlink(missing_ok=True)
    return bank
