"""Phrasings and word lists for the generated tool-use traces (used by agent_sft.generate).

Everything the model must learn is a copy or a fixed rewrite, and as few copies as possible: the
question's numbers or entity are copied once, into the action (a lookup question is rewritten to
the KB key form "<relation> of <entity>"), and the observation is copied once, into the answer
right after it. Thoughts are fixed sentences per step kind and answers one template per outcome:
a 1M-parameter model trained for minutes on a CPU learns copying slowly, so every extra copy is a
chance to get a digit wrong (measured: restating the expression in the thought and the answer
cost accuracy).

A question template is a `frame` (the carrier sentence, `{X}` = a core phrase) around a `core`
(the part that names the operation or the fact). Some (frame, core) combinations and some
relation-specific questions are held out for the test split (chosen in generate.py).
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- fixed texts
THOUGHT_CALC = "I need to compute this."
THOUGHT_CALC_NEXT = "Now I can compute the result."
THOUGHT_LOOKUP = "I should look this up."
THOUGHT_LOOKUP_NEXT = "Now I should look up the next fact."
# a multi-step turn's first thought says what follows the first tool call: the operation is chosen right
# after the question, where its words are near, and the calc step copies it from the thought
THOUGHT_PLAN_PAIR = "I should look up both, then {step}."
THOUGHT_PLAN_LOOKUP = "I should look this up, then {step}."
THOUGHT_PLAN_CALC = "I need to compute this, then {step}."
PAIR_STEPS = {"+": "add them", "-": "subtract", "*": "multiply them", "/": "divide"}
NUMBER_STEPS = {"+": "add {n}", "-": "subtract {n}", "*": "multiply by {n}", "/": "divide by {n}",
                "-from": "subtract it from {n}"}
ANSWER_CALC = "The answer is {result}."
ANSWER_MULTI = "The answer is {result}."
# a fact is answered with the observation itself: "Paris" after <|observation|> and " Paris" after
# "is" are different tokens, so "The capital ... is Paris." would need a re-spelling, not a copy
ANSWER_LOOKUP = "{value}."
ANSWER_MISS = "Sorry, I don't know that."
ANSWER_ERRORS = {
    "error: division by zero": "You can't divide by zero.",
    "error: result too large": "That number is too large for me to compute.",
}

# ----------------------------------------------------------------------------- arithmetic
# frames for a noun phrase X ("12 plus 5"); the last ones are only ever used with some cores
NOUN_FRAMES = ["What is {X}?", "What's {X}?", "How much is {X}?", "Compute {X}.", "Calculate {X}.",
               "Please calculate {X}.", "Can you compute {X}?", "{X} = ?", "{X}?", "what is {X}",
               "Could you tell me what {X} is?", "Quick question: what is {X}?", "I'd like to know what {X} is."]
ALWAYS_TRAIN_FRAMES = {"What is {X}?", "What's {X}?"}  # the demo's phrasings stay in training
# (core phrase, expression) per operation; {a} {b} {c} are the operands as written
ARITH_CORES: dict[str, list[tuple[str, str]]] = {
    "add": [("{a} plus {b}", "{a} + {b}"), ("{a} + {b}", "{a} + {b}"), ("the sum of {a} and {b}", "{a} + {b}"),
            ("{a} added to {b}", "{b} + {a}")],
    "sub": [("{a} minus {b}", "{a} - {b}"), ("{a} - {b}", "{a} - {b}"),
            ("the difference between {a} and {b}", "{a} - {b}"), ("{b} subtracted from {a}", "{a} - {b}")],
    "mul": [("{a} times {b}", "{a} * {b}"), ("{a} * {b}", "{a} * {b}"), ("{a} multiplied by {b}", "{a} * {b}"),
            ("the product of {a} and {b}", "{a} * {b}"), ("{a} × {b}", "{a} * {b}")],
    "div": [("{a} divided by {b}", "{a} / {b}"), ("{a} / {b}", "{a} / {b}"), ("{a} ÷ {b}", "{a} / {b}"),
            ("the quotient of {a} and {b}", "{a} / {b}")],
    "pow": [("{a} to the power of {b}", "{a} ** {b}"), ("{a} ** {b}", "{a} ** {b}"), ("{a}^{b}", "{a} ** {b}"),
            ("{a} raised to the power of {b}", "{a} ** {b}")],
    "square": [("{a} squared", "{a} ** 2")],
    "cube": [("{a} cubed", "{a} ** 3")],
    "paren": [("({a} + {b}) * {c}", "({a} + {b}) * {c}"), ("({a} - {b}) * {c}", "({a} - {b}) * {c}"),
              ("the sum of {a} and {b} multiplied by {c}", "({a} + {b}) * {c}"),
              ("{a} times the sum of {b} and {c}", "{a} * ({b} + {c})"),
              ("{a} + {b} * {c}", "{a} + {b} * {c}"), ("({a} + {b}) / {c}", "({a} + {b}) / {c}"),
              ("{a} plus {b}, all times {c}", "({a} + {b}) * {c}")],
}
# imperative sentences, used as whole templates
ARITH_IMPERATIVES: dict[str, list[tuple[str, str]]] = {
    "add": [("Add {a} and {b}.", "{a} + {b}"), ("Please add {a} and {b}.", "{a} + {b}"),
            ("Add {a} to {b}.", "{b} + {a}")],
    "sub": [("Subtract {b} from {a}.", "{a} - {b}"), ("Please subtract {b} from {a}.", "{a} - {b}"),
            ("Take {b} away from {a}.", "{a} - {b}")],
    "mul": [("Multiply {a} by {b}.", "{a} * {b}"), ("Please multiply {a} by {b}.", "{a} * {b}"),
            ("Multiply {a} and {b}.", "{a} * {b}")],
    "div": [("Divide {a} by {b}.", "{a} / {b}"), ("Please divide {a} by {b}.", "{a} / {b}")],
    "pow": [("Raise {a} to the power of {b}.", "{a} ** {b}")],
    "square": [("Square {a}.", "{a} ** 2")],
    "cube": [("Cube {a}.", "{a} ** 3")],
    # no "then" here: a question that says "then" is a calc chain (two steps, below); with both kinds the
    # model mixed them ("Add 4 and 81, then multiply the result by 1." -> calc((4 + 81) * 1), calc(85 + 81))
    "paren": [("Multiply the sum of {a} and {b} by {c}.", "({a} + {b}) * {c}")],
}
# two calc steps: (question, first expression, second expression with {r} = first result)
CALC_CHAINS = [
    ("Add {a} and {b}, then multiply the result by {c}.", "{a} + {b}", "{r} * {c}"),
    ("Multiply {a} by {b}, then add {c}.", "{a} * {b}", "{r} + {c}"),
    ("Subtract {b} from {a}, then divide the result by {c}.", "{a} - {b}", "{r} / {c}"),
    ("What is {a} plus {b}? Then multiply that by {c}.", "{a} + {b}", "{r} * {c}"),
    ("First compute {a} times {b}, then subtract {c} from the result.", "{a} * {b}", "{r} - {c}"),
    ("Take {a} minus {b} and then multiply it by {c}.", "{a} - {b}", "{r} * {c}"),
    ("What is {a} times {b}? Then add {c} to that.", "{a} * {b}", "{r} + {c}"),
    ("What is {a} minus {b}? Then divide that by {c}.", "{a} - {b}", "{r} / {c}"),
    ("Multiply {a} by {b}, then subtract {c}.", "{a} * {b}", "{r} - {c}"),
    ("Subtract {b} from {a}, then multiply the result by {c}.", "{a} - {b}", "{r} * {c}"),
    ("Add {a} and {b}, then multiply by {c}.", "{a} + {b}", "{r} * {c}"),
]
# a follow-up asks for an operation on the last answer, "that": the arithmetic cores and imperatives of
# these operations with "that" for an operand (`{r}` in the expression, the last result), in these frames;
# with only two phrasings per operation the held-out "What is that times 12?" became calc(1441 + 12),
# the operation of the training phrasing that starts the same way ("And what is that plus {k}?")
FOLLOW_OPS = ("add", "sub", "mul", "div")
FOLLOW_FRAMES = ["What is {X}?", "What's {X}?", "And what is {X}?", "How much is {X}?"]

# ----------------------------------------------------------------------------- lookups
# frames around a noun phrase "the capital of France"; the key is the phrase without "the "
FACT_FRAMES = ["What is {X}?", "What's {X}?", "Tell me {X}.", "Do you know {X}?", "Could you tell me {X}?",
               "I'd like to know {X}.", "Please look up {X}.", "{X}?", "what is {X}", "Quick question: what is {X}?"]
# relation-specific questions: (question, key) with {E} = entity as written, {R} = relation
RELATION_QUESTIONS: dict[str, list[tuple[str, str]]] = {
    "capital": [("Which city is the capital of {E}?", "capital of {E}"), ("Tell me {E}'s capital.", "capital of {E}"),
                ("What is {E}'s capital?", "capital of {E}"), ("What's the capital city of {E}?", "capital of {E}"),
                ("Name the capital of {E}.", "capital of {E}"), ("What city is the capital of {E}?", "capital of {E}")],
    "author": [("Who wrote {E}?", "author of {E}"), ("Who is the author of {E}?", "author of {E}"),
               ("Who was {E} written by?", "author of {E}"), ("Tell me who wrote {E}.", "author of {E}"),
               ("Who's the author of {E}?", "author of {E}")],
    "chemical symbol": [("What is the chemical symbol for {E}?", "chemical symbol of {E}"),
                        ("What's the symbol for {E}?", "chemical symbol of {E}"),
                        ("Which chemical symbol does {E} have?", "chemical symbol of {E}"),
                        ("What is {E}'s chemical symbol?", "chemical symbol of {E}"),
                        ("What's the element symbol for {E}?", "chemical symbol of {E}")],
    "atomic number": [("What's {E}'s atomic number?", "atomic number of {E}"),
                      ("What atomic number does {E} have?", "atomic number of {E}"),
                      ("What is {E}'s atomic number?", "atomic number of {E}"),
                      ("How many protons does {E} have?", "atomic number of {E}")],
    "currency": [("What currency does {E} use?", "currency of {E}"), ("What money is used in {E}?", "currency of {E}"),
                 ("Which currency is used in {E}?", "currency of {E}")],
    "official language": [("What language is spoken in {E}?", "official language of {E}"),
                          ("Which language do they speak in {E}?", "official language of {E}"),
                          ("What language do people speak in {E}?", "official language of {E}")],
    "composer": [("Who composed {E}?", "composer of {E}"), ("Who is the composer of {E}?", "composer of {E}"),
                 ("Who wrote the music for {E}?", "composer of {E}"), ("Tell me who composed {E}.", "composer of {E}"),
                 ("Do you know who composed {E}?", "composer of {E}")],
    "painter": [("Who painted {E}?", "painter of {E}"), ("Who is the painter of {E}?", "painter of {E}"),
                ("Who made the painting {E}?", "painter of {E}"), ("Tell me who painted {E}.", "painter of {E}"),
                ("Do you know who painted {E}?", "painter of {E}")],
    "continent": [("Which continent is {E} in?", "continent of {E}"),
                  ("On which continent is {E}?", "continent of {E}"),
                  ("What continent is {E} on?", "continent of {E}")],
    "founder": [("Who founded {E}?", "founder of {E}"), ("Who is the founder of {E}?", "founder of {E}"),
                ("Who started {E}?", "founder of {E}"), ("Tell me who founded {E}.", "founder of {E}"),
                ("Do you know who founded {E}?", "founder of {E}")],
    "inventor": [("Who invented {E}?", "inventor of {E}"), ("Who is the inventor of {E}?", "inventor of {E}"),
                 ("Tell me who invented {E}.", "inventor of {E}"), ("Do you know who invented {E}?", "inventor of {E}")],
    "discoverer": [("Who discovered {E}?", "discoverer of {E}"), ("Who is the discoverer of {E}?", "discoverer of {E}"),
                   ("Tell me who discovered {E}.", "discoverer of {E}"),
                   ("Do you know who discovered {E}?", "discoverer of {E}")],
    "creator": [("Who created {E}?", "creator of {E}"), ("Who is the creator of {E}?", "creator of {E}"),
                ("Tell me who created {E}.", "creator of {E}"), ("Do you know who created {E}?", "creator of {E}")],
    "height": [("How tall is {E}?", "height of {E}"), ("How high is {E}?", "height of {E}")],
    "year": [("What year was {E}?", "year of {E}"), ("In which year was {E}?", "year of {E}"),
             ("When was {E}?", "year of {E}")],
    "chemical formula": [("What's the formula for {E}?", "chemical formula of {E}"),
                         ("What is the chemical formula for {E}?", "chemical formula of {E}"),
                         ("Which chemical formula does {E} have?", "chemical formula of {E}")],
    "speed": [("How fast is {E}?", "speed of {E}")],
    "number of moons": [("How many moons does {E} have?", "number of moons of {E}"),
                        ("How many moons has {E} got?", "number of moons of {E}"),
                        ("What number of moons does {E} have?", "number of moons of {E}")],
}
# superlatives read "the longest river in Africa": the key keeps "in" (lookup reads it as "of")
IN_RELATIONS = {"longest river", "highest mountain", "largest country", "largest lake", "largest planet",
                "smallest planet", "hottest planet", "largest ocean", "smallest country", "deepest lake",
                "largest moon"}

# entity spellings that plain title-casing gets wrong
DISPLAY = {
    "united kingdom": "the United Kingdom", "united states": "the United States", "netherlands": "the Netherlands",
    "philippines": "the Philippines", "czech republic": "the Czech Republic", "maldives": "the Maldives",
    "united arab emirates": "the United Arab Emirates", "dominican republic": "the Dominican Republic",
    "usa": "the USA", "uk": "the UK", "us": "the US", "united states of america": "the United States of America",
    "world": "the world", "k2": "K2", "c": "C", "x-rays": "X-rays", "mcdonald's": "McDonald's",
    "the c programming language": "the C programming language", "canon in d": "Canon in D",
    "impression, sunrise": "Impression, Sunrise", "1984": "1984", "the solar system": "the solar system",
    "the world": "the world", "south africa": "South Africa",
}
# lower-case entity kinds (elements, inventions, events, ...): these words are still capitalised
PROPER_WORDS = {"berlin", "wall", "world", "war", "i", "ii", "french", "revolution", "bastille", "magna", "carta",
                "hastings", "constantinople", "columbus's", "americas", "titanic", "soviet", "union", "chernobyl",
                "united", "nations", "john", "f.", "kennedy", "sputnik", "london", "waterloo", "versailles",
                "september", "declaration", "independence", "uranus", "pluto", "earth", "mars", "venus",
                "jupiter", "saturn", "python", "linux", "git", "java", "javascript", "sherlock", "holmes", "mickey",
                "mouse", "morse", "wide", "web", "rubik's", "light", "sound"}
LOWER_RELATIONS = {"chemical symbol", "atomic number", "chemical formula", "inventor", "discoverer", "year",
                   "speed", "boiling point", "freezing point", "creator"}
TITLE_THE_RELATIONS = {"author", "composer", "painter"}  # "The Great Gatsby" keeps its capital T
SMALL_WORDS = {"of", "and", "the", "a", "an", "in", "on", "with", "to", "off", "for", "de", "la", "van", "von", "at"}

# ----------------------------------------------------------------------------- multi-step
# two lookups of the same relation, then one calc: (question, relation, expression with {x} {y})
LOOKUP_PAIRS = [
    ("What is the sum of the atomic numbers of {E1} and {E2}?", "atomic number", "{x} + {y}"),
    ("Add the atomic numbers of {E1} and {E2}.", "atomic number", "{x} + {y}"),
    ("What do the atomic numbers of {E1} and {E2} add up to?", "atomic number", "{x} + {y}"),
    ("What is the atomic number of {E1} minus the atomic number of {E2}?", "atomic number", "{x} - {y}"),
    ("Multiply the atomic numbers of {E1} and {E2}.", "atomic number", "{x} * {y}"),
    ("What is the atomic number of {E1} plus the atomic number of {E2}?", "atomic number", "{x} + {y}"),
    ("What is the atomic number of {E1} times the atomic number of {E2}?", "atomic number", "{x} * {y}"),
    ("What is the product of the atomic numbers of {E1} and {E2}?", "atomic number", "{x} * {y}"),
    ("What is the difference between the atomic numbers of {E1} and {E2}?", "atomic number", "{x} - {y}"),
    ("What is the sum of the numbers of moons of {E1} and {E2}?", "number of moons", "{x} + {y}"),
    ("Add the numbers of moons of {E1} and {E2}.", "number of moons", "{x} + {y}"),
    ("How many moons do {E1} and {E2} have together?", "number of moons", "{x} + {y}"),
    ("How many moons do {E1} and {E2} have in total?", "number of moons", "{x} + {y}"),
    ("How many years passed between {E1} and {E2}?", "year", "{y} - {x}"),
    ("How many years were there between {E1} and {E2}?", "year", "{y} - {x}"),
    # more phrasings of the other operations: sums had 7 training phrasings, products 2, and a held-out
    # "X times Y" was read as a sum (the multi() builder also draws each operation equally often)
    ("What is the atomic number of {E1} multiplied by the atomic number of {E2}?", "atomic number", "{x} * {y}"),
    ("Subtract the atomic number of {E2} from the atomic number of {E1}.", "atomic number", "{x} - {y}"),
    ("What is the product of the numbers of moons of {E1} and {E2}?", "number of moons", "{x} * {y}"),
    ("Multiply the numbers of moons of {E1} and {E2}.", "number of moons", "{x} * {y}"),
    ("What is the number of moons of {E1} times the number of moons of {E2}?", "number of moons", "{x} * {y}"),
    ("What is the number of moons of {E1} minus the number of moons of {E2}?", "number of moons", "{x} - {y}"),
    ("What is the difference between the numbers of moons of {E1} and {E2}?", "number of moons", "{x} - {y}"),
]
# one lookup, then one calc with a number from the question
LOOKUP_CALCS = [
    ("What is the atomic number of {E} times {k}?", "atomic number", "{x} * {k}"),
    ("What is the atomic number of {E} plus {k}?", "atomic number", "{x} + {k}"),
    ("Multiply the atomic number of {E} by {k}.", "atomic number", "{x} * {k}"),
    ("Add {k} to the atomic number of {E}.", "atomic number", "{x} + {k}"),
    ("What is the atomic number of {E} minus {k}?", "atomic number", "{x} - {k}"),
    ("Subtract {k} from the atomic number of {E}.", "atomic number", "{x} - {k}"),
    ("What is the atomic number of {E} divided by {k}?", "atomic number", "{x} / {k}"),
    ("Divide the atomic number of {E} by {k}.", "atomic number", "{x} / {k}"),
    ("How many years before {k} was {E}?", "year", "{k} - {x}"),
    ("How many years after {E} was {k}?", "year", "{k} - {x}"),
    # more ways to say "x <op> k", and another relation: with few phrasings a model learns each one by
    # heart, and a held-out "the atomic number of {E} minus {k}" became lookup(atomic number of E - k)
    ("What is the atomic number of {E} multiplied by {k}?", "atomic number", "{x} * {k}"),
    ("What is {k} more than the atomic number of {E}?", "atomic number", "{x} + {k}"),
    ("What is {k} less than the atomic number of {E}?", "atomic number", "{x} - {k}"),
    ("Take the atomic number of {E} and subtract {k}.", "atomic number", "{x} - {k}"),
    ("Take the atomic number of {E} and add {k}.", "atomic number", "{x} + {k}"),
    ("What is the number of moons of {E} plus {k}?", "number of moons", "{x} + {k}"),
    ("What is the number of moons of {E} times {k}?", "number of moons", "{x} * {k}"),
    ("Subtract {k} from the number of moons of {E}.", "number of moons", "{x} - {k}"),
    ("Divide the number of moons of {E} by {k}.", "number of moons", "{x} / {k}"),
    ("What is the number of moons of {E} divided by {k}?", "number of moons", "{x} / {k}"),
]

# ----------------------------------------------------------------------------- misses (absent from the KB)
MISSING_COUNTRIES = ["Sri Lanka", "Bolivia", "Georgia", "Yemen", "Indonesia", "Israel", "Monaco", "Andorra",
                     "Liechtenstein", "San Marino", "the Bahamas", "Belize", "Barbados", "Samoa", "Tonga",
                     "Vanuatu", "Benin", "Burundi", "Lesotho", "Djibouti", "Suriname", "Guyana", "Taiwan",
                     "Palau", "Nauru", "Tuvalu", "Kiribati", "the Comoros", "the Seychelles", "Mauritius",
                     "the Gambia", "Eswatini", "South Sudan", "Trinidad and Tobago", "Timor-Leste", "Bermuda",
                     "Greenland", "Puerto Rico", "Cape Verde", "Grenada"]
MISSING_RELATIONS = ["population", "national animal", "area", "president", "national dish", "tallest building",
                     "oldest university", "national flower", "largest city", "main export", "prime minister",
                     "national sport", "average rainfall", "motto", "founding date", "time zone", "national bird",
                     "biggest airport", "most popular song", "highest waterfall"]
INVENTED_ENTITIES = ["Atlantis", "El Dorado", "Zorbia", "Quentaria", "the planet Zog", "Lake Mirrowen",
                     "Mount Brindle", "the Glimmer Sea", "Fort Halvard", "the Republic of Ostrava Nova",
                     "Vellmark", "Castle Dunmore", "the Island of Pell", "Nordhaven", "the Kelvani Empire",
                     "Sundale", "the Grey Mountains", "Port Ellery", "the Amberline River", "Tarnok"]
INVENTED_WORKS = ["The Silent Orchard", "A Winter in Velmora", "The Copper Lantern", "Songs of the Ninth Tide",
                  "The Glass Harbour", "Midnight at Ferrow Hall", "The Last Cartographer", "The Paper Kingdom",
                  "River of Small Lights", "The Clockmaker's Daughter of Ives", "The Hollow Crown of Merrin",
                  "Letters to Aldous Pike", "The Salt Road Chronicles", "A Garden Made of Rain"]
INVENTED_ELEMENTS = ["unobtainium", "zorbium", "vibranium", "adamantium", "kryptonite", "mithril", "orichalcum",
                     "tiberium", "phlebotinum", "dilithium"]
MISSING_MOONS = ["Jupiter", "Saturn", "Uranus", "Neptune", "Pluto"]

# ----------------------------------------------------------------------------- small talk (no tool)
SMALL_TALK: list[tuple[list[str], str]] = [
    (["Hello!", "Hi!", "Hi there!", "Hey!", "Good morning!", "Good evening!", "Hello there.", "hey",
      "Hiya!", "Greetings!", "Good afternoon!"], "Hello! How can I help you today?"),
    (["How are you today?", "How are you?", "How are you doing?", "How's it going?", "How are things?",
      "How are you feeling today?", "how are you", "Are you doing well?", "How have you been?"],
     "I'm doing well, thank you! How about you?"),
    (["Thank you!", "Thanks!", "Thanks a lot.", "Thank you very much.", "thanks", "Many thanks!",
      "Cheers, thanks!", "I appreciate it."], "You're welcome!"),
    (["Goodbye!", "Bye!", "See you later.", "bye", "Have a nice day!", "Good night!", "Talk to you later."],
     "Goodbye! Have a nice day."),
    (["Who are you?", "What is your name?", "What's your name?", "Tell me about yourself.", "Are you a robot?"],
     "I am Tiny, a small language model trained from scratch."),
    (["What can you do?", "How can you help me?", "What are you good at?", "What tools do you have?",
      "Can you help me?"],
     "I can do arithmetic with my calculator and look up facts in my knowledge base."),
    (["I'm good.", "I am fine, thanks.", "Pretty good!", "Not bad.", "I'm doing great."],
     "I'm glad to hear that!"),
    (["Nice to meet you!", "Pleased to meet you.", "Nice meeting you."], "Nice to meet you too!"),
]
# held out: only ever asked in the test split
SMALL_TALK_TEST: list[tuple[str, str]] = [
    ("Hello, friend!", "Hello! How can I help you today?"), ("Hey, good to see you!", "Hello! How can I help you today?"),
    ("Howdy!", "Hello! How can I help you today?"), ("How are you doing this evening?", "I'm doing well, thank you! How about you?"),
    ("How is your day going?", "I'm doing well, thank you! How about you?"), ("Thanks so much!", "You're welcome!"),
    ("Thank you, that was helpful.", "You're welcome!"), ("See you tomorrow!", "Goodbye! Have a nice day."),
    ("Bye for now!", "Goodbye! Have a nice day."), ("What do you do?", "I can do arithmetic with my calculator and look up facts in my knowledge base."),
    ("Good to meet you!", "Nice to meet you too!"), ("I'm feeling great today.", "I'm glad to hear that!"),
    ("Hello again!", "Hello! How can I help you today?"), ("Greetings, assistant!", "Hello! How can I help you today?"),
    ("How are you holding up?", "I'm doing well, thank you! How about you?"),
    ("How do you feel today?", "I'm doing well, thank you! How about you?"), ("Thanks a bunch!", "You're welcome!"),
    ("Thank you kindly.", "You're welcome!"), ("Farewell!", "Goodbye! Have a nice day."),
    ("Catch you later!", "Goodbye! Have a nice day."), ("Who am I talking to?", "I am Tiny, a small language model trained from scratch."),
    ("What kinds of things can you do?", "I can do arithmetic with my calculator and look up facts in my knowledge base."),
    ("Lovely to meet you!", "Nice to meet you too!"), ("I'm doing fine.", "I'm glad to hear that!"),
]
