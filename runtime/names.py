"""Docker-style names for containers nobody named: adjective_scientist."""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "admiring", "brave", "calm", "clever", "cool", "dazzling", "eager", "elated", "festive", "focused",
    "gallant", "happy", "hopeful", "jolly", "keen", "kind", "lucid", "modest", "nifty", "optimistic",
    "peaceful", "quirky", "relaxed", "serene", "sharp", "stoic", "tender", "upbeat", "vibrant", "wizardly",
)
SCIENTISTS = (
    "agnesi", "babbage", "curie", "darwin", "euler", "fermi", "galileo", "hopper", "hypatia", "kepler",
    "lamarr", "lovelace", "meitner", "newton", "noether", "pascal", "ritchie", "shannon", "thompson", "turing",
)


def random_name() -> str:
    return f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SCIENTISTS)}"
