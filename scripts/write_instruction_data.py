"""Write the project's own instruction-following data sets for ILA (circuitlab/ila/data/).

Three sets, each authored here from small tables and arithmetic (nothing is downloaded or
copied from a public data set), so every response is correct by construction:

- ``facts.jsonl``: concise factual answers. A short question ("What is 17 times 6?") answered
  with one short phrase ("102."). Categories: arithmetic, unit conversions, Roman numerals,
  letter counts, spelling, the alphabet, the calendar, shapes, number properties, rounding,
  number sequences, comparing decimals and fractions/percentages of a number. Categories the
  project's factual QA evaluation set covers (capitals, geography, history, science trivia,
  element symbols, plurals, past tenses, opposites) are left out, and no instruction may equal
  one of its questions.
- ``steps.jsonl``: step-by-step explanations. A small word problem or procedure answered with
  numbered lines ("Step 1: ...", "Step 2: ...") and a final "Answer: ..." line (about 25-70
  words). Categories: shopping totals with change, multi-step word problems, percentages,
  time durations, speed-distance-time, averages, comparing fractions, sorting numbers,
  counting a letter in a word, two-step unit conversions and rectangle area/perimeter.
- ``rewrite.jsonl``: short rewriting and formatting tasks. The instruction quotes a sentence
  or list, the response is the rewritten text. Categories: present to past tense, plural
  subject, active to passive voice, polite requests, bulleted lists, alphabetical order,
  uppercase, acronyms, joining two sentences and reversing word order.

Each line is ``{"instruction", "response", "category", "split"}``; about 20% of every category
is held out (``"split": "heldout"``) by a seeded shuffle. The output is deterministic: running
the script twice gives byte-identical files.

    python scripts/write_instruction_data.py           # (re)write the three files
    python scripts/write_instruction_data.py --check   # exit 1 if the files on disk differ
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "circuitlab" / "ila" / "data"
FACTUAL_QA_FILES = (
    ROOT / "circuitlab" / "evaluation" / "data" / "factual_qa.jsonl",
    ROOT / "circuitlab" / "evaluation" / "data" / "factual_qa_more.jsonl",
)
SEED = 20250611
HELDOUT_FRACTION = 0.2
SET_NAMES = ("facts", "steps", "rewrite")
ROWS_PER_CATEGORY = {"facts": 25, "steps": 27, "rewrite": 30}
MAX_RESPONSE_WORDS = {"facts": 12, "steps": 75, "rewrite": 90}
MIN_RESPONSE_WORDS = {"facts": 1, "steps": 25, "rewrite": 1}

Row = dict[str, str]
Pair = tuple[str, str]
Maker = Callable[[random.Random], Pair]


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _rng(*parts: object) -> random.Random:
    """A generator seeded from the fixed seed and a label (string seeds are hashed with SHA-512,
    so this does not depend on PYTHONHASHSEED)."""
    return random.Random(":".join([str(SEED), *map(str, parts)]))


def num(value: int | Fraction) -> str:
    """A number as written in the data: thousands separated by commas, exact decimals."""
    value = Fraction(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole, rest = divmod(value.numerator, value.denominator)
    if rest == 0:
        return f"{sign}{whole:,}"
    for places in (1, 2, 3):
        scaled = value * 10**places
        if scaled.denominator == 1:
            digits = str(scaled.numerator % 10**places).zfill(places)
            return f"{sign}{whole:,}.{digits}"
    raise ValueError(f"{value} has no short exact decimal form")


def money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plural_unit(value: Fraction | int, singular: str, plural: str) -> str:
    return singular if Fraction(value) == 1 else plural


def and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


NUMBER_WORDS = {
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
    11: "eleven",
}
ORDINAL_WORDS = {
    2: "second",
    3: "third",
    4: "fourth",
    5: "fifth",
    6: "sixth",
    7: "seventh",
    8: "eighth",
    9: "ninth",
    10: "tenth",
    11: "eleventh",
}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = tuple(
    "January February March April May June July August September October November December".split()
)
NAMES = tuple(
    "Maya Leo Priya Omar Sofia Ben Aisha Tom Lena Kenji Nora Diego Hana Sam Ivy Raj Elena Max "
    "Zara Felix".split()
)


# ---------------------------------------------------------------------------------------------
# facts: one short question, one short answer


def fact_arithmetic(rng: random.Random) -> Pair:
    op = rng.choice(("plus", "minus", "times", "divided by"))
    if op == "plus":
        a, b = rng.randint(12, 499), rng.randint(12, 499)
        result = a + b
    elif op == "minus":
        a = rng.randint(50, 999)
        b = rng.randint(11, a - 1)
        result = a - b
    elif op == "times":
        a, b = rng.randint(11, 49), rng.randint(3, 9)
        result = a * b
    else:
        b, result = rng.randint(3, 12), rng.randint(4, 25)
        a = b * result
    return f"What is {num(a)} {op} {num(b)}?", f"{num(result)}."


# (larger unit, smaller unit, how many smaller units make one larger unit)
UNIT_FACTORS = (
    ("kilometres", "metres", 1000),
    ("metres", "centimetres", 100),
    ("centimetres", "millimetres", 10),
    ("kilograms", "grams", 1000),
    ("litres", "millilitres", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
)


def fact_unit_conversion(rng: random.Random) -> Pair:
    big, small, factor = rng.choice(UNIT_FACTORS)
    if rng.random() < 0.5:
        amount = (
            Fraction(rng.randint(2, 12)) if rng.random() < 0.5 else Fraction(rng.randint(3, 19), 2)
        )
    else:
        amount = (
            Fraction(rng.randint(11, 99), 10) if factor % 10 == 0 else Fraction(rng.randint(2, 15))
        )
    small_amount = amount * factor
    if rng.random() < 0.6 or small_amount.denominator != 1:
        return f"How many {small} are in {num(amount)} {big}?", f"{num(small_amount)} {small}."
    return f"How many {big} are in {num(small_amount)} {small}?", f"{num(amount)} {big}."


ROMAN_VALUES = (
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
)


def to_roman(n: int) -> str:
    out = []
    for value, letters in ROMAN_VALUES:
        count, n = divmod(n, value)
        out.append(letters * count)
    return "".join(out)


def fact_roman(rng: random.Random) -> Pair:
    n = rng.choice((rng.randint(4, 99), rng.randint(100, 999), rng.randint(1000, 2999)))
    while len(to_roman(n)) < 2:
        n += 1
    if rng.random() < 0.5:
        return f"Write {n} in Roman numerals.", f"{to_roman(n)}."
    return f"What number does the Roman numeral {to_roman(n)} stand for?", f"{n}."


LETTER_WORDS = (
    "planet garden window basket pencil orange rabbit kitchen blanket mountain river candle "
    "ladder button bottle jacket island forest pocket rocket silver marble tomato banana "
    "umbrella elephant computer hospital airport festival notebook lantern carpet helmet "
    "cabinet journal pillow saddle tunnel harbour meadow feather thunder whistle puzzle "
    "cupboard sandwich penguin dolphin giraffe lemon melon onion carrot potato violin trumpet "
    "guitar piano camera ticket wallet bridge castle engine chocolate pancake"
).split()
VOWELS = "aeiou"


def fact_letter_counts(rng: random.Random) -> Pair:
    word = rng.choice(LETTER_WORDS)
    if rng.random() < 0.55:
        return f"How many letters are in the word '{word}'?", f"{len(word)}."
    vowels = sum(letter in VOWELS for letter in word)
    return f"How many vowels are in the word '{word}'?", f"{vowels}."


def fact_spelling(rng: random.Random) -> Pair:
    word = rng.choice(LETTER_WORDS)
    kind = rng.choice(("position", "position", "last", "backwards"))
    if kind == "position":
        position = rng.randint(2, min(5, len(word) - 1))
        letter = word[position - 1].upper()
        return f"What is the {ORDINAL_WORDS[position]} letter of the word '{word}'?", f"{letter}."
    if kind == "last":
        return f"What is the last letter of the word '{word}'?", f"{word[-1].upper()}."
    return f"Spell the word '{word}' backwards.", f"{word[::-1]}."


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def fact_alphabet(rng: random.Random) -> Pair:
    index = rng.randint(1, 24)
    letter = ALPHABET[index]
    kind = rng.choice(("after", "before", "nth", "position"))
    if kind == "after":
        return (
            f"Which letter comes right after {letter} in the alphabet?",
            f"{ALPHABET[index + 1]}.",
        )
    if kind == "before":
        return (
            f"Which letter comes right before {letter} in the alphabet?",
            f"{ALPHABET[index - 1]}.",
        )
    if kind == "nth":
        return f"What is the {ordinal(index + 1)} letter of the alphabet?", f"{letter}."
    return (
        f"What position does the letter {letter} have in the alphabet?",
        f"It is the {ordinal(index + 1)} letter.",
    )


def fact_calendar(rng: random.Random) -> Pair:
    kind = rng.choice(("day", "day", "month", "month", "month_number"))
    direction = rng.choice(("after", "before"))
    sign = 1 if direction == "after" else -1
    if kind == "day":
        start, offset = rng.randrange(7), rng.randint(2, 6)
        answer = DAYS[(start + sign * offset) % 7]
        return f"What day is {NUMBER_WORDS[offset]} days {direction} {DAYS[start]}?", f"{answer}."
    if kind == "month":
        start, offset = rng.randrange(12), rng.randint(2, 11)
        answer = MONTHS[(start + sign * offset) % 12]
        question = f"Which month is {NUMBER_WORDS[offset]} months {direction} {MONTHS[start]}?"
        return question, f"{answer}."
    position = rng.randint(2, 11)
    return f"What is the {ORDINAL_WORDS[position]} month of the year?", f"{MONTHS[position - 1]}."


POLYGONS = {
    3: "triangle",
    4: "quadrilateral",
    5: "pentagon",
    6: "hexagon",
    7: "heptagon",
    8: "octagon",
    9: "nonagon",
    10: "decagon",
    12: "dodecagon",
}
# The factual QA set asks for the sides of a triangle, a square and a pentagon.
POLYGON_SIDES_ASKED = (4, 6, 7, 8, 9, 10, 12)


def fact_shapes(rng: random.Random) -> Pair:
    kind = rng.choice(("sides", "name", "total", "total", "perimeter", "perimeter"))
    if kind == "sides":
        sides = rng.choice(POLYGON_SIDES_ASKED)
        name = POLYGONS[sides]
        return f"How many sides does {article(name)} {name} have?", f"{sides}."
    sides = rng.choice(tuple(POLYGONS))
    name = POLYGONS[sides]
    if kind == "name":
        return f"What is a polygon with {sides} sides called?", f"{cap(article(name))} {name}."
    if kind == "total":
        count = rng.randint(2, 9)
        return f"How many sides do {count} {name}s have altogether?", f"{count * sides}."
    length = rng.randint(2, 15)
    unit = rng.choice(("cm", "m"))
    shape = {3: "equilateral triangle", 4: "square"}.get(sides, f"regular {name}")
    question = f"What is the perimeter of {article(shape)} {shape} with {length} {unit} sides?"
    return question, f"{sides * length} {unit}."


def smallest_factor(n: int) -> int:
    for factor in range(2, math.isqrt(n) + 1):
        if n % factor == 0:
            return factor
    return n


def fact_number_properties(rng: random.Random) -> Pair:
    n = rng.randint(11, 199)
    if rng.random() < 0.4:
        return f"Is {n} even or odd?", "Even." if n % 2 == 0 else "Odd."
    n |= 1  # odd numbers make the prime question worth asking
    factor = smallest_factor(n)
    if factor == n:
        return f"Is {n} a prime number?", f"Yes, {n} is prime."
    return f"Is {n} a prime number?", f"No, {n} is {factor} times {n // factor}."


def fact_rounding(rng: random.Random) -> Pair:
    unit_name, unit = rng.choice((("ten", 10), ("hundred", 100), ("thousand", 1000)))
    n = rng.randint(unit + 1, unit * 100 - 1)
    while n % unit == 0:
        n += 1
    rounded = (n + unit // 2) // unit * unit
    return f"Round {num(n)} to the nearest {unit_name}.", f"{num(rounded)}."


def fact_sequences(rng: random.Random) -> Pair:
    if rng.random() < 0.75:
        step = rng.choice((-1, 1)) * rng.randint(2, 12)
        start = rng.randint(1, 60) + (4 * -step if step < 0 else 0)
        terms = [start + i * step for i in range(5)]
    else:
        ratio = rng.choice((2, 3))
        start = rng.randint(1, 6)
        terms = [start * ratio**i for i in range(5)]
    shown = ", ".join(str(t) for t in terms[:4])
    return f"What number comes next in the sequence {shown}?", f"{terms[4]}."


def fact_comparison(rng: random.Random) -> Pair:
    a = Fraction(rng.randint(1, 99), 10 ** rng.randint(1, 2))
    b = Fraction(rng.randint(1, 99), 10 ** rng.randint(1, 2))
    while b == a:
        b += Fraction(1, 100)
    word = rng.choice(("larger", "smaller"))
    answer = max(a, b) if word == "larger" else min(a, b)
    return f"Which is {word}, {num(a)} or {num(b)}?", f"{num(answer)}."


FRACTION_WORDS = {2: "half", 3: "one third", 4: "one quarter", 5: "one fifth", 10: "one tenth"}


def fact_fractions_percent(rng: random.Random) -> Pair:
    if rng.random() < 0.5:
        parts = rng.choice(tuple(FRACTION_WORDS))
        n = parts * rng.randint(3, 60)
        return f"What is {FRACTION_WORDS[parts]} of {n}?", f"{num(n // parts)}."
    percent = rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 75))
    n = 20 * rng.randint(2, 30)
    return f"What is {percent} percent of {n}?", f"{num(n * percent // 100)}."


FACT_CATEGORIES: dict[str, Maker] = {
    "arithmetic": fact_arithmetic,
    "unit_conversion": fact_unit_conversion,
    "roman_numerals": fact_roman,
    "letter_counts": fact_letter_counts,
    "spelling": fact_spelling,
    "alphabet": fact_alphabet,
    "calendar": fact_calendar,
    "shapes": fact_shapes,
    "number_properties": fact_number_properties,
    "rounding": fact_rounding,
    "sequences": fact_sequences,
    "decimal_comparison": fact_comparison,
    "fractions_percent": fact_fractions_percent,
}


# ---------------------------------------------------------------------------------------------
# steps: a small problem, numbered steps, a final answer line


STEP_SUFFIXES = ("Explain step by step.", "Show your steps.", "Work it out step by step.")


def steps(*lines: str, answer: str) -> str:
    numbered = [f"Step {i}: {line}" for i, line in enumerate(lines, 1)]
    return "\n".join([*numbered, f"Answer: {answer}"])


# (singular, plural, lowest price in cents, highest price in cents)
SHOP_ITEMS = (
    ("notebook", "notebooks", 150, 400),
    ("pen", "pens", 60, 250),
    ("apple", "apples", 30, 90),
    ("loaf of bread", "loaves of bread", 180, 350),
    ("bottle of juice", "bottles of juice", 120, 300),
    ("sandwich", "sandwiches", 250, 550),
    ("comic book", "comic books", 300, 800),
    ("pencil", "pencils", 25, 90),
    ("box of tea", "boxes of tea", 200, 600),
    ("candle", "candles", 150, 450),
    ("plant pot", "plant pots", 300, 900),
    ("muffin", "muffins", 120, 300),
)
BILLS = (1000, 2000, 5000, 10000)


def _price(rng: random.Random, low: int, high: int) -> int:
    return 5 * rng.randint(low // 5, high // 5)


def step_shopping(rng: random.Random) -> Pair:
    name = rng.choice(NAMES)
    first, second = rng.sample(SHOP_ITEMS, 2)
    q1, q2 = rng.randint(2, 6), rng.randint(1, 4)
    p1, p2 = _price(rng, first[2], first[3]), _price(rng, second[2], second[3])
    t1, t2 = q1 * p1, q2 * p2
    total = t1 + t2
    bill = next(b for b in BILLS if b > total)
    if q2 == 1:
        second_text = f"{article(second[0])} {second[0]} for {money(p2)}"
        second_step = f"The {second[0]} costs {money(p2)}."
    else:
        second_text = f"{q2} {second[1]} at {money(p2)} each"
        second_step = f"{q2} x {money(p2)} = {money(t2)}."
    question = (
        f"{name} buys {q1} {first[1]} at {money(p1)} each and {second_text}. {name} pays with "
        f"a ${bill // 100} bill. How much change does {name} get?"
    )
    answer = steps(
        f"{q1} x {money(p1)} = {money(t1)}.",
        second_step,
        f"Total cost: {money(t1)} + {money(t2)} = {money(total)}.",
        f"Change: {money(bill)} - {money(total)} = {money(bill - total)}.",
        answer=money(bill - total),
    )
    return question, answer


COLLECTIONS = ("stickers", "marbles", "stamps", "trading cards", "beads", "seashells")


def step_multi_step(rng: random.Random) -> Pair:
    kind = rng.choice(("collect", "bake", "groups"))
    name = rng.choice(NAMES)
    if kind == "collect":
        thing = rng.choice(COLLECTIONS)
        have, packs, per_pack = rng.randint(5, 60), rng.randint(2, 6), rng.randint(4, 12)
        bought = packs * per_pack
        give = rng.randint(3, have + bought - 1)
        question = (
            f"{name} has {have} {thing}, buys {packs} packs of {per_pack} {thing}, then gives "
            f"away {give}. How many {thing} does {name} have now?"
        )
        answer = steps(
            f"{name} buys {packs} x {per_pack} = {bought} {thing}.",
            f"{name} then has {have} + {bought} = {have + bought} {thing}.",
            f"After giving away {give}: {have + bought} - {give} = {have + bought - give}.",
            answer=f"{have + bought - give} {thing}",
        )
        return question, answer
    if kind == "bake":
        trays, per_tray = rng.randint(3, 8), rng.choice((6, 8, 10, 12, 16, 20))
        made = trays * per_tray
        sold_morning = rng.randint(5, made // 2)
        sold_afternoon = rng.randint(3, made - sold_morning - 1)
        left = made - sold_morning - sold_afternoon
        question = (
            f"A bakery makes {trays} trays of {per_tray} muffins. It sells {sold_morning} in the "
            f"morning and {sold_afternoon} in the afternoon. How many muffins are left?"
        )
        answer = steps(
            f"Muffins made: {trays} x {per_tray} = {made}.",
            f"Muffins sold: {sold_morning} + {sold_afternoon} = {sold_morning + sold_afternoon}.",
            f"Muffins left: {made} - {sold_morning + sold_afternoon} = {left}.",
            answer=f"{left} muffins",
        )
        return question, answer
    classes, pupils, groups = rng.randint(2, 5), rng.randint(18, 30), rng.choice((3, 4, 5, 6))
    total = classes * pupils
    absent = total % groups + groups * rng.randint(0, 2)
    if absent == 0:
        absent = groups
    present = total - absent
    question = (
        f"A school has {classes} classes of {pupils} pupils. {absent} pupils are absent, and "
        f"the rest are split evenly into {groups} teams. How many pupils are in each team?"
    )
    answer = steps(
        f"Pupils in total: {classes} x {pupils} = {total}.",
        f"Pupils present: {total} - {absent} = {present}.",
        f"Pupils per team: {present} / {groups} = {present // groups}.",
        answer=f"{present // groups} pupils",
    )
    return question, answer


PERCENT_ITEMS = ("jacket", "lamp", "backpack", "board game", "pair of shoes", "kettle", "chair")


def step_percentages(rng: random.Random) -> Pair:
    if rng.random() < 0.6:
        item = rng.choice(PERCENT_ITEMS)
        price = rng.randint(8, 150)
        percent = rng.choice((10, 15, 20, 25, 30, 40, 50))
        discount = price * percent  # in cents: price * 100 * percent / 100
        sale = price * 100 - discount
        question = (
            f"A {item} costs ${price}. It is on sale for {percent}% off. What is the sale price?"
        )
        answer = steps(
            f"Find {percent}% of ${price}: {price} x {percent} / 100 = {money(discount)}.",
            f"Subtract the discount from the price: {money(price * 100)} - {money(discount)} = "
            f"{money(sale)}.",
            answer=money(sale),
        )
        return question, answer
    name = rng.choice(NAMES)
    out_of = rng.choice((20, 25, 40, 50))
    score = rng.randint(out_of // 2, out_of - 1)
    if out_of == 40:
        score -= score % 2
    share = Fraction(score, out_of)
    question = f"{name} scored {score} out of {out_of} on a test. What percentage is that?"
    answer = steps(
        f"Divide the score by the total: {score} / {out_of} = {num(share)}.",
        f"Multiply by 100 to get a percentage: {num(share)} x 100 = {num(share * 100)}.",
        answer=f"{num(share * 100)}%",
    )
    return question, answer


def clock(minutes: int) -> str:
    hour, minute = divmod(minutes % (24 * 60), 60)
    suffix = "AM" if hour < 12 else "PM"
    return f"{hour % 12 or 12}:{minute:02d} {suffix}"


def duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if rest or not hours:
        parts.append(f"{rest} minute{'s' if rest != 1 else ''}")
    return " ".join(parts)


EVENTS = ("film", "concert", "football match", "play", "lecture", "board meeting", "baking class")
TRIPS = ("train", "bus", "ferry", "flight", "coach")


def step_time(rng: random.Random) -> Pair:
    start = 5 * rng.randint(7 * 12, 17 * 12)
    if rng.random() < 0.5:
        event = rng.choice(EVENTS)
        length = 5 * rng.randint(13, 44)
        hours, rest = divmod(length, 60)
        lines = [f"Split the {length} minutes into hours and minutes: {duration(length)}."]
        middle = start + 60 * hours
        lines.append(f"{clock(start)} + {duration(60 * hours)} = {clock(middle)}.")
        if rest:
            lines.append(f"{clock(middle)} + {rest} minutes = {clock(middle + rest)}.")
        else:
            lines.append(f"There are no extra minutes to add, so it ends at {clock(middle)}.")
        question = (
            f"A {event} starts at {clock(start)} and lasts {length} minutes. When does it end?"
        )
        return question, steps(*lines, answer=clock(start + length))
    trip = rng.choice(TRIPS)
    end = start + 5 * rng.randint(8, 60)
    next_hour = -(-start // 60) * 60
    if end <= next_hour:
        end = next_hour + 5 * rng.randint(1, 11)
    lines, pieces = [], []
    if next_hour > start:
        lines.append(f"From {clock(start)} to {clock(next_hour)} is {next_hour - start} minutes.")
        pieces.append(f"{next_hour - start} minutes")
    full_hours = (end - next_hour) // 60
    top = next_hour + 60 * full_hours
    if full_hours:
        lines.append(f"From {clock(next_hour)} to {clock(top)} is {duration(60 * full_hours)}.")
        pieces.append(duration(60 * full_hours))
    if end > top:
        lines.append(f"From {clock(top)} to {clock(end)} is {end - top} minutes.")
        pieces.append(f"{end - top} minutes")
    lines.append(f"Add the parts: {' + '.join(pieces)} = {duration(end - start)}.")
    question = (
        f"A {trip} leaves at {clock(start)} and arrives at {clock(end)} the same day. "
        f"How long is the trip?"
    )
    return question, steps(*lines, answer=duration(end - start))


# (traveller, lowest speed, highest speed, step) in km/h
TRAVELLERS = (
    ("cyclist", 12, 24, 1),
    ("car", 40, 100, 5),
    ("train", 60, 160, 10),
    ("walker", 3, 6, 1),
    ("runner", 8, 14, 1),
    ("bus", 30, 70, 5),
)


def step_speed(rng: random.Random) -> Pair:
    who, low, high, step = rng.choice(TRAVELLERS)
    speed = step * rng.randint(low // step, high // step)
    hours = Fraction(rng.choice((1, 2, 3, 4, 5, 6)), rng.choice((1, 1, 2)))
    if hours == Fraction(1, 2):
        hours = Fraction(3, 2)
    distance = speed * hours
    hours_text = f"{num(hours)} {plural_unit(hours, 'hour', 'hours')}"
    given = f"The speed is {speed} km/h"
    kind = rng.choice(("distance", "time", "speed"))
    if kind == "distance":
        question = f"A {who} travels at {speed} km/h for {hours_text}. How far does the {who} go?"
        answer = steps(
            f"{given} and the time is {hours_text}.",
            "Use the rule distance = speed x time.",
            f"{speed} x {num(hours)} = {num(distance)}, so the distance is {num(distance)} km.",
            answer=f"{num(distance)} km",
        )
    elif kind == "time":
        question = f"A {who} travels {num(distance)} km at {speed} km/h. How long does it take?"
        answer = steps(
            f"{given} and the distance is {num(distance)} km.",
            "Use the rule time = distance / speed.",
            f"{num(distance)} / {speed} = {num(hours)}, so the trip takes {hours_text}.",
            answer=hours_text,
        )
    else:
        question = f"A {who} covers {num(distance)} km in {hours_text}. What is its average speed?"
        answer = steps(
            f"The distance is {num(distance)} km and the time is {hours_text}.",
            "Use the rule speed = distance / time.",
            f"{num(distance)} / {num(hours)} = {speed}, so the speed is {speed} km/h.",
            answer=f"{speed} km/h",
        )
    return question, answer


AVERAGE_TOPICS = (
    ("{name}'s test scores are {values}. What is the average score?", 55, 100),
    ("The noon temperatures over {count} days were {values} degrees. What is the average?", 5, 30),
    ("{name} read {values} pages on {count} evenings. What is the average per evening?", 10, 60),
    ("A shop sold {values} umbrellas on {count} days. What is the average per day?", 3, 40),
    ("{name}'s bowling scores were {values}. What is the average score?", 70, 180),
)


def step_average(rng: random.Random) -> Pair:
    template, low, high = rng.choice(AVERAGE_TOPICS)
    count = rng.randint(3, 5)
    values = [rng.randint(low, high) for _ in range(count)]
    while sum(values) % count:
        values[-1] = rng.randint(low, high)
    total = sum(values)
    question = template.format(
        name=rng.choice(NAMES), values=and_list([str(v) for v in values]), count=count
    )
    answer = steps(
        f"Add the numbers: {' + '.join(str(v) for v in values)} = {total}.",
        f"Count the numbers: there are {count}.",
        f"Divide the total by the count: {total} / {count} = {total // count}.",
        answer=str(total // count),
    )
    return question, answer


def step_fractions(rng: random.Random) -> Pair:
    while True:
        b, d = rng.randint(2, 12), rng.randint(2, 12)
        a, c = rng.randint(1, b - 1), rng.randint(1, d - 1)
        if b != d and math.gcd(a, b) == 1 and math.gcd(c, d) == 1:
            break
    common = math.lcm(b, d)
    x, y = a * common // b, c * common // d
    if x == y:
        return step_fractions(rng)
    word = rng.choice(("larger", "smaller"))

    def convert(n: int, den: int, top: int) -> str:
        if den == common:
            return f"{n}/{den} already has denominator {common}."
        return f"{n}/{den} = {top}/{common}, because {n} x {common // den} = {top}."

    bigger = (a, b) if x > y else (c, d)
    smaller = (c, d) if x > y else (a, b)
    chosen = bigger if word == "larger" else smaller
    question = f"Which fraction is {word}, {a}/{b} or {c}/{d}?"
    answer = steps(
        f"The least common denominator of {b} and {d} is {common}.",
        convert(a, b, x),
        convert(c, d, y),
        f"Compare the numerators: {max(x, y)} is larger than {min(x, y)}.",
        answer=f"{chosen[0]}/{chosen[1]}",
    )
    return question, answer


def step_sorting(rng: random.Random) -> Pair:
    count = rng.randint(4, 5)
    top = rng.choice((99, 999))
    values = rng.sample(range(1, top + 1), count)
    order = rng.choice(("smallest to largest", "largest to smallest"))
    ordered = sorted(values, reverse=order.startswith("largest"))
    if values == ordered:
        values.reverse()
    extreme, near = (
        ("largest", "next largest")
        if order.startswith("largest")
        else ("smallest", "next smallest")
    )
    lines = [f"The {extreme} number is {ordered[0]}."]
    lines += [f"The {near} is {v}." for v in ordered[1:-1]]
    lines.append(f"The last one left is {ordered[-1]}.")
    question = f"Sort these numbers from {order}: {', '.join(str(v) for v in values)}."
    return question, steps(*lines, answer=", ".join(str(v) for v in ordered))


COUNT_WORDS = (
    "banana strawberry balloon letter committee coffee bookkeeper assessment pepper success "
    "parallel referee occasion butterfly grammar engineer elephant remember tomorrow cinnamon "
    "mammal possession bubble puppet kitten cabbage address raccoon giraffe mattress dessert "
    "teepee coconut window alphabet tattoo hippopotamus pineapple accommodate millennium"
).split()


def step_count_letter(rng: random.Random) -> Pair:
    word = rng.choice(COUNT_WORDS)
    repeated = sorted({ch for ch in word if word.count(ch) > 1})
    letter = (
        rng.choice(repeated) if repeated and rng.random() < 0.8 else rng.choice(sorted(set(word)))
    )
    positions = [i for i, ch in enumerate(word, 1) if ch == letter]
    where = and_list([str(p) for p in positions])
    question = f"How many times does the letter '{letter}' appear in the word '{word}'?"
    answer = steps(
        f"Spell the word out: {'-'.join(word)}.",
        f"Mark each '{letter}': {'it is letter' if len(positions) == 1 else 'letters'} {where}.",
        f"Count the marks: '{letter}' appears {len(positions)} "
        f"{'time' if len(positions) == 1 else 'times'}.",
        answer=str(len(positions)),
    )
    return question, answer


# (unit chain, factors between neighbours)
CHAINS = (
    (("hours", "minutes", "seconds"), (60, 60)),
    (("days", "hours", "minutes"), (24, 60)),
    (("weeks", "days", "hours"), (7, 24)),
    (("kilometres", "metres", "centimetres"), (1000, 100)),
    (("metres", "centimetres", "millimetres"), (100, 10)),
    (("kilograms", "grams", "milligrams"), (1000, 1000)),
    (("tonnes", "kilograms", "grams"), (1000, 1000)),
)
SINGULAR = {
    "hours": "hour",
    "minutes": "minute",
    "days": "day",
    "weeks": "week",
    "kilometres": "kilometre",
    "metres": "metre",
    "centimetres": "centimetre",
    "kilograms": "kilogram",
    "grams": "gram",
    "tonnes": "tonne",
}


def step_unit_chain(rng: random.Random) -> Pair:
    (big, middle, small), (f1, f2) = rng.choice(CHAINS)
    amount = Fraction(rng.randint(2, 12)) if rng.random() < 0.6 else Fraction(rng.randint(3, 19), 2)
    mid_amount = amount * f1
    small_amount = mid_amount * f2
    question = f"Convert {num(amount)} {big} into {small}."
    answer = steps(
        f"1 {SINGULAR[big]} = {num(f1)} {middle}, so {num(amount)} {big} = {num(amount)} x "
        f"{num(f1)} = {num(mid_amount)} {middle}.",
        f"1 {SINGULAR[middle]} = {num(f2)} {small}, so {num(mid_amount)} {middle} = "
        f"{num(mid_amount)} x {num(f2)} = {num(small_amount)} {small}.",
        answer=f"{num(small_amount)} {small}",
    )
    return question, answer


# (object, unit symbol, unit word, lowest side, highest side)
RECTANGLES = (
    ("garden", "m", "metres", 4, 30),
    ("classroom", "m", "metres", 5, 15),
    ("football pitch", "m", "metres", 40, 110),
    ("poster", "cm", "centimetres", 20, 90),
    ("table top", "cm", "centimetres", 60, 200),
    ("photo", "cm", "centimetres", 8, 30),
    ("car park", "m", "metres", 20, 80),
)


def step_rectangle(rng: random.Random) -> Pair:
    thing, symbol, unit, low, high = rng.choice(RECTANGLES)
    width = rng.randint(low, high - 1)
    length = rng.randint(width + 1, high)
    ask = rng.choice(("area", "perimeter", "both"))
    area = f"{num(length * width)} square {unit}"
    perimeter = f"{num(2 * (length + width))} {unit}"
    what = {"both": "are its area and perimeter", "area": "is its area"}.get(
        ask, "is its perimeter"
    )
    question = (
        f"A rectangular {thing} is {length} {symbol} long and {width} {symbol} wide. What {what}?"
    )
    area_lines = [
        "Area of a rectangle = length x width.",
        f"{length} x {width} = {num(length * width)}, so the area is {area}.",
    ]
    perimeter_lines = [
        "Perimeter of a rectangle = 2 x (length + width).",
        f"{length} + {width} = {length + width}.",
        f"2 x {length + width} = {num(2 * (length + width))}, so the perimeter is {perimeter}.",
    ]
    if ask == "area":
        return question, steps(*area_lines, answer=area)
    if ask == "perimeter":
        return question, steps(*perimeter_lines, answer=perimeter)
    both = steps(*area_lines, *perimeter_lines, answer=f"area {area}, perimeter {perimeter}")
    return question, both


STEP_CATEGORIES: dict[str, Maker] = {
    "shopping_change": step_shopping,
    "multi_step_arithmetic": step_multi_step,
    "percentages": step_percentages,
    "time_duration": step_time,
    "speed_distance_time": step_speed,
    "average": step_average,
    "compare_fractions": step_fractions,
    "sort_numbers": step_sorting,
    "count_letter": step_count_letter,
    "unit_conversion_chain": step_unit_chain,
    "rectangle": step_rectangle,
}


# ---------------------------------------------------------------------------------------------
# rewrite: an instruction quoting a sentence or list, the rewritten text


# (subject, takes the -s form of the verb)
SUBJECTS = (
    ("I", False),
    ("we", False),
    ("they", False),
    ("my brother", True),
    ("the teacher", True),
    ("our neighbours", False),
    ("the children", False),
    ("Anna", True),
    ("the old man", True),
    ("my parents", False),
    ("she", True),
    ("he", True),
)
# (base, third person singular, past, objects). Verbs the factual QA set asks the past tense
# of (go, eat, run, see, write, buy, swim, drink, sing, sleep, bring, think) are left out.
VERBS = (
    ("read", "reads", "read", ("the newspaper", "a long novel", "the instructions")),
    ("teach", "teaches", "taught", ("a music class", "the new pupils", "a cooking lesson")),
    ("catch", "catches", "caught", ("the early bus", "the ball", "the last train")),
    ("find", "finds", "found", ("a quiet seat", "the missing key", "a coin on the floor")),
    ("make", "makes", "made", ("a cup of coffee", "a paper boat", "a birthday card")),
    ("take", "takes", "took", ("a photo of the lake", "a short break", "the dog for a walk")),
    ("sell", "sells", "sold", ("old books", "fresh vegetables", "homemade jam")),
    ("draw", "draws", "drew", ("a map of the town", "a picture of a horse")),
    ("build", "builds", "built", ("a wooden shed", "a tall tower of blocks")),
    ("throw", "throws", "threw", ("the ball", "a stone into the lake")),
    ("forget", "forgets", "forgot", ("the password", "the shopping list")),
    ("hold", "holds", "held", ("the door", "a meeting", "the baby")),
    ("wear", "wears", "wore", ("a blue scarf", "heavy boots")),
    ("lose", "loses", "lost", ("the keys", "the match")),
    ("send", "sends", "sent", ("a postcard", "a message to the team")),
    ("break", "breaks", "broke", ("a glass", "the school record")),
    ("choose", "chooses", "chose", ("a red jacket", "the chocolate cake")),
    ("feed", "feeds", "fed", ("the cats", "the ducks at the pond")),
    ("ride", "rides", "rode", ("a bike to work", "the old horse")),
    ("win", "wins", "won", ("the first prize", "the race")),
    ("tell", "tells", "told", ("a funny story", "the truth")),
    ("meet", "meets", "met", ("an old friend", "the new manager")),
    ("clean", "cleans", "cleaned", ("the kitchen", "the windows")),
    ("carry", "carries", "carried", ("the heavy boxes", "a basket of apples")),
    ("wash", "washes", "washed", ("the dishes", "the car")),
    ("fix", "fixes", "fixed", ("the broken chair", "the bike")),
    ("paint", "paints", "painted", ("the fence", "a portrait")),
    ("visit", "visits", "visited", ("the museum", "the old castle")),
    ("watch", "watches", "watched", ("a film", "the birds")),
)


def simple_sentence(rng: random.Random) -> tuple[str, str]:
    """A present-tense sentence and the same sentence in the past tense."""
    subject, singular = rng.choice(SUBJECTS)
    base, third, past, objects = rng.choice(VERBS)
    obj = rng.choice(objects)
    present = f"{cap(subject)} {third if singular else base} {obj}."
    return present, f"{cap(subject)} {past} {obj}."


def rewrite_past(rng: random.Random) -> Pair:
    present, past = simple_sentence(rng)
    while present == past:  # "I read the newspaper." reads the same in both tenses
        present, past = simple_sentence(rng)
    return f'Rewrite the sentence in the past tense: "{present}"', past


# (singular subject, plural subject); people and animals take different predicates.
PEOPLE = (
    ("the teacher", "the teachers"),
    ("the child", "the children"),
    ("the woman", "the women"),
    ("the man", "the men"),
    ("my friend", "my friends"),
    ("the student", "the students"),
    ("the nurse", "the nurses"),
    ("the farmer", "the farmers"),
    ("the person", "the people"),
    ("our neighbour", "our neighbours"),
    ("the waiter", "the waiters"),
    ("the boy", "the boys"),
)
ANIMALS = (
    ("the mouse", "the mice"),
    ("the goose", "the geese"),
    ("the dog", "the dogs"),
    ("the fox", "the foxes"),
    ("the puppy", "the puppies"),
    ("the wolf", "the wolves"),
    ("the cat", "the cats"),
    ("the calf", "the calves"),
    ("the pony", "the ponies"),
)
PEOPLE_PREDICATES = (
    ("is reading in the garden", "are reading in the garden"),
    ("was waiting at the door", "were waiting at the door"),
    ("has a lot of homework", "have a lot of homework"),
    ("walks to school", "walk to school"),
    ("plays in the park", "play in the park"),
    ("is very tired", "are very tired"),
    ("likes warm soup", "like warm soup"),
    ("does not like the rain", "do not like the rain"),
    ("was late for the meeting", "were late for the meeting"),
)
ANIMAL_PREDICATES = (
    ("is sleeping under the table", "are sleeping under the table"),
    ("was hiding in the barn", "were hiding in the barn"),
    ("runs across the field", "run across the field"),
    ("is looking for food", "are looking for food"),
    ("makes a lot of noise", "make a lot of noise"),
    ("was very hungry", "were very hungry"),
)


def rewrite_plural(rng: random.Random) -> Pair:
    if rng.random() < 0.55:
        (one, many), (verb_one, verb_many) = rng.choice(PEOPLE), rng.choice(PEOPLE_PREDICATES)
    else:
        (one, many), (verb_one, verb_many) = rng.choice(ANIMALS), rng.choice(ANIMAL_PREDICATES)
    return (
        f'Rewrite the sentence with a plural subject: "{cap(one)} {verb_one}."',
        f"{cap(many)} {verb_many}.",
    )


AGENTS = (
    "my uncle",
    "my sister",
    "the students",
    "our neighbour",
    "the workers",
    "Maria",
    "the children",
    "the team",
    "the manager",
    "David",
)
# (past, past participle, objects as (text, is plural))
PASSIVE_VERBS = (
    ("cooked", "cooked", (("the soup", False), ("the vegetables", True))),
    ("cleaned", "cleaned", (("the kitchen", False), ("the windows", True))),
    ("painted", "painted", (("the fence", False), ("the walls", True))),
    ("repaired", "repaired", (("the roof", False), ("the bikes", True))),
    ("wrote", "written", (("the report", False), ("the letters", True))),
    ("found", "found", (("the lost wallet", False), ("the missing keys", True))),
    ("built", "built", (("the bridge", False), ("the new houses", True))),
    ("sold", "sold", (("the old car", False), ("the tickets", True))),
    ("broke", "broken", (("the window", False), ("the plates", True))),
    ("sent", "sent", (("the parcel", False), ("the invitations", True))),
    ("ate", "eaten", (("the cake", False), ("the sandwiches", True))),
    ("took", "taken", (("the last seat", False), ("the photos", True))),
    ("drew", "drawn", (("the map", False), ("the pictures", True))),
    ("opened", "opened", (("the door", False), ("the presents", True))),
    ("watered", "watered", (("the garden", False), ("the plants", True))),
    ("fed", "fed", (("the cat", False), ("the horses", True))),
    ("chose", "chosen", (("the winner", False), ("the colours", True))),
)


def rewrite_passive(rng: random.Random) -> Pair:
    agent = rng.choice(AGENTS)
    past, participle, objects = rng.choice(PASSIVE_VERBS)
    obj, plural = rng.choice(objects)
    active = f"{cap(agent)} {past} {obj}."
    passive = f"{cap(obj)} {'were' if plural else 'was'} {participle} by {agent}."
    return f'Rewrite the sentence in the passive voice: "{active}"', passive


REQUESTS = (
    ("pass me the {}", ("salt", "pepper", "bread", "butter", "water jug")),
    ("close the {}", ("window", "door", "gate", "curtains")),
    ("open the {}", ("window", "door", "back gate", "box")),
    ("turn off the {}", ("light", "radio", "television", "fan", "oven")),
    ("bring me the {}", ("newspaper", "blue folder", "keys", "map")),
    ("send me the {}", ("report", "photos", "address", "schedule")),
    ("help me carry the {}", ("boxes", "bags", "chairs", "shopping")),
    ("wait for me at the {}", ("station", "corner", "entrance")),
    ("lend me your {}", ("pen", "umbrella", "charger", "notes")),
)


def rewrite_polite(rng: random.Random) -> Pair:
    template, objects = rng.choice(REQUESTS)
    request = template.format(rng.choice(objects))
    return f'Make this request polite: "{cap(request)}."', f"Could you please {request}?"


LIST_POOLS = (
    ("apples", "bananas", "cherries", "grapes", "lemons", "mangoes", "oranges", "pears", "plums"),
    ("carrots", "onions", "peppers", "potatoes", "tomatoes", "cucumbers", "spinach", "peas"),
    ("hammer", "screwdriver", "saw", "drill", "wrench", "pliers", "tape measure", "ladder"),
    ("pencils", "erasers", "rulers", "notebooks", "scissors", "glue", "crayons", "folders"),
    (
        "buy milk",
        "call the bank",
        "water the plants",
        "pay the rent",
        "return the library books",
        "clean the oven",
        "book a haircut",
    ),
    ("otters", "foxes", "owls", "badgers", "hedgehogs", "deer", "rabbits", "squirrels"),
    ("bread", "milk", "eggs", "cheese", "rice", "butter", "coffee", "yogurt", "honey"),
)


def rewrite_bullets(rng: random.Random) -> Pair:
    items = rng.sample(rng.choice(LIST_POOLS), rng.randint(3, 5))
    lead = rng.choice(("Turn this list into bullet points", "Rewrite this list as a bulleted list"))
    return f"{lead}: {', '.join(items)}", "\n".join(f"- {item}" for item in items)


SORT_WORDS = (
    "apple river candle zebra mango violin pepper garden honey lantern orange tiger beach "
    "cloud desert forest island jacket kettle ladder meadow needle otter pencil quilt rocket "
    "saddle tunnel umbrella valley wagon yellow anchor basket cherry dolphin eagle falcon"
).split()


def rewrite_sort(rng: random.Random) -> Pair:
    words = rng.sample(SORT_WORDS, rng.randint(4, 6))
    if words == sorted(words):
        words.reverse()
    return f"Sort these words alphabetically: {', '.join(words)}", ", ".join(sorted(words))


def rewrite_uppercase(rng: random.Random) -> Pair:
    sentence = simple_sentence(rng)[rng.randrange(2)]
    return f'Rewrite this sentence in uppercase letters: "{sentence}"', sentence.upper()


ACRONYM_FIRST = (
    "global national rapid digital open central public mobile annual united regional local "
    "green smart safe"
).split()
ACRONYM_MIDDLE = (
    "health energy water transport data music science youth trade housing travel language "
    "software food sports"
).split()
ACRONYM_LAST = (
    "network council agency program service system association project committee office "
    "league institute forum union alliance"
).split()


def rewrite_acronym(rng: random.Random) -> Pair:
    middle = rng.sample(ACRONYM_MIDDLE, rng.choice((1, 1, 2)))
    words = [rng.choice(ACRONYM_FIRST), *middle, rng.choice(ACRONYM_LAST)]
    phrase = " ".join(words)
    return (
        f'Make an acronym from the first letters of "{phrase}".',
        "".join(w[0].upper() for w in words),
    )


HOBBIES = (
    "likes tea",
    "plays the piano",
    "walks to work",
    "reads comics",
    "grows tomatoes",
    "speaks French",
    "collects stamps",
    "bakes bread on Sundays",
    "swims every morning",
    "paints landscapes",
    "writes poems",
    "rides a red bike",
)
# Two clauses that contrast; {a} and {b} are names, other clauses start in lower case.
CONTRASTS = (
    ("{a} wanted to go outside", "it was raining"),
    ("the shop was open", "the cafe was closed"),
    ("{a} studied hard", "the test was still difficult"),
    ("the soup smelled good", "it was too salty"),
    ("{a} likes dogs", "{b} prefers cats"),
    ("the room was small", "it was very bright"),
    ("{a} called twice", "nobody answered"),
    ("the car is old", "it still runs well"),
    ("the path was steep", "the view was worth it"),
    ("the tickets were cheap", "the seats were uncomfortable"),
    ("the alarm rang at six", "{a} kept sleeping"),
    ("the sun was shining", "the wind was cold"),
    ("{a} invited ten friends", "only three came"),
    ("the film was long", "{a} enjoyed every minute"),
    ("{a} looked everywhere", "the keys were still missing"),
    ("the cake looked simple", "it took hours to make"),
    ("the bus was late", "{a} still arrived on time"),
)


def rewrite_join(rng: random.Random) -> Pair:
    a, b = rng.sample(NAMES, 2)
    if rng.random() < 0.5:
        hobby_a, hobby_b = rng.sample(HOBBIES, 2)
        first, second = f"{a} {hobby_a}", f"{b} {hobby_b}"
        word = "and"
    else:
        first, second = (part.format(a=a, b=b) for part in rng.choice(CONTRASTS))
        word = "but"
    question = f'Join these two sentences with "{word}": "{cap(first)}." "{cap(second)}."'
    return question, f"{cap(first)}, {word} {second}."


REVERSE_POOLS = (
    ("red", "blue", "green", "yellow", "purple", "orange", "black", "white"),
    ("cat", "dog", "horse", "sheep", "goat", "duck", "fox", "owl"),
    ("one", "two", "three", "four", "five", "six", "seven", "eight"),
    ("north", "south", "east", "west", "up", "down", "left", "right"),
    ("river", "hill", "forest", "valley", "lake", "field", "bridge", "road"),
)


def rewrite_reverse(rng: random.Random) -> Pair:
    words = rng.sample(rng.choice(REVERSE_POOLS), rng.randint(4, 6))
    return f'Reverse the order of the words in "{" ".join(words)}".', " ".join(reversed(words))


REWRITE_CATEGORIES: dict[str, Maker] = {
    "past_tense": rewrite_past,
    "plural_subject": rewrite_plural,
    "passive_voice": rewrite_passive,
    "polite_request": rewrite_polite,
    "bulleted_list": rewrite_bullets,
    "alphabetical_order": rewrite_sort,
    "uppercase": rewrite_uppercase,
    "acronym": rewrite_acronym,
    "join_sentences": rewrite_join,
    "reverse_words": rewrite_reverse,
}

CATEGORIES: dict[str, dict[str, Maker]] = {
    "facts": FACT_CATEGORIES,
    "steps": STEP_CATEGORIES,
    "rewrite": REWRITE_CATEGORIES,
}


# ---------------------------------------------------------------------------------------------
# Building, splitting, checking and writing


def factual_qa_questions() -> set[str]:
    """The factual QA evaluation questions, case-folded (the sets must not repeat any)."""
    questions = set()
    for path in FACTUAL_QA_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                questions.add(json.loads(line)["question"].casefold())
    return questions


def _collect(rng: random.Random, make: Maker, count: int) -> list[Pair]:
    """``count`` pairs with distinct instructions, in the order they were drawn."""
    pairs: dict[str, str] = {}
    for _ in range(count * 200):
        instruction, response = make(rng)
        pairs.setdefault(instruction, response)
        if len(pairs) == count:
            return list(pairs.items())
    raise RuntimeError(f"{make.__name__} gave only {len(pairs)} distinct instructions")


def build_set(name: str) -> list[Row]:
    rows: list[Row] = []
    count = ROWS_PER_CATEGORY[name]
    for category, make in CATEGORIES[name].items():
        rng = _rng(name, category)
        pairs = _collect(rng, make, count)
        if name == "steps":
            pairs = [(f"{q} {rng.choice(STEP_SUFFIXES)}", a) for q, a in pairs]
        order = list(range(len(pairs)))
        _rng(name, category, "split").shuffle(order)
        held = set(order[: round(HELDOUT_FRACTION * len(pairs))])
        for index, (instruction, response) in enumerate(pairs):
            split = "heldout" if index in held else "train"
            rows.append(
                {
                    "instruction": instruction,
                    "response": response,
                    "category": category,
                    "split": split,
                }
            )
    return rows


def check_rows(name: str, rows: list[Row], forbidden: set[str]) -> None:
    """Raise ValueError if a set breaks one of the rules the data promises."""
    instructions = [row["instruction"] for row in rows]
    if len(set(instructions)) != len(instructions):
        raise ValueError(f"{name}: duplicate instructions")
    for row in rows:
        if any(not isinstance(v, str) or not v.strip() for v in row.values()):
            raise ValueError(f"{name}: empty field in {row}")
        if row["instruction"].casefold() in forbidden:
            raise ValueError(f"{name}: {row['instruction']!r} is a factual QA question")
        words = len(row["response"].split())
        if not MIN_RESPONSE_WORDS[name] <= words <= MAX_RESPONSE_WORDS[name]:
            raise ValueError(f"{name}: response of {words} words: {row['response']!r}")
        if not row["instruction"].isascii() or not row["response"].isascii():
            raise ValueError(f"{name}: non-ASCII text in {row}")
        if name == "steps" and not re.search(r"\nAnswer: \S", row["response"]):
            raise ValueError(f"{name}: no answer line in {row['response']!r}")
        if name == "rewrite":
            quoted = re.findall(r'"([^"]*)"', row["instruction"])
            if row["response"] in quoted:
                raise ValueError(f"{name}: the rewrite changes nothing: {row}")
    for category in CATEGORIES[name]:
        splits = {row["split"] for row in rows if row["category"] == category}
        if splits != {"train", "heldout"}:
            raise ValueError(f"{name}: category {category} is not in both splits")


def build_sets() -> dict[str, list[Row]]:
    """Every set's rows, in file order."""
    forbidden = factual_qa_questions()
    sets = {name: build_set(name) for name in SET_NAMES}
    for name, rows in sets.items():
        check_rows(name, rows, forbidden)
    return sets


def render(rows: list[Row]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline="\n", dir=path.parent, prefix=f".{path.name}.", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # temporary files are created private (0600)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the files on disk differ from the output"
    )
    args = parser.parse_args(argv)
    sets = build_sets()
    stale = []
    for name, rows in sets.items():
        path = DATA_DIR / f"{name}.jsonl"
        text = render(rows)
        if args.check:
            if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
                stale.append(path)
            continue
        write_atomic(path, text)
        held = sum(row["split"] == "heldout" for row in rows)
        print(
            f"{path.relative_to(ROOT)}: {len(rows)} rows ({len(rows) - held} train, {held} heldout)"
        )
    if stale:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        print("run: python scripts/write_instruction_data.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
