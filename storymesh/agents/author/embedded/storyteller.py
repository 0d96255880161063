"""The embedded storyteller: a complete book from a plot, offline, with no model weights.

`write_outline()` reads the plot into a World (plot.py), lays the chapters along an arc
(setup, trouble, attempts, a friend who brings the themes, a setback, the climax, the
resolution), and names the characters with concrete looks. `write_chapter()` writes one
chapter in paragraphs sized for the reader's age, and a picture prompt that names the scene
plainly (setting, time of day, weather, mood, who is there and how they look) for the
illustrator. Deterministic: the same request and seed give the same words.

The transformers backend leans on this module for structure: its outlines are repaired from
`write_outline()` and its chapters fall back to `write_chapter()`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from storymesh.agents.author.embedded import lexicon as lx
from storymesh.agents.author.embedded import templates as tp
from storymesh.agents.author.embedded import words as wd
from storymesh.agents.author.embedded.parse import past_phrase
from storymesh.agents.author.embedded.plot import Character, World, analyze, theme_voice

BEAT_NAMES: Final = tuple(tp.BEATS)
# Which beat a chapter's title and picture show when it covers several.
_SHOWN_FIRST: Final = ("climax", "together", "attempt", "setback", "friend", "trouble",
                       "setup", "resolution")
_PARAGRAPHS: Final = {0: 3, 1: 4, 2: 6, 3: 7}
_SENTENCES: Final = {0: 3, 1: 4, 2: 9, 3: 9}
_SMALL_WORDS: Final = frozenset({"a", "an", "the", "of", "and", "to", "in", "on", "at", "for",
                                 "from", "by", "is"})
_PRONOUNS: Final = {"she": ("she", "her", "her"), "he": ("he", "him", "his")}
_BAD_WEATHER: Final = {"forest": "rainy", "sea": "stormy", "castle": "stormy",
                       "village": "rainy", "mountain": "snowy", "space": "dark",
                       "city": "rainy", "garden": "rainy", "desert": "windy"}
_WHERE: Final = {"forest": "in the forest", "sea": "at sea", "castle": "at the castle",
                 "village": "in the village", "mountain": "in the mountains",
                 "space": "in outer space", "city": "in the city", "garden": "in the garden",
                 "desert": "in the desert"}
_WHEN: Final = {"morning": "in the morning", "afternoon": "in the afternoon",
                "evening": "at sunset in the evening", "night": "at night under the moon"}
_SKY: Final = {"sunny": "sunny weather", "rainy": "in the rain", "snowy": "falling snow",
               "foggy": "in thick fog", "stormy": "in a storm", "windy": "with a strong wind",
               "clear": "under a clear sky", "starry": "under a starry sky",
               "dark": "in the dark"}
_EXTRA_WEATHER: Final = {"dark": "The lights went out, and everything was ((dark|dark and "
                                 "very, very quiet))"}
_TIMES: Final = {"setup": ("morning",), "trouble": ("morning", "afternoon"),
                 "attempt": ("morning", "afternoon"), "friend": ("afternoon",),
                 "together": ("afternoon", "evening"), "setback": ("evening", "night"),
                 "climax": ("night", "evening"), "resolution": ("morning", "evening")}
_ACTIONS: Final = {
    "setup": "smiling at the start of a new day", "trouble": "looking worried",
    "attempt": "trying to get past {obstacle}", "friend": "meeting and smiling",
    "together": "getting past {obstacle} together", "setback": "huddled together and lost",
    "climax": "{climax_pic}", "resolution": "celebrating happily",
}
_KIND_TEXT: Final[dict[str, dict[str, str]]] = {
    "trouble_s": {
        "find": "nobody knew where {object} could be",
        "rescue": "{object} was in trouble, and there was no time to lose",
        "reach": "{object} was far, far away",
        "home": "{name} was lost, far from home",
        "other": "every time {name} tried to {goal}, something went wrong"},
    "climax_s": {
        "find": "And there, near {spot}, was {object}!",
        "rescue": "{name} reached out and helped {object} to safety.",
        "reach": "And there it was at last: {object}!",
        "home": "And there, at last, was home!",
        "other": "{name} tried one more time, and this time {name} {goal_past}!"},
    "done_s": {
        "find": "{name} brought {object} back to {place}",
        "rescue": "{object} was safe at last",
        "reach": "{name} had reached {object}, just as {they} had always dreamed",
        "home": "{name} was home at last, warm and safe",
        "other": "{name} had done it: {they} had {goal_pp}, just as {they} had dreamed"},
    "trouble_plan": {
        "find": "Nobody knows where {object} is, so {name} sets out to find it.",
        "rescue": "{object} is in trouble, so {name} sets out to help.",
        "reach": "{name} sets out on the long road to {object}.",
        "home": "{name} is lost far from home and must find the way back.",
        "other": "{name} decides to {goal}, even though it looks impossible."},
    "climax_plan": {
        "find": "finds {object} at last", "rescue": "saves {object}",
        "reach": "reaches {object} at last", "home": "finds the way home",
        "other": "manages to {goal} at last"},
    "climax_pic": {
        "find": "discovering {object}", "rescue": "rescuing {object}",
        "reach": "arriving at {object}", "home": "arriving home",
        "other": "succeeding at last"},
}
_PLANS: Final = {
    "setup": "Meet {name}, a {trait} {species} from {place} who wants to {goal}.",
    "trouble": "{trouble_plan}",
    "attempt": "{name} comes to {obstacle} and tries to {attempt}, but it is too hard alone.",
    "friend": "{?met}{name} meets {friend} the {fspecies}, who says: \"{quote}.\"",
    "friend_known": "{friend} the {fspecies} stays by {name}'s side and says: \"{quote}.\"",
    "together": "With {friend}'s help, {name} gets past {obstacle}.",
    "setback": "A {weather} {time} leaves {name} and {friend} lost and close to giving up.",
    "climax": "{name} is brave and {climax_plan}.",
    "climax_fear": "{name} faces {their} fear of {fear} and {climax_plan}.",
    "resolution": "Back in {place}, everyone celebrates, and {name} learns that {lesson}.",
}
_CHAPTER_TITLES: Final[dict[str, tuple[str, ...]]] = {
    "setup": ("{name} of {place}", "A {trait} {species}", "{name}'s Big Dream"),
    "friend": ("A New Friend", "{friend} the {fspecies}"),
    "friend_known": ("Side by Side", "{friend} Lends a Hand"),
    "setback": ("The {weather} {time}", "All Is Lost", "The Darkest Hour"),
    "climax": ("{name} Is Brave", "The Bravest Moment"),
    "resolution": ("Home Again", "A Happy Ending", "The Big Celebration"),
}
_TROUBLE_TITLES: Final = {"find": ("Where Is {object}?", "The Search Begins"),
                          "rescue": ("{object} in Trouble", "A Call for Help"),
                          "reach": ("The Long Road", "Setting Off"),
                          "home": ("Lost!", "Far from Home"),
                          "other": ("A Big Problem", "{name} Sets Off")}
_BOOK_TITLES: Final = {
    "find": ("{name} and {object}", "The Search for {object}"),
    "rescue": ("{name} to the Rescue", "{name} Saves {object}"),
    "reach": ("{name}'s Journey to {object}", "The Road to {object}"),
    "home": ("{name} Finds the Way Home", "The Long Way Home"),
    "other": ("{name} the {trait} {species}", "{name}'s Big Dream"),
}
_GENERIC_BOOK_TITLES: Final = ("The {trait} Little {species}", "{name}'s {setting} Adventure")


@dataclass(frozen=True, slots=True)
class Scene:
    """What one chapter shows: its beats, its obstacle, where and when."""

    index: int
    beats: tuple[str, ...]
    shown: str                      # the beat the title and picture are about
    obstacle: lx.Obstacle | None
    spot: str
    time: str
    weather: str
    friend_before: bool             # the friend is known when the chapter starts
    friend_shown: bool              # the friend is in the picture


@dataclass(frozen=True, slots=True)
class ChapterDraft:
    """A written chapter: title, paragraphs and the prompt for its picture."""

    title: str
    paragraphs: tuple[str, ...]
    picture_prompt: str

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


# --- the arc ------------------------------------------------------------------------------


def chapter_beats(count: int) -> list[tuple[str, ...]]:
    """The arc laid over `count` chapters: which beats each chapter covers."""
    short: dict[int, list[tuple[str, ...]]] = {
        1: [("setup", "trouble", "friend", "climax", "resolution")],
        2: [("setup", "trouble"), ("friend", "climax", "resolution")],
        3: [("setup", "trouble"), ("attempt", "friend"), ("climax", "resolution")],
        4: [("setup",), ("trouble", "attempt"), ("friend", "setback"),
            ("climax", "resolution")],
        5: [("setup",), ("trouble",), ("attempt", "friend"), ("setback", "climax"),
            ("resolution",)],
    }
    if count in short:
        return short[count]
    # Long books: one more try alone, then the friends face obstacles together.
    extra = count - 6
    tail = ["setback"] if extra > 0 else []
    before = ["attempt", "attempt"] if extra >= 3 else ["attempt"]
    after = ["together"] * (count - 5 - len(before) - len(tail))
    beats = ["setup", "trouble", *before, "friend", *after, *tail, "climax", "resolution"]
    return [(b,) for b in beats]


def obstacles_for(world: World, arc: Sequence[Sequence[str]]) -> dict[int, lx.Obstacle]:
    """One obstacle per chapter with an attempt, drawn without repeats while they last."""
    rng = random.Random(f"obstacles|{world.seed}|{world.setting}|{world.goal}")
    pool = rng.sample(lx.SETTINGS[world.setting].obstacles,
                      len(lx.SETTINGS[world.setting].obstacles))
    if world.setting not in ("sea", "space"):  # bridges and hills do not float
        pool += rng.sample(lx.GENERIC_OBSTACLES, len(lx.GENERIC_OBSTACLES))
    wanting = [i for i, beats in enumerate(arc) if {"attempt", "together"} & set(beats)]
    return {index: pool[n % len(pool)] for n, index in enumerate(wanting)}


def scene_for(world: World, arc: Sequence[Sequence[str]], index: int) -> Scene:
    """Where and when chapter `index` happens; fixed by the story, not the chapter's seed."""
    beats = tuple(arc[index])
    shown = next(b for b in _SHOWN_FIRST if b in beats)
    rng = random.Random(f"scene|{world.seed}|{world.setting}|{index}")
    setting = lx.SETTINGS[world.setting]
    time = "night" if world.setting == "space" else rng.choice(_TIMES[shown])
    weather = _weather(shown, setting, time, rng)
    met_at = next((i for i, b in enumerate(arc) if "friend" in b), len(arc))
    return Scene(index=index, beats=beats, shown=shown,
                 obstacle=obstacles_for(world, arc).get(index), spot=rng.choice(setting.spots),
                 time=time, weather=weather,
                 friend_before=world.friend_in_plot or index > met_at,
                 friend_shown=world.friend_in_plot or index >= met_at)


def _weather(beat: str, setting: lx.Setting, time: str, rng: random.Random) -> str:
    if setting.key == "space":
        return "dark" if beat == "setback" else "starry"
    if beat == "setback":
        weather = _BAD_WEATHER[setting.key]
    elif beat in ("trouble", "attempt"):
        weather = rng.choice(setting.weathers)
    elif beat == "climax":
        weather = "clear"
    else:
        weather = "sunny"
    return "clear" if weather == "sunny" and time in ("evening", "night") else weather


# --- slots ---------------------------------------------------------------------------------


def _slots(world: World, scene: Scene, rng: random.Random, *, friend_known: bool,
           level: int) -> dict[str, str]:
    """Everything a template may name, for one beat of one chapter."""
    hero, friend = world.hero, world.friend
    setting = lx.SETTINGS[world.setting]
    they, them, their = _PRONOUNS.get(hero.pronoun, _PRONOUNS["she"])
    voices = [theme_voice(t) for t in world.themes] or [theme_voice("friendship")]
    slots = {
        "name": hero.name, "they": they, "them": them, "their": their,
        "species": hero.kind.noun, "trait": world.trait,
        "place": world.place or setting.place,
        "spot": scene.spot, "sensory": rng.choice(setting.sensory),
        "hobby": rng.choice(setting.hobbies), "accessory": hero.accessory,
        "accessory_noun": hero.accessory.split(" ", 1)[-1], "feature": hero.kind.feature,
        "limb": hero.kind.limb, "goal": world.goal, "object": world.object,
        "goal_said": _mine(world.goal), "goal_past": past_phrase(world.goal.split()),
        "goal_pp": _participle(world.goal),
        "fear": world.fear, "fspecies": friend.kind.noun, "ffeature": friend.kind.feature,
        "quote": rng.choice(voices).quote,
        "lesson": " and that ".join(v.lesson for v in voices[:2]),
        "theme": world.themes[0] if world.themes else "friendship",
        "sound": setting.sound, "time": scene.time, "weather": scene.weather,
        "met": "" if world.friend_in_plot else "yes",
        "known": "yes" if world.friend_in_plot else "",
        "pal": friend.name if world.friend_in_plot else "",
        "friend": friend.name if friend_known else "",
    }
    if scene.obstacle is not None:
        slots.update(obstacle=scene.obstacle.problem, attempt=scene.obstacle.attempt,
                     solution=scene.obstacle.solution)
    weather_s = lx.WEATHER_SENTENCES.get(scene.weather) or _EXTRA_WEATHER.get(scene.weather, "")
    slots["weather_s"] = tp.render(weather_s, level, slots, cap=False) or ""
    for key, by_kind in _KIND_TEXT.items():
        slots[key] = tp.render(by_kind[world.goal_kind], level, slots, cap=False) or ""
    return slots


# --- the outline ---------------------------------------------------------------------------


def write_outline(*, plot: str, themes: Sequence[str], target_age: str, art_style: str,
                  chapters: int, seed: int, title: str | None = None) -> dict[str, Any]:
    """The outline FINAL payload for a plot; extra keys `world` and `chapters[].beats`."""
    world = analyze(plot, themes=themes, seed=seed, target_age=target_age, art_style=art_style)
    arc = chapter_beats(chapters)
    rng = random.Random(f"outline|{seed}|{world.hero.name}|{world.goal}")
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for index in range(chapters):
        scene = scene_for(world, arc, index)
        slots = _slots(world, scene, rng, friend_known=True, level=1)
        entries.append({"title": _unique(_chapter_title(world, scene, slots, rng), used),
                        "plan": _plan(world, scene, slots), "beats": list(scene.beats)})
    return {
        "title": title or book_title(world, rng),
        "characters": [{"name": c.name, "look": c.look} for c in (world.hero, world.friend)],
        "chapters": entries,
        "cover_prompt": cover_prompt(world),
        "world": world.to_dict(),
    }


def outline_lines(outline: Mapping[str, Any]) -> list[str]:
    """The outline as the lines a writer would jot down (streamed as PARTIALs)."""
    lines = [f"Title: {outline['title']}\n"]
    lines += [f"{c['name']}: {c['look']}\n" for c in outline["characters"]]
    lines += [f"Chapter {i}: {c['title']} - {c['plan']}\n"
              for i, c in enumerate(outline["chapters"], start=1)]
    return lines


def book_title(world: World, rng: random.Random) -> str:
    options: tuple[str, ...] = _BOOK_TITLES[world.goal_kind] + _GENERIC_BOOK_TITLES
    if world.trait in lx.SIZE_TRAITS:  # not "The Little Little Rabbit"
        options = tuple(o for o in options if "Little" not in o)
    slots = {"name": world.hero.name, "object": _as_title_object(world.object),
             "trait": world.trait, "species": world.hero.kind.noun,
             "setting": world.place.split()[-1] if world.place else world.setting}
    return titlecase(tp.render(rng.choice(options), 1, slots) or world.hero.name)


def cover_prompt(world: World) -> str:
    hero, friend = world.hero, world.friend
    return (f"{hero.name} the {hero.kind.noun} and {friend.name} the {friend.kind.noun} "
            f"smiling together {_WHERE[world.setting]}, in the morning, "
            f"{'under a starry sky' if world.setting == 'space' else 'sunny weather'}, "
            f"hopeful mood, book cover. {hero.name}: {hero.look}. {friend.name}: "
            f"{friend.look}. {lx.STYLE_PHRASES[world.art_style]}, "
            f"{lx.SETTINGS[world.setting].place}.")


def _chapter_title(world: World, scene: Scene, slots: Mapping[str, str],
                   rng: random.Random) -> str:
    beat = scene.shown
    if beat in ("attempt", "together") and scene.obstacle is not None:
        return scene.obstacle.title
    options: tuple[str, ...]
    if beat == "trouble":
        options = _TROUBLE_TITLES[world.goal_kind]
    elif beat == "friend" and world.friend_in_plot:
        options = _CHAPTER_TITLES["friend_known"]
    else:
        options = _CHAPTER_TITLES[beat]
    title_slots = {**slots, "object": _as_title_object(world.object)}
    for template in rng.sample(options, len(options)):
        text = tp.render(template, 1, title_slots)
        if text:
            return titlecase(text)
    return titlecase(beat)


def _plan(world: World, scene: Scene, slots: Mapping[str, str]) -> str:
    parts: list[str] = []
    for beat in scene.beats:
        key = beat
        if beat == "friend" and world.friend_in_plot:
            key = "friend_known"
        elif beat == "climax" and world.fear:
            key = "climax_fear"
        text = tp.render(_PLANS[key], 1, slots)
        if text:
            parts.append(text)
    return " ".join(parts) or f"{world.hero.name}'s story goes on."


def _unique(title: str, used: set[str]) -> str:
    candidate, n = title, 2
    while candidate in used:
        candidate = f"{title} ({n})"
        n += 1
    used.add(candidate)
    return candidate


def _as_title_object(obj: str) -> str:
    words = obj.split()
    if words and words[0].lower() in ("her", "his", "their", "my", "its"):
        words[0] = "the"
    return " ".join(words)


def titlecase(text: str) -> str:
    """Title Case that leaves small words small (except the first) and keeps capitals."""
    words = text.split()
    out = [w if (i and w.lower() in _SMALL_WORDS) else tp.capfirst(w)
           for i, w in enumerate(words)]
    return " ".join(out)


# --- chapters ------------------------------------------------------------------------------


def write_chapter(world: World, arc: Sequence[Sequence[str]], index: int, *, title: str,
                  seed: int) -> ChapterDraft:
    """Chapter `index` of the story: paragraphs for the age band, and its picture prompt."""
    scene = scene_for(world, arc, index)
    level = world.level
    rng = random.Random(f"chapter|{world.seed}|{seed}|{index}|{world.hero.name}")
    allowance = _allowance(scene.beats, _PARAGRAPHS[level])
    paragraphs: list[str] = []
    friend_known = scene.friend_before
    for beat, budget in zip(scene.beats, allowance, strict=True):
        friend_known = friend_known or beat in ("friend", "together", "setback", "climax",
                                                "resolution")
        slots = _slots(world, scene, rng, friend_known=friend_known, level=level)
        written = _beat_paragraphs(beat, slots, rng, level, budget)
        paragraphs += _tell_plot(world, beat, slots, written or [""])
    paragraphs = [p for p in paragraphs if p]
    slots = _slots(world, scene, rng, friend_known=friend_known, level=level)
    _open_scene(paragraphs, index, slots, level)
    if level >= 3:
        reflection = tp.render(rng.choice(tp.REFLECTIONS[scene.shown]), level, slots)
        if reflection:
            paragraphs.insert(max(1, len(paragraphs) - 1), reflection)
    for character in (world.hero, world.friend):
        paragraphs = [_no_echo(text, character) for text in paragraphs]
        title = _no_echo(title, character)
    return ChapterDraft(title=title, paragraphs=tuple(paragraphs),
                        picture_prompt=picture_prompt(world, scene, slots))


def _no_echo(text: str, character: Character) -> str:
    """"Grandpa the grandfather" is just "Grandpa": a name that is its kind's own word."""
    name, noun = character.name, character.kind.noun
    if lx.SPECIES_ALIASES.get(name.lower(), name.lower()) not in (character.species, noun):
        return text
    return text.replace(f"{name} the {noun}", name)


def _tell_plot(world: World, beat: str, slots: Mapping[str, str],
               written: list[str]) -> list[str]:
    """The beat's paragraphs, with what the plot says of this beat added where the templates
    did not say it: the premise as the story opens, the trouble, the means, the goal won."""
    told = wd.text_lemmas(written)
    extra: list[str] = []
    for sentence in _plot_facts(world, beat, slots):
        wanted = [w for w in wd.content_words(sentence) if w not in _LIGHT_VERBS]
        if not all(wd.all_lemmas(w) & told for w in wanted):
            extra.append(sentence)
            told |= wd.text_lemmas([sentence])
    if not extra:
        return written
    out = list(written)
    if beat == "setup" and out[0]:  # after the sentence that introduces the hero
        first, _, rest = out[0].partition(". ")
        out[0] = " ".join(t for t in (first + ("." if rest else ""), *extra, rest) if t)
    else:
        out[-1] = " ".join(t for t in (out[-1], *extra) if t)
    return out


# Verbs a template may say in other words ("wished to" for "wanted to").
_LIGHT_VERBS: Final = frozenset({"want", "wish", "hope", "try", "like", "say", "live"})


def _plot_facts(world: World, beat: str, slots: Mapping[str, str]) -> list[str]:
    name, friend = world.hero.name, world.friend.name
    facts: list[str] = []
    if beat == "setup":
        if world.group > 1:
            facts.append(f"{name} and {friend} were {_count(world.group)} "
                         f"{_plural(world.hero.kind.noun)}"
                         f"{f', with {_third(world)}' if world.group > 2 else ''}.")
        if world.habit:
            facts.append(f"{name} {world.habit}.")
        facts.append(f"{name} {world.premise}." if world.premise
                     else f"{name} wanted to {world.goal}.")
        if world.place:
            facts.append(f"{tp.capfirst(slots['they'])} lived near {world.place}.")
    elif beat == "trouble":
        if world.trouble:
            facts.append(f"One {slots['time']}, {name} {world.trouble}.")
        if world.means:
            facts.append(f"\"I will {_mine(world.means)},\" said {name}. \"Then I can "
                         f"{_mine(world.goal)}!\"")
    elif beat == "friend" and world.means:
        facts.append(f"Together, {name} and {friend} {past_phrase(world.means.split())}.")
    elif beat == "climax":
        outcome = f" {world.outcome}" if world.outcome else ""
        facts.append(f"At last, {name} {past_phrase(world.goal.split())}{outcome}!")
        facts += [f"Then {tp.capfirst(e)[0].lower()}{e[1:]}." for e in world.events]
    return facts


def plot_points(world: World, beats: Sequence[str]) -> list[str]:
    """What the plot says happens in these beats, as plain sentences: what a model writing
    that chapter must tell (the transformers author's prompts)."""
    slots = {"time": "day", "they": _PRONOUNS.get(world.hero.pronoun, _PRONOUNS["she"])[0]}
    points = [fact for beat in beats for fact in _plot_facts(world, beat, slots)]
    noun = world.hero.kind.noun
    if "setup" in beats and world.group == 1 and noun.lower() != world.hero.name.lower():
        # The templates introduce the hero; a model needs telling what kind they are.
        points.insert(0, f"{world.hero.name} was {tp.article(noun)} {noun}.")
    return points

def _plural(noun: str) -> str:
    *head, last = noun.split()
    return " ".join([*head, wd.plural(last)])


def _participle(phrase: str) -> str:
    """'win the race' -> 'won the race' as after "had": 'had won the race'."""
    first, _, rest = phrase.partition(" ")
    if not first or not wd.can_be(first, "VERB"):
        return phrase
    return " ".join(t for t in (wd.inflect(wd.lemma(first, "VERB"), "VBN"), rest) if t)


def _count(n: int) -> str:
    return {2: "two", 3: "three", 4: "four", 5: "five"}.get(n, str(n))


def _third(world: World) -> str:
    taken = {world.hero.name, world.friend.name}
    names = [n for n in lx.NAMES if n not in taken]
    return f"{'and ' if world.group == 3 else ''}little " \
           f"{names[sum(map(ord, world.hero.name)) % len(names)]}" \
           + (" and the others" if world.group > 3 else "")


def _mine(phrase: str) -> str:
    """A plot phrase said by the hero: "her grandfather's clock" -> "my grandfather's"."""
    return " ".join("my" if w in ("his", "her", "their") else w for w in phrase.split())


def _allowance(beats: Sequence[str], total: int) -> list[int]:
    """Paragraphs per beat: an even share, the remainder to the last (the payoff) beats."""
    share, rest = divmod(total, len(beats))
    counts = [max(1, share)] * len(beats)
    for i in range(rest):
        counts[-1 - i] += 1
    return counts


def _beat_paragraphs(beat: str, slots: Mapping[str, str], rng: random.Random, level: int,
                     budget: int) -> list[str]:
    written: dict[int, str] = {}
    for n, slot in enumerate(tp.BEATS[beat]):
        for variant in rng.sample(slot, len(slot)):
            text = tp.render_paragraph(variant, level, slots, _SENTENCES[level])
            if text:
                written[n] = text
                break
    # Over budget: keep the paragraphs that matter most to this beat, in story order.
    order = tp.PRIORITY.get(beat, tuple(range(len(tp.BEATS[beat]))))
    kept = sorted([n for n in order if n in written][:budget])
    return [written[n] for n in kept]


def _open_scene(paragraphs: list[str], index: int, slots: Mapping[str, str],
                level: int) -> None:
    """Say when and in what weather the chapter happens, where a reader expects it."""
    opener = tp.render("((It was a {weather} {time}.|It was a {weather} {time}."
                       "|It was a {weather} {time}, and {sensory}.))", level, slots)
    if not opener or not paragraphs:
        return
    if index == 0 and len(paragraphs) == 1:  # the hero's sentence stays the book's first
        first, _, rest = paragraphs[0].partition(". ")
        paragraphs[0] = f"{first}. {opener} {rest}" if rest else f"{first} {opener}"
        return
    at = 1 if index == 0 else 0
    paragraphs[at] = f"{opener} {paragraphs[at]}"


def picture_prompt(world: World, scene: Scene, slots: Mapping[str, str]) -> str:
    """A concrete picture of the chapter: who, doing what, where, when, weather, mood, style."""
    hero, friend = world.hero, world.friend
    cast: list[Character] = [hero] + ([friend] if scene.friend_shown else [])
    who = " and ".join(f"{c.name} the {c.kind.noun}" for c in cast)
    action = tp.render(_ACTIONS[scene.shown], 1, slots) or "on an adventure"
    looks = " ".join(f"{c.name}: {c.look}." for c in cast)
    action = action[0].lower() + action[1:]  # render() capitalised it as a sentence
    return (f"{who} {action} near {scene.spot} {_WHERE[world.setting]}, {_WHEN[scene.time]}, "
            f"{_SKY[scene.weather]}, {lx.MOODS[scene.shown]} mood. {looks} "
            f"{lx.STYLE_PHRASES[world.art_style]}, {lx.SETTINGS[world.setting].place}.")
