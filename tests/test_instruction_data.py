"""ILA instruction data (circuitlab/ila/data): shipped files, structure, splits, correctness."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "write_instruction_data.py"
DATA_DIR = ROOT / "circuitlab" / "ila" / "data"
FACTUAL_QA = (
    ROOT / "circuitlab" / "evaluation" / "data" / "factual_qa.jsonl",
    ROOT / "circuitlab" / "evaluation" / "data" / "factual_qa_more.jsonl",
)
SETS = ("facts", "steps", "rewrite")
KEYS = ["instruction", "response", "category", "split"]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("write_instruction_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_rows(name: str) -> list[dict[str, str]]:
    lines = (DATA_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script()


@pytest.fixture(scope="module")
def built(script: ModuleType) -> dict[str, list[dict[str, str]]]:
    return script.build_sets()


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict[str, str]]]:
    return {name: read_rows(name) for name in SETS}


def by_category(rows: list[dict[str, str]], category: str) -> list[dict[str, str]]:
    chosen = [row for row in rows if row["category"] == category]
    assert chosen, f"no rows in category {category}"
    return chosen


def number(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


# ---------------------------------------------------------------------------------------------
# The files are what the script writes


@pytest.mark.parametrize("name", SETS)
def test_file_matches_script(
    name: str, script: ModuleType, built: dict[str, list[dict[str, str]]]
) -> None:
    path = DATA_DIR / f"{name}.jsonl"
    assert path.is_file(), "run: python scripts/write_instruction_data.py"
    assert read_rows(name) == built[name]
    assert path.read_bytes() == script.render(built[name]).encode("utf-8")


def test_build_is_deterministic(script: ModuleType, built: dict[str, list[dict[str, str]]]) -> None:
    assert load_script().build_sets() == built


def test_check_mode_passes(script: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert script.main(["--check"]) == 0


# ---------------------------------------------------------------------------------------------
# Structure and splits


@pytest.mark.parametrize("name", SETS)
def test_structure_and_splits(name: str, shipped: dict[str, list[dict[str, str]]]) -> None:
    rows = shipped[name]
    assert len(rows) >= 240
    for row in rows:
        assert list(row) == KEYS
        assert all(isinstance(value, str) and value.strip() for value in row.values()), row
        assert row["split"] in {"train", "heldout"}
        assert row["instruction"].isascii() and row["response"].isascii(), row
        assert len(row["response"].split()) <= 90, row
    instructions = [row["instruction"] for row in rows]
    assert len(set(instructions)) == len(instructions)
    categories = Counter(row["category"] for row in rows)
    assert len(categories) >= 8
    for category in categories:
        assert {row["split"] for row in by_category(rows, category)} == {"train", "heldout"}
    held = sum(row["split"] == "heldout" for row in rows) / len(rows)
    assert 0.15 <= held <= 0.25


def test_sets_are_distinct(shipped: dict[str, list[dict[str, str]]]) -> None:
    seen: dict[str, str] = {}
    for name in SETS:
        for row in shipped[name]:
            key = row["instruction"].casefold()
            assert key not in seen, f"{row['instruction']!r} is in {seen[key]} and {name}"
            seen[key] = name
    categories = [{row["category"] for row in shipped[name]} for name in SETS]
    assert not (categories[0] & categories[1] or categories[0] & categories[2])
    assert not categories[1] & categories[2]


def test_no_factual_qa_question(shipped: dict[str, list[dict[str, str]]]) -> None:
    questions = [
        json.loads(line)["question"]
        for path in FACTUAL_QA
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(questions) > 100
    exact = {q.casefold() for q in questions}
    loose = {re.sub(r"[^a-z0-9]+", " ", q.casefold()).strip() for q in questions}
    for name in SETS:
        for row in shipped[name]:
            instruction = row["instruction"].casefold()
            assert instruction not in exact, row
            assert re.sub(r"[^a-z0-9]+", " ", instruction).strip() not in loose, row


# ---------------------------------------------------------------------------------------------
# facts: short answers, recomputed here


def test_facts_are_short(shipped: dict[str, list[dict[str, str]]]) -> None:
    for row in shipped["facts"]:
        assert len(row["response"].split()) <= 12, row
        assert "\n" not in row["response"]


def test_facts_arithmetic(shipped: dict[str, list[dict[str, str]]]) -> None:
    ops = {
        "plus": lambda a, b: a + b,
        "minus": lambda a, b: a - b,
        "times": lambda a, b: a * b,
        "divided by": lambda a, b: a / b,
    }
    for row in by_category(shipped["facts"], "arithmetic"):
        match = re.fullmatch(
            r"What is ([\d,]+) (plus|minus|times|divided by) ([\d,]+)\?", row["instruction"]
        )
        assert match, row
        expected = ops[match[2]](number(match[1]), number(match[3]))
        assert row["response"] == f"{int(expected):,}.", row
        assert expected.denominator == 1


def test_facts_unit_conversion(shipped: dict[str, list[dict[str, str]]]) -> None:
    in_base = {  # size of each unit in a base unit of its kind
        "kilometres": 1000,
        "metres": 1,
        "centimetres": Fraction(1, 100),
        "millimetres": Fraction(1, 1000),
        "kilograms": 1000,
        "grams": 1,
        "litres": 1000,
        "millilitres": 1,
        "weeks": 7 * 24 * 3600,
        "days": 24 * 3600,
        "hours": 3600,
        "minutes": 60,
        "seconds": 1,
    }
    for row in by_category(shipped["facts"], "unit_conversion"):
        match = re.fullmatch(r"How many (\w+) are in ([\d,.]+) (\w+)\?", row["instruction"])
        assert match, row
        answer = re.fullmatch(r"([\d,.]+) (\w+)\.", row["response"])
        assert answer and answer[2] == match[1], row
        expected = number(match[2]) * in_base[match[3]] / in_base[match[1]]
        assert number(answer[1]) == expected, row


def roman_to_int(text: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for letter, following in zip(text, [*text[1:], ""], strict=True):
        value = values[letter]
        total += -value if following and values[following] > value else value
    return total


def test_facts_roman_numerals(shipped: dict[str, list[dict[str, str]]]) -> None:
    for row in by_category(shipped["facts"], "roman_numerals"):
        write = re.fullmatch(r"Write (\d+) in Roman numerals\.", row["instruction"])
        if write:
            assert re.fullmatch(r"[IVXLCDM]+\.", row["response"]), row
            assert roman_to_int(row["response"][:-1]) == int(write[1]), row
            continue
        read = re.fullmatch(
            r"What number does the Roman numeral ([IVXLCDM]+) stand for\?", row["instruction"]
        )
        assert read, row
        assert row["response"] == f"{roman_to_int(read[1])}.", row


def test_facts_letters_and_numbers(shipped: dict[str, list[dict[str, str]]]) -> None:
    for row in by_category(shipped["facts"], "letter_counts"):
        match = re.fullmatch(
            r"How many (letters|vowels) are in the word '(\w+)'\?", row["instruction"]
        )
        assert match, row
        word = match[2]
        count = len(word) if match[1] == "letters" else sum(ch in "aeiou" for ch in word)
        assert row["response"] == f"{count}.", row
    for row in by_category(shipped["facts"], "rounding"):
        match = re.fullmatch(
            r"Round ([\d,]+) to the nearest (ten|hundred|thousand)\.", row["instruction"]
        )
        assert match, row
        unit = {"ten": 10, "hundred": 100, "thousand": 1000}[match[2]]
        n = int(number(match[1]))
        low, high = n - n % unit, n - n % unit + unit
        expected = high if n - low >= high - n else low
        assert row["response"] == f"{expected:,}.", row
    for row in by_category(shipped["facts"], "number_properties"):
        n = int(re.search(r"\d+", row["instruction"])[0])
        if "even or odd" in row["instruction"]:
            assert row["response"] == ("Even." if n % 2 == 0 else "Odd."), row
        else:
            prime = n > 1 and all(n % d for d in range(2, n))
            assert row["response"].startswith("Yes" if prime else "No"), row
    for row in by_category(shipped["facts"], "sequences"):
        terms = [int(t) for t in re.findall(r"\d+", row["instruction"])]
        step, ratio = terms[1] - terms[0], Fraction(terms[1], terms[0])
        if all(b - a == step for a, b in itertools.pairwise(terms)):
            expected = terms[-1] + step
        else:
            assert all(Fraction(b, a) == ratio for a, b in itertools.pairwise(terms))
            expected = terms[-1] * ratio
        assert row["response"] == f"{expected}.", row


# ---------------------------------------------------------------------------------------------
# steps: numbered steps and a final answer line, recomputed here


def answer_of(response: str) -> str:
    return response.splitlines()[-1].removeprefix("Answer: ")


def test_steps_format(shipped: dict[str, list[dict[str, str]]]) -> None:
    for row in shipped["steps"]:
        lines = row["response"].splitlines()
        assert len(lines) >= 3, row
        assert lines[-1].startswith("Answer: ") and len(lines[-1]) > len("Answer: "), row
        for i, line in enumerate(lines[:-1], 1):
            assert line.startswith(f"Step {i}: "), row
        assert 20 <= len(row["response"].split()) <= 75, row


def test_steps_shopping(shipped: dict[str, list[dict[str, str]]]) -> None:
    for row in by_category(shipped["steps"], "shopping_change"):
        text = row["instruction"]
        first = re.search(r"buys (\d+) .+? at \$(\d+\.\d\d) each", text)
        second = re.search(r"and (?:(\d+) .+? at|an? .+? for) \$(\d+\.\d\d)", text)
        bill = re.search(r"pays with a \$(\d+) bill", text)
        assert first and second and bill, row
        total = int(first[1]) * Fraction(first[2]) + int(second[1] or 1) * Fraction(second[2])
        change = int(bill[1]) - total
        assert change >= 0
        assert answer_of(row["response"]) == f"${float(change):.2f}", row


def test_steps_average_sort_count(shipped: dict[str, list[dict[str, str]]]) -> None:
    for row in by_category(shipped["steps"], "average"):
        listed = re.search(r"\d+(?:, \d+)* and \d+", row["instruction"])
        assert listed, row
        values = [int(v) for v in re.findall(r"\d+", listed[0])]
        assert 3 <= len(values) <= 5 and sum(values) % len(values) == 0, row
        assert answer_of(row["response"]) == str(sum(values) // len(values)), row
    for row in by_category(shipped["steps"], "sort_numbers"):
        values = [int(v) for v in re.findall(r"\d+", row["instruction"])]
        descending = "largest to smallest" in row["instruction"]
        expected = ", ".join(str(v) for v in sorted(values, reverse=descending))
        assert answer_of(row["response"]) == expected, row
    for row in by_category(shipped["steps"], "count_letter"):
        letter, word = re.findall(r"'(\w+)'", row["instruction"])
        assert answer_of(row["response"]) == str(word.count(letter)), row


def test_steps_fractions_and_rectangles(shipped: dict[str, list[dict[str, str]]]) -> None:
    for row in by_category(shipped["steps"], "compare_fractions"):
        word, a, b = re.search(
            r"is (larger|smaller), (\d+/\d+) or (\d+/\d+)", row["instruction"]
        ).groups()
        pick = max if word == "larger" else min
        assert answer_of(row["response"]) == pick((a, b), key=Fraction), row
    for row in by_category(shipped["steps"], "rectangle"):
        length, width = (int(v) for v in re.findall(r"(\d+) (?:m|cm) ", row["instruction"]))
        answer = answer_of(row["response"])
        if "area" in row["instruction"]:
            assert f"{length * width:,} square" in answer, row
        if "perimeter" in row["instruction"]:
            assert re.search(rf"\b{2 * (length + width):,} (centi)?metres$", answer), row


# ---------------------------------------------------------------------------------------------
# rewrite: outputs recomputed from the quoted input


def quoted(instruction: str) -> list[str]:
    return re.findall(r'"([^"]*)"', instruction)


def test_rewrite_lists_and_words(shipped: dict[str, list[dict[str, str]]]) -> None:
    rows = shipped["rewrite"]
    for row in by_category(rows, "bulleted_list"):
        items = row["instruction"].split(": ", 1)[1].split(", ")
        assert row["response"].splitlines() == [f"- {item}" for item in items], row
    for row in by_category(rows, "alphabetical_order"):
        words = row["instruction"].split(": ", 1)[1].split(", ")
        assert row["response"] == ", ".join(sorted(words)), row
        assert row["response"] != ", ".join(words)
    for row in by_category(rows, "reverse_words"):
        (words,) = quoted(row["instruction"])
        assert row["response"] == " ".join(words.split()[::-1]), row
    for row in by_category(rows, "acronym"):
        (phrase,) = quoted(row["instruction"])
        assert row["response"] == "".join(w[0] for w in phrase.split()).upper(), row
    for row in by_category(rows, "uppercase"):
        (sentence,) = quoted(row["instruction"])
        assert row["response"] == sentence.upper(), row


def test_rewrite_sentences(shipped: dict[str, list[dict[str, str]]]) -> None:
    rows = shipped["rewrite"]
    for row in by_category(rows, "polite_request"):
        (request,) = quoted(row["instruction"])
        polite = f"Could you please {request[0].lower()}{request[1:-1]}?"
        assert row["response"] == polite, row
    for row in by_category(rows, "join_sentences"):
        word, first, second = quoted(row["instruction"])
        joined = f"{first[:-1]}, {word} "
        assert row["response"].startswith(joined), row
        assert row["response"][len(joined) :].lower() == second.lower(), row
    for category in ("past_tense", "plural_subject", "passive_voice"):
        for row in by_category(rows, category):
            (sentence,) = quoted(row["instruction"])
            assert row["response"] != sentence, row
            assert row["response"][0].isupper() and row["response"].endswith("."), row
    for row in by_category(rows, "passive_voice"):
        (sentence,) = quoted(row["instruction"])
        assert re.fullmatch(r"[A-Z][\w ]+ (was|were) \w+ by [\w ]+\.", row["response"]), row
        agent = row["response"][:-1].split(" by ", 1)[1]
        assert sentence.lower().startswith(agent.lower() + " "), row
