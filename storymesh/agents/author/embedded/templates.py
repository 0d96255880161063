"""The embedded storyteller's sentences, one small markup language, and its renderer.

Each story beat (setup, trouble, attempt, friend, together, setback, climax, resolution) has
paragraph slots; each slot has variants (picked per seed); each variant is a list of
sentence templates. The markup fits one sentence to the reader's age:

- `{slot}`: filled from the story (`{name}`, `{place}`, `{goal}`...). A sentence whose slot
  is empty is left out; a paragraph whose FIRST sentence is left out is left out whole, so a
  paragraph can hang on one optional fact (the hero's fear, a friend named in the plot).
- `{?flag}`: says nothing, but leaves the sentence out unless `flag` is set.
- `((short|long))`: the first for ages up to 7, the second from 8. `((a|b|c))`: one each for
  toddlers, 4-7 and 8+.
- `[[...]]`: a detail only older readers get (longer, richer sentences).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

Paragraph = tuple[str, ...]
Slot = tuple[Paragraph, ...]           # variants of one paragraph

_CHOICE = re.compile(r"\(\(([^()]*?)\)\)")
_RICH = re.compile(r"\[\[(.*?)\]\]")
_FIELD = re.compile(r"\{(\w+)\}")
_GATE = re.compile(r"\{\?(\w+)\}")
_A = re.compile(r"\b([Aa]) (?=(\w))")  # "a" before a word a slot may have filled


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def render(template: str, level: int, slots: Mapping[str, str], *,
           cap: bool = True) -> str | None:
    """One sentence (or a fragment, cap=False) for a reading level 0..3; None if a slot is
    empty."""
    text = _CHOICE.sub(lambda m: _pick(m.group(1).split("|"), level), template)
    text = _RICH.sub(lambda m: m.group(1) if level >= 2 else "", text)
    if any(not slots.get(key) for key in _GATE.findall(text)):
        return None
    text = _GATE.sub("", text)
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = slots.get(match.group(1), "")
        missing = missing or not value
        return value

    text = _FIELD.sub(fill, text)
    # "a {species}" is "an alien" when the slot starts with a vowel
    text = _A.sub(lambda m: f"{m.group(1)}{article(m.group(2))[1:]} ", text)
    text = " ".join(text.split())
    if missing or not text.strip(" .!?\"'"):
        return None
    return capfirst(text) if cap else text


def _pick(options: list[str], level: int) -> str:
    if len(options) >= 3:
        return options[min(level, 2)]
    return options[-1] if level >= 2 else options[0]


def capfirst(text: str) -> str:
    """Upper-case the first letter (after any opening quote), leave the rest alone."""
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[:i] + ch.upper() + text[i + 1:]
    return text


def render_paragraph(paragraph: Sequence[str], level: int, slots: Mapping[str, str],
                     max_sentences: int) -> str | None:
    """A paragraph of at most max_sentences; None when its first sentence cannot be said."""
    sentences: list[str] = []
    for i, template in enumerate(paragraph):
        sentence = render(template, level, slots)
        if sentence is None and i == 0:
            return None
        if sentence is not None and len(sentences) < max_sentences:
            sentences.append(sentence)
    return " ".join(sentences) if sentences else None


# --- the beats ------------------------------------------------------------------------------

SETUP: Final[tuple[Slot, ...]] = (
    (
        (("((There was a {trait} {species} called {name}."
         "|Once upon a time, there was a {trait} {species} called {name}."
         "|Once upon a time, in {place}, there lived a {trait} {species} called {name}.))"),
         "{name} had {feature}[[ and always wore {accessory}]].",
         "{name} loved to {hobby}[[, especially when {sensory}]].",
         "[[Everyone in {place} knew {them} by {their} {accessory_noun}.]]"),
        (("(({name} was a {trait} {species}.|In {place} lived {name}, a {trait} {species}."
         "|Deep in {place}, where {sensory}, lived {name}, a {trait} {species}.))"),
         "Every day, {name} liked to {hobby}[[, humming a little tune]].",
         "{name} ((wore|always wore)) {accessory}.",
         "[[Nobody in {place} had ever seen {them} without it.]]"),
    ),
    (
        ("{name}'s best friend was {pal}, a {fspecies} with {ffeature}.",
         ("((They did everything together.|The two of them did everything together"
         "[[, from breakfast until the stars came out]].))")),
    ),
    (
        (("(({name} was afraid of {fear}.|There was just one problem: {name} was afraid of "
         "{fear}.))"),
         "[[Just thinking about {fear} made {their} heart go thump, thump, thump.]]"),
    ),
    (
        ("{name} had a big dream.",
         "{name} wanted to {goal}[[, more than anything in the whole wide world]].",
         "\"One day, I will,\" {name} ((said|whispered to the sky)).",
         "[[But dreams, {name} knew, do not come true all by themselves.]]"),
        ("There was one thing {name} wished for.",
         "{name} wished to {goal}.",
         "[[Every night, {name} looked out towards {spot} and made the same wish.]]",
         "((Would it ever come true?|Would it ever come true? {name} did not know.))"),
    ),
)

TROUBLE: Final[tuple[Slot, ...]] = (
    (
        (("((Then something went wrong.|One {time}, something went wrong."
         "|One {time}, something went terribly wrong.))"),
         "{trouble_s}.",
         "{name} felt ((sad|very sad|a heavy, sinking sadness)).",
         "{sound}"),
        (("((Uh-oh!|Then, one {time}, {name} got a surprise."
         "|Then, one {time}, {name} heard news that changed everything.))"),
         "{trouble_s}.",
         "\"Oh no!\" cried {name}[[, and {their} voice echoed across {place}]]."),
    ),
    (
        ("{name} ((thought and thought|sat on a stone and thought very hard)).",
         "\"I will {goal_said},\" {name} said ((at last|at last, standing up tall)).",
         ("[[It would be a long way, but {name} packed a snack and a lantern and set off "
         "before {they} could change {their} mind.]]")),
        ("Everyone said it was too hard.",
         "But {name} did not want to give up.",
         "So {name} set off ((to {goal}|to {goal}, one small step at a time)).",
         "[[Behind {them}, {place} grew smaller and smaller.]]"),
    ),
)

ATTEMPT: Final[tuple[Slot, ...]] = (
    (
        (("{name} ((walked|walked and walked|walked and walked, further than ever before)) "
         "until {they} came to {obstacle}."),
         "{sound}",
         ("[[It stood between {name} and {spot}, as if it had been waiting there just for "
         "{them}.]]")),
        ("((Look!|Soon the path led to {obstacle}.|Soon the path led to {obstacle}.))",
         ("((There was {obstacle}.|{name} stopped and stared."
         "|{name} stopped and stared, {their} heart beating fast.))"),
         "\"How will I get past?\" {name} ((asked|wondered|wondered out loud)).",
         "{sound}"),
    ),
    (
        ("{name} tried to {attempt}.",
         ("But it was ((too hard|much too hard for one small {species}"
         "[[, and {name} tumbled back with a bump]]))."),
         "\"Oof!\" said {name}."),
        ("First, {name} tried to {attempt}.",
         "It did not work.",
         "[[{name} tried again, and again, but {obstacle} was simply too much for one.]]"),
    ),
    (
        ("{name} sat down ((to rest|to rest|to rest, tired and a little cross)).",
         "\"I will not give up,\" {name} said[[, wiping {their} eyes]]."),
        ("{name} felt tired and small.",
         "[[For a while, {they} just listened as {sensory}.]]",
         "But {name} ((did not give up|did not give up, not yet)).")
    ),
)

FRIEND: Final[tuple[Slot, ...]] = (
    (
        ("{?met}Just then, {name} heard a ((voice|small, friendly voice)).",
         "It was {friend}, a {fspecies} with {ffeature}.",
         "\"Hello! Why do you look so sad?\" asked {friend}."),
        ("{?met}Suddenly, someone ((said hello|tapped {name} gently on the shoulder)).",
         "It was a {fspecies} called {friend}[[, who had {ffeature}]].",
         "\"Can I help?\" asked {friend}."),
        ("{?known}{name} was not alone.",
         "{friend} the {fspecies} was there too.",
         "\"We can do this together,\" said {friend}[[, squeezing {name}'s {limb}]]."),
    ),
    (
        ("{name} told {friend} all about it.",
         "{friend} ((smiled|smiled a slow, warm smile)).",
         "\"{quote},\" said {friend}."),
        ("{name} explained everything[[, the words tumbling out all at once]].",
         "{friend} listened ((carefully|carefully, nodding now and then)).",
         "Then {friend} said, \"{quote}.\""),
    ),
    (
        ("So {name} and {friend} went on together.",
         "[[Side by side, the path did not seem so long any more.]]",
         "{name} felt ((better|braver and lighter than before))."),
    ),
)

TOGETHER: Final[tuple[Slot, ...]] = (
    (
        ("Together, {name} and {friend} came to {obstacle}.",
         ("{name} wanted to {attempt}, but {friend} had ((a better idea|a cleverer idea"
         "[[ and whispered it]]))."),
         "So they {solution}.",
         "\"We did it!\" they cheered."),
        ("Next, they reached {obstacle}.",
         "\"Let us think,\" said {friend}.",
         "Together, they {solution}.",
         "{sound}"),
    ),
    (
        ("They walked on, ((laughing|laughing and talking about everything)).",
         "[[{name} had never felt so glad to have a friend.]]"),
        ("((Good job!|On they went.|On they went, step after step.))",
         "[[The further they went, the braver {name} felt.]]"),
    ),
)

SETBACK: Final[tuple[Slot, ...]] = (
    (
        ("((Oh dear.|Then the sky grew dark.|Then, without warning, the sky grew dark.))",
         "{weather_s}.",
         "{name} and {friend} ((got lost|lost the path and could not find it again))."),
        ("By {time}, everything had gone wrong.",
         "{weather_s}.",
         "\"Maybe we cannot {goal_said},\" whispered {name}."),
    ),
    (
        ("{name} wanted to cry.",
         "But {friend} held {name}'s {limb}.",
         "\"{quote},\" said {friend} ((softly|softly, in the dark))."),
        ("They huddled together ((near {spot}|near {spot}, waiting for the worst to pass)).",
         "{name} remembered {their} dream.",
         "\"Not yet,\" said {name}. \"We will not give up yet.\""),
    ),
)

CLIMAX: Final[tuple[Slot, ...]] = (
    (
        ("At last, they reached {spot}.",
         "Everything was very ((still|still, as if the whole world held its breath)).",
         "{name} took a deep breath."),
        ("This was it.",
         "{name} looked at {friend}, and {friend} nodded.",
         "{name} stepped forward[[, {their} knees shaking just a little]]."),
    ),
    (
        ("{name} felt afraid of {fear}, but {name} did not run away.",
         ("[[{name} remembered what {friend} had said, and the fear grew smaller and "
         "smaller.]]")),
    ),
    (
        ("{climax_s}",
         "{name} ((shouted|shouted so loudly that the whole of {place} heard)), \"We did it!\"",
         "{sound}"),
        ("And then it happened.",
         "{climax_s}",
         "{name} and {friend} danced ((for joy|round and round until they were dizzy))."),
    ),
)

RESOLUTION: Final[tuple[Slot, ...]] = (
    (
        ("{done_s}.",
         "Everyone ((cheered|cheered and clapped and threw their hats in the air)).",
         "{name} gave {friend} a big hug."),
        ("{done_s}.",
         "[[The news spread quickly through {place}.]]",
         "{friend} smiled, and {name} smiled back."),
    ),
    (
        ("That night, {name} smiled ((in bed|in the dark, too happy to sleep)).",
         "{name} knew that {lesson}.",
         "The end."),
        (("((The sun went down.|As the sun went down, {name} thought about the day."
         "|As the sun went down, {name} thought about everything that had happened.))"),
         "{name} had learned that {lesson}.",
         "The end."),
    ),
)

BEATS: Final[dict[str, tuple[Slot, ...]]] = {
    "setup": SETUP, "trouble": TROUBLE, "attempt": ATTEMPT, "friend": FRIEND,
    "together": TOGETHER, "setback": SETBACK, "climax": CLIMAX, "resolution": RESOLUTION,
}

# Which paragraph slots of a beat to keep first when a short chapter has little room
# (default: in order). A setup keeps the hero's fear and wish before a friend's mention;
# a climax keeps its payoff before the build-up.
PRIORITY: Final[dict[str, tuple[int, ...]]] = {
    "setup": (0, 2, 3, 1), "climax": (2, 1, 0),
}

# Teenagers get one reflective paragraph per chapter, after the action.
REFLECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "setup": (("Sometimes {name} wondered whether dreams were meant for someone braver, or "
              "bigger, or older, and whether a {species} from {place} was allowed to want so "
              "much."),
              ("{name} did not know yet that the ordinary days are often the ones right before "
              "everything changes.")),
    "trouble": (("Somewhere deep down, {name} understood that some things only happen if you "
                "make them happen, and that waiting for someone else to fix them is a choice "
                "too."),),
    "attempt": (("It is a strange thing, failing: it stings, but it also shows you where not to "
                "put your foot next time, and {name} was beginning to learn that."),),
    "friend": (("{name} had always believed that asking for help meant being weak; now it felt "
               "more like being wise."),),
    "together": (("Later, {name} would remember this part of the journey not for the danger, "
                 "but for the laughter that came after it."),),
    "setback": (("In the quiet, {name} listened to {their} own heartbeat and realised that fear "
                "and hope can sit side by side without either of them winning."),),
    "climax": (("Everything {name} had learned along the way seemed to come together in that "
               "single, shining moment."),),
    "resolution": (("Years later, whenever someone in {place} spoke about {theme}, they told the "
                   "story of {name} and {friend}."),),
}
