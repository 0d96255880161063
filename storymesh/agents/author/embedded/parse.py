"""The shape of a plot sentence: who it is about, what they do, what else happens.

`read_plot()` splits a one- or two-sentence plot ("Two otters build a raft to cross a
flooded river") into its subject noun phrases (`Being`s: kind, name, how many, the words
before the kind) and its clauses, and sorts the clauses into the roles of a story:

- `premise`: what the plot says about the hero, said in the past as the story opens
  ("was afraid to rain on the farm");
- `goal` and `means` (base-form verb phrases): "cross a flooded river" by "build a raft";
- `trouble`: an inciting event ("lose his red kite"), whose goal is to undo it;
- `events`: clauses with another subject ("the crows help him get it back"), said in the
  past when the story reaches them;
- `place`: the first place the plot names ("the farm"), and the other `beings` it names.

Heuristics over lemminflect's parts of speech (words.py); nothing here is a full parser,
and every field may be empty: plot.py fills the gaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from storymesh.agents.author.embedded import lexicon as lx
from storymesh.agents.author.embedded import words as wd

_TOKEN = re.compile(r"[A-Za-z][A-Za-z-]*(?:['\u2019]s)?|[,.;:!?]")
_DETERMINERS = frozenset({"a", "an", "the", "his", "her", "their", "its", "my", "our",
                          "some", "this", "that", "these", "those"})
NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "both": 2, "twin": 2,
           "twins": 2, "pair": 2}
_PREPOSITIONS = frozenset({"in", "on", "at", "from", "of", "near", "under", "across",
                           "beyond", "inside", "over", "through", "into", "behind", "by",
                           "around", "along", "above", "below", "with", "down", "up",
                           "onto", "for", "to", "towards", "past"})
_CUTS = frozenset({"but", "because", "before", "after", "until", "when", "while", "so",
                   "although", "though", "since", "once", "if"})
# Verbs whose "to"-complement is what the hero wants.
_WISHES = frozenset({"want", "wish", "hope", "dream", "long", "try", "plan", "need",
                     "decide", "set", "refuse", "mean", "yearn", "determine", "vow",
                     "promise", "like", "love", "go", "have"})
# Verbs that start the trouble, and the goal that undoes them.
_INCITING = {"lose": "find", "break": "fix", "forget": "remember", "drop": "find",
             "miss": "find", "stop": "start", "run": "find"}
# Kinds of beings beyond the lexicon's creatures: people, by their role.
PEOPLE = frozenset({
    "grandma", "grandpa", "grandmother", "grandfather", "granny", "mother", "father",
    "mum", "mom", "dad", "aunt", "uncle", "baby", "farmer", "baker", "doctor", "nurse",
    "teacher", "keeper", "firefighter", "fisherman", "fisher", "sailor", "captain",
    "pilot", "chef", "cook", "gardener", "builder", "postman", "postwoman", "neighbour",
    "neighbor", "sister", "brother", "cousin", "twin", "man", "woman",
    "lady", "grandson", "granddaughter", "children", "child", "kid", "inventor",
    "scientist", "explorer", "musician", "painter", "singer", "dancer", "shepherd",
    "miller", "tailor", "librarian", "zookeeper", "ranger", "detective", "clown",
    "magician", "mayor", "student", "girl", "boy", "villager",
})
# Creatures the lexicon has no entry for, so that "a firefly" is a being, not a thing.
ANIMALS = frozenset({
    "firefly", "moth", "crocodile", "alligator", "kangaroo", "koala", "goat", "sheep",
    "lamb", "cow", "calf", "bull", "donkey", "crow", "raven", "eagle", "hawk", "swan",
    "goose", "gull", "seagull", "pelican", "flamingo", "peacock", "puffin", "robin",
    "sparrow", "pigeon", "tortoise", "lizard", "snake", "gecko", "chameleon", "spider",
    "ant", "beetle", "ladybug", "ladybird", "worm", "caterpillar", "dragonfly",
    "grasshopper", "cricket", "badger", "mole", "hamster", "guinea", "rat", "bat",
    "skunk", "moose", "reindeer", "zebra", "hippo", "hippopotamus", "rhino", "tiger",
    "leopard", "cheetah", "gorilla", "chimpanzee", "sloth", "llama", "yak", "walrus",
    "shark", "jellyfish", "starfish", "seahorse", "lobster", "clam", "squid", "orca",
    "sheepdog", "kitten", "puppy", "cub", "foal", "chick", "duckling", "piglet", "bunny",
    "mermaid", "unicorn", "phoenix", "griffin", "yeti", "elf", "gnome", "pixie", "goblin",
    "ogre", "scarecrow", "snowman",
})


@dataclass(frozen=True, slots=True)
class Being:
    """Someone the plot names: a kind ("otter"), maybe a name, how many, and the words that
    came with them ("little", "lighthouse")."""

    noun: str               # singular, lower case; "" for a bare name
    name: str = ""
    count: int = 1
    before: tuple[str, ...] = ()   # words between the determiner and the kind
    phrase: str = ""        # as written: "the farmer's daughter"

    @property
    def alive(self) -> bool:
        return is_being(self.noun) or bool(self.name)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a plot says, sorted into a story's roles (every field may be empty)."""

    subjects: tuple[Being, ...] = ()
    premise: str = ""       # past tense, without the subject: "was afraid to rain on the farm"
    goal: str = ""          # base form: "cross a flooded river"
    means: str = ""         # base form: "build a raft"
    trouble: str = ""       # past tense, without the subject: "lost his red kite in the park"
    events: tuple[str, ...] = ()   # past tense, with their subject
    outcome: str = ""       # what follows the goal, past: "so the doctor could reach the hospital"
    habit: str = ""         # a relative clause on the hero, past: "could not swim"
    fear: str = ""          # "raining on the farm"
    place: str = ""         # "the farm"
    beings: tuple[Being, ...] = field(default=())   # others the plot names


def is_being(noun: str) -> bool:
    low = noun.lower()
    return lx.species_of(low) is not None or low in PEOPLE or low in ANIMALS \
        or wd.singular(low) in PEOPLE | ANIMALS


def _tokens(text: str) -> list[str]:
    return [t.replace("\u2019", "'") for t in _TOKEN.findall(text)]


def _is_name(word: str) -> bool:
    return word[:1].isupper() and word[1:].islower() and word not in lx.NOT_NAMES \
        and word.lower() not in _DETERMINERS and word.lower() not in NUMBERS


def _noun_like(word: str) -> bool:
    low = word.lower().removesuffix("'s")
    return wd.can_be(low, "NOUN") or (not wd.lemmas_by_pos(low) and low.isalpha())


def read_plot(plot: str) -> Reading:
    """The plot's subject(s) and clauses in story roles."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(plot.split())) if s.strip()]
    if not sentences:
        return Reading()
    toks = _tokens(sentences[0])
    subjects, at = _subjects(toks)
    habit, at = _subject_tail(toks, at)
    clauses = _clauses(toks[at:])
    for sentence in sentences[1:]:
        clauses += _clauses(_tokens(sentence), own_subject=True)
    reading = _roles(subjects, clauses)
    beings = _other_beings(_tokens(plot), subjects)
    return Reading(subjects=subjects, premise=reading.premise, goal=reading.goal,
                   means=reading.means, trouble=reading.trouble, events=reading.events,
                   outcome=reading.outcome, habit=habit, fear=reading.fear,
                   place=_place(plot, subjects), beings=beings)


# --- the subject -------------------------------------------------------------------------


def _subjects(toks: list[str]) -> tuple[tuple[Being, ...], int]:
    """The subject noun phrases ("Grandma and Mia") and where the verb starts."""
    found: list[Being] = []
    at = 0
    while at < len(toks):
        being, at = _noun_phrase(toks, at, coordinated=bool(found))
        if being is not None:
            found.append(being)
        if at < len(toks) and toks[at].lower() == "and" and at + 1 < len(toks) \
                and not wd.is_present_verb(toks[at + 1]):
            at += 1
            continue
        break
    return tuple(found), at


def _subject_tail(toks: list[str], at: int) -> tuple[str, int]:
    """Skip what qualifies the subject before its verb: a place ("A clock in the town
    square forgets"), or a relative clause, returned in the past ("A penguin who cannot
    swim wants" -> "could not swim")."""
    if at >= len(toks):
        return "", at
    low = toks[at].lower()
    if low in ("who", "that", "which"):
        for j in range(at + 2, len(toks)):
            if j == at + 2 and wd.is_present_verb(toks[at + 1]):
                continue  # "who loves books opens": "books" is loved, not a verb
            if wd.is_present_verb(toks[j]) and toks[j - 1].lower() not in ("not", "cannot") \
                    and not _after_modal(toks, j):
                return past_phrase(toks[at + 1:j]), j
    if low in _PREPOSITIONS:
        for j in range(at + 1, min(at + 7, len(toks))):
            if wd.is_present_verb(toks[j]) and toks[j - 1].lower() not in _DETERMINERS:
                return "", j
    return "", at


def _after_modal(toks: list[str], j: int) -> bool:
    return toks[j - 1].lower() in ("can", "cannot", "will", "must", "could", "would")


def _noun_phrase(toks: list[str], at: int, *, coordinated: bool) -> tuple[Being | None, int]:
    count = 1
    before: list[str] = []
    nouns: list[str] = []
    name = ""
    start = at
    while at < len(toks) and toks[at].lower() in _DETERMINERS:
        at += 1
    if at + 2 < len(toks) and _is_name(toks[at]) and toks[at + 1] == "the":
        name, at = toks[at], at + 2  # "Coral the mermaid"
    if at < len(toks) and toks[at].lower() in NUMBERS:
        count = NUMBERS[toks[at].lower()]
        at += 1
    while at < len(toks):
        word = toks[at]
        low = word.lower()
        if low in (",", ".", ";", ":", "!", "?", "and", "who", "that", "which") \
                or low in _PREPOSITIONS:
            break
        if low in ("named", "called") and at + 1 < len(toks):
            name, at = toks[at + 1], at + 2
            break
        if _is_name(word) and nouns and at > start:
            name = word  # "his dog Rocket", "Bolt the robot"
            at += 1
            continue
        plural_head = bool(nouns) and (count > 1 or coordinated or _is_plural(nouns[-1]))
        if (nouns or name) and (wd.is_present_verb(word)
                                or (plural_head and wd.is_base_verb(word))
                                or (coordinated and wd.is_base_verb(word))):
            break
        if (_is_name(word) and not wd.lemmas_by_pos(low)) or (
                _is_name(word) and nouns and at > start):
            name = word  # "Leo", "his dog Rocket", "Bolt the robot"
        elif name and not nouns and low == "the":
            pass
        else:
            if nouns:
                before.append(nouns.pop())
            if wd.can_be(low.removesuffix("'s"), "NOUN") or not wd.lemmas_by_pos(low):
                nouns.append(low.removesuffix("'s"))
            else:
                before.append(low)
        at += 1
    if not nouns and not name:
        return None, at
    noun = nouns[-1] if nouns else ""
    if noun and (_is_plural(noun) and count == 1 and noun not in ("sheep", "fish")):
        count = 2
    # A compound whose head is a thing but whose modifier is a being: "the dinosaur egg".
    if noun and not is_being(noun):
        beings = [w for w in before if is_being(w)]
        if beings:
            noun = beings[-1]
    noun = wd.singular(noun) if noun else ""
    if name and not noun and name.lower() in PEOPLE:  # "Grandma" is a kind and a name
        noun = name.lower()
    return Being(noun=noun, name=name, count=count, before=tuple(before),
                 phrase=" ".join(toks[start:at])), at


def _is_plural(noun: str) -> bool:
    return noun != wd.singular(noun) or noun in ("children", "people")


# --- the clauses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Clause:
    subject: str      # "" when it is the plot's subject
    words: tuple[str, ...]
    link: str         # the word that joined it: "", "and", "to", "so", "because", ...


def _clauses(toks: list[str], *, own_subject: bool = False) -> list[_Clause]:
    """Split a predicate at conjunctions and purpose "to"s; a part that opens with a noun
    phrase followed by a verb has its own subject."""
    parts: list[tuple[str, list[str]]] = [("", [])]
    i = 0
    while i < len(toks):
        low = toks[i].lower()
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if low in (",", ";", ":"):
            i += 1
            continue
        if low in (".", "!", "?"):
            break
        current = parts[-1][1]
        if low == "and" and current and _starts_clause(toks, i + 1):
            parts.append(("and", []))
        elif low in _CUTS and current:
            parts.append((low, []))
        elif low == "to" and current and wd.is_base_verb(nxt) \
                and current[-1].lower() not in ("how", "what", "where", "when") \
                and wd.lemma(current[0], "VERB") not in _WISHES | {"learn", "be"} \
                and not _is_be(current[0]):
            parts.append(("to", []))
        elif low == "that" and parts[-1][0] == "so" and not current:
            pass
        else:
            current.append(toks[i])
        i += 1
    out: list[_Clause] = []
    for n, (link, words) in enumerate(parts):
        if not words:
            continue
        if link == "to" and out and out[-1].subject:  # "the daughter climbs up to fix it"
            out[-1] = _Clause(out[-1].subject, (*out[-1].words, "to", *words), out[-1].link)
            continue
        subject, rest = _split_subject(words) if (own_subject or n) and link != "to" \
            else ("", words)
        out.append(_Clause(subject, tuple(rest), link))
    return out


def _starts_clause(toks: list[str], at: int) -> bool:
    """After an "and": a verb ("and hops"), or a noun phrase and then a verb ("and the crows
    help")."""
    if at >= len(toks):
        return False
    if wd.is_present_verb(toks[at]):
        return True
    for j in range(at, min(at + 5, len(toks))):
        if j > at and wd.is_present_verb(toks[j]) and _noun_like(toks[j - 1]):
            return True
        if toks[j].lower() in _PREPOSITIONS or toks[j] in ",.;":
            return False
    return False


def _split_subject(words: list[str]) -> tuple[str, list[str]]:
    if wd.is_present_verb(words[0]):
        return "", words
    for j in range(1, min(6, len(words))):
        plural_verb = wd.is_base_verb(words[j]) and _is_plural(words[j - 1].lower())
        if (wd.is_present_verb(words[j]) or plural_verb) \
                and words[j - 1].lower() not in _DETERMINERS \
                and not (j + 1 < len(words) and wd.is_present_verb(words[j + 1])):
            return " ".join(words[:j]), words[j:]
    return "", words


def _is_be(word: str) -> bool:
    return word.lower() in ("is", "are", "am", "was", "were")


def past_phrase(words: tuple[str, ...] | list[str]) -> str:
    """A clause in the past: its first verb conjugated ("wants to win" -> "wanted to win",
    "is afraid" -> "was afraid"); a second verb after "and" too ("and hops")."""
    out = list(words)
    if not out:
        return ""
    if wd.is_present_verb(out[0]) or wd.is_base_verb(out[0]):
        out[0] = wd.past(out[0])
    for i in range(1, len(out) - 1):
        if out[i] == "and" and wd.is_present_verb(out[i + 1]):
            out[i + 1] = wd.past(out[i + 1])
    return " ".join(out)


def base_phrase(words: tuple[str, ...] | list[str]) -> str:
    """A clause with its first verb in the base form ("repairs her clock" -> "repair her
    clock")."""
    out = list(words)
    if out and wd.can_be(out[0], "VERB"):
        out[0] = wd.lemma(out[0], "VERB")
    return " ".join(out)


def _roles(subjects: tuple[Being, ...], clauses: list[_Clause]) -> Reading:
    premise = goal = means = trouble = fear = outcome = ""
    events: list[str] = []
    own = [c for c in clauses if not c.subject or c.link in _CUTS]
    if not own or own[0].subject:
        return Reading(events=tuple(f"{c.subject} {past_phrase(c.words)}" for c in clauses))
    main = own[0]
    words = list(main.words)
    modal = words[0].lower() in ("must", "can", "will", "should") and len(words) > 1
    if modal:  # "must tame a dragon": a duty is a goal
        premise = past_phrase(words)
        words = words[1:]
    verb = words[0].lower()
    lemma = "be" if _is_be(verb) else wd.lemma(verb, "VERB")
    rest = words[1:]
    if lemma == "be" and len(rest) >= 3 and rest[1] == "to" and wd.is_base_verb(rest[2]):
        premise = past_phrase(words)  # "is afraid to rain on the farm"
        goal = " ".join(rest[2:])
        if rest[0] in ("afraid", "scared", "frightened", "terrified", "nervous", "too"):
            fear = _gerund(rest[2:])
    elif len(rest) > 1 and ((lemma in _WISHES and rest[:1] == ["to"])  # "wants to fly"
                            or (lemma == "dream" and rest[:1] == ["of"])):  # "dreams of the sea"
        premise = past_phrase(words)
        goal = base_phrase(rest[1:])
    elif lemma in ("search", "look", "hunt") and "for" in rest:
        premise = past_phrase(words)
        goal = "find " + " ".join(rest[rest.index("for") + 1:])
    elif lemma in _INCITING and (lemma != "run" or rest[:2] == ["out", "of"]):
        trouble = past_phrase(words)
        goal = _undo(lemma, rest)
    elif lemma == "be":
        premise = past_phrase(words)
    else:
        goal = base_phrase(words)
    for c in clauses[clauses.index(main) + 1:]:
        phrase = " ".join(c.words)
        if c.subject and c.link not in _CUTS:
            events.append(f"{c.subject} {past_phrase(c.words)}")
        elif c.link == "to":
            if trouble and re.search(r"\b(?:it|them)$", phrase):
                continue  # "loses her watch and hops across the outback to find it"
            means, goal = means or goal, phrase
            premise = f"{premise} to {phrase}" if premise and not modal else premise
        elif c.link == "and":
            if trouble:
                means = base_phrase(c.words)
            else:
                means, goal = means or goal, base_phrase(c.words)
        else:  # a subordinate clause stays with what it qualifies
            tail = " ".join(w for w in (c.link, c.subject, past_phrase(c.words)) if w)
            if premise:
                premise = f"{premise} {tail}"
            elif trouble:
                trouble = f"{trouble} {tail}"
            else:
                outcome = f"{outcome} {tail}".strip()
    if modal and means:
        premise = f"{premise} to {goal}"
    return Reading(premise=premise, goal=goal, means=means, trouble=trouble,
                   events=tuple(events), outcome=outcome, fear=fear)


def _undo(lemma: str, rest: list[str]) -> str:
    """The goal that undoes an inciting event: lose X -> find X, forget how to X -> remember
    how to X, stop turning -> start turning again, run out of X -> find more X."""
    cut = _cut_place(rest)
    if lemma == "run":
        return "find more " + " ".join(w for w in cut[2:] if w not in ("the", "a", "an"))
    if lemma == "stop":
        return "start " + " ".join(cut) + " again"
    return f"{_INCITING[lemma]} {' '.join(cut)}"


def _cut_place(words: list[str]) -> list[str]:
    for i, w in enumerate(words):
        if i and w.lower() in _PREPOSITIONS - {"of", "to"}:
            return words[:i]
    return words


def _gerund(words: list[str]) -> str:
    verb = wd.inflect(wd.lemma(words[0], "VERB"), "VBG")
    return " ".join([verb, *words[1:]])


# --- places and other beings ----------------------------------------------------------------


def _place(plot: str, subjects: tuple[Being, ...]) -> str:
    """The place the plot names with its article: "the farm", "a flooded river" (a place
    word that only qualifies a noun, "lighthouse keeper", does not count)."""
    toks = _tokens(plot)
    found: list[tuple[int, str]] = []
    for i, word in enumerate(toks):
        low = word.lower()
        if (low not in lx.SETTING_WORDS and low not in lx.PLACE_WORDS) \
                or (word[0].isupper() and i > 0) or low in {b.noun for b in subjects}:
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) else "."
        if nxt not in ",.;:!?" and nxt.lower() not in _PREPOSITIONS | _CUTS | {"and"} \
                and _noun_like(nxt) and not wd.is_present_verb(nxt):
            continue
        j = i
        while j > 0 and i - j < 3 and toks[j - 1].lower() not in _DETERMINERS \
                and toks[j - 1].lower() not in _PREPOSITIONS | {",", "and", "to"} \
                and not wd.is_present_verb(toks[j - 1]):
            j -= 1
        det = toks[j - 1].lower() if j > 0 and toks[j - 1].lower() in _DETERMINERS else "the"
        if j > 0 and toks[j - 1].lower() in _DETERMINERS:
            j -= 1
        rank = 3 if low in ("home", "house", "tree", "trees", "road") else \
            2 if low in ("boat", "ship", "waves", "sand", "field", "street", "moon", "wood") \
            else 1
        words = [w.lower() if k == 0 else w for k, w in enumerate(toks[j:i + 1])]
        if toks[j].lower() not in _DETERMINERS:
            words = [det, *words]
        found.append((rank, " ".join(words)))
    return min(found, key=lambda f: f[0])[1] if found else ""


def _other_beings(toks: list[str], subjects: tuple[Being, ...]) -> tuple[Being, ...]:
    taken = {s.noun for s in subjects} | {s.name.lower() for s in subjects}
    found: list[Being] = []
    for i, word in enumerate(toks):
        low = word.lower().removesuffix("'s")
        noun = wd.singular(low)
        if noun in taken or not is_being(low):
            continue
        if i + 1 < len(toks) and _noun_like(toks[i + 1]) and not word.endswith("'s") \
                and not toks[i + 1][0].isupper() and toks[i + 1].lower() not in _PREPOSITIONS \
                and not wd.is_present_verb(toks[i + 1]) and toks[i + 1] not in ",.":
            continue  # a modifier: "pirate treasure", "bear honey"
        name = toks[i + 1] if i + 1 < len(toks) and _is_name(toks[i + 1]) \
            and not wd.lemmas_by_pos(toks[i + 1].lower()) else ""
        if name == "" and i + 1 < len(toks) and toks[i + 1][:1].isupper() \
                and _is_name(toks[i + 1]):
            name = toks[i + 1]  # "his dog Rocket"
        taken.add(noun)
        found.append(Being(noun=noun, name=name, count=2 if low != noun else 1))
    return tuple(found)
