"""From words to a scene: what the embedded painter should draw for a prompt.

`read_scene()` looks for keywords: the setting (forest, sea, castle...), the time of day, the
weather, props (a rainbow, a boat...) and the figures, each with the colours and accessories
its look names ("a small grey mouse with a red scarf" -> a grey mouse wearing a red scarf).
Words of the negative prompt are never drawn. Pure functions; no drawing here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

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
    "honey": (215, 160, 70), "sandy": (220, 190, 130), "ruby": (180, 30, 50),
    "olive": (120, 130, 60), "coral": (245, 125, 100), "caramel": (195, 130, 70),
    "chestnut": (150, 75, 40), "fawn": (200, 160, 110), "amber": (230, 150, 40),
    "copper": (190, 110, 60), "lemon": (250, 230, 90), "mossy": (100, 140, 70),
    "rainbow": (150, 90, 210), "sky": (130, 190, 240),
}
# Words that change the colour after them: "pale pink", "dark brown".
TONES: dict[str, float] = {"pale": 1.4, "light": 1.35, "pastel": 1.4, "bright": 1.1,
                           "dark": 0.65, "deep": 0.7}

# Words -> the drawing made for them: its own where the painter has one ("cloud", "clock"),
# else the closest it has (a parrot is a bird, a tortoise a turtle, a goat a dog, a doctor a
# person). The reply's `drawn_as` tells a client which.
KINDS: dict[str, str] = {
    "mouse": "mouse", "mice": "mouse", "hamster": "mouse", "rat": "mouse", "mole": "mouse",
    "cat": "cat", "kitten": "cat", "kitty": "cat", "skunk": "cat",
    "dog": "dog", "puppy": "dog", "pup": "dog", "hound": "dog", "wolf": "dog",
    "fox": "fox", "rabbit": "rabbit", "bunny": "rabbit", "hare": "rabbit",
    "bear": "bear", "teddy": "bear", "cub": "bear", "owl": "owl", "owlet": "owl",
    "dragon": "dragon", "bird": "bird", "robin": "bird", "sparrow": "bird", "parrot": "bird",
    "bluebird": "bird", "fish": "fish", "goldfish": "fish",
    "robot": "robot", "android": "robot", "bot": "robot", "alien": "robot",
    "lion": "lion", "tiger": "lion", "penguin": "penguin", "puffin": "penguin",
    "duck": "bird", "duckling": "bird", "hen": "bird", "chick": "bird", "chicken": "bird",
    "goose": "bird", "butterfly": "bird", "bee": "bird", "moth": "bird", "firefly": "bird",
    "ladybird": "bird", "ladybug": "bird", "dragonfly": "bird", "bat": "bird", "crow": "bird",
    "swan": "bird", "gull": "bird", "seagull": "bird", "eagle": "bird", "pigeon": "bird",
    "flamingo": "bird", "stork": "bird", "caterpillar": "bird",
    "whale": "fish", "dolphin": "fish", "octopus": "fish", "crab": "fish", "seal": "fish",
    "shark": "fish", "walrus": "fish",
    "squirrel": "fox", "badger": "fox", "raccoon": "cat", "hedgehog": "mouse", "otter": "bear",
    "beaver": "bear", "monkey": "bear", "panda": "bear", "pig": "bear", "piglet": "bear",
    "koala": "bear", "gorilla": "bear", "hippo": "bear", "rhino": "bear", "sloth": "bear",
    "elephant": "bear", "monster": "bear", "troll": "bear", "dinosaur": "dragon",
    "dino": "dragon", "crocodile": "dragon", "alligator": "dragon", "lizard": "dragon",
    "snake": "dragon", "horse": "dog", "pony": "dog", "unicorn": "dog", "deer": "dog",
    "camel": "dog", "giraffe": "dog", "goat": "dog", "sheep": "dog", "lamb": "dog",
    "cow": "dog", "calf": "dog", "donkey": "dog", "zebra": "dog", "llama": "dog",
    "kangaroo": "rabbit", "frog": "rabbit",
    "turtle": "turtle", "tortoise": "turtle", "snail": "turtle", "terrapin": "turtle",
    "cloud": "cloud", "raincloud": "cloud", "thundercloud": "cloud", "thunderstorm": "cloud",
    "wind": "cloud", "breeze": "cloud",
    "raindrop": "drop", "droplet": "drop", "drop": "drop", "dewdrop": "drop", "seed": "drop",
    "clock": "clock", "watch": "clock",
    "train": "vehicle", "engine": "vehicle", "tractor": "vehicle", "car": "vehicle",
    "bus": "vehicle", "truck": "vehicle", "lorry": "vehicle", "van": "vehicle",
    "snowplough": "vehicle", "snowplow": "vehicle", "digger": "vehicle", "tram": "vehicle",
    "bulldozer": "vehicle", "taxi": "vehicle", "bicycle": "vehicle", "bike": "vehicle",
    "tugboat": "boat",
    "snowman": "snowman", "scarecrow": "person",
    "fairy": "girl", "mermaid": "girl", "daughter": "girl", "astronaut": "boy",
    "giant": "boy", "son": "boy", "ghost": "boy",
    "girl": "girl", "princess": "girl", "queen": "girl", "witch": "girl", "woman": "girl",
    "mother": "girl", "mum": "girl", "mom": "girl", "sister": "girl", "lady": "girl",
    "boy": "boy", "prince": "boy", "king": "boy", "wizard": "boy", "knight": "boy",
    "pirate": "boy", "man": "boy", "father": "boy", "dad": "boy",
    "brother": "boy", "child": "boy", "kid": "boy",
    "grandma": "grandma", "grandmother": "grandma", "granny": "grandma", "nana": "grandma",
    "grandpa": "grandpa", "grandfather": "grandpa", "grandad": "grandpa",
    "granddad": "grandpa",
    "person": "person", "doctor": "person", "farmer": "person", "baker": "person",
    "keeper": "person", "firefighter": "person", "teacher": "person", "nurse": "person",
    "sailor": "person", "gardener": "person", "postman": "person", "chef": "person",
    "fisherman": "person", "captain": "person", "shopkeeper": "person", "builder": "person",
}
# Named only as a character's own kind (a prompt's "boat" or "balloon" is a prop, not a
# figure): a paper boat hero is a boat, a lost balloon hero a thing with a face.
_CAST_ONLY: dict[str, str] = {
    "boat": "boat", "ship": "boat", "sailboat": "boat", "yacht": "boat", "canoe": "boat",
    "raft": "boat",
}
# A look naming no kind the painter knows: its words say what sort of being it is.
_HEAD_ENDS = ("with", "wearing", "in", "who", "that", "and", "holding", "carrying")
_FUR = ("fur", "furry", "feathers", "feathered", "whiskers", "paws", "tail", "scales")

DEFAULT_BODY: dict[str, RGB] = {
    "mouse": (160, 160, 168), "cat": (235, 150, 60), "dog": (190, 140, 90),
    "fox": (235, 120, 40), "rabbit": (235, 232, 225), "bear": (140, 92, 55),
    "owl": (150, 105, 70), "dragon": (80, 170, 90), "bird": (70, 130, 220),
    "fish": (245, 140, 40), "robot": (180, 190, 205), "girl": (225, 85, 110),
    "boy": (60, 120, 200), "lion": (232, 180, 70), "penguin": (45, 45, 55),
    "turtle": (110, 150, 70), "cloud": (246, 246, 250), "drop": (90, 160, 230),
    "clock": (205, 60, 55), "vehicle": (215, 60, 50), "boat": (230, 120, 50),
    "snowman": (250, 250, 252), "grandma": (150, 110, 170), "grandpa": (110, 130, 100),
    "person": (70, 130, 110), "thing": (235, 170, 60),
}
PEOPLE = ("girl", "boy", "grandma", "grandpa", "person")

# Nouns a colour may describe: accessories/garments, or parts that colour the body or hair.
ACCESSORIES = ("scarf", "hat", "crown", "cape", "glasses", "bow", "boots")
_ACCESSORY_WORDS: dict[str, str] = {
    "scarf": "scarf", "hat": "hat", "cap": "hat", "crown": "crown", "tiara": "crown",
    "cape": "cape", "cloak": "cape", "glasses": "glasses", "spectacles": "glasses",
    "bow": "bow", "ribbon": "bow", "boots": "boots", "shoes": "boots", "wellies": "boots",
}
_GARMENTS = ("dress", "shirt", "coat", "raincoat", "jacket", "jumper", "sweater", "overalls",
             "tunic", "robe", "armour", "armor", "suit", "trousers", "skirt", "hoodie")
_BODY = ("fur", "feathers", "scales", "body", "skin", "coat", "shell")
# Parts whose colour is not the body's: "round pink ears" must not make a pink mouse.
_PARTS = ("ears", "ear", "eyes", "eye", "nose", "tail", "beak", "feet", "paws", "spots",
          "stripes", "mane", "wings", "horn", "socks", "comb", "spines", "patches", "mask",
          "cheeks", "flippers", "antenna", "helmet", "beard", "bandana", "flower", "hooves",
          "moustache", "mustache", "smile", "face", "trunk", "neck", "humps", "horns")
_HAIR = ("hair", "curls", "pigtails", "braids", "ponytail", "bun", "bob")
# Who wears what without saying so.
_IMPLIED: dict[str, tuple[str, ...]] = {
    "princess": ("crown",), "queen": ("crown",), "king": ("crown",), "prince": ("crown",),
    "wizard": ("wizard_hat",), "witch": ("wizard_hat",), "pirate": ("hat",),
    "pointy": ("wizard_hat",), "pointed": ("wizard_hat",),
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
    "fog": ("fog", "foggy", "mist", "haze"),  # not "misty": it names places too
    "sunny": ("sunny", "sunshine", "sunlight"),
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
_LOOK_RE = re.compile(r"[a-z]+(?:-[a-z]+)*")
_COLOUR_FILLERS = ("and", "coloured", "colored", "speckled", "patched", "striped", "tipped")


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure to draw: its kind, colours and what it wears."""

    kind: str
    body: RGB
    accessories: dict[str, RGB] = field(default_factory=dict)
    garment: RGB | None = None  # a child's dress/shirt
    hair: RGB | None = None
    name: str = ""
    noun: str = ""  # the word that named its kind ("tortoise" drawn as a turtle)


@dataclass(frozen=True, slots=True)
class Scene:
    """Everything the painter needs to know about a picture."""

    setting: str
    time: str
    weather: str
    snowy: bool
    props: frozenset[str]
    figures: tuple[Figure, ...]

    def drawn_as(self) -> dict[str, str]:
        """Each figure's word (its kind as named, else its name) -> the drawing made."""
        return {f.noun or f.name or f.kind: f.kind for f in self.figures}


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


def colour_of(tokens: Sequence[str], i: int) -> RGB | None:
    """The colour tokens[i] names, if any: "grey", "red-brown" (a blend), "black-and-white"
    (the first), with a tone word before it ("pale pink", "dark brown")."""
    parts = [p for p in tokens[i].split("-") if p not in _COLOUR_FILLERS]
    named = [COLOURS[p] for p in parts if p in COLOURS]
    if not named or parts[-1] not in COLOURS:  # "sea-green" is green, "sea-horse" no colour
        return None
    colour = named[0]
    if "-and-" not in tokens[i] and len(named) > 1:  # "red-brown": between the two
        n = len(named)
        colour = (sum(c[0] for c in named) // n, sum(c[1] for c in named) // n,
                  sum(c[2] for c in named) // n)
    tone = TONES.get(tokens[i - 1]) if i > 0 else None
    if tone is None:
        return colour
    if tone <= 1.0:
        return (round(colour[0] * tone), round(colour[1] * tone), round(colour[2] * tone))
    t = tone - 1.0
    return (round(colour[0] + (255 - colour[0]) * t), round(colour[1] + (255 - colour[1]) * t),
            round(colour[2] + (255 - colour[2]) * t))


def _colour_target(tokens: Sequence[str], i: int) -> str:
    """What a colour at tokens[i] describes: an accessory, 'garment', 'hair', 'body', or
    'part' (ears, beak...: not drawn in a colour of their own)."""
    for j in range(i + 1, min(i + 4, len(tokens))):
        noun = tokens[j]
        if noun in _ACCESSORY_WORDS:
            return _ACCESSORY_WORDS[noun]
        if noun in _GARMENTS:
            return "garment"
        if noun in _HAIR:
            return "hair"
        if noun in _PARTS:
            return "part"
        if noun in _BODY or noun in KINDS or colour_of(tokens, j) is not None \
                or noun in ("and", "with", "or", "wearing"):
            break
    return "body"


def kind_of(tokens: Sequence[str]) -> tuple[str, str]:
    """(the word naming the kind, the drawing for it) of a look's words.

    The look's head ("a red kettle" of "a red kettle with a painted face") is read first,
    then the rest. A kind the painter does not know is drawn as the closest sort it has:
    a person if the look gives hair, an animal if it gives fur or feathers, else a thing
    with a face; a bare name is a child.
    """
    cut = next((i for i, t in enumerate(tokens) if t in _HEAD_ENDS), len(tokens))
    for t in (*tokens[:cut], *tokens[cut:]):
        if t in KINDS:
            return t, KINDS[t]
    head = [t for t in tokens[:cut] if t not in ("a", "an", "the") and colour_of([t], 0) is None]
    noun = head[-1] if head else ""
    if noun in _CAST_ONLY:
        return noun, _CAST_ONLY[noun]
    if any(t in _HAIR for t in tokens):
        return noun or "person", "person"
    if any(t in _FUR for t in tokens):
        return noun or "creature", "bear"
    if cut < len(tokens) or len(head) > 1:
        return noun or "thing", "thing"
    return noun, "boy"


def read_figure(look: str, name: str = "", kind: str | None = None) -> Figure:
    """Turn a look ("a small grey mouse with a red scarf") into a Figure.

    Without a `kind`, the look's words decide (`kind_of`).
    """
    tokens = _LOOK_RE.findall(look.lower())
    noun = ""
    if kind is None:
        noun, kind = kind_of(tokens)
    body: RGB | None = None
    garment = hair = None
    worn: dict[str, RGB] = {}
    for i in range(len(tokens)):
        colour = colour_of(tokens, i)
        if colour is None:
            continue
        target = _colour_target(tokens, i)
        if target == "body" and body is None:
            body = colour
        elif target == "garment" and garment is None:
            garment = colour
        elif target == "hair" and hair is None:
            hair = colour
        elif target in ACCESSORIES and target not in worn:
            worn[target] = colour
    for token in tokens:  # accessories named without a colour get a cheerful default
        accessory = _ACCESSORY_WORDS.get(token)
        if accessory and accessory not in worn:
            worn[accessory] = (205, 45, 45) if accessory != "glasses" else (45, 45, 52)
        for implied in _IMPLIED.get(token, ()):
            worn.setdefault(implied, (232, 180, 45) if implied == "crown" else (80, 60, 160))
    if "wizard_hat" in worn and "hat" in worn:  # "a pointy purple hat" is one hat
        worn["wizard_hat"] = worn.pop("hat")
    if kind in PEOPLE and body is not None and garment is None:
        garment, body = body, None  # "a boy in blue": blue is his clothes, not his skin
    return Figure(kind=kind, body=body or DEFAULT_BODY[kind], accessories=worn,
                  garment=garment, hair=hair, name=name, noun=noun)


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
        found.append(replace(read_figure(" ".join(tokens[start:i + 1]), kind=kind), noun=token))
    return found


def read_scene(prompt: str, characters: Sequence[Character] = (),
               negative_prompt: str = "") -> Scene:
    """Read the setting, time, weather, props and figures out of a prompt and its cast."""
    tokens = words(prompt)
    banned = set(words(negative_prompt))
    # A dog named Rocket is not in space: names never set the scene.
    named = {w for c in characters for w in words(c.name)} - set(KINDS)
    tokens = [t for t in tokens if t not in named]
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
