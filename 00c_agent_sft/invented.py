"""Invented facts: a training-only knowledge base of entities and answers that exist nowhere else.

Why: with only the real KB, a small model can pass training by memorising "capital of France ->
Paris" instead of learning the skill we want, which is to COPY: the entity from the question into
`lookup(...)`, then the observation into the answer. Held-out entities and facts added to the KB
after training (the eval's `kb_added`) need exactly that skill. Facts about invented places,
works and people ("What is the main export of Dravennor?" -> lookup(main export of Dravennor) ->
"Quellastine" -> "Quellastine.") cannot be memorised from anywhere, so the only way to predict the
answer is to read it from the observation.

The invented KB is written next to the traces (kb_invented.json) and the traces' observations come
from the real `lookup` tool reading it. It is never the KB the agent serves.
"""
from __future__ import annotations

import random

# syllables for pronounceable names; spelled so that few collide with real words
ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "sh", "st", "t",
          "th", "tr", "v", "w", "z", "ch", "j", ""]
NUCLEI = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ou"]
CODAS = ["", "", "", "", "n", "r", "l", "s", "m", "nd", "st"]
PLACE_FORMS = ["{A}", "{A}", "{A}", "{A} {B}", "the {A} Islands", "Mount {A}", "Lake {A}", "Port {A}",
               "the Republic of {A}", "{A}ia", "New {A}", "the {A} Valley"]
WORK_FORMS = ["The {A} of {B}", "{A} and {B}", "The {A}", "A Song for {A}", "The Last {A}", "Letters from {A}"]
PERSON_FORMS = ["{A} {B}", "{A} {B}", "{A} {B}-{C}", "{A} van {B}", "Sir {A} {B}"]
# relations the real KB does not have (the real ones are used too)
RELATIONS = ["main export", "national bird", "favourite colour", "oldest bridge", "motto", "largest city",
             "patron saint", "national flower", "founding year", "tallest tower", "main river", "oldest university",
             "signature dish", "head chef", "lead singer", "team colour", "emblem", "home port", "first mayor",
             "chief engineer", "ruling house", "secret ingredient", "mascot", "ancient name", "main festival",
             "highest waterfall", "state language", "main airport", "famous poet", "guardian spirit"]
COMMON_WORDS = ["teal", "crimson", "amber", "silver", "olive", "indigo", "copper", "saffron", "jade", "ivory",
                "salt", "timber", "wool", "tin", "glass", "honey", "the heron", "the fox", "the otter", "the lynx",
                "blue and gold", "red and white", "the lily", "the oak", "the kestrel"]
UNITS = ["metres", "km", "kg", "years", "tonnes", "people", "km/h", "feet", "degrees", "days"]
PERSON_RELATIONS = {"author", "composer", "painter", "founder", "inventor", "creator", "discoverer", "head chef",
                    "lead singer", "first mayor", "chief engineer", "famous poet", "patron saint"}
WORK_RELATIONS = {"author", "composer", "painter"}  # their entities are works, not places


class Inventor:
    """Deterministic invented names and facts (seeded); `avoid` holds lowercase strings that must not
    occur in any invented entity (real KB entities, the eval's facts, the invented 'missing' names)."""

    def __init__(self, rng: random.Random, avoid: set[str]):
        self.rng, self.avoid, self.used = rng, avoid, set()

    def word(self, min_syl: int = 2, max_syl: int = 3) -> str:
        r = self.rng
        syl = [r.choice(ONSETS) + r.choice(NUCLEI) + r.choice(CODAS) for _ in range(r.randint(min_syl, max_syl))]
        return "".join(syl).capitalize()

    def _fill(self, forms: list[str]) -> str:
        return self.rng.choice(forms).format(A=self.word(), B=self.word(), C=self.word(1, 2))

    def entity(self, relation: str) -> str:
        """A fresh name for the subject of `relation` (a work for author/composer/painter, else a place)."""
        while True:
            name = self._fill(WORK_FORMS if relation in WORK_RELATIONS else PLACE_FORMS)
            low = name.lower()
            words = low.removeprefix("the ").split()
            if low not in self.used and " ".join(words) not in self.avoid and not any(w in self.avoid for w in words):
                self.used.add(low)
                return name

    def value(self, relation: str) -> str:
        r = self.rng
        if relation in PERSON_RELATIONS:
            return self._fill(PERSON_FORMS)
        if relation == "chemical symbol":
            return self.word(1, 1)[:r.randint(1, 2)]
        if relation in ("atomic number", "number of moons"):
            return str(r.randint(1, 180))
        if relation in ("year", "founding year"):
            return str(r.randint(900, 2024))
        if relation in ("height", "speed", "boiling point", "freezing point", "orbital period"):
            return f"{r.randint(1, 9999)} {r.choice(UNITS)}"
        kind = r.random()
        if kind < 0.55:
            return self.word() if r.random() < 0.7 else f"{self.word()} {self.word()}"
        if kind < 0.75:
            return r.choice(COMMON_WORDS)
        if kind < 0.9:
            return f"{r.randint(1, 99999)} {r.choice(UNITS)}"
        return str(r.randint(1, 99999))
