"""The toy zoo's grammar: a document generator whose distribution plants the paper's tasks among filler.

Every sentence is lower-case words separated by single spaces (the tokenizer's canonical form). A
training document is one to three *units*, each one of:

* filler, varied sentences in the past tense that decide nothing the tasks test
  (``the tall farmer found a red key near the station yesterday .``) — the largest share;
* agreement, three shapes sharing one subject noun phrase ``the [adj] noun``: a bare subject
  (``the old parents are happy .``), across a prepositional phrase (``the parents near the dog run .``) and
  across an object relative clause (``the parents that the dog sees sleep .``); the main verb agrees with
  the subject, the clause's verb with the clause's subject;
* indirect-object identification (``when mary and john went to the store , john gave a drink to mary .``);
* years (``the war lasted from the year 1732 to the year 1789 .``), the end year later, in the same
  century. Years are written as four digits and tokenised as a century and a two-digit token;
* copy (``the list is anna ring blue tom , again anna ring blue tom .``): a pattern repeated (induction);
* a short biography (:mod:`.bios`) with a profession and gender cues.

The planted mechanisms are noisy at rate ``noise`` (the agreeing verb takes the wrong number, the ioi
answer is the repeated name, the end year is earlier, a repeated item is replaced), so that the model
learns them without saturating: the optimal logit difference for noise ``e`` is ``log((1 - e) / e)``.

Every token of a generated unit carries a *behaviour label* (:data:`BEHAVIOURS`): the planted mechanism
that decides it given the tokens before it, or ``none``. The labelled stream (``stream.jsonl``) is a
sample of noise-free documents.

Seven tasks read counterfactual pairs off the same generators (:data:`TASKS`); every pair names its
*template* (pairs of one template have the same token length and the same slot at every position). Each
pair has a *key*: the part of its clean prompt that the counterfactual keeps (for agreement, the
subject's lemma instead of its number; for ioi, the set of names instead of their order). A key is held
out (test split) when a stable hash of it falls in the test fraction; the training corpus never contains
a unit that starts with a held-out prompt, clean or patch, followed by the task's next word, so test
figures measure generalisation, not recall. (A held-out simple key is a subject with one verb: ``the kings`` meets other
verbs, and heads longer subjects, ``the kings near the dog wait``, in training; never ``wait`` directly.)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

# (singular, plural)
NOUNS: tuple[tuple[str, str], ...] = (
    ("dog", "dogs"), ("cat", "cats"), ("parent", "parents"), ("child", "children"),
    ("teacher", "teachers"), ("doctor", "doctors"), ("farmer", "farmers"), ("author", "authors"),
    ("pilot", "pilots"), ("lawyer", "lawyers"), ("singer", "singers"), ("student", "students"),
    ("friend", "friends"), ("boy", "boys"), ("girl", "girls"), ("man", "men"), ("woman", "women"),
    ("king", "kings"), ("queen", "queens"), ("baker", "bakers"), ("driver", "drivers"),
    ("officer", "officers"), ("senator", "senators"), ("athlete", "athletes"), ("manager", "managers"),
    ("guard", "guards"), ("dancer", "dancers"), ("painter", "painters"), ("nurse", "nurses"),
    ("judge", "judges"), ("soldier", "soldiers"), ("worker", "workers"), ("neighbor", "neighbors"),
    ("customer", "customers"), ("player", "players"), ("actor", "actors"), ("writer", "writers"),
    ("horse", "horses"), ("bird", "birds"), ("chef", "chefs"),
)
ADJECTIVES = ("old", "young", "tall", "small", "happy", "tired", "busy", "quiet", "strong", "brave",
              "clever", "kind")
PREPOSITIONS = ("near", "behind", "beside", "with", "above")
# main-clause verbs (singular, plural); the copulas take a predicate adjective
MAIN_VERBS: tuple[tuple[str, str], ...] = (
    ("is", "are"), ("was", "were"), ("runs", "run"), ("sleeps", "sleep"), ("smiles", "smile"),
    ("laughs", "laugh"), ("waits", "wait"), ("sings", "sing"), ("swims", "swim"), ("falls", "fall"),
)
COPULAS = {"is", "are", "was", "were"}
# verbs of the relative clause, transitive (its object is the head noun)
CLAUSE_VERBS: tuple[tuple[str, str], ...] = (
    ("likes", "like"), ("sees", "see"), ("knows", "know"), ("meets", "meet"), ("helps", "help"),
    ("loves", "love"), ("hates", "hate"), ("admires", "admire"),
)

FEMALE_NAMES = ("mary", "alice", "sarah", "anna", "lisa", "emma", "kate", "laura", "susan", "helen")
MALE_NAMES = ("john", "bob", "tom", "james", "david", "michael", "paul", "mark", "peter", "george")
NAMES = ("mary", "john", "alice", "bob", "tom", "sarah", "james", "anna", "david", "lisa", "michael",
         "emma", "paul", "kate", "mark", "laura", "peter", "susan", "george", "helen")
PLACES = ("store", "park", "school", "garden", "office", "beach", "market", "library", "station",
          "hospital")
OBJECTS = ("drink", "book", "ring", "gift", "letter", "ball", "flower", "key", "cake", "pen")
GIVE_VERBS = ("gave", "handed", "passed", "sent", "showed")
# {A} and {B} are the two names in first-mention order, {S} the repeated one, then "{V} a {O} to"
IOI_TEMPLATES = (
    "when {A} and {B} went to the {P} , {S} {V} a {O} to",
    "then , {A} and {B} had a lot of fun at the {P} . {S} {V} a {O} to",
    "after {A} and {B} went to the {P} , {S} {V} a {O} to",
    "while {A} and {B} were working at the {P} , {S} {V} a {O} to",
    "{A} and {B} went to the {P} , and {S} {V} a {O} to",
)

EVENTS = ("war", "siege", "reign", "drought", "famine", "journey", "expedition", "project", "trial",
          "festival", "strike", "voyage")
DURATION_VERBS = ("lasted", "ran", "continued")
CENTURIES = tuple(range(12, 20))
YEAR_TEMPLATE = "the {E} {V} from the year {C}{X:02d} to the year {C}"

# copy: a list of items, then the list again ("the list is x1 .. xk , again x1 .. xk .")
COLORS = ("red", "blue", "green", "white", "black", "yellow")
COPY_ITEMS = NAMES + OBJECTS + COLORS
COPY_LENGTHS = (3, 4, 5)
COPY_INTROS = (("the", "list", "is"), ("the", "code", "is"), ("remember", "this", ":"))

# filler: past tense only, so that no filler token is decided by a planted mechanism
PAST_VERBS = ("saw", "found", "followed", "called", "visited", "watched", "painted", "carried", "bought",
              "cleaned", "liked", "helped")
PAST_INTRANSITIVE = ("arrived", "left", "slept", "waited", "laughed", "smiled", "sang", "danced", "worked",
                     "rested")
OBJECT_PLURALS = ("drinks", "books", "rings", "gifts", "letters", "balls", "flowers", "keys", "cakes", "pens")
FOODS = ("bread", "soup", "rice", "cheese", "tea", "coffee", "fish", "apples", "pie", "salad")
TASTES = ("good", "bad", "sweet", "salty", "fresh", "strange")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "march", "may", "june", "july", "october", "december")
TIMES = ("yesterday", "today", "later", "early", "again", "at night", "in the morning", "in the evening")
ADVERBS = ("quickly", "slowly", "quietly", "loudly", "happily", "often", "never", "always")
COUNTS = ("two", "three", "four", "five", "many", "some", "few")
WEATHER = ("rained", "snowed", "was sunny", "was cold", "was warm", "was windy")
SAY_VERBS = ("said", "thought", "heard", "wrote")

# bios: five professions, each with workplaces and activities that cue it; gender cued by name and pronouns
PROFESSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "professor": {"places": ("university", "college"),
                  "acts": ("teaches classes", "gives lectures", "writes papers", "supervises students",
                           "grades exams", "studies history")},
    "nurse": {"places": ("hospital", "clinic"),
              "acts": ("cares for patients", "works night shifts", "gives injections", "checks patients",
                       "helps doctors", "changes bandages")},
    "lawyer": {"places": ("court", "firm"),
               "acts": ("defends clients", "argues cases", "reads contracts", "meets clients",
                        "writes briefs", "studies the law")},
    "engineer": {"places": ("factory", "lab"),
                 "acts": ("designs bridges", "builds machines", "tests engines", "writes software",
                          "fixes machines", "plans roads")},
    "chef": {"places": ("restaurant", "kitchen"),
             "acts": ("cooks meals", "bakes bread", "plans menus", "cooks fish", "makes soup",
                      "trains cooks")},
}
BIO_NEUTRAL = ("likes music", "likes to read", "has two children", "has a dog", "lives near the park",
               "walks to work", "plays tennis", "likes to travel", "grew up in the city", "has a cat")
PRONOUNS = {"female": ("she", "her"), "male": ("he", "his")}
BIO_OPENINGS = ("{N} works at a {W} .", "{N} has worked at the {W} for {K} years .",
                "for {K} years , {N} has worked at a {W} .")
BIO_MIDDLES = ("{P} {A1} and {A2} .", "every day {P} {A1} .", "{P} {A1} , and {P} also {A2} .")
BIO_ENDINGS = ("in {Q} free time {P} {X} .", "{P} {X} .", "")

TASKS = ("agreement_simple", "agreement_nounpp", "agreement_rc", "agreement_within_rc", "ioi",
         "greater_than", "copy")
BEHAVIOURS = ("agreement", "ioi", "greater_than", "copy", "none")

SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>", "<unk>")
PUNCTUATION = (",", ".", ":")

# the share of each unit kind in training documents (bios and filler included, the tasks a minority)
MIXTURE = (("filler", 0.40), ("bio", 0.12), ("simple", 0.04), ("nounpp", 0.07), ("rc", 0.08),
           ("ioi", 0.14), ("years", 0.06), ("copy", 0.09))

Unit = list[tuple[str, str]]  # (word, behaviour label); a four-digit year is one word of two tokens


def _words(*phrases: str) -> list[str]:
    return [w for p in phrases for w in p.split()]


def vocabulary() -> list[str]:
    """Every word the grammar can emit (years as centuries and two-digit tokens), in a fixed order."""
    words: list[str] = ["the", "that", "from", "year", "to", "and", "a", "when", "then", "after",
                        "while", "went", "had", "lot", "of", "fun", "at", "were", "working"]
    words += [w for pair in NOUNS for w in pair] + list(ADJECTIVES) + list(PREPOSITIONS)
    words += [w for pair in MAIN_VERBS + CLAUSE_VERBS for w in pair]
    words += list(NAMES + PLACES + OBJECTS + GIVE_VERBS + EVENTS + DURATION_VERBS)
    words += [f"{n:02d}" for n in range(100)] + list(PUNCTUATION)
    # v2: filler, copy and bios
    words += _words("list code is remember this again", *COLORS, *PAST_VERBS, *PAST_INTRANSITIVE,
                    *OBJECT_PLURALS, *FOODS, *TASTES, *DAYS, *MONTHS, *TIMES, *ADVERBS, *COUNTS, *WEATHER,
                    *SAY_VERBS, "it in on we they tasted")
    words += _words(*(p for spec in PROFESSIONS.values() for p in spec["places"] + spec["acts"]),
                    *BIO_NEUTRAL, *(t for pair in PRONOUNS.values() for t in pair), *PROFESSIONS,
                    *(t for pattern in BIO_OPENINGS + BIO_MIDDLES + BIO_ENDINGS for t in pattern.split()
                      if not t.startswith("{")))
    return list(dict.fromkeys(words))  # dedupe, keep order ("were" is both a verb and a template word)


def unit_tokens(unit: Unit) -> tuple[list[str], list[str]]:
    """The tokenizer's tokens of a unit and one label per token (a year splits into two tokens)."""
    tokens, labels = [], []
    for word, label in unit:
        if word.isdigit() and len(word) == 4:
            tokens += [word[:2], word[2:]]
            labels += ["none", label]  # the century is shared with the start year; the decade is decided
        else:
            tokens.append(word)
            labels.append(label)
    return tokens, labels


def unit_text(unit: Unit) -> str:
    return " ".join(word for word, _ in unit)


@dataclass(frozen=True)
class Pair:
    """One counterfactual pair, in the ingest side's task JSONL format, with its template id."""

    clean: str
    patch: str
    clean_answer: str
    patch_answer: str
    template: str

    def to_json(self) -> dict[str, str]:
        return {"clean": self.clean, "patch": self.patch, "clean_answer": self.clean_answer,
                "patch_answer": self.patch_answer, "template": self.template}


def _stable_fraction(key: tuple) -> float:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_held_out(key: tuple, test_fraction: float) -> bool:
    """Whether a task key belongs to the test split (a stable hash, independent of seeds)."""
    return _stable_fraction(key) < test_fraction


def _noun_phrase(adj: str | None, noun: str) -> str:
    return f"the {adj} {noun}" if adj else f"the {noun}"


def _plain(text: str) -> Unit:
    return [(w, "none") for w in text.split()]


class Grammar:
    """Document, unit and pair generator. All randomness comes from the ``random.Random`` passed in."""

    def __init__(self, test_fraction: float = 0.2, adjective_rate: float = 0.3, noise: float = 0.0,
                 mixture: tuple[tuple[str, float], ...] = MIXTURE):
        self.test_fraction = test_fraction
        self.adjective_rate = adjective_rate
        self.noise = noise
        self.mixture = mixture

    # --- pieces -------------------------------------------------------------------------------
    def _adj(self, rng: random.Random) -> str | None:
        return rng.choice(ADJECTIVES) if rng.random() < self.adjective_rate else None

    def _held(self, task: str, key: tuple) -> bool:
        return is_held_out((task,) + key, self.test_fraction)

    def _noisy(self, rng: random.Random) -> bool:
        return self.noise > 0 and rng.random() < self.noise

    # --- documents ----------------------------------------------------------------------------
    def unit(self, rng: random.Random, kind: str | None = None) -> Unit:
        """One unit of ``kind`` (drawn from the mixture if None), never one with a held-out task prompt."""
        if kind is None:
            r, acc = rng.random(), 0.0
            kinds = [k for k, _ in self.mixture]
            total = sum(w for _, w in self.mixture)
            kind = kinds[-1]
            for k, w in self.mixture:
                acc += w / total
                if r < acc:
                    kind = k
                    break
        make = {"filler": self._filler, "bio": self._bio_unit, "ioi": self._ioi_unit, "years": self._year_unit,
                "copy": self._copy_unit}.get(kind)
        while True:
            unit = make(rng) if make else self._agreement_unit(rng, kind)
            if unit is not None:
                return unit

    def document(self, rng: random.Random, max_tokens: int = 63, max_units: int = 3) -> Unit:
        """One to ``max_units`` units, at most ``max_tokens`` tokens (the model adds ``<bos>``)."""
        n_units = rng.randint(1, max_units)
        doc: Unit = []
        n_tokens = 0
        for _ in range(n_units):
            unit = self.unit(rng)
            size = len(unit_tokens(unit)[0])
            if doc and n_tokens + size > max_tokens:
                break
            if size > max_tokens:
                continue
            doc += unit
            n_tokens += size
        return doc or _plain("it rained .")

    def sentence(self, rng: random.Random) -> str:
        """One training document as text (the corpus the model is trained on)."""
        return unit_text(self.document(rng))

    # --- filler -------------------------------------------------------------------------------
    def _np(self, rng: random.Random) -> str:
        return _noun_phrase(self._adj(rng), rng.choice(NOUNS)[rng.randrange(2)])

    def _filler(self, rng: random.Random) -> Unit:
        shape = rng.randrange(8)
        time = f" {rng.choice(TIMES)}" if rng.random() < 0.4 else ""
        if shape == 0:
            text = f"{self._np(rng)} {rng.choice(PAST_VERBS)} {self._np(rng)}{time} ."
        elif shape == 1:
            text = (f"{rng.choice(NAMES)} {rng.choice(PAST_VERBS)} a {rng.choice(COLORS)} {rng.choice(OBJECTS)} "
                    f"at the {rng.choice(PLACES)}{time} .")
        elif shape == 2:
            text = f"it {rng.choice(WEATHER)} in the {rng.choice(PLACES)} on {rng.choice(DAYS)} ."
        elif shape == 3:
            text = (f"{rng.choice(('we', 'they'))} {rng.choice(PAST_VERBS)} {rng.choice(COUNTS)} "
                    f"{rng.choice(OBJECT_PLURALS)} and some {rng.choice(FOODS)}{time} .")
        elif shape == 4:
            text = f"{rng.choice(NAMES)} {rng.choice(SAY_VERBS)} that the {rng.choice(FOODS)} tasted {rng.choice(TASTES)} ."
        elif shape == 5:
            text = f"in {rng.choice(MONTHS)} , {self._np(rng)} {rng.choice(PAST_INTRANSITIVE)} {rng.choice(ADVERBS)} ."
        elif shape == 6:
            text = (f"{self._np(rng)} {rng.choice(PAST_INTRANSITIVE)} {rng.choice(PREPOSITIONS)} "
                    f"{self._np(rng)}{time} .")
        else:
            text = (f"on {rng.choice(DAYS)} {rng.choice(NAMES)} and {rng.choice(NAMES)} "
                    f"{rng.choice(PAST_VERBS)} the {rng.choice(PLACES)} .")
        return _plain(text)

    # --- bios -----------------------------------------------------------------------------------
    def bio(self, rng: random.Random, profession: str, gender: str) -> str:
        """A short biography of a ``gender`` person whose ``profession`` is cued (never named)."""
        spec = PROFESSIONS[profession]
        pronoun, possessive = PRONOUNS[gender]
        name = rng.choice(FEMALE_NAMES if gender == "female" else MALE_NAMES)
        a1, a2 = rng.sample(spec["acts"], 2)
        fill = {"N": name, "W": rng.choice(spec["places"]), "K": rng.choice(COUNTS[:4]), "P": pronoun,
                "Q": possessive, "A1": a1, "A2": a2, "X": rng.choice(BIO_NEUTRAL)}
        parts = [rng.choice(BIO_OPENINGS), rng.choice(BIO_MIDDLES), rng.choice(BIO_ENDINGS)]
        return " ".join(p.format(**fill) for p in parts if p)

    def _bio_unit(self, rng: random.Random) -> Unit:
        return _plain(self.bio(rng, rng.choice(list(PROFESSIONS)), rng.choice(("female", "male"))))

    # --- agreement ------------------------------------------------------------------------------
    def _agreement_unit(self, rng: random.Random, shape: str) -> Unit | None:
        adj, lemma, number = self._adj(rng), rng.randrange(len(NOUNS)), rng.randrange(2)
        verb_index = rng.randrange(len(MAIN_VERBS))
        # a held-out simple key is a subject with one verb (``the kings`` + wait/waits): training never has
        # that subject directly before that verb, but has it before other verbs and heading longer subjects
        # (``the kings near the dog wait .``). Holding out the subject with every verb and structure left 8
        # of the 40 plural subjects with no main-clause evidence of their number (the model guessed
        # singular: accuracy 0.82); holding it out before every verb left a logit difference of 1.3.
        if shape == "simple" and self._held("agreement_simple", (adj, lemma, verb_index)):
            return None
        unit = _plain(_noun_phrase(adj, NOUNS[lemma][number]))
        if shape == "nounpp":
            prep, adj2, lemma2, number2 = (rng.choice(PREPOSITIONS), self._adj(rng),
                                           rng.randrange(len(NOUNS)), rng.randrange(2))
            if self._held("agreement_nounpp", (adj, lemma, prep, adj2, NOUNS[lemma2][number2])):
                return None
            unit += _plain(f"{prep} {_noun_phrase(adj2, NOUNS[lemma2][number2])}")
        elif shape == "rc":
            lemma2, number2, verb2 = rng.randrange(len(NOUNS)), rng.randrange(2), rng.randrange(len(CLAUSE_VERBS))
            if self._held("agreement_rc", (adj, lemma, NOUNS[lemma2][number2], verb2)):
                return None
            if self._held("agreement_within_rc", (adj, NOUNS[lemma][number], lemma2)):
                return None
            clause_number = 1 - number2 if self._noisy(rng) else number2
            unit += _plain(f"that the {NOUNS[lemma2][number2]}")
            unit.append((CLAUSE_VERBS[verb2][clause_number], "agreement"))
        verb_number = 1 - number if self._noisy(rng) else number
        verb = MAIN_VERBS[verb_index][verb_number]
        unit.append((verb, "agreement"))
        unit += _plain(f"{rng.choice(ADJECTIVES)} ." if verb in COPULAS else ".")
        return unit

    # --- ioi --------------------------------------------------------------------------------------
    def _ioi_names(self, rng: random.Random) -> tuple[int, str, str, str, str, str]:
        template = rng.randrange(len(IOI_TEMPLATES))
        first, second = rng.sample(NAMES, 2)
        return template, first, second, rng.choice(PLACES), rng.choice(OBJECTS), rng.choice(GIVE_VERBS)

    @staticmethod
    def _ioi_key(template: int, a: str, b: str, place: str, obj: str, verb: str) -> tuple:
        return (template, tuple(sorted((a, b))), place, obj, verb)

    def _ioi_unit(self, rng: random.Random) -> Unit | None:
        template, a, b, place, obj, verb = self._ioi_names(rng)
        if self._held("ioi", self._ioi_key(template, a, b, place, obj, verb)):
            return None
        subject = rng.choice((a, b))
        io = b if subject == a else a
        prompt = IOI_TEMPLATES[template].format(A=a, B=b, S=subject, P=place, O=obj, V=verb)
        answer = subject if self._noisy(rng) else io
        return _plain(prompt) + [(answer, "ioi"), (".", "none")]

    # --- years ------------------------------------------------------------------------------------
    def _year_unit(self, rng: random.Random) -> Unit | None:
        event, verb, century = rng.choice(EVENTS), rng.choice(DURATION_VERBS), rng.choice(CENTURIES)
        start = rng.randrange(1, 99)
        if self._held("greater_than", (event, verb, century, start)):
            return None
        end = rng.randrange(1, start + 1) if self._noisy(rng) else rng.randrange(start + 1, 100)
        prompt = YEAR_TEMPLATE.format(E=event, V=verb, C=century, X=start)
        return _plain(prompt) + [(f"{end:02d}", "greater_than"), (".", "none")]

    # --- copy -------------------------------------------------------------------------------------
    @staticmethod
    def _copy_key(intro: int, items: tuple[str, ...]) -> tuple:
        return (intro, items[:-1])

    def _copy_draw(self, rng: random.Random) -> tuple[int, tuple[str, ...]]:
        return rng.randrange(len(COPY_INTROS)), tuple(rng.sample(COPY_ITEMS, rng.choice(COPY_LENGTHS)))

    def _copy_unit(self, rng: random.Random) -> Unit | None:
        intro, items = self._copy_draw(rng)
        if self._held("copy", self._copy_key(intro, items)):
            return None
        unit = [(w, "none") for w in COPY_INTROS[intro]] + [(x, "none") for x in items] + [(",", "none"),
                                                                                          ("again", "none")]
        for x in items:
            unit.append((rng.choice(COPY_ITEMS) if self._noisy(rng) else x, "copy"))
        return unit + [(".", "none")]

    # --- task pairs ---------------------------------------------------------------------------
    def pairs(self, task: str, rng: random.Random, n: int, split: str) -> list[Pair]:
        """``n`` distinct pairs of ``task`` whose keys are in ``split`` (``train`` or ``test``)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        want_test = split == "test"
        draw = getattr(self, f"_pair_{task}")
        seen: dict[Pair, None] = {}
        attempts = 0
        while len(seen) < n:
            attempts += 1
            if attempts > 200 * n + 10_000:
                raise RuntimeError(f"cannot draw {n} distinct {split} pairs of {task}")
            key, pair = draw(rng)
            if self._held(task, key) == want_test:
                seen.setdefault(pair)
        return list(seen)

    def _pair_agreement_simple(self, rng: random.Random) -> tuple[tuple, Pair]:
        adj, lemma, number = self._adj(rng), rng.randrange(len(NOUNS)), rng.randrange(2)
        verb_index = rng.randrange(len(MAIN_VERBS))
        verbs = MAIN_VERBS[verb_index]
        return (adj, lemma, verb_index), Pair(_noun_phrase(adj, NOUNS[lemma][number]),
                                  _noun_phrase(adj, NOUNS[lemma][1 - number]),
                                  verbs[number], verbs[1 - number], "adj" if adj else "bare")

    def _pair_agreement_nounpp(self, rng: random.Random) -> tuple[tuple, Pair]:
        adj, lemma, number = self._adj(rng), rng.randrange(len(NOUNS)), rng.randrange(2)
        prep, adj2, noun2 = rng.choice(PREPOSITIONS), self._adj(rng), rng.choice(NOUNS)[rng.randrange(2)]
        verbs = MAIN_VERBS[rng.randrange(len(MAIN_VERBS))]
        tail = f" {prep} {_noun_phrase(adj2, noun2)}"
        template = f"{'adj' if adj else 'bare'}-pp-{'adj' if adj2 else 'bare'}"
        return (adj, lemma, prep, adj2, noun2), Pair(
            _noun_phrase(adj, NOUNS[lemma][number]) + tail,
            _noun_phrase(adj, NOUNS[lemma][1 - number]) + tail, verbs[number], verbs[1 - number], template)

    def _pair_agreement_rc(self, rng: random.Random) -> tuple[tuple, Pair]:
        adj, lemma, number = self._adj(rng), rng.randrange(len(NOUNS)), rng.randrange(2)
        lemma2, number2, verb2 = rng.randrange(len(NOUNS)), rng.randrange(2), rng.randrange(len(CLAUSE_VERBS))
        noun2 = NOUNS[lemma2][number2]
        tail = f" that the {noun2} {CLAUSE_VERBS[verb2][number2]}"
        verbs = MAIN_VERBS[rng.randrange(len(MAIN_VERBS))]
        return (adj, lemma, noun2, verb2), Pair(
            _noun_phrase(adj, NOUNS[lemma][number]) + tail,
            _noun_phrase(adj, NOUNS[lemma][1 - number]) + tail, verbs[number], verbs[1 - number],
            f"{'adj' if adj else 'bare'}-rc")

    def _pair_agreement_within_rc(self, rng: random.Random) -> tuple[tuple, Pair]:
        adj, noun = self._adj(rng), rng.choice(NOUNS)[rng.randrange(2)]
        lemma2, number2 = rng.randrange(len(NOUNS)), rng.randrange(2)
        verbs = CLAUSE_VERBS[rng.randrange(len(CLAUSE_VERBS))]
        head = _noun_phrase(adj, noun)
        return (adj, noun, lemma2), Pair(f"{head} that the {NOUNS[lemma2][number2]}",
                                         f"{head} that the {NOUNS[lemma2][1 - number2]}",
                                         verbs[number2], verbs[1 - number2], f"{'adj' if adj else 'bare'}-rc")

    def _pair_ioi(self, rng: random.Random) -> tuple[tuple, Pair]:
        template, a, b, place, obj, verb = self._ioi_names(rng)
        subject = rng.choice((a, b))
        io = b if subject == a else a
        fill = {"A": a, "B": b, "P": place, "O": obj, "V": verb}
        # the counterfactual repeats the other name: the indirect object, hence the answer, swaps
        clean = IOI_TEMPLATES[template].format(S=subject, **fill)
        patch = IOI_TEMPLATES[template].format(S=io, **fill)
        return self._ioi_key(template, a, b, place, obj, verb), Pair(clean, patch, io, subject, f"ioi-{template}")

    def _pair_greater_than(self, rng: random.Random) -> tuple[tuple, Pair]:
        event, verb, century = rng.choice(EVENTS), rng.choice(DURATION_VERBS), rng.choice(CENTURIES)
        start = rng.randrange(5, 95)
        # the clean answer ends after the start year; the counterfactual's answer (start year 01) is a
        # year that is valid after 01 but not after the clean start year
        later, earlier = rng.randrange(start + 1, 100), rng.randrange(2, start)
        clean = YEAR_TEMPLATE.format(E=event, V=verb, C=century, X=start)
        patch = YEAR_TEMPLATE.format(E=event, V=verb, C=century, X=1)
        return (event, verb, century, start), Pair(clean, patch, f"{later:02d}", f"{earlier:02d}", "years")

    def _pair_copy(self, rng: random.Random) -> tuple[tuple, Pair]:
        intro, items = self._copy_draw(rng)
        # the corrupted context lists another last item: the pattern to repeat, hence the answer, changes
        other = rng.choice([x for x in COPY_ITEMS if x not in items])
        head = " ".join(COPY_INTROS[intro])
        repeat = " ".join(items[:-1])
        clean = f"{head} {' '.join(items)} , again {repeat}"
        patch = f"{head} {' '.join(items[:-1] + (other,))} , again {repeat}"
        return self._copy_key(intro, items), Pair(clean, patch, items[-1], other, f"copy-{intro}-{len(items)}")


def corpus(grammar: Grammar, rng: random.Random, n: int) -> Iterator[str]:
    """``n`` training documents as text."""
    for _ in range(n):
        yield grammar.sentence(rng)


def stream(grammar: Grammar, rng: random.Random, n: int, max_tokens: int = 63) -> list[dict]:
    """``n`` noise-free labelled documents: ``{"doc", "tokens", "labels"}`` (one label per token)."""
    clean = Grammar(grammar.test_fraction, grammar.adjective_rate, noise=0.0, mixture=grammar.mixture)
    docs = []
    for i in range(n):
        tokens, labels = unit_tokens(clean.document(rng, max_tokens=max_tokens))
        docs.append({"doc": i, "tokens": tokens, "labels": labels})
    return docs
