"""From words to a scene: what the embedded painter should draw for a prompt.

`read_scene()` looks for keywords: the setting (forest, sea, castle...), the time of day, the
weather, props (a rainbow, a boat...) and the figures, each with the colours and accessories
its look names ("a small grey mouse with a red scarf" -> a grey mouse wearing a red scarf).
Words of the negative prompt are never drawn. Pure functions; no drawing here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from storymesh.agents.illustrator.prompt import scene_cast
from storymesh.agents.illustrator.request import Character

RGB = tuple[int, int, int]
MAX_FIGURES = 4

COLOURS: dict[str, RGB] = {
    "red": (205, 45, 45), "scarlet": (220, 40, 35), "crimson": (170, 25, 50),
    "orange": (240, 140, 35), "ginger": (225, 120, 45), "yellow": (250, 210, 55),
    "golden": (232, 180, 45), "gold": (232, 180, 45), "green": (70, 165, 75),
    "blue": (55, 110, 215), "navy": (35, 50, 120), "teal": (40, 150, 150),
    "turquoise": (60, 200, 200), "purple": (135, 65, 175), "violet": (150, 90, 210),
    "lilac": (195, 160, 225), "pink": (242, 145, 175), "brown": (135, 88, 50),
    "chocolate": (95, 60, 35), "tan": (205, 165, 115), "beige": (225, 205, 170),
    "cream": (245, 235, 205), "white": (246, 246, 242), "grey": (150, 150, 158),
    "gray": (150, 150, 158), "silver": (195, 200, 210), "black": (45, 45, 52),
    "spotted": (245, 245, 240), "striped": (225, 120, 45), "tabby": (205, 140, 70),
}

# Species words -> the figure kind drawn for them.
KINDS: dict[str, str] = {
    "mouse": "mouse", "mice": "mouse", "hamster": "mouse", "rat": "mouse",
    "cat": "cat", "kitten": "cat", "kitty": "cat",
    "dog": "dog", "puppy": "dog", "pup": "dog", "hound": "dog", "wolf": "dog",
    "fox": "fox", "rabbit": "rabbit", "bunny": "rabbit", "hare": "rabbit",
    "bear": "bear", "teddy": "bear", "cub": "bear", "owl": "owl", "owlet": "owl",
    "dragon": "dragon", "bird": "bird", "robin": "bird", "sparrow": "bird", "parrot": "bird",
    "bluebird": "bird", "fish": "fish", "goldfish": "fish",
    "robot": "robot", "android": "robot",
    "girl": "girl", "princess": "girl", "queen": "girl", "witch": "girl", "woman": "girl",
    "grandma": "girl", "mother": "girl", "mum": "girl", "mom": "girl", "sister": "girl",
    "boy": "boy", "prince": "boy", "king": "boy", "wizard": "boy", "knight": "boy",
    "pirate": "boy", "man": "boy", "grandpa": "boy", "father": "boy", "dad": "boy",
    "brother": "boy", "child": "boy", "kid": "boy",
}

DEFAULT_BODY: dict[str, RGB] = {
    "mouse": (160, 160, 168), "cat": (235, 150, 60), "dog": (190, 140, 90),
    "fox": (235, 120, 40), "rabbit": (235, 232, 225), "bear": (140, 92, 55),
    "owl": (150, 105, 70), "dragon": (80, 170, 90), "bird": (70, 130, 220),
    "fish": (245, 140, 40), "robot": (180, 190, 205), "girl": (225, 85, 110),
    "boy": (60, 120, 200),
}

# Nouns a colour may describe: accessories/garments, or parts that colour the body or hair.
ACCESSORIES = ("scarf", "hat", "crown", "cape", "glasses", "bow", "boots")
_ACCESSORY_WORDS: dict[str, str] = {
    "scarf": "scarf", "hat": "hat", "cap": "hat", "crown": "crown", "tiara": "crown",
    "cape": "cape", "cloak": "cape", "glasses": "glasses", "spectacles": "glasses",
    "bow": "bow", "ribbon": "bow", "boots": "boots", "shoes": "boots", "wellies": "boots",
}
_GARMENTS = ("dress", "shirt", "coat", "jacket", "jumper", "sweater", "overalls", "tunic",
             "robe", "fur", "feathers", "scales", "body", "skin", "suit")
_HAIR = ("hair", "curls", "pigtails", "braids", "ponytail")
# Who wears what without saying so.
_IMPLIED: dict[str, tuple[str, ...]] = {
    "princess": ("crown",), "queen": ("crown",), "king": ("crown",), "prince": ("crown",),
    "wizard": ("wizard_hat",), "witch": ("wizard_hat",), "pirate": ("hat",),
}

SETTINGS: dict[str, tuple[str, ...]] = {
    "forest": ("forest", "woods", "wood", "woodland", "jungle", "grove", "trees"),
    "underwater": ("underwater", "reef", "coral", "seabed", "undersea"),
    "beach": ("beach", "shore", "seaside", "sand", "sandy", "coast", "shells"),
    "sea": ("sea", "ocean", "waves", "sail", "sailing", "ship", "island", "voyage"),
    "castle": ("castle", "palace", "kingdom", "tower", "fortress", "throne"),
    "village": ("village", "town", "houses", "cottage", "cottages", "farm", "market"),
    "mountain": ("mountain", "mountains", "peak", "peaks", "cliff", "valley", "summit"),
    "space": ("space", "planet", "planets", "rocket", "galaxy", "astronaut", "spaceship",
              "comet"),
    "city": ("city", "skyscraper", "skyscrapers", "buildings", "metropolis", "downtown"),
    "garden": ("garden", "meadow", "field", "flowers", "park", "hill", "hills", "picnic"),
    "cave": ("cave", "cavern", "tunnel", "underground", "grotto", "mine", "den"),
    "desert": ("desert", "dunes", "dune", "oasis", "cactus", "pyramid", "pyramids"),
    "snow": ("winter", "snowy", "arctic", "icy", "frozen", "igloo", "snowman", "ice"),
    "room": ("bedroom", "room", "kitchen", "library", "indoors", "inside", "bed", "bedtime",
             "nursery"),
}
TIMES: dict[str, tuple[str, ...]] = {
    "night": ("night", "midnight", "moon", "moonlight", "moonlit", "stars", "starry", "dark",
              "nighttime", "bedtime", "lantern"),
    "sunset": ("sunset", "dusk", "evening", "twilight", "sundown"),
    "morning": ("morning", "dawn", "sunrise", "breakfast", "daybreak"),
    "day": ("day", "noon", "afternoon", "sunny", "sunshine", "daytime"),
}
WEATHERS: dict[str, tuple[str, ...]] = {
    "storm": ("storm", "stormy", "thunder", "lightning", "thunderstorm", "gale"),
    "rain": ("rain", "rainy", "raining", "drizzle", "umbrella", "puddle", "puddles",
             "raindrops", "shower"),
    "snow": ("snow", "snowing", "snowfall", "snowflakes", "snowflake", "blizzard"),
    "fog": ("fog", "foggy", "mist", "misty", "haze"),
    "sunny": ("sunny", "sunshine", "sunlight", "bright"),
}
PROPS: dict[str, tuple[str, ...]] = {
    "rainbow": ("rainbow",), "boat": ("boat", "ship", "sailboat", "raft", "sail", "sailing"),
    "house": ("house", "cottage", "home", "cabin"), "castle": ("castle", "palace", "tower"),
    "balloon": ("balloon", "balloons"), "kite": ("kite",), "lantern": ("lantern", "lamp"),
    "campfire": ("campfire", "bonfire", "fire"), "tent": ("tent", "camping"),
    "mushroom": ("mushroom", "mushrooms", "toadstool"), "flowers": ("flower", "flowers"),
    "rocket": ("rocket", "spaceship"), "snowman": ("snowman",),
    "treasure": ("treasure", "chest", "gold", "coins"), "key": ("key",),
}

_WORD_RE = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure to draw: its kind, colours and what it wears."""

    kind: str
    body: RGB
    accessories: dict[str, RGB] = field(default_factory=dict)
    garment: RGB | None = None  # a child's dress/shirt
    hair: RGB | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Scene:
    """Everything the painter needs to know about a picture."""

    setting: str
    time: str
    weather: str
    snowy: bool
    props: frozenset[str]
    figures: tuple[Figure, ...]


def words(text: str) -> list[str]:
    """The lower-case words of a text (plurals are listed in the keyword tables)."""
    return _WORD_RE.findall(text.lower())


def _first_match(tokens: Sequence[str], table: dict[str, tuple[str, ...]],
                 banned: set[str]) -> str | None:
    """The entry with most keyword hits; ties go to the one named first."""
    best: tuple[int, int, str] | None = None
    for name, keys in table.items():
        hits = [i for i, t in enumerate(tokens) if t in keys and t not in banned]
        if hits:
            rank = (-len(hits), hits[0], name)
            best = rank if best is None or rank < best else best
    return best[2] if best else None


def _colour_target(tokens: Sequence[str], i: int) -> str:
    """What a colour at tokens[i] describes: an accessory, 'garment', 'hair' or 'body'."""
    for noun in tokens[i + 1:i + 4]:
        if noun in _ACCESSORY_WORDS:
            return _ACCESSORY_WORDS[noun]
        if noun in _GARMENTS:
            return "garment"
        if noun in _HAIR:
            return "hair"
        if noun in KINDS or noun in COLOURS or noun in ("and", "with", "or"):
            break
    return "body"


def read_figure(look: str, name: str = "", kind: str | None = None) -> Figure:
    """Turn a look ("a small grey mouse with a red scarf") into a Figure.

    Without a `kind`, the look's first species word decides (a person if it names none).
    """
    tokens = words(look)
    if kind is None:
        kind = next((KINDS[t] for t in tokens if t in KINDS), "boy")
    body: RGB | None = None
    garment = hair = None
    worn: dict[str, RGB] = {}
    for i, token in enumerate(tokens):
        if token not in COLOURS:
            continue
        target = _colour_target(tokens, i)
        if target == "body" and body is None:
            body = COLOURS[token]
        elif target == "garment" and garment is None:
            garment = COLOURS[token]
        elif target == "hair" and hair is None:
            hair = COLOURS[token]
        elif target in ACCESSORIES and target not in worn:
            worn[target] = COLOURS[token]
    for token in tokens:  # accessories named without a colour get a cheerful default
        accessory = _ACCESSORY_WORDS.get(token)
        if accessory and accessory not in worn:
            worn[accessory] = (205, 45, 45) if accessory != "glasses" else (45, 45, 52)
        for implied in _IMPLIED.get(token, ()):
            worn.setdefault(implied, (232, 180, 45) if implied == "crown" else (80, 60, 160))
    if kind in ("girl", "boy") and body is not None and garment is None:
        garment, body = body, None  # "a boy in blue": blue is his clothes, not his skin
    return Figure(kind=kind, body=body or DEFAULT_BODY[kind], accessories=worn,
                  garment=garment, hair=hair, name=name)


def _extra_figures(tokens: Sequence[str], taken: set[str], banned: set[str]) -> list[Figure]:
    """Figures named in the prompt itself ("a fox and an owl") not covered by the cast."""
    found: list[Figure] = []
    for i, token in enumerate(tokens):
        kind = KINDS.get(token)
        if kind is None or token in banned or kind in taken:
            continue
        taken.add(kind)
        # The words just before the species carry its colours ("a big brown bear").
        start = max([0] + [j + 1 for j in range(max(0, i - 3), i) if tokens[j] in KINDS])
        found.append(read_figure(" ".join(tokens[start:i + 1]), kind=kind))
    return found


def read_scene(prompt: str, characters: Sequence[Character] = (),
               negative_prompt: str = "") -> Scene:
    """Read the setting, time, weather, props and figures out of a prompt and its cast."""
    tokens = words(prompt)
    banned = set(words(negative_prompt))
    cast = scene_cast(prompt, characters)
    figures = [read_figure(c.look or c.name, c.name) for c in cast]
    taken = {f.kind for f in figures}
    figures += _extra_figures(tokens, taken, banned)
    if not figures and characters:  # a picture of the story without its hero is odd
        figures.append(read_figure(characters[0].look or characters[0].name,
                                   characters[0].name))
    setting = _first_match(tokens, SETTINGS, banned) or "garden"
    weather = _first_match(tokens, WEATHERS, banned) or "clear"
    snowy = setting == "snow" or weather == "snow" or bool({"snowy", "winter"} & set(tokens))
    return Scene(
        setting=setting,
        time=_first_match(tokens, TIMES, banned) or "day",
        weather=weather,
        snowy=snowy and setting not in ("desert", "space", "underwater", "room", "cave"),
        props=frozenset(_props(tokens, banned)),
        figures=tuple(figures[:MAX_FIGURES]),
    )


def _props(tokens: Iterable[str], banned: set[str]) -> set[str]:
    present = set(tokens) - banned
    return {name for name, keys in PROPS.items() if present & set(keys)}
