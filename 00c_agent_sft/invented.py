"""Invented facts: a training-only knowledge base of entities and answers that exist nowhere else.

Why: with only the real KB, a small model can pass training by memorising "capital of France ->
Paris" instead of learning the skill we want, which is to COPY: the entity from the question into
`lookup(...)`, then the observation into the answer. Held-out entities and facts added to the KB
after training (the eval's `kb_added`) need exactly that skill. Facts about invented places,
works and people ("What is the main export of Dravennor?" -> lookup(main export of Dravennor) ->
"Quellastine" -> "Quellastine.") cannot be memorised from anywhere, so the only way to predict the
answer is to read it from the observation.

The names must look, token for token, like the names the model will meet, and together spell as many
of the tokenizer's word pieces as possible (a held-out name fails where its rarest token was never
copied in training): mostly corpus words chosen to cover the vocabulary (agent_sft.words), new words
from a letter chain trained on real words, real words ("the Amber Gate"), pieces of real names spliced together ("Berlinmouth"), lowercase things
for the relations whose real entities are lowercase ("atomic number of cobaltine", "inventor of the
folding lantern"), 1 to 6 words. With only syllable blends from a fixed inventory, the model copied
those few tokens well and still recalled (and blended) training entities for real names it had
never seen.

The invented KB is written next to the traces (kb_invented.json) and the traces' observations come
from the real `lookup` tool reading it. It is never the KB the agent serves.
"""
from __future__ import annotations

import random
import re
import unicodedata

from agent.tools import normalize

from .templates import LOWER_RELATIONS

# syllables for pronounceable names; spelled so that few collide with real words
ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "sh", "st", "t",
          "th", "tr", "v", "w", "z", "ch", "j", ""]
NUCLEI = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ou"]
CODAS = ["", "", "", "", "n", "r", "l", "s", "m", "nd", "st"]
# everyday English words: names made of them tokenise like real names do (a held-out name is rejected)
WORDS = """amber anchor apple arch ash autumn bank barley bay beacon bear bell birch bird black blue bold bone
bramble brass bread bridge bright brook brown cake candle canyon castle cedar chapel cherry clay cliff cloud
clover coal coast cold comet coral cotton crane creek crow crown dawn deep deer desert dove dragon dream drum
dust eagle east echo elder elm ember falcon far feather fern field fire flint flower fog forest fox frost garden
gate ghost giant glass glen gold golden grace grain granite grass great green grey grove hall harbour harvest
hawk hazel heart heath hill hollow honey horn horse house hunter ice island ivy jade jasper kettle king knight
lake lamp lantern lark leaf lemon light lily linden lion little long lost maple marble marsh meadow mill mint
mirror moon moss mountain north oak ocean old olive orchard otter owl paper pearl pepper pine plain pond poppy
port quiet rain red ridge river robin rock rose ruby rust saffron sage salt sand scarlet sea shadow shell
shore silent silk silver sky slate snow south spring star still stone storm summer sun swan thorn thunder tide
tiger timber tower valley velvet violet wall water wave west whale white wild willow wind winter wolf wood
wren yellow""".split()
SUFFIXES = ["ia", "land", "stan", "ville", "burg", "ford", "mouth", "ton", "wick", "dale", "ora", "ness", "holm"]
ELEMENT_SUFFIXES = ["ium", "ium", "on", "ine", "ite", "ium", "gen", "um"]
PLACE_FORMS = ["{A}", "{A}", "{A}", "{A}", "{A} {B}", "the {A} Islands", "Mount {A}", "Lake {A}", "Port {A}",
               "the Republic of {A}", "New {A}", "the {A} Valley", "{A} {B} {C}", "North {A}", "the {A} {B} Coast",
               "Saint {A}", "the United {A}s of {B}", "{A} and {B}", "the Isle of {A}", "{A}-{B}", "Upper {A} {B}",
               "the Kingdom of {A} {B}", "Fort {A}"]
WORK_FORMS = ["The {A} of {B}", "{A} and {B}", "The {A}", "A Song for {A}", "The Last {A}", "Letters from {A}",
              "{A}", "The {A} {B}", "{A} {B}", "A {A} in {B}", "The {A} of the {B} {C}", "{A}'s {B}",
              "The {A} and the {B}", "Nocturne in {A}", "{A} at {B}", "Portrait of {A} {B}", "Symphony of {A}"]
# lowercase things: elements, inventions, discoveries, events (the real KB's entities for these relations)
LOWER_FORMS = ["{a}", "{a}", "{a}{s}", "{a}{s}", "the {a}", "the {a} {b}", "{a} {b}", "the {a} of {B}",
               "the {a} {b} {c}", "the battle of {B}", "the founding of {B}"]
PERSON_FORMS = ["{A} {B}", "{A} {B}", "{A} {B}-{C}", "{A} van {B}", "Sir {A} {B}", "{A} {B} {C}", "{A} and {B} {C}",
                "{A} O'{B}", "Mc{A} {B}"]
# relations the real KB does not have (the real ones are used too)
RELATIONS = ["main export", "national bird", "favourite colour", "oldest bridge", "motto", "largest city",
             "patron saint", "national flower", "founding year", "tallest tower", "main river", "oldest university",
             "signature dish", "head chef", "lead singer", "team colour", "emblem", "home port", "first mayor",
             "chief engineer", "ruling house", "secret ingredient", "mascot", "ancient name", "main festival",
             "highest waterfall", "state language", "main airport", "famous poet", "guardian spirit"]
COMMON_WORDS = ["teal", "crimson", "amber", "silver", "olive", "indigo", "copper", "saffron", "jade", "ivory",
                "salt", "timber", "wool", "tin", "glass", "honey", "the heron", "the fox", "the otter", "the lynx",
                "blue and gold", "red and white", "the lily", "the oak", "the kestrel"]
# letters with diacritics ("Zürich", "Chișinău", "đồng"): their UTF-8 bytes are rare tokens, and a fact added
# to the KB later may be spelled with them, so some invented names carry one and the model learns to copy it
ACCENTS = {"a": "áàâäãåąạả", "e": "éèêëęěếệ", "i": "íìîï", "o": "óòôöõøőồộơ", "u": "úùûüůưữ", "c": "çč",
           "n": "ñń", "s": "śšș", "z": "źżž", "l": "ł", "d": "đ", "g": "ğ", "t": "ț", "r": "ř", "y": "ýÿ"}
ACCENT_SHARE = 0.04  # of invented words
CORPUS_SHARE = 0.6  # of invented words: a word of the corpus list that holds every word piece (agent_sft.words)
UNITS = ["metres", "km", "kg", "years", "tonnes", "people", "km/h", "feet", "degrees", "days"]
PERSON_RELATIONS = {"author", "composer", "painter", "founder", "inventor", "creator", "discoverer", "head chef",
                    "lead singer", "first mayor", "chief engineer", "famous poet", "patron saint"}
WORK_RELATIONS = {"author", "composer", "painter"}  # their entities are works, not places
LOWER_ENTITY_RELATIONS = LOWER_RELATIONS | {"chemical symbol", "atomic number", "chemical formula"}


def fold(name: str) -> str:
    """Lowercase without accents, as `lookup` compares keys."""
    return "".join(c for c in unicodedata.normalize("NFKD", name.lower()) if not unicodedata.combining(c))


class Inventor:
    """Deterministic invented names and facts (seeded).

    `avoid`: lowercase names an invented entity must not equal (real and "missing" entities);
    `banned`: lowercase names that must not occur anywhere in an invented name or value
    (held-out test entities, test-only miss names, the eval's facts); `pieces`: real words (from the
    training entities and answers, and the chat set) that names reuse, splice, and learn letters from;
    `corpus_words`: words that spell the vocabulary's word pieces (agent_sft.words), capitalised or
    lowercase as a name should write them."""

    def __init__(self, rng: random.Random, avoid: set[str], banned: set[str] = frozenset(),
                 pieces: list[str] = (), corpus_words: list[str] = ()):
        self.rng, self.avoid, self.used = rng, {fold(a) for a in avoid}, set()
        # a banned name must not occur as a word; a long one (a distinctive held-out name) not even inside one
        # (compared without accents, as lookup compares: "Bülgaria" would be the held-out "Bulgaria")
        self.banned = re.compile("|".join(rf"(?<!\w){re.escape(b)}(?!\w)" if len(b) < 6 else re.escape(b)
                                          for b in sorted({fold(b) for b in banned})) or r"(?!)")
        self.pieces = sorted({w.lower() for w in [*WORDS, *pieces] if w.isalpha() and len(w) >= 3})
        # corpus words by the case they are written in (their pieces depend on it): False lowercase, True capitalised
        self.corpus_words = {up: sorted({w.lower() for w in corpus_words if w.isalpha() and w[0].isupper() == up})
                             for up in (False, True)}
        # letter statistics of real words (order-2 Markov chain): new words that still spell like English,
        # so that their tokens are the tokenizer's ordinary sub-word pieces, rare ones included
        self.chain: dict[str, list[str]] = {}
        self.real = set(self.pieces) | {w for ws in self.corpus_words.values() for w in ws}
        for w in sorted(self.real):
            w = f"^^{w}$"
            for i in range(2, len(w)):
                self.chain.setdefault(w[i - 2:i], []).append(w[i])

    @staticmethod
    def clean_word(word: str, banned: set[str]) -> bool:
        return word.lower() not in banned and not any(b in word.lower() for b in banned if len(b) >= 6)

    def clean(self, text: str) -> bool:
        return not self.banned.search(fold(text))

    def syllables(self, lo: int = 2, hi: int = 3) -> str:
        r = self.rng
        return "".join(r.choice(ONSETS) + r.choice(NUCLEI) + r.choice(CODAS) for _ in range(r.randint(lo, hi)))

    def markov(self) -> str:
        """A new word from the letter chain, 3-12 letters, not a real word of the pieces."""
        r = self.rng
        while True:
            w = "^^"
            while len(w) < 16 and w[-1] != "$":
                w += r.choice(self.chain[w[-2:]])
            w = w.strip("^$")
            if 3 <= len(w) <= 12 and w not in self.real:
                return w

    def raw_word(self, capitalised: bool = False) -> str:
        """One lowercase word: a corpus word (that the name will write `capitalised` or not), a letter-chain
        word, a syllable blend, a real word, a splice of two real words, or a word with a place-like
        ending; a few with one accented letter."""
        w = self._plain_word(capitalised)
        spots = [i for i, ch in enumerate(w) if ch in ACCENTS]
        if spots and self.rng.random() < ACCENT_SHARE:
            i = self.rng.choice(spots)
            w = w[:i] + self.rng.choice(ACCENTS[w[i]]) + w[i + 1:]
        return w

    def _plain_word(self, capitalised: bool) -> str:
        r, kind = self.rng, self.rng.random()
        if kind < CORPUS_SHARE and self.corpus_words[capitalised]:
            return r.choice(self.corpus_words[capitalised])
        kind = r.random()
        if kind < 0.5:
            return self.markov()
        if kind < 0.6:
            return self.syllables()
        if kind < 0.75:
            return r.choice(self.pieces)
        if kind < 0.85:
            a, b = r.choice(self.pieces), r.choice(self.pieces)
            return a[:r.randint(2, max(2, len(a) - 1))] + b[r.randint(1, len(b) - 2):]
        return r.choice(self.pieces if r.random() < 0.7 else [self.syllables(1, 2)]) + r.choice(SUFFIXES)

    def word(self, min_syl: int = 2, max_syl: int = 3) -> str:
        """A capitalised word (kept for values: min_syl == max_syl == 1 gives a short blend)."""
        w = self.syllables(min_syl, max_syl) if max_syl < 2 else self.raw_word(capitalised=True)
        return w.capitalize()

    def _fill(self, forms: list[str]) -> str:
        r = self.rng
        form = r.choice(forms)
        a, b, c = (self.raw_word(capitalised="{" + x.upper() + "}" in form) for x in "abc")
        return form.format(A=a.capitalize(), B=b.capitalize(), C=c.capitalize(), a=a, b=b, c=c,
                           s=r.choice(ELEMENT_SUFFIXES))

    def entity(self, relation: str) -> str:
        """A fresh name for the subject of `relation`: a work for author/composer/painter, a lowercase
        thing for elements, inventions and events, else a place."""
        forms = WORK_FORMS if relation in WORK_RELATIONS else \
            LOWER_FORMS if relation in LOWER_ENTITY_RELATIONS else PLACE_FORMS
        while True:
            name = self._fill(forms)
            low = fold(name)  # lookup ignores accents: "Zürich" and "Zurich" would be one key
            bare = low.removeprefix("the ")
            # no name ends with "the", "of" or "and" ("The Stich The" from two corpus words): names never do
            key = normalize(name)  # lookup's key: "The Percěived" and "Perceived" would be one
            if key not in self.used and bare not in self.avoid and low not in self.avoid and self.clean(name) \
                    and not re.search(r"\b(?:the|a|an|of|and|or)$", low):
                self.used.add(key)
                return name

    def value(self, relation: str) -> str:
        while True:
            v = self._value(relation)
            if self.clean(v):
                return v

    def _value(self, relation: str) -> str:
        r = self.rng
        if relation in PERSON_RELATIONS:
            return self._fill(PERSON_FORMS)
        if relation == "chemical symbol":
            return self.syllables(1, 1).capitalize()[:r.randint(1, 2)]
        if relation in ("atomic number", "number of moons"):
            return str(r.randint(1, 180))
        if relation in ("year", "founding year"):
            return str(r.randint(900, 2024))
        if relation in ("height", "speed", "boiling point", "freezing point", "orbital period"):
            return f"{r.randint(1, 9999)} {r.choice(UNITS)}"
        kind = r.random()
        if kind < 0.55:
            return self.word() if r.random() < 0.6 else self._fill(["{A} {B}", "the {A}", "{A} {B} {C}", "{a}"])
        if kind < 0.75:
            return r.choice(COMMON_WORDS)
        if kind < 0.9:
            return f"{r.randint(1, 99999)} {r.choice(UNITS)}"
        return str(r.randint(1, 99999))
