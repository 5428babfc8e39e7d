"""Phrase vocabulary of the synthetic world: the words its prompts are made of.

Every prompt in the synthetic world is a composition of phrases, one per
*slot* (subject, setting, style, lighting, ...). The phrases below are the
whole vocabulary; ``pasta build-assets`` embeds each of them
with a real sentence encoder and ships the table in ``simulators/assets``.

Subjects carry a *group* (animal, landscape, food, ...). Groups are used to
write the initial-prompt pool and to describe the user types; the user model
itself only ever sees embeddings.
"""

from __future__ import annotations

SUBJECTS: dict[str, tuple[str, ...]] = {
    "animal": (
        "a red fox", "a sleeping cat", "a golden retriever puppy", "an owl",
        "a herd of elephants", "a hummingbird", "a sea turtle", "a snow leopard",
        "a pair of otters", "a majestic lion", "a grey wolf", "a koi fish",
    ),
    "landscape": (
        "a mountain lake", "a misty pine forest", "a desert canyon",
        "a waterfall in the jungle", "rolling green hills", "a glacier valley",
        "a lavender field", "a rocky coastline", "a volcanic island",
        "an autumn birch grove", "a frozen tundra", "a river delta",
    ),
    "food": (
        "a bowl of ramen", "a stack of pancakes", "a slice of cherry pie",
        "a plate of sushi", "a wood-fired pizza", "a cup of cappuccino",
        "a basket of fresh bread", "a chocolate layer cake", "a bowl of fruit",
        "a plate of tacos", "a glass of iced lemonade", "a cheese board",
    ),
    "portrait": (
        "an elderly fisherman", "a young woman with freckles",
        "a smiling child", "a jazz musician", "a ballet dancer",
        "a bearded lumberjack", "an astronaut without a helmet",
        "a street violinist", "a grandmother knitting", "a boxer after a fight",
        "a girl with a red umbrella", "a samurai warrior",
    ),
    "architecture": (
        "a gothic cathedral", "a lighthouse", "a wooden cabin",
        "a futuristic skyscraper", "an ancient temple", "a stone bridge",
        "a japanese pagoda", "a victorian mansion", "a windmill",
        "a glass greenhouse", "a medieval castle", "a tiny treehouse",
    ),
    "vehicle": (
        "a vintage red car", "a steam locomotive", "a sailing ship",
        "a hot air balloon", "a motorcycle", "a space shuttle",
        "a bicycle leaning on a wall", "a yellow school bus", "a biplane",
        "a submarine", "a cable car", "a tram",
    ),
    "fantasy": (
        "a dragon", "a wizard with a staff", "a floating castle",
        "a unicorn", "a giant mushroom village", "a robot knight",
        "a phoenix", "a mermaid", "a crystal golem", "a fairy with glowing wings",
        "an enchanted sword", "a haunted ship",
    ),
    "abstract": (
        "swirling geometric shapes", "interlocking circles",
        "fractal patterns", "flowing liquid forms", "a field of floating cubes",
        "scattered paint splashes", "concentric ripples", "tangled neon lines",
        "shattered glass shards", "a spiral of colour", "overlapping triangles",
        "melting clocks",
    ),
}

SETTINGS: tuple[str, ...] = (
    "in a snowy forest", "on a sunny beach", "in a busy city street",
    "at a night market", "in outer space", "under the sea", "in a quiet library",
    "in a cozy kitchen", "on a mountain peak", "in a flower garden",
    "in a rainy alley", "in a desert at noon", "on a farm", "in a cave",
    "in a cyberpunk city", "in an old train station", "on a frozen lake",
    "in a bamboo forest", "on a rooftop", "in a medieval village",
    "in a misty swamp", "in a wheat field", "at a carnival", "in a museum hall",
    "on a quiet country road", "in a tropical rainforest", "on the moon",
    "in a candlelit room", "by a campfire", "in a greenhouse",
    "in a parisian cafe", "in a japanese garden", "on a pirate ship deck",
    "in an abandoned factory", "at the bottom of a canyon", "in the clouds",
)

STYLES: tuple[str, ...] = (
    "oil painting", "watercolor painting", "pencil sketch", "charcoal drawing",
    "anime style", "studio ghibli style", "manga illustration", "cel shaded cartoon",
    "photorealistic", "hyperrealistic 8k photograph", "DSLR photo with shallow depth of field",
    "documentary photography",
    "vintage 1950s photograph", "sepia toned old photo", "retro 1970s film still",
    "victorian engraving",
    "abstract expressionism", "cubist painting", "minimalist vector art",
    "bauhaus poster",
    "pixel art", "3d render", "low poly art", "claymation",
    "impressionist painting", "art nouveau", "pop art", "ukiyo-e woodblock print",
    "stained glass", "graffiti mural", "comic book art", "surrealist painting",
    "children's book illustration", "concept art", "origami paper craft",
    "neon synthwave art",
)

LIGHTING: tuple[str, ...] = (
    "golden hour light", "soft morning light", "dramatic rim lighting",
    "moonlight", "neon lighting", "candlelight", "harsh midday sun",
    "overcast diffuse light", "backlit silhouette", "studio lighting",
    "volumetric light rays", "bioluminescent glow", "firelight",
    "blue hour twilight", "flash photography", "dappled sunlight",
    "stormy light", "glowing lanterns", "northern lights overhead",
    "spotlight from above",
)

MOODS: tuple[str, ...] = (
    "peaceful", "melancholic", "whimsical", "mysterious", "joyful",
    "eerie", "romantic", "epic", "nostalgic", "cozy", "tense", "dreamy",
    "serene", "chaotic", "playful", "lonely", "majestic", "ominous",
    "hopeful", "festive",
)

PALETTES: tuple[str, ...] = (
    "pastel colours", "vibrant colours", "muted earth tones", "black and white",
    "monochrome blue", "warm orange and teal", "neon pink and purple",
    "desaturated colours", "gold and crimson", "emerald green tones",
    "candy colours", "sepia tones", "high contrast", "soft greys",
    "rainbow colours", "icy blues and whites", "autumn colours",
    "complementary colours",
)

COMPOSITIONS: tuple[str, ...] = (
    "close-up", "wide angle shot", "aerial view", "symmetrical composition",
    "rule of thirds", "low angle shot", "macro shot", "panoramic view",
    "portrait orientation", "centered subject", "bokeh background",
    "isometric view", "fisheye lens", "top-down view", "long exposure",
    "tilt-shift", "silhouette against the sky", "reflection in water",
)

DETAILS: tuple[str, ...] = (
    "highly detailed", "intricate patterns", "falling snow", "rain drops",
    "floating lanterns", "cherry blossoms", "autumn leaves", "fog",
    "sparkles in the air", "butterflies", "steam rising", "dust particles",
    "a rainbow in the sky", "wildflowers", "fireflies", "ivy on the walls",
    "ornate gold trim", "cracked paint texture", "film grain", "lens flare",
    "soft focus", "sharp focus", "glitter", "bubbles", "smoke",
    "a full moon", "shooting stars", "waves crashing", "a flock of birds",
    "paper lanterns", "vines and moss", "mirror reflections", "crystals",
    "tiny people in the distance", "handwritten notes", "a cup of tea",
    "a sleeping dog nearby", "colourful balloons", "a stack of old books",
    "a wooden table",
)

FRAMINGS: tuple[str, ...] = (
    "a picture of", "an image of", "a depiction of", "a scene showing",
    "a view of", "a rendering of",
)

# Descriptions of the eight tastes of the default user types. Each taste is
# the mean embedding of its sentences, so the user model's preferences live in
# the same space as the prompts.
TASTES: dict[str, tuple[str, ...]] = {
    "animals": ("animals and wildlife", "a cute animal", "pets and wild creatures"),
    "landscapes": ("a beautiful natural landscape", "mountains, forests and lakes",
                   "scenic nature views"),
    "food": ("delicious food", "a tasty dish", "cooking and cuisine"),
    "portraits": ("a portrait of a person", "a human face", "people and characters"),
    "abstract": ("abstract art", "geometric shapes and patterns", "non-figurative art"),
    "vintage": ("a vintage old photograph", "retro nostalgic style", "antique sepia look"),
    "anime": ("anime and manga art", "japanese animation style", "cartoon illustration"),
    "photoreal": ("a photorealistic photograph", "a realistic high resolution photo",
                  "professional photography"),
}
