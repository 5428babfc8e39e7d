"""Free-text requests read as a prompt expander reads them: their parts, paraphrases and related subjects.

A request such as ``"king theoden charging on horseback at the front of an
army, art by artgerm and greg rutkowski, dramatic lighting, 8k"`` fixes a
subject, a setting, a style, a lighting and a detail. :func:`parse_request`
splits it into the synthetic world's slots (a language model asked to expand
it would keep the parts it fixes and fill the ones it leaves open), so that

* *add detail* fills only slots the request leaves open,
* *change style* replaces the request's own style instead of stacking a
  second one,
* *change subject* replaces the subject and keeps the setting and style,
* the image model may drop each part of a long request, as it does for the
  vocabulary's phrases.

:func:`paraphrases` rewords a text (a lexicon of synonyms common in image
requests, and swapped conjuncts) without changing what it asks for: the
*rephrase* category's material for free text and for the vocabulary's own
phrases.

Everything here is rules and word lists written for this project; nothing
is learned or downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from simulators.text import vocabulary as V

#: Slots a request's parts go to (names of :data:`simulators.text.prompts.SLOTS`).
PART_SLOTS = ("framing", "base", "setting", "style", "lighting", "mood", "palette", "composition", "detail",
              "extra")

# Cues that a comma-separated part of a request names a slot. A part matching several goes to the first.
_CUES: dict[str, tuple[str, ...]] = {
    "style": (
        "art by", "artwork by", "painting by", "painted by", "in the style of", "style", "by artgerm",
        "rutkowski", "artgerm", "wlop", "mucha", "moebius", "ghibli", "pixar", "disney", "artstation",
        "deviantart", "cgsociety", "behance", "painting", "painted", "watercolor", "watercolour", "oil on",
        "acrylic", "gouache", "illustration", "illustrated", "drawing", "drawn", "sketch", "charcoal",
        "pencil", "ink", "engraving", "etching", "woodcut", "woodblock", "lithograph", "render", "rendered",
        "rendering", "canvas", "artwork",
        "octane", "unreal engine", "blender", "3d", "cgi", "digital art", "concept art", "matte painting",
        "pixel art", "low poly", "voxel", "vector", "anime", "manga", "cartoon", "comic", "cel shaded",
        "photograph", "photo", "photography", "dslr", "35mm", "polaroid", "film still", "kodak", "portra",
        "photorealistic", "photoreal", "hyperrealistic", "hyperrealism", "realism", "surreal", "surrealism",
        "surrealist", "cubism", "cubist", "impressionism", "impressionist", "expressionism", "expressionist",
        "art nouveau", "art deco", "baroque", "renaissance", "rococo",
        "ukiyo", "pop art", "graffiti", "mural", "stained glass", "claymation", "origami", "poster",
        "synthwave", "vaporwave", "cyberpunk", "steampunk", "fantasy art", "bauhaus", "minimalist",
        "abstract art",
    ),
    "lighting": (
        "lighting", "light", "lit ", "sunlight", "moonlight", "sunset", "sunrise", "golden hour",
        "blue hour", "dusk", "dawn", "twilight", "backlit", "backlight", "rim light", "volumetric",
        "god rays", "glow", "shadows", "neon lights", "candlelight", "firelight", "spotlight", "at night",
    ),
    "mood": (*V.MOODS, "moody", "dark", "gloomy", "calm", "happy", "sad", "cheerful", "dramatic",
             "atmospheric", "atmosphere", "mystical", "magical", "ethereal", "creepy", "scary", "cute"),
    "palette": ("colour", "color", "pastel", "monochrome", "black and white", "sepia", "vibrant",
                "muted", "palette", "tones", "hues", "saturated", "desaturated", "high contrast"),
    "composition": ("close-up", "close up", "closeup", "wide shot", "wide angle", "wide-angle", "full body",
                    "full-body", "aerial", "from above", "top-down", "top down", "symmetry", "symmetrical", "centered",
                    "rule of thirds", "bokeh", "depth of field", "macro", "fisheye", "panoramic",
                    "panorama", "isometric", "long exposure", "tilt-shift", "low angle", "side view",
                    "portrait shot", "headshot", "establishing shot"),
    "detail": ("detailed", "detail", "intricate", "8k", "8 k", "4k", "4 k", "hd", "uhd", "sharp focus",
               "high quality", "masterpiece", "award winning", "award-winning", "trending", "high resolution",
               "highly", "ornate", "elegant", "smooth", "sharp", "rain", "snow", "fog", "mist", "smoke", "dust",
               "bubbles", "petals", "sparkles", "fireflies", "steam", "reflections"),
}
# Prepositions that open a setting ("a cat on a sofa", "a fox in a snowy forest").
_SETTING = re.compile(r"\s((?:in|on|at|under|inside|beside|near|above|below|among|across|along|through|over|"
                      r"by|against|atop|amid|underneath|behind|next\s+to|in\s+front\s+of|on\s+top\s+of)\s+(?:(?:a|an|the|some|his|her|their|its|my)\s|"
                      r"[A-Z]|(?:sunset|sunrise|dusk|dawn|night|twilight|noon|midnight|golden hour|blue hour)\b).*)$")
# A medium before "of" ("an oil painting of ...", "a photo of ..."): the request's style.
_MEDIUM = re.compile(r"^(?:(?:a|an|the)\s+)?((?:[\w-]+\s){0,2}(?:painting|photo|photograph|illustration|drawing|"
                     r"sketch|render|rendering|watercolou?r|engraving|poster|artwork|portrait|still|cartoon|"
                     r"sculpture|mural))\s+of\s+(.+)$", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

# Synonyms used to reword a text without changing what it asks for (both directions where they hold).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "picture": ("image",), "image": ("picture",), "photo": ("photograph",), "photograph": ("photo",),
    "big": ("large", "huge"), "large": ("big", "sizable"), "huge": ("enormous", "giant"), "giant": ("huge", "enormous"),
    "enormous": ("huge",), "small": ("little", "tiny"), "little": ("small",), "tiny": ("miniature", "little"),
    "beautiful": ("lovely", "gorgeous"), "pretty": ("lovely",), "lovely": ("beautiful",),
    "old": ("aged", "weathered"), "ancient": ("age-old",), "new": ("brand-new",), "young": ("youthful",),
    "cute": ("adorable",), "adorable": ("cute",), "happy": ("cheerful", "joyful"), "sad": ("sorrowful",),
    "scary": ("frightening", "creepy"), "creepy": ("eerie",), "magical": ("enchanted",),
    "enchanted": ("magical",), "mysterious": ("enigmatic",), "peaceful": ("tranquil", "calm"),
    "calm": ("tranquil",), "quiet": ("tranquil", "hushed"), "busy": ("bustling", "crowded"),
    "crowded": ("packed",), "cozy": ("snug", "homely"), "bright": ("vivid", "luminous"), "dark": ("dim",),
    "shiny": ("glossy", "gleaming"), "glowing": ("luminous", "radiant"), "shining": ("gleaming",),
    "colorful": ("multicoloured", "vibrant"), "colourful": ("multicoloured", "vibrant"),
    "vibrant": ("vivid",), "fluffy": ("fuzzy",), "furry": ("fuzzy",), "wet": ("soaked",),
    "snowy": ("snow-covered",), "sunny": ("sunlit",), "rainy": ("rain-soaked",), "misty": ("foggy",),
    "foggy": ("misty",), "stormy": ("tempestuous",), "frozen": ("icy",), "icy": ("frozen",),
    "futuristic": ("sci-fi", "high-tech"), "modern": ("contemporary",), "vintage": ("retro",),
    "retro": ("vintage",), "detailed": ("intricate",), "intricate": ("elaborate",), "realistic": ("lifelike",),
    "red": ("crimson", "scarlet"), "blue": ("azure",), "green": ("emerald",), "yellow": ("golden",),
    "white": ("snow-white",), "black": ("jet-black",), "purple": ("violet",),
    "orange": ("amber",), "pink": ("rosy",), "grey": ("gray",), "gray": ("grey",), "brown": ("chestnut",),
    "forest": ("woods", "woodland"), "woods": ("forest",), "city": ("metropolis",), "town": ("village",),
    "street": ("road", "avenue"), "road": ("street", "lane"), "path": ("trail",), "ocean": ("sea",),
    "sea": ("ocean",), "river": ("stream",), "stream": ("brook",), "mountain": ("peak",), "hill": ("hillside",),
    "field": ("meadow",), "meadow": ("field",), "sky": ("heavens",), "beach": ("shore", "seaside"),
    "shore": ("beach",), "garden": ("yard",), "house": ("home",), "home": ("house",), "room": ("chamber",),
    "castle": ("fortress",), "ship": ("vessel",), "boat": ("vessel",), "car": ("automobile",),
    "automobile": ("car",), "bike": ("bicycle",), "bicycle": ("bike",), "man": ("gentleman",),
    "woman": ("lady",), "lady": ("woman",), "child": ("kid",), "kid": ("child",), "people": ("folks",),
    "dog": ("pup", "hound"), "puppy": ("pup",), "cat": ("kitty",), "kitten": ("kitty",), "horse": ("steed",),
    "bird": ("songbird",), "fish": ("swimmer",), "teddybear": ("teddy bear",), "teddy": ("stuffed",),
    "painting": ("artwork", "canvas"), "sketch": ("drawing",), "drawing": ("sketch",), "render": ("rendering",),
    "rendering": ("render",), "portrait": ("likeness",), "landscape": ("scenery",), "view": ("vista",),
    "scene": ("setting",), "riding": ("astride",), "running": ("sprinting", "dashing"), "walking": ("strolling",),
    "sitting": ("seated",), "flying": ("soaring",), "eating": ("munching",), "holding": ("clutching", "gripping"),
    "wearing": ("dressed in",), "looking": ("gazing",), "standing": ("posing",), "jumping": ("leaping",),
    "playing": ("enjoying",), "sleeping": ("asleep",), "dancing": ("twirling",), "reading": ("perusing",),
    "charging": ("galloping",), "fighting": ("battling",), "smiling": ("grinning",), "lit": ("illuminated",),
    "light": ("lighting",), "lighting": ("light",), "sunset": ("sundown",), "sunrise": ("daybreak",),
    "dusk": ("twilight",), "night": ("nighttime",), "colours": ("hues",), "colors": ("hues",),
    "tones": ("shades",), "shot": ("photo",), "art": ("artwork",), "artwork": ("art",), "style": ("manner",),
    "cake": ("gateau",), "cup": ("mug",), "mug": ("cup",), "bowl": ("dish",), "plate": ("dish",),
    "stone": ("rock",), "wooden": ("timber",), "lake": ("lakeside",), "cabin": ("hut",), "hut": ("cabin",),
    "dragon": ("wyrm",), "robot": ("android",), "astronaut": ("spaceman",), "spaceship": ("starship",),
    "army": ("host",), "king": ("monarch",), "queen": ("monarch",), "knight": ("warrior",),
    "warrior": ("fighter",), "wizard": ("sorcerer",), "monster": ("beast",), "tree": ("oak",),
    "flowers": ("blossoms",), "flower": ("blossom",), "sword": ("blade",), "cocktail": ("mixed drink",),
    "building": ("structure",), "skyscraper": ("tower",),
    "tower": ("spire",), "bridge": ("span",), "train": ("locomotive",), "statue": ("sculpture",),
    "wall": ("partition",), "hat": ("cap",), "book": ("volume",), "table": ("desk",), "great": ("grand",),
    "moon": ("lunar disc",), "jacket": ("coat",), "shirt": ("top",), "sign": ("signboard",), "truck": ("lorry",),
    "grass": ("lawn",), "symbol": ("emblem",), "high": ("tall",), "tall": ("high",), "long": ("lengthy",),
    "flag": ("banner",), "box": ("crate",), "day": ("daytime",), "van": ("minivan",), "glass": ("tumbler",),
    "water": ("liquid",), "girl": ("lass",), "boy": ("lad",), "head": ("skull",), "face": ("visage",),
    "map": ("chart",), "window": ("windowpane",), "vase": ("urn",), "balls": ("spheres",), "ball": ("sphere",),
    "sphere": ("orb",), "clothes": ("garments",), "hair": ("locks",), "fire": ("flames",), "family": ("household",),
    "word": ("term",), "words": ("text",), "cloudy": ("overcast",), "space": ("outer space",), "earth": ("world",),
    "beer": ("ale",), "motorcycle": ("motorbike",), "couch": ("sofa",), "sofa": ("couch",), "metal": ("steel",),
    "clock": ("timepiece",), "laptop": ("notebook computer",), "rock": ("boulder",), "dogs": ("hounds",),
    "cats": ("felines",), "newspaper": ("paper",), "formal": ("dressy",), "bag": ("sack",), "leaves": ("foliage",),
    "valley": ("vale",), "wood": ("timber",), "chair": ("seat",), "chairs": ("seats",), "airplane": ("aircraft",),
    "plane": ("aircraft",), "sidewalk": ("pavement",), "angry": ("furious",), "sunglasses": ("shades",),
    "subway": ("metro",), "cityscape": ("skyline",), "skyline": ("cityscape",), "saying": ("reading",),
    "ornate": ("elaborate",), "crashing": ("breaking",), "heart": ("love heart",), "baby": ("infant",),
    "bench": ("seat",), "cow": ("cattle",), "circle": ("ring",), "juice": ("drink",), "growing": ("sprouting",),
    "stars": ("constellations",), "suit": ("outfit",), "milk": ("dairy milk",), "apple": ("fruit",),
    "shaped": ("formed",), "hot": ("steaming",), "towel": ("cloth",), "kitchen": ("cookhouse",),
    "bottle": ("flask",), "bottles": ("flasks",), "toy": ("plaything",), "planet": ("world",), "sun": ("sunshine",),
    "rabbit": ("bunny",), "bunny": ("rabbit",), "bin": ("can",), "dinosaur": ("prehistoric reptile",),
    "fireworks": ("pyrotechnics",), "stripes": ("bands",), "eyes": ("gaze",), "machine": ("device",),
    "phone": ("telephone",), "pig": ("hog",), "plant": ("houseplant",), "post": ("pole",), "shouting": ("yelling",),
    "studded": ("dotted",), "parked": ("stationed",), "exploding": ("bursting",), "stands": ("stays",),
    "coming": ("emerging",), "wine": ("vino",), "piano": ("keyboard",), "wheel": ("tire",), "kids": ("children",),
    "children": ("kids",), "men": ("gentlemen",), "women": ("ladies",), "person": ("individual",),
    "animal": ("creature",), "animals": ("creatures",), "table top": ("tabletop",), "store": ("shop",),
    "shop": ("store",), "restaurant": ("eatery",), "food": ("meal",), "meal": ("dish",), "dress": ("gown",),
    "hill top": ("hilltop",), "photo-realistic": ("photorealistic",),
    "snow": ("snowfall",), "rain": ("rainfall",), "cloud": ("cloudbank",), "clouds": ("cloudbanks",),
    "door": ("doorway",), "floor": ("ground",), "ground": ("earth",), "trees": ("woods",),
    "toilet": ("lavatory",), "sink": ("basin",), "mirror": ("looking glass",), "lamp": ("light fixture",),
}

# Multi-word rewordings, tried before the single words.
_PHRASES: dict[str, tuple[str, ...]] = {
    "next to": ("beside", "alongside"), "in front of": ("before",), "on top of": ("atop",),
    "made of": ("made from", "built from"), "made out of": ("made from",), "a pair of": ("two",),
    "a lot of": ("many",), "lots of": ("plenty of",), "a group of": ("a bunch of",), "close-up": ("closeup",),
    "close up": ("closeup",), "looking at": ("gazing at",), "full of": ("filled with",),
    "covered in": ("covered with",),
    "high quality": ("high-quality",), "black and white": ("monochrome",), "at night": ("by night",),
    "teddy bear": ("stuffed bear",), "is holding": ("holds",), "is sitting": ("sits",), "is standing": ("stands",),
    "is wearing": ("wears",), "two": ("a pair of",),
}


@dataclass
class Request:
    """A request's parts by slot name (:data:`PART_SLOTS`); ``base`` is always set."""

    text: str
    parts: dict[str, str] = field(default_factory=dict)


def _clean(text: str) -> str:
    return " ".join(str(text).split()).strip(" ,;.")


def framing_of(text: str) -> str:
    """The vocabulary framing ``text`` starts with (``"a view of"``), or ``""``."""
    return next((f for f in V.FRAMINGS if text.lower().startswith(f + " ")), "")


def kind_of(part: str) -> str | None:
    """The slot a comma-separated part of a request names (``None``: part of the subject).

    A place ("in a snowy forest", "under the sea") is a setting even when a
    word of it is also a mood or detail cue; "in the style of ..." stays a
    style and "at sunset" a lighting.
    """
    low = f" {part.lower()} "
    if re.match(r"^\s*by\s+(?!(?:a|an|the)\b)", part.lower()):  # "by wlop": an artist, so a style
        return "style"
    found = None
    for kind, cues in _CUES.items():
        if any(re.search(r"(?<![a-z])" + re.escape(cue.strip()) + (r"(?:s|es)?(?![a-z])" if cue[-1] != " " else ""),
                         low) for cue in cues):
            found = kind
            break
    if _SETTING.match(" " + part.strip()) and (found not in ("style", "lighting", "composition")
                                               or found == "style" and not re.search(r"\bstyle\b", low)):
        return "setting"  # ("in a cyberpunk city" is a place; "in the style of Dali" a style)
    return found


def parse_request(text: str) -> Request:
    """Split a request into its slots: framing, subject (``base``), setting, style and the modifiers.

    The first comma-separated part holds the subject: a known framing
    (``"a picture of"``) or a medium before "of" (``"an oil painting of"``,
    the style) is split off its front, a trailing place (``"in a snowy
    forest"``) off its end. Every other part goes to the slot its words
    name; several parts of one slot are joined; parts that name none
    (``"wearing a leather jacket"``) are kept together as ``extra`` (the
    world's second detail slot).
    """
    text = _clean(text)
    parts = [p.strip() for p in re.split(r"[,;|]|\.\s", text) if p.strip(" .")]
    if not parts:
        return Request(text, {"base": text})
    head, rest = parts[0], parts[1:]
    out: dict[str, list[str]] = {}
    framing = framing_of(head)
    if framing and len(head) > len(framing) + 1:
        out["framing"] = [framing]
        head = head[len(framing):].strip()
    else:
        m = _MEDIUM.match(head)
        if m and kind_of(m.group(1)) == "style" and m.group(2).strip():
            out["style"] = [m.group(1).strip()]
            head = m.group(2).strip()
    starts = [m.start() for i in range(1, len(head)) if head[i - 1] == " " and (m := _SETTING.match(head, i - 1))]
    for start in reversed(starts):  # from the end: "a cabin | by the lake | at sunset"
        place, kind = head[start:].strip(), kind_of(head[start:].strip())
        if (kind in (None, "setting") or kind == "lighting" and not out) and "setting" not in out:
            out["setting"] = [place]  # ("a lighthouse at dusk": the time of day is where the scene is set)
        elif kind == "style":  # "in the style of Dali", beside "an oil painting of": one style, two parts
            out.setdefault("style", []).append(place)
        elif kind in ("lighting", "mood", "palette", "composition") and kind not in out:
            out[kind] = [place]  # "at sunset" is a lighting: not a place
        else:
            break
        head = head[:start].strip()
    for part in rest:
        out.setdefault(kind_of(part) or "extra", []).append(part)
    result = {k: ", ".join(v) for k, v in out.items()}
    result["base"] = head
    return Request(text, result)


def _article(words: list[str]) -> list[str]:
    """Fix "a"/"an" before the word that follows each."""
    for i in range(len(words) - 1):
        if words[i].lower() in ("a", "an"):
            vowel = words[i + 1][:1].lower() in "aeiou"
            want = "an" if vowel else "a"
            words[i] = want if words[i].islower() else want.capitalize()
    return words


def paraphrases(text: str, n: int = 5) -> list[str]:
    """Up to ``n`` rewordings of ``text`` that keep what it asks for, in a fixed order.

    Each swaps one or two words for synonyms from the lexicon (the first
    swaps touch the words nearest the end of the subject, where its noun
    is), or swaps the two sides of an "and". Texts with no known word give
    fewer (possibly none).
    """
    words = text.split()
    spots = [(i, alts) for i, w in enumerate(words)
             if (alts := _SYNONYMS.get(re.sub(r"[^a-z'-]", "", w.lower()), ()))]
    out: list[str] = []

    def add(ws: list[str]) -> None:
        t = " ".join(_article(list(ws)))
        low = t.lower().split()
        if any(a == b for a, b in zip(low, low[1:])):  # "intricate intricate": not a rewording
            return
        if t.lower() != text.lower() and t not in out:
            out.append(t)

    def swap(ws: list[str], i: int, alt: str) -> list[str]:
        w = ws[i]
        core = re.sub(r"[^A-Za-z'-]", "", w)
        new = alt.capitalize() if core[:1].isupper() else alt
        return [*ws[:i], w.replace(core, new, 1), *ws[i + 1:]]

    for phrase, alts in _PHRASES.items():  # multi-word rewordings
        m = re.search(r"(?<![A-Za-z])" + re.escape(phrase) + r"(?![A-Za-z])", text, re.IGNORECASE)
        if m:
            for alt in alts:
                add((text[:m.start()] + alt + text[m.end():]).split())
    for i, alts in reversed(spots):  # single swaps, the last words first
        for alt in alts:
            add(swap(words, i, alt))
    m = re.match(r"^(.+?)\s+with\s+(.+)$", text)
    if m and text.count(" with ") == 1 and not re.search(r"\b(that|which|who)\b", text):
        add(f"{m.group(1)} that has {m.group(2)}".split())  # "a cat with a hat": "a cat that has a hat"
    m = re.match(r"^(.+?)\s+and\s+(.+)$", text)
    if m and "," not in text and not re.search(r"\bby\b", text):  # "art by A and B": one credit, not two things
        add(f"{m.group(2)} and {m.group(1)}".split())
    for a in range(len(spots)):  # two swaps at once
        for b in range(a + 1, len(spots)):
            add(swap(swap(words, spots[a][0], spots[a][1][0]), spots[b][0], spots[b][1][0]))
    return out[:n]


#: Kinds of vocabulary phrases given paraphrases (their rephrase material).
PARAPHRASED_KINDS = ("subject", "setting", "style", "lighting", "mood", "palette", "composition")


def build_space(vocab, phrase_embeddings: np.ndarray, slot_weights: np.ndarray, encoder,
                requests: Sequence[str] | None = None, candidates: Sequence[Sequence[str]] | None = None,
                per_text: int = 5):
    """The synthetic world's prompt space with paraphrases, and its requests as structured prompts.

    Every vocabulary phrase of :data:`PARAPHRASED_KINDS` gets up to
    ``per_text`` paraphrases (:func:`paraphrases`), embedded as the phrase's
    own embedding moved by the encoder's difference between the two
    wordings. Each request (and each of ``candidates``, a language model's
    first-turn candidates per request) is split by :func:`parse_request`;
    each part becomes a phrase of its slot (the vocabulary's own id when the
    part is a vocabulary phrase) with its paraphrases.

    Returns:
        ``(space, initial, first)``: the :class:`~simulators.text.prompts.PromptSpace`
        (its ``groups`` lists, for every phrase that has paraphrases, the
        ids of its wordings), ``(N, S)`` requests and ``(N, C, S)``
        candidates (``None`` where not given).
    """
    from simulators.text import prompts as P
    from simulators.text.encoders import normalize

    index = {p.lower(): i for i, p in enumerate(vocab.phrases)}
    texts: list[str] = []
    where: dict[str, int] = {}
    origin: dict[int, int] = {}  # free index -> the vocabulary phrase it rewords
    groups: list[list[int]] = []
    P0 = len(vocab)
    slot_of = {"framing": P.FRAMING, "base": P.BASE, "setting": P.SETTING, "style": P.STYLE,
               "lighting": P.LIGHTING, "mood": P.MOOD, "palette": P.PALETTE, "composition": P.COMPOSITION,
               "detail": P.DETAIL_A, "extra": P.DETAIL_B}

    def free(text: str, of: int | None = None) -> int:
        key = text.lower()
        if key in index:
            return index[key]
        if key not in where:
            where[key] = P0 + len(texts)
            if of is not None:
                origin[len(texts)] = of
            texts.append(text)
        return where[key]

    def structure(text: str, out: np.ndarray) -> None:
        for kind, part in parse_request(text).parts.items():
            known = part.lower() in where
            i = free(part)
            out[slot_of[kind]] = i
            if i >= P0 and not known:
                groups.append([i, *(j for alt in paraphrases(part, per_text) if (j := free(alt)) >= P0)])

    for kind in PARAPHRASED_KINDS:
        a, b = vocab.ranges[kind]
        for i in range(a, b):
            ids = [j for alt in paraphrases(vocab.phrases[i], per_text) if (j := free(alt, of=i)) >= P0]
            if ids:  # (a rewording that is itself a vocabulary phrase is that phrase, not a paraphrase)
                groups.append([i, *ids])
    initial = first = None
    if requests is not None:
        initial = P.empty_prompts((len(requests),))
        for n, text in enumerate(requests):
            structure(text, initial[n])
    if candidates is not None:
        if requests is None or len(candidates) != len(requests):
            raise ValueError("candidates are given per request: as many lists as requests")
        first = P.empty_prompts((len(candidates), len(candidates[0])))
        for n, row in enumerate(candidates):
            for c, text in enumerate(row):
                structure(text, first[n, c])
    # One encoding of every text: the free texts' embeddings, the vocabulary phrases' own wording (to move
    # their paraphrases from), and the single encoder's view that judges which subjects are related.
    static = encoder.encode([*vocab.phrases, *texts])
    free_emb = static[P0:].copy()
    if origin:  # a vocabulary phrase's paraphrase: the phrase's embedding, moved as the wording moves it
        rows, vocab_ids = map(list, zip(*origin.items()))
        free_emb[rows] = normalize(phrase_embeddings[vocab_ids] + free_emb[rows] - static[vocab_ids])
    space = P.PromptSpace(vocab, phrase_embeddings, slot_weights, texts, free_emb.astype(np.float32))
    space.groups = [g for g in groups if len(set(g)) > 1]
    space.relate = np.concatenate([static, np.zeros((1, space.dim), np.float32)]).astype(np.float32)
    return space, initial, first
