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
from typing import Any

from storymesh import catalog
from storymesh.agents.author import lexicon as lx

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)([A-Z][a-z]+)")
_NAMED = re.compile(r"\b(?:named|called)\s+([A-Z][a-z]+)")
# Words that name a place only weakly ("find her way home" in a forest story).
_WEAK_SETTING = frozenset({"home", "house", "tree", "trees", "boat", "ship", "waves", "sand",
                           "field", "street", "school", "moon", "snowy", "wood"})
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

    @property
    def kind(self) -> lx.Species:
        return lx.SPECIES[self.species]

    @property
    def look(self) -> str:
        if self.look_override:
            return self.look_override
        sp = self.kind
        if sp.person:
            return f"a {sp.noun} with {self.color}, wearing {sp.feature} and {self.accessory}"
        return f"a {self.color} {sp.noun} with {sp.feature}, wearing {self.accessory}"


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

    @property
    def level(self) -> int:
        """Reading level 0..3 from the age band: 2-4, 4-7, 8-12, 13-18."""
        return age_level(self.target_age)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["themes"] = list(self.themes)
        return data


def age_level(target_age: str) -> int:
    """0 for toddlers (2-4), 1 for 4-7, 2 for 8-12, 3 for teenagers; by the band's middle."""
    low, high = catalog.parse_age(target_age)
    middle = (low + high) / 2
    return 0 if middle < 4.5 else 1 if middle < 7.5 else 2 if middle < 12.5 else 3


def analyze(plot: str, *, themes: Sequence[str], seed: int, target_age: str,
            art_style: str) -> World:
    """Read the plot into a World; every gap is filled from the lexicon, seeded."""
    rng = random.Random(f"world|{seed}|{' '.join(plot.lower().split())}")
    words = _WORD.findall(plot)
    kinds = _species_in(words)
    setting = _setting_in(words, kinds, rng)
    hero_kind = kinds[0][1] if kinds else rng.choice(
        [s for s in lx.SETTINGS[setting].helpers if not lx.SPECIES[s].person] or ["fox"])
    friend_kind = next((k for _, k in kinds if k != hero_kind), "")
    friend_in_plot = bool(friend_kind)
    if not friend_kind:
        options = [s for s in lx.SETTINGS[setting].helpers if s != hero_kind]
        friend_kind = rng.choice(options or ["owl"])
    names = _names_in(plot, words)
    hero = _character(rng, hero_kind, names[0] if names else "", _pronoun(plot, hero_kind, rng))
    friend_name = names[1] if len(names) > 1 else ""
    friend = _character(rng, friend_kind, friend_name, rng.choice(("she", "he")),
                        avoid=hero.name)
    goal, kind, obj = _goal_in(plot, setting, rng)
    return World(
        hero=hero, friend=friend, friend_in_plot=friend_in_plot,
        trait=_trait_in(words, kinds[0][0] if kinds else -1, rng),
        setting=setting, goal=goal, goal_kind=kind, object=obj, fear=_fear_in(plot),
        themes=_themes(themes, words), target_age=target_age, art_style=art_style, seed=seed)


def _species_in(words: Sequence[str]) -> list[tuple[int, str]]:
    """(position, species key) for each creature word in the plot, in order."""
    found: list[tuple[int, str]] = []
    for i, word in enumerate(words):
        kind = lx.species_of(word)
        if kind is not None:
            found.append((i, kind.noun))
    return found


def _setting_in(words: Sequence[str], kinds: Sequence[tuple[int, str]],
                rng: random.Random) -> str:
    strong = [lx.SETTING_WORDS[w.lower()] for w in words
              if w.lower() in lx.SETTING_WORDS and w.lower() not in _WEAK_SETTING]
    weak = [lx.SETTING_WORDS[w.lower()] for w in words if w.lower() in _WEAK_SETTING
            and w.lower() in lx.SETTING_WORDS]
    if strong:
        return strong[0]
    homes = [lx.SPECIES[k].home for _, k in kinds if lx.SPECIES[k].home]
    if homes:
        return homes[0]
    if weak:
        return weak[0]
    return rng.choice(sorted(lx.SETTINGS))


def _names_in(plot: str, words: Sequence[str]) -> list[str]:
    """Proper names in the plot, in order: "named X", then capitalised non-initial words."""
    starts = {m.group(1) for m in _SENTENCE_START.finditer(plot)}
    names = [m.group(1) for m in _NAMED.finditer(plot)]
    for word in words:
        if (word[0].isupper() and word[1:].islower() and word not in lx.NOT_NAMES
                and word not in starts and lx.species_of(word) is None
                and word.lower() not in lx.SETTING_WORDS and word not in names):
            names.append(word)
    # "Milo the mouse" at the very start of the plot is a name too.
    for word in starts:
        if re.search(rf"\b{word},?\s+the\s+\w+", plot) and word not in lx.NOT_NAMES \
                and lx.species_of(word) is None and word not in names:
            names.insert(0, word)
    return names


def _character(rng: random.Random, kind: str, name: str, pronoun: str,
               avoid: str = "") -> Character:
    sp = lx.SPECIES[kind]
    if not name:
        alliterative = [n for n in lx.NAMES if n[0] == sp.noun[0].upper() and n != avoid]
        pool = alliterative if alliterative and rng.random() < 0.5 else \
            [n for n in lx.NAMES if n != avoid]
        name = rng.choice(pool)
    return Character(name=name, species=kind, pronoun=sp.pronoun or pronoun,
                     color=rng.choice(sp.colors), accessory=rng.choice(lx.ACCESSORIES))


def _pronoun(plot: str, kind: str, rng: random.Random) -> str:
    fixed = lx.SPECIES[kind].pronoun
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
    goal = rng.choice(lx.SETTINGS[setting].goals)
    return (goal, *_goal_kind(goal))


def _clean_goal(goal: str) -> str:
    words = goal.strip().split()[:10]
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
            obj = goal[len(verb) + 1:].strip()
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
    return analyze(" ".join(parts), themes=(), seed=seed, target_age=catalog.DEFAULT_AGE,
                   art_style=catalog.DEFAULT_ART_STYLE)


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
            seed=int(data["seed"]))
        catalog.parse_age(world.target_age)
    except (KeyError, TypeError, ValueError):
        return None
    ok = (world.setting in lx.SETTINGS and world.art_style in catalog.ART_STYLES
          and world.goal_kind in ("find", "rescue", "reach", "home", "other"))
    return world if ok else None


def _character_from(data: object) -> Character:
    if not isinstance(data, Mapping) or data.get("species") not in lx.SPECIES:
        raise ValueError("bad character")
    return Character(name=_text(data["name"]), species=str(data["species"]),
                     pronoun="he" if data.get("pronoun") == "he" else "she",
                     color=_text(data["color"]), accessory=_text(data["accessory"]),
                     look_override=_text(data.get("look_override", ""), empty=True))


def _text(value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()) or len(value) > 300:
        raise ValueError("bad text")
    return value
