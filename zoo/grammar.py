"""The toy zoo's grammar: a sentence generator whose distribution plants the paper's tasks.

Every sentence is lower-case words separated by single spaces (the tokenizer's canonical form), one of
five kinds:

* agreement, three shapes sharing one subject noun phrase ``the [adj] noun``: a bare subject
  (``the old parents are happy .``), across a prepositional phrase (``the parents near the dog run .``) and
  across an object relative clause (``the parents that the dog sees sleep .``); the main verb agrees with
  the subject, the clause's verb with the clause's subject;
* indirect-object identification (``when mary and john went to the store , john gave a drink to mary .``);
* years (``the war lasted from the year 1732 to the year 1789 .``), the end year always later, in the same
  century. Years are written as four digits and tokenised as a century and a two-digit token.

Six tasks read counterfactual pairs off the same generator (:data:`TASKS`). Each pair has a *key*: the
part of its clean prompt that the counterfactual keeps (for agreement, the subject's lemma instead of its
number; for ioi, the set of names instead of their order). A key is held out (test split) when a stable
hash of it falls in the test fraction; the training corpus never contains a sentence that starts with a
held-out prompt, clean or patch, so test figures measure generalisation, not recall.
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

TASKS = ("agreement_simple", "agreement_nounpp", "agreement_rc", "agreement_within_rc", "ioi",
         "greater_than")

SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>", "<unk>")
PUNCTUATION = (",", ".")


def vocabulary() -> list[str]:
    """Every word the grammar can emit (years as centuries and two-digit tokens), in a fixed order."""
    words: list[str] = ["the", "that", "from", "year", "to", "and", "a", "when", "then", "after",
                        "while", "went", "had", "lot", "of", "fun", "at", "were", "working"]
    words += [w for pair in NOUNS for w in pair] + list(ADJECTIVES) + list(PREPOSITIONS)
    words += [w for pair in MAIN_VERBS + CLAUSE_VERBS for w in pair]
    words += list(NAMES + PLACES + OBJECTS + GIVE_VERBS + EVENTS + DURATION_VERBS)
    words += [f"{n:02d}" for n in range(100)] + list(PUNCTUATION)
    return list(dict.fromkeys(words))  # dedupe, keep order ("were" is both a verb and a template word)


@dataclass(frozen=True)
class Pair:
    """One counterfactual pair, in the ingest side's task JSONL format."""

    clean: str
    patch: str
    clean_answer: str
    patch_answer: str

    def to_json(self) -> dict[str, str]:
        return {"clean": self.clean, "patch": self.patch, "clean_answer": self.clean_answer,
                "patch_answer": self.patch_answer}


def _stable_fraction(key: tuple) -> float:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_held_out(key: tuple, test_fraction: float) -> bool:
    """Whether a task key belongs to the test split (a stable hash, independent of seeds)."""
    return _stable_fraction(key) < test_fraction


def _noun_phrase(adj: str | None, noun: str) -> str:
    return f"the {adj} {noun}" if adj else f"the {noun}"


def _predicate(rng: random.Random, number: int) -> tuple[str, str]:
    """A main verb (agreeing with ``number``: 0 singular, 1 plural) and what follows it."""
    verb = MAIN_VERBS[rng.randrange(len(MAIN_VERBS))][number]
    tail = f" {rng.choice(ADJECTIVES)} ." if verb in COPULAS else " ."
    return verb, tail


class Grammar:
    """Sentence and pair generator. All randomness comes from the ``random.Random`` passed in."""

    def __init__(self, test_fraction: float = 0.2, adjective_rate: float = 0.3):
        self.test_fraction = test_fraction
        self.adjective_rate = adjective_rate

    # --- pieces -------------------------------------------------------------------------------
    def _adj(self, rng: random.Random) -> str | None:
        return rng.choice(ADJECTIVES) if rng.random() < self.adjective_rate else None

    def _held(self, task: str, key: tuple) -> bool:
        return is_held_out((task,) + key, self.test_fraction)

    # --- corpus sentences ---------------------------------------------------------------------
    def sentence(self, rng: random.Random) -> str:
        """One training sentence, never one that starts with a held-out task prompt."""
        while True:
            kind = rng.random()
            if kind < 0.12:
                text = self._agreement_sentence(rng, "simple")
            elif kind < 0.30:
                text = self._agreement_sentence(rng, "nounpp")
            elif kind < 0.50:
                text = self._agreement_sentence(rng, "rc")
            elif kind < 0.75:
                text = self._ioi_sentence(rng)
            else:
                text = self._year_sentence(rng)
            if text is not None:
                return text

    def _agreement_sentence(self, rng: random.Random, shape: str) -> str | None:
        adj, lemma, number = self._adj(rng), rng.randrange(len(NOUNS)), rng.randrange(2)
        if self._held("agreement_simple", (adj, lemma)):
            return None
        subject = _noun_phrase(adj, NOUNS[lemma][number])
        middle = ""
        if shape == "nounpp":
            prep, adj2, lemma2, number2 = (rng.choice(PREPOSITIONS), self._adj(rng),
                                           rng.randrange(len(NOUNS)), rng.randrange(2))
            if self._held("agreement_nounpp", (adj, lemma, prep, adj2, NOUNS[lemma2][number2])):
                return None
            middle = f" {prep} {_noun_phrase(adj2, NOUNS[lemma2][number2])}"
        elif shape == "rc":
            lemma2, number2, verb2 = rng.randrange(len(NOUNS)), rng.randrange(2), rng.randrange(len(CLAUSE_VERBS))
            if self._held("agreement_rc", (adj, lemma, NOUNS[lemma2][number2], verb2)):
                return None
            if self._held("agreement_within_rc", (adj, NOUNS[lemma][number], lemma2)):
                return None
            middle = f" that the {NOUNS[lemma2][number2]} {CLAUSE_VERBS[verb2][number2]}"
        verb, tail = _predicate(rng, number)
        return f"{subject}{middle} {verb}{tail}"

    def _ioi_names(self, rng: random.Random) -> tuple[int, str, str, str, str, str]:
        template = rng.randrange(len(IOI_TEMPLATES))
        first, second = rng.sample(NAMES, 2)
        return template, first, second, rng.choice(PLACES), rng.choice(OBJECTS), rng.choice(GIVE_VERBS)

    @staticmethod
    def _ioi_key(template: int, a: str, b: str, place: str, obj: str, verb: str) -> tuple:
        return (template, tuple(sorted((a, b))), place, obj, verb)

    def _ioi_sentence(self, rng: random.Random) -> str | None:
        template, a, b, place, obj, verb = self._ioi_names(rng)
        if self._held("ioi", self._ioi_key(template, a, b, place, obj, verb)):
            return None
        subject = rng.choice((a, b))
        io = b if subject == a else a
        prompt = IOI_TEMPLATES[template].format(A=a, B=b, S=subject, P=place, O=obj, V=verb)
        return f"{prompt} {io} ."

    def _year_sentence(self, rng: random.Random) -> str | None:
        event, verb, century = rng.choice(EVENTS), rng.choice(DURATION_VERBS), rng.choice(CENTURIES)
        start = rng.randrange(1, 99)
        if self._held("greater_than", (event, verb, century, start)):
            return None
        end = rng.randrange(start + 1, 100)
        prompt = YEAR_TEMPLATE.format(E=event, V=verb, C=century, X=start)
        return f"{prompt}{end:02d} ."

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
        verbs = MAIN_VERBS[rng.randrange(len(MAIN_VERBS))]
        return (adj, lemma), Pair(_noun_phrase(adj, NOUNS[lemma][number]),
                                  _noun_phrase(adj, NOUNS[lemma][1 - number]),
                                  verbs[number], verbs[1 - number])

    def _pair_agreement_nounpp(self, rng: random.Random) -> tuple[tuple, Pair]:
        adj, lemma, number = self._adj(rng), rng.randrange(len(NOUNS)), rng.randrange(2)
        prep, adj2, noun2 = rng.choice(PREPOSITIONS), self._adj(rng), rng.choice(NOUNS)[rng.randrange(2)]
        verbs = MAIN_VERBS[rng.randrange(len(MAIN_VERBS))]
        tail = f" {prep} {_noun_phrase(adj2, noun2)}"
        return (adj, lemma, prep, adj2, noun2), Pair(
            _noun_phrase(adj, NOUNS[lemma][number]) + tail,
            _noun_phrase(adj, NOUNS[lemma][1 - number]) + tail, verbs[number], verbs[1 - number])

    def _pair_agreement_rc(self, rng: random.Random) -> tuple[tuple, Pair]:
        adj, lemma, number = self._adj(rng), rng.randrange(len(NOUNS)), rng.randrange(2)
        lemma2, number2, verb2 = rng.randrange(len(NOUNS)), rng.randrange(2), rng.randrange(len(CLAUSE_VERBS))
        noun2 = NOUNS[lemma2][number2]
        tail = f" that the {noun2} {CLAUSE_VERBS[verb2][number2]}"
        verbs = MAIN_VERBS[rng.randrange(len(MAIN_VERBS))]
        return (adj, lemma, noun2, verb2), Pair(
            _noun_phrase(adj, NOUNS[lemma][number]) + tail,
            _noun_phrase(adj, NOUNS[lemma][1 - number]) + tail, verbs[number], verbs[1 - number])

    def _pair_agreement_within_rc(self, rng: random.Random) -> tuple[tuple, Pair]:
        adj, noun = self._adj(rng), rng.choice(NOUNS)[rng.randrange(2)]
        lemma2, number2 = rng.randrange(len(NOUNS)), rng.randrange(2)
        verbs = CLAUSE_VERBS[rng.randrange(len(CLAUSE_VERBS))]
        head = _noun_phrase(adj, noun)
        return (adj, noun, lemma2), Pair(f"{head} that the {NOUNS[lemma2][number2]}",
                                         f"{head} that the {NOUNS[lemma2][1 - number2]}",
                                         verbs[number2], verbs[1 - number2])

    def _pair_ioi(self, rng: random.Random) -> tuple[tuple, Pair]:
        template, a, b, place, obj, verb = self._ioi_names(rng)
        subject = rng.choice((a, b))
        io = b if subject == a else a
        fill = {"A": a, "B": b, "P": place, "O": obj, "V": verb}
        # the counterfactual repeats the other name: the indirect object, hence the answer, swaps
        clean = IOI_TEMPLATES[template].format(S=subject, **fill)
        patch = IOI_TEMPLATES[template].format(S=io, **fill)
        return self._ioi_key(template, a, b, place, obj, verb), Pair(clean, patch, io, subject)

    def _pair_greater_than(self, rng: random.Random) -> tuple[tuple, Pair]:
        event, verb, century = rng.choice(EVENTS), rng.choice(DURATION_VERBS), rng.choice(CENTURIES)
        start = rng.randrange(5, 95)
        # the clean answer ends after the start year; the counterfactual's answer (start year 01) is a
        # year that is valid after 01 but not after the clean start year
        later, earlier = rng.randrange(start + 1, 100), rng.randrange(2, start)
        clean = YEAR_TEMPLATE.format(E=event, V=verb, C=century, X=start)
        patch = YEAR_TEMPLATE.format(E=event, V=verb, C=century, X=1)
        return (event, verb, century, start), Pair(clean, patch, f"{later:02d}", f"{earlier:02d}")


def corpus(grammar: Grammar, rng: random.Random, n: int) -> Iterator[str]:
    """``n`` training sentences."""
    for _ in range(n):
        yield grammar.sentence(rng)
