"""Synthetic project reports and the exact record each one states, for notebooks/lora_finetune.ipynb.

Each report is a few sentences in varied wording and order, with numbers that are *not* the answer
(the start year, the money spent so far, the team size, a share done) next to the ones that are.
The record has five fields::

    {"project": str, "lead": str, "budget_eur": int, "status": "on track"|"delayed"|"completed"|"cancelled",
     "end_year": int}

``make(n, seed)`` is deterministic (one ``random.Random(seed)``, no numpy). ``python
project_reports.py`` (re)writes reports_train.jsonl and reports_test.jsonl next to this file, byte
for byte what is committed; the test set shares no report and no project name with the training set.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

STATUSES = ("on track", "delayed", "completed", "cancelled")

_NAMES = (
    "Lighthouse", "Falcon", "Orion", "Juniper", "Atlas", "Meridian", "Cobalt", "Harbor", "Nimbus", "Quartz",
    "Saffron", "Tundra", "Beacon", "Cedar", "Delta Bridge", "Ember", "Fjord", "Granite", "Helix", "Indigo",
    "Kestrel", "Lumen", "Mosaic", "Northwind", "Opal", "Pinnacle", "Redwood", "Sable", "Trellis", "Umbra",
    "Vantage", "Willow", "Zephyr", "Aurora", "Basalt", "Cypress", "Driftwood", "Evergreen", "Foxglove",
    "Glacier", "Horizon", "Ironbark", "Jasper", "Keystone", "Larkspur", "Monsoon", "Nebula", "Oakridge",
    "Prism", "Riverbend", "Sequoia", "Tidewater", "Upland", "Verdant", "Waypoint", "Yarrow", "Bluebird",
    "Copperhead", "Dune", "Eastgate", "Firefly", "Greenfield", "Highline", "Island Hop", "Kite", "Lodestar",
    "Mistral", "Nightjar", "Outpost", "Polaris", "Quill", "Rainier", "Skylark", "Thistle", "Uplink",
    "Vireo", "Wren", "Aspen", "Bramble", "Canopy", "Dovetail", "Estuary", "Fulcrum", "Gossamer", "Heron",
)  # fmt: skip
_FIRST = (
    "Maria", "Tom", "Aiko", "Lena", "Omar", "Priya", "Jonas", "Sofia", "Kwame", "Elena", "Mateo", "Hana",
    "Lucas", "Amara", "Noah", "Ingrid", "Ravi", "Chloe", "Tariq", "Yuki", "Daniel", "Fatima", "Erik", "Mei",
)  # fmt: skip
_LAST = (
    "Okafor", "Berg", "Sato", "Fischer", "Haddad", "Sharma", "Lindqvist", "Rossi", "Mensah", "Popescu",
    "Garcia", "Kim", "Dubois", "Nwosu", "Keller", "Novak", "Iyer", "Martin", "Aziz", "Tanaka", "Weber",
    "Costa", "Nilsson", "Chen",
)  # fmt: skip
_TOPICS = (
    "a new booking system for two clinics", "the migration of the billing database", "a customer support chatbot",
    "the warehouse scanner rollout", "a redesign of the public website", "solar panels on three depots",
    "a data platform for the sales team", "the replacement of the office network", "an app for field inspectors",
    "a training programme for new engineers", "the move to a new accounting package", "flood sensors along the river",
)  # fmt: skip


def _money(rng: random.Random, amount: int) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"{amount} euros"
    if style == 1:
        return f"€{amount:,}"
    if style == 2:
        return f"EUR {amount:,}".replace(",", " ")
    return f"{amount:,} EUR"


def _project_phrase(rng: random.Random, name: str) -> str:
    return rng.choice((f"Project {name}", f"The {name} project", f"{name}"))


def _status_sentence(rng: random.Random, status: str, end_year: int, start_year: int) -> str:
    if status == "on track":
        verb = rng.choice(("is on track", "is running to plan", "is on schedule"))
        return rng.choice((f"The work {verb} and should end in {end_year}.",
                           f"It {verb}; the planned end is {end_year}.",
                           f"Status: on track, with completion expected in {end_year}."))
    if status == "delayed":
        return rng.choice((f"The work is delayed, and the end has moved to {end_year}.",
                           f"It has slipped behind schedule; it is now expected to finish in {end_year}.",
                           f"Status: delayed. The new end date is in {end_year}."))
    if status == "completed":
        return rng.choice((f"It was completed in {end_year}.",
                           f"The work finished in {end_year} and the project is closed.",
                           f"Status: completed ({end_year})."))
    return rng.choice((f"The board cancelled it in {end_year}.",
                       f"It was stopped in {end_year}; the status is cancelled.",
                       f"Status: cancelled in {end_year}, {end_year - start_year} years after it began."))


def _one(rng: random.Random, name: str) -> dict:
    lead = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    status = rng.choice(STATUSES)
    start_year = rng.randint(2015, 2025)
    end_year = start_year + rng.randint(1, 4)
    budget = rng.randrange(20, 2000) * 1000 + rng.choice((0, 0, 0, 500))
    spent = int(budget * rng.uniform(0.1, 0.95)) // 100 * 100
    team = rng.randint(3, 40)
    percent = rng.randint(5, 95)
    topic = rng.choice(_TOPICS)
    project = _project_phrase(rng, name)
    other = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    while other == lead:
        other = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"

    opening = rng.choice((f"{project} covers {topic} and started in {start_year}.",
                          f"{project}, begun in {start_year}, covers {topic}.",
                          f"Since {start_year}, {project} has worked on {topic}."))
    leader = rng.choice((f"{lead} leads it, with a team of {team}.",
                         f"It is led by {lead}; {other} handles procurement.",
                         f"The project lead is {lead}, supported by {team} people.",
                         f"{lead} is in charge, and {other} reports on costs."))
    money = rng.choice((f"Its budget is {_money(rng, budget)}, of which {_money(rng, spent)} has been spent.",
                        f"So far {_money(rng, spent)} of the {_money(rng, budget)} budget is spent.",
                        f"The approved budget is {_money(rng, budget)}."))
    extra = rng.choice((f"About {percent}% of the milestones are done.",
                        f"The steering group met {rng.randint(2, 12)} times this year.",
                        f"Risks include a vendor contract that ends in {start_year + rng.randint(1, 5)}.",
                        f"{other} joined in {rng.randint(start_year, 2026)}."))
    status_line = _status_sentence(rng, status, end_year, start_year)
    middle = [leader, money, extra, status_line]
    rng.shuffle(middle)
    report = " ".join([opening, *middle])
    record = {"project": name, "lead": lead, "budget_eur": budget, "status": status, "end_year": end_year}
    return {"report": report, "record": record}


def make(n: int, seed: int, names: tuple[str, ...] = _NAMES) -> list[dict]:
    """``n`` reports with their records, the same for the same ``seed``; project names from ``names``."""
    rng = random.Random(seed)
    return [_one(rng, rng.choice(names)) for _ in range(n)]


def splits(n_train: int = 300, n_test: int = 40) -> tuple[list[dict], list[dict]]:
    """The training and test sets: the test projects' names never occur in training."""
    test_names = _NAMES[-12:]
    return make(n_train, seed=19, names=_NAMES[:-12]), make(n_test, seed=2019, names=test_names)


def dumps(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write(folder: "str | Path" = Path(__file__).parent) -> None:
    train, test = splits()
    Path(folder, "reports_train.jsonl").write_text(dumps(train), encoding="utf-8")
    Path(folder, "reports_test.jsonl").write_text(dumps(test), encoding="utf-8")


if __name__ == "__main__":
    write()
