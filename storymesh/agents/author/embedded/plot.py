"""Reading a plot: who the hero is, where the story happens, what the hero wants.

`analyze()` turns a free-text plot (plus themes, age, style and seed) into a `World`: the
hero and a friend with concrete looks, the setting, the goal and its object, a fear, the
lessons. Simple heuristics over the lexicon's word lists, deterministic per (plot, seed).
`World.to_dict()` travels inside the outline FINAL (key `world`) so a later chapter request
writes about the same world; `world_from_outline()` rebuilds it, or infers it from the
outline's text when the key is missing (an outline written by a model or by hand).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from storymesh import vocabulary
from storymesh.agents.author.embedded import lexicon as lx
from storymesh.agents.author.embedded import words as wd
from storymesh.agents.author.embedded.parse import PEOPLE, Being, Reading, is_being, read_plot
from storymesh.agents.author.embedded.templates import article

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
# Words that name a place less surely than "forest" ("howls at the moon in the forest"),
# and words that may just be where the hero lives ("find her way home" in a forest story).
_WEAK_SETTING = frozenset({"boat", "ship", "waves", "sand", "field", "street", "school",
                           "moon", "snowy", "wood"})
_WEAKEST_SETTING = frozenset({"home", "house", "tree", "trees"})
_STOP = frozenset({"but", "and", "who", "so", "wants", "want", "until", "when", "because",
                   "yet", "or", "is", "was", "that", "while", "then", "with", "to"})
_GOAL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:looking|searching|hunting|looks|searches|search|hunts) for (.+)"),
     "find {0}"),
    (re.compile(r"\bdreams? of (?:becoming|being) (.+)"), "become {0}"),
    (re.compile(r"\bdreams? of (.+)"), "make a dream of {0} come true"),
    (re.compile(r"\bon a (?:quest|journey|mission|adventure|trip) to (.+)"), "{0}"),
    (re.compile(r"\b(?:wants?|wanted|wish(?:es|ed)?|tries|tried|try|needs?|needed|hopes?|"
                r"hoped|sets? out|decides?|decided|has|had|must|learns?|learned|is going|"
                r"plans?|planned|longs?|longed|is trying|is determined) to (.+)"), "{0}"),
    (re.compile(r"\bmust (.+)"), "{0}"),
    (re.compile(r"\bto ((?:find|save|rescue|reach|help|fix|bring|free|return|discover|"
                r"protect|climb|cross|build|win|visit|meet|catch|stop) .+)"), "{0}"),
)
_GOAL_CUT = re.compile(r"[.,;:!?]| but | and then | because | when | while | before | so that "
                       r"| until | who | and ")
_PLACE_TAIL = re.compile(r"\s+(?:in|on|at|near|under|across|beyond|inside|over|of|to)\s+"
                         r"(?:the|a|an|his|her|their)?\s*(?:\w+\s+)?(?:"
                         + "|".join(sorted(lx.SETTING_WORDS)) + r")\b", re.IGNORECASE)
_OBJECT_TAIL = re.compile(r"\s+(?:from|in|on|at|with|before|for|by|near|under|so)\s+")
_KINDS: tuple[tuple[str, str], ...] = (
    ("find", "find"), ("discover", "find"), ("get back", "find"), ("get", "find"),
    ("catch", "find"), ("bring back", "find"), ("save", "rescue"), ("rescue", "rescue"),
    ("help", "rescue"), ("free", "rescue"), ("protect", "rescue"), ("fix", "rescue"),
    ("reach", "reach"), ("visit", "reach"), ("climb", "reach"), ("cross", "reach"),
    ("return to", "reach"), ("meet", "reach"),
)
_THEME_HINTS = {"friend": "friendship", "friends": "friendship", "brave": "courage",
                "afraid": "courage", "scared": "courage", "kind": "kindness",
                "share": "sharing", "together": "teamwork", "family": "family",
                "curious": "curiosity", "different": "acceptance"}


@dataclass(frozen=True, slots=True)
class Character:
    """A character of the embedded storyteller: a name, a kind, and how they look."""

    name: str
    species: str      # a lexicon.SPECIES key
    pronoun: str      # "she" or "he"
    color: str
    accessory: str
    look_override: str = ""   # a look written elsewhere (a model, a user) wins
    noun: str = ""            # the plot's word for the kind ("tortoise") when not `species`

    @property
    def kind(self) -> lx.Species:
        species = lx.SPECIES[self.species]
        return replace(species, noun=self.noun) if self.noun else species

    @property
    def look(self) -> str:
        if self.look_override:
            return self.look_override
        sp = self.kind
        if sp.person:
            return f"a {sp.noun} with {self.color}, wearing {sp.feature} and {self.accessory}"
        return f"{article(self.color)} {self.color} {sp.noun} with {sp.feature}, wearing " \
               f"{self.accessory}"


@dataclass(frozen=True, slots=True)
class World:
    """Everything the storyteller needs to write any chapter of one story."""

    hero: Character
    friend: Character
    friend_in_plot: bool   # the plot names the friend: they know each other from the start
    trait: str
    setting: str           # a lexicon.SETTINGS key
    goal: str              # a verb phrase: "find the lost star"
    goal_kind: str         # find | rescue | reach | home | other
    object: str            # what the goal is about: "the lost star" ("" for other)
    fear: str              # "the dark" or ""
    themes: tuple[str, ...]
    target_age: str
    art_style: str
    seed: int
    # What the plot itself says (parse.Reading), so the book tells that story.
    place: str = ""          # the plot's place: "the farm" (else the setting's own)
    premise: str = ""        # past tense, after the hero: "was afraid to rain on the farm"
    habit: str = ""          # "could not swim"
    means: str = ""          # base form: "build a raft"
    trouble: str = ""        # past tense: "lost his red kite in the park"
    events: tuple[str, ...] = ()   # past tense, with their subjects
    outcome: str = ""        # "so the doctor could reach the hospital"
    group: int = 1           # the hero and the friend are `group` of one kind ("two otters")

    @property
    def level(self) -> int:
        """Reading level 0..3 from the age band: 2-4, 4-7, 8-12, 13-18."""
        return age_level(self.target_age)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["themes"] = list(self.themes)
        data["events"] = list(self.events)
        return data


def age_level(target_age: str) -> int:
    """0 for toddlers (2-4), 1 for 4-7, 2 for 8-12, 3 for teenagers; by the band's middle."""
    low, high = vocabulary.parse_age(target_age)
    middle = (low + high) / 2
    return 0 if middle < 4.5 else 1 if middle < 7.5 else 2 if middle < 12.5 else 3


def analyze(plot: str, *, themes: Sequence[str], seed: int, target_age: str,
            art_style: str) -> World:
    """Read the plot into a World; every gap is filled from the lexicon, seeded."""
    rng = random.Random(f"world|{seed}|{' '.join(plot.lower().split())}")
    tokens = [(m.group(0), m.start()) for m in _WORD.finditer(plot)]
    words = [w for w, _ in tokens]
    reading = read_plot(plot)
    if not reading.subjects:  # no sentence subject: the older word-list reading
        return _analyze_by_words(plot, tokens, words, rng, themes=themes, seed=seed,
                                 target_age=target_age, art_style=art_style)
    hero_being = reading.subjects[0]
    kinds = [_species_key(b.noun) for b in reading.subjects if b.noun]
    setting = _setting_of(reading.place, words, kinds, rng)
    hero_pronoun = _pronoun(plot, _species_key(hero_being.noun), rng)
    hero = _being_character(rng, hero_being, hero_pronoun, setting)
    mate = _mate(reading, hero_being)
    if mate is not None:
        friend = _being_character(rng, mate, rng.choice(("she", "he")), setting, avoid=hero)
    else:
        friend = _character(rng, _kind_for(None, "", setting, rng, hero.species), "",
                            rng.choice(("she", "he")), avoid=hero)
    if reading.goal:
        goal = _clean_goal(reading.goal, keep_place=True)
        kind, obj = _goal_kind(goal)
    else:
        goal, kind, obj = _goal_in(plot, setting, rng)
    trait = _hero_trait(hero_being, words, rng)
    # A place the hero sets out for ("cross a flooded river") is not where they live.
    place = "" if kind == "reach" and reading.place in goal else reading.place
    return World(
        hero=hero, friend=friend, friend_in_plot=mate is not None, trait=trait,
        setting=setting, goal=goal, goal_kind=kind, object=obj,
        fear=reading.fear or _fear_in(plot), themes=_themes(themes, words),
        target_age=target_age, art_style=art_style, seed=seed, place=place,
        premise=reading.premise, habit=reading.habit, means=reading.means,
        trouble=reading.trouble, events=reading.events, outcome=reading.outcome,
        group=hero_being.count if len(reading.subjects) == 1 else 1)


def _analyze_by_words(plot: str, tokens: Sequence[tuple[str, int]], words: Sequence[str],
                      rng: random.Random, *, themes: Sequence[str], seed: int,
                      target_age: str, art_style: str) -> World:
    actors = _actors(plot, tokens)
    setting = _setting_in(words, [a.species for a in actors if a.species], rng)
    hero_pronoun = _pronoun(plot, actors[0].species if actors else "", rng)
    hero_kind = _kind_for(actors[0] if actors else None, hero_pronoun, setting, rng, "")
    friend_kind = _kind_for(actors[1] if len(actors) > 1 else None, "", setting, rng,
                            hero_kind)
    hero = _character(rng, hero_kind, actors[0].name if actors else "", hero_pronoun)
    friend = _character(rng, friend_kind, actors[1].name if len(actors) > 1 else "",
                        rng.choice(("she", "he")), avoid=hero)
    goal, kind, obj = _goal_in(plot, setting, rng)
    return World(
        hero=hero, friend=friend, friend_in_plot=len(actors) > 1,
        trait=_trait_in(words, actors[0].at if actors else -1, rng),
        setting=setting, goal=goal, goal_kind=kind, object=obj, fear=_fear_in(plot),
        themes=_themes(themes, words), target_age=target_age, art_style=art_style, seed=seed)


def _species_key(noun: str) -> str:
    """The lexicon's kind for a plot's noun, else the closest it has (person, creature,
    thing)."""
    if not noun:
        return ""
    known = lx.species_of(noun)
    if known is not None:
        return known.noun
    if noun in PEOPLE or (noun.endswith(("er", "or", "ist")) and noun not in THINGS_IN_ER):
        return "person"
    if is_being(noun):
        return "creature"
    return "thing"


THINGS_IN_ER = frozenset({"tractor", "computer", "helicopter", "kettle", "hamper",
                          "paper", "letter", "sticker", "flower", "tower", "river",
                          "container", "mixer", "heater", "scooter", "digger",
                          "trailer", "locomotive", "boulder", "feather", "water"})


def _mate(reading: Reading, hero: Being) -> Being | None:
    """The hero's companion from the plot: a second subject ("Grandma and Mia"), another of
    a group ("two otters"), or the first other being the plot names ("her grandfather")."""
    if len(reading.subjects) > 1:
        return reading.subjects[1]
    if hero.count > 1:
        return Being(noun=hero.noun, count=hero.count)
    return reading.beings[0] if reading.beings else None


def _being_character(rng: random.Random, being: Being, pronoun: str, setting: str,
                     avoid: Character | None = None) -> Character:
    key = _species_key(being.noun)
    if not key:  # a bare name: a child
        key = {"she": "girl", "he": "boy"}.get(pronoun, "child")
    name = being.name
    if not name and being.noun in PEOPLE and lx.species_of(being.noun) is not None \
            and lx.SPECIES[key].pronoun and being.noun.startswith("grand"):
        name = "Grandma" if key == "grandmother" else "Grandpa"  # they go by what they are
    character = _character(rng, key, name, pronoun, avoid=avoid)
    # Nouns before the kind belong to it: "a lighthouse keeper", "a paper boat".
    modifiers = [w for w in being.before if wd.can_be(w, "NOUN") and not wd.can_be(w, "ADJ")
                 and not is_being(w)][-1:]
    noun = " ".join([*modifiers, being.noun]) if being.noun else ""
    return replace(character, noun=noun if noun != key else "")


def _setting_of(place: str, words: Sequence[str], kinds: Sequence[str],
                rng: random.Random) -> str:
    place_words = place.lower().split()
    for table in (lx.SETTING_WORDS, lx.PLACE_WORDS):
        for word in reversed(place_words):
            if word in table:
                return table[word]
    homes = [k for k in kinds if k in lx.SPECIES and lx.SPECIES[k].home]
    if homes or any(w.lower() in lx.SETTING_WORDS for w in words):
        return _setting_in(words, homes, rng)
    return rng.choice(("village", "forest", "garden", "city"))  # nothing says: somewhere near


def _hero_trait(hero: Being, words: Sequence[str], rng: random.Random) -> str:
    """The plot's adjective for the hero ("a rusty bicycle"), else a trait word, else one."""
    for word in hero.before:
        if word in lx.TRAITS or (wd.can_be(word, "ADJ") and not wd.can_be(word, "NOUN")):
            return word
    return rng.choice(lx.DEFAULT_TRAITS)  # not "old" from "her grandfather's old clock"


@dataclass(frozen=True, slots=True)
class _Actor:
    """Someone the plot names: a proper name, a creature word, or both ("Milo the mouse")."""

    at: int          # word position of the creature word (or the name)
    name: str
    species: str


def _actors(plot: str, tokens: Sequence[tuple[str, int]]) -> list[_Actor]:
    """The plot's characters in order of appearance; a name pairs with a creature word
    within three words of it ("Milo the mouse", "a mouse named Milo", "her robot Bolt")."""
    kinds = {i: sp.noun for i, (w, _) in enumerate(tokens) if (sp := lx.species_of(w))}
    names = [i for i in range(len(tokens)) if _is_name(plot, tokens, i)]
    # Closest pairs first, never across an "and" ("Maya and her robot Bolt").
    pairs = sorted((abs(j - i), i, j) for i in names for j in kinds if abs(j - i) <= 3
                   and "and" not in {w.lower() for w, _ in tokens[min(i, j):max(i, j)]})
    name_of: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in name_of.values() and j not in name_of:
            name_of[j] = i
    actors = [_Actor(min(i, j), tokens[i][0], kinds[j]) for j, i in name_of.items()]
    actors += [_Actor(i, tokens[i][0], "") for i in names if i not in name_of.values()]
    actors += [_Actor(j, "", kind) for j, kind in kinds.items() if j not in name_of]
    return sorted(actors, key=lambda a: a.at)


_NAME_FOLLOWERS = frozenset({
    "and", "the", "is", "was", "wants", "wanted", "has", "had", "lives", "lived", "loves",
    "loved", "who", "finds", "found", "dreams", "goes", "must", "can", "learns", "tries",
    "sets", "meets", "needs", "hopes", "decides", "discovers", "a", "an"})


def _is_name(plot: str, tokens: Sequence[tuple[str, int]], i: int) -> bool:
    word, at = tokens[i]
    following = [w.lower() for w, _ in tokens[i + 1:i + 4]]
    titled = following[:1] == ["the"] and any(lx.species_of(w) for w in following[1:])
    if not (word[0].isupper() and word[1:].islower()) or word in lx.NOT_NAMES \
            or lx.species_of(word) is not None or word.lower() in lx.TRAITS:
        return False
    if word.lower() in lx.SETTING_WORDS and not titled:  # "Coral the mermaid" is a name
        return False
    before = plot[:at].rstrip()
    if before and before[-1] not in ".!?":
        return True  # capitalised mid-sentence
    # At a sentence start only when it reads like a subject: "Maya and ...", "Milo the mouse".
    after = following[0] if following else ""
    return titled or after in _NAME_FOLLOWERS or plot[at + len(word):at + len(word) + 1] == ","


def _kind_for(actor: _Actor | None, pronoun: str, setting: str, rng: random.Random,
              other: str) -> str:
    """The species of an actor: as named; a person for a bare name; else a local creature."""
    if actor is not None and actor.species:
        return actor.species
    if actor is not None:  # "Maya" alone is a child
        return {"she": "girl", "he": "boy"}.get(pronoun, "child")
    options = [s for s in lx.SETTINGS[setting].helpers
               if s != other and (other or not lx.SPECIES[s].person)]
    return rng.choice(options or ["owl"])


def _setting_in(words: Sequence[str], kinds: Sequence[str], rng: random.Random) -> str:
    """The first place word by strength; then where the hero's kind lives; then any."""
    found = [w.lower() for w in words if w.lower() in lx.SETTING_WORDS]
    homes = [lx.SPECIES[k].home for k in kinds if lx.SPECIES[k].home]
    for tier in (
        [lx.SETTING_WORDS[w] for w in found if w not in _WEAK_SETTING | _WEAKEST_SETTING],
        [lx.SETTING_WORDS[w] for w in found if w in _WEAK_SETTING],
        homes,
        [lx.SETTING_WORDS[w] for w in found],
    ):
        if tier:
            return tier[0]
    return rng.choice(sorted(lx.SETTINGS))


def _character(rng: random.Random, kind: str, name: str, pronoun: str,
               avoid: Character | None = None) -> Character:
    sp = lx.SPECIES[kind]
    pronoun = sp.pronoun or pronoun
    if not name:
        taken = avoid.name if avoid else ""
        fitting = [n for n in lx.NAMES if n != taken and lx.name_suits(n, pronoun)]
        alliterative = [n for n in fitting if n[0] == sp.noun[0].upper()]
        pool = alliterative if alliterative and rng.random() < 0.5 else fitting
        name = rng.choice(pool)
    # No "red boots and shiny red boots", and no two characters in the same round glasses.
    accessories = [a for a in lx.ACCESSORIES if a.split()[-1] not in sp.feature.split()
                   and (avoid is None or a != avoid.accessory)]
    return Character(name=name, species=kind, pronoun=pronoun,
                     color=rng.choice(sp.colors), accessory=rng.choice(accessories))


def _pronoun(plot: str, kind: str, rng: random.Random) -> str:
    fixed = lx.SPECIES[kind].pronoun if kind else ""
    if fixed:
        return fixed
    lower = _WORD.findall(plot.lower())
    she = sum(w in ("she", "her", "hers", "herself") for w in lower)
    he = sum(w in ("he", "him", "his", "himself") for w in lower)
    if she != he:
        return "she" if she > he else "he"
    return rng.choice(("she", "he"))


def _trait_in(words: Sequence[str], hero_at: int, rng: random.Random) -> str:
    lower = [w.lower() for w in words]
    if hero_at >= 0:
        near = [w for w in lower[max(0, hero_at - 3):hero_at] if w in lx.TRAITS]
        if near:
            return near[-1]
    anywhere = [w for w in lower if w in lx.TRAITS]
    return anywhere[0] if anywhere else rng.choice(lx.DEFAULT_TRAITS)


_MOOD_GOALS: Final = (("lonely", "make a new friend"), ("sad", "feel happy again"),
                     ("unhappy", "feel happy again"),
                     ("bored", "have some fun"),
                     ("grumpy", "smile again"),
                     ("afraid|scared|frightened", "be brave"))


def _goal_in(plot: str, setting: str, rng: random.Random) -> tuple[str, str, str]:
    """(goal phrase, kind, object) from the plot, else a goal that suits the setting."""
    text = " ".join(plot.split())
    for pattern, shape in _GOAL_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        goal = _clean_goal(shape.format(_GOAL_CUT.split(match.group(1), maxsplit=1)[0]))
        if len(goal.split()) >= 2:
            return (goal, *_goal_kind(goal))
    # No goal said: the hero's feeling asks for one ("an old tractor is sad" -> be happy).
    feeling = next((goal for word, goal in _MOOD_GOALS
                    if re.search(rf"\b{word}\b", text, re.IGNORECASE)), "")
    goal = feeling or rng.choice(lx.SETTINGS[setting].goals)
    return (goal, *_goal_kind(goal))


def _clean_goal(goal: str, *, keep_place: bool = False) -> str:
    # "find the lost star in the mountains": the place is the setting's business, unless the
    # plot's own sentence says it ("cross a flooded river").
    if not keep_place:
        goal = _PLACE_TAIL.split(goal, maxsplit=1)[0]
    words = goal.strip().split()[:14]
    while words and words[-1].lower() in _STOP:
        words.pop()
    if words:
        words[0] = words[0].lower()
    return " ".join(words)


def _goal_kind(goal: str) -> tuple[str, str]:
    if re.search(r"\bway (?:back )?home\b|\bgo(?:es)? home\b|\bget home\b", goal):
        return "home", "home"
    for verb, kind in _KINDS:
        if goal.startswith(verb + " "):
            obj = _OBJECT_TAIL.split(goal[len(verb) + 1:], maxsplit=1)[0].strip()
            if obj and len(obj.split()) <= 6:
                return kind, obj
    return "other", ""


def _fear_in(plot: str) -> str:
    match = re.search(r"\b(?:afraid|scared|frightened|terrified|fearful) of ([a-z' -]+)",
                      plot.lower())
    if match is None:
        return ""
    words: list[str] = []
    for word in match.group(1).split():
        if word in _STOP or len(words) == 3:
            break
        words.append(word)
    return " ".join(words) if words and words[-1] not in ("the", "a", "an") else ""


def _themes(themes: Sequence[str], words: Sequence[str]) -> tuple[str, ...]:
    """Themes as given (cleaned, deduplicated); hints from the plot when none are given."""
    out = [" ".join(t.split()).lower() for t in themes if t.strip()]
    if not out:
        out = [_THEME_HINTS[w.lower()] for w in words if w.lower() in _THEME_HINTS]
    return tuple(dict.fromkeys(out or ["friendship"]))


def theme_voice(theme: str) -> lx.Theme:
    """What the friend says about a theme and its lesson; any theme word gets a voice."""
    key = lx.theme_of(theme)
    if key is not None:
        return lx.THEMES[key]
    return lx.Theme(f"{theme.capitalize()} matters, even on a hard day",
                    f"{theme} can make any day a little brighter")


# --- worlds from outlines ---------------------------------------------------------------


def world_from_outline(outline: Mapping[str, Any], *, target_age: str | None,
                       themes: Sequence[str] | None, art_style: str | None) -> World:
    """The World a chapter is written in: the outline's `world` key, else inferred from text.

    Names and looks always come from the outline's characters, which a model or a person
    may have rewritten; the request's age, themes and style win over the outline's.
    """
    world = _world_from_dict(outline.get("world"))
    if world is None:
        world = _infer_world(outline)
    characters = [c for c in outline.get("characters", []) if isinstance(c, Mapping)]
    hero, friend = world.hero, world.friend
    if characters:
        hero = _rename(hero, characters[0])
    if len(characters) > 1:
        friend = _rename(friend, characters[1])
    return replace(world, hero=hero, friend=friend,
                   target_age=target_age or world.target_age,
                   themes=tuple(themes) if themes else world.themes,
                   art_style=art_style or world.art_style)


def _rename(character: Character, data: Mapping[str, Any]) -> Character:
    name = str(data.get("name", "")).strip() or character.name
    look = str(data.get("look", "")).strip()
    return replace(character, name=name,
                   look_override=look if look and look != character.look else "")


def _infer_world(outline: Mapping[str, Any]) -> World:
    chapters = outline.get("chapters", [])
    parts = [str(outline.get("title", "")), str(outline.get("cover_prompt", ""))]
    parts += [f"{c.get('title', '')}. {c.get('plan', '')}" for c in chapters
              if isinstance(c, Mapping)]
    parts += [f"{c.get('name', '')}, the {c.get('look', '')}." for c in
              outline.get("characters", []) if isinstance(c, Mapping)]
    seed = sum(ord(ch) for ch in str(outline.get("title", "")))
    return analyze(" ".join(parts), themes=(), seed=seed, target_age=vocabulary.DEFAULT_AGE,
                   art_style=vocabulary.DEFAULT_ART_STYLE)


def _world_from_dict(data: object) -> World | None:
    """A World from its to_dict() form, or None when anything is missing or of a wrong type."""
    if not isinstance(data, Mapping):
        return None
    try:
        hero, friend = _character_from(data["hero"]), _character_from(data["friend"])
        world = World(
            hero=hero, friend=friend, friend_in_plot=bool(data["friend_in_plot"]),
            trait=_text(data["trait"]), setting=_text(data["setting"]),
            goal=_text(data["goal"]), goal_kind=_text(data["goal_kind"]),
            object=_text(data["object"], empty=True), fear=_text(data["fear"], empty=True),
            themes=tuple(_text(t) for t in data["themes"]),
            target_age=_text(data["target_age"]), art_style=_text(data["art_style"]),
            seed=int(data["seed"]), place=_text(data.get("place", ""), empty=True),
            premise=_text(data.get("premise", ""), empty=True),
            habit=_text(data.get("habit", ""), empty=True),
            means=_text(data.get("means", ""), empty=True),
            trouble=_text(data.get("trouble", ""), empty=True),
            events=tuple(_text(e) for e in data.get("events", ())),
            outcome=_text(data.get("outcome", ""), empty=True),
            group=int(data.get("group", 1)))
        vocabulary.parse_age(world.target_age)
    except (KeyError, TypeError, ValueError):
        return None
    ok = (world.setting in lx.SETTINGS and world.art_style in vocabulary.ART_STYLES
          and world.goal_kind in ("find", "rescue", "reach", "home", "other"))
    return world if ok else None


def _character_from(data: object) -> Character:
    if not isinstance(data, Mapping) or data.get("species") not in lx.SPECIES:
        raise ValueError("bad character")
    return Character(name=_text(data["name"]), species=str(data["species"]),
                     pronoun="he" if data.get("pronoun") == "he" else "she",
                     color=_text(data["color"]), accessory=_text(data["accessory"]),
                     look_override=_text(data.get("look_override", ""), empty=True),
                     noun=_text(data.get("noun", ""), empty=True))


def _text(value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()) or len(value) > 300:
        raise ValueError("bad text")
    return value
