"""Words a reader meets: the source document is named, and defined once in the README ("the hand derivation");
no bare "the seed" in the README, the docs, the notebooks' prose or the CLI's help and messages (it clashed with
`--seed S`); the identifiers `evit-seed` and `--pipeline seed` say what they are wherever they are offered."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from linearize.cli import build_parser
from linearize.programs import BUILTIN
from linearize.rewrite import ALL_RULES

ROOT = Path(__file__).resolve().parent.parent
BARE = re.compile(r"\bthe seed\b|\bseed's\b|\bseed document\b", re.I)


def _parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"linearize": parser, **sub.choices}


def _texts() -> dict[str, str]:
    texts = {p.name: p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        texts[nb.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for name, parser in _parsers().items():
        texts[f"`{name} --help`"] = parser.format_help()
    texts["`linearize list`"] = "\n".join(summary for *_, summary in BUILTIN.values())
    texts["rules"] = "\n".join(r.math for r in ALL_RULES.values())
    return texts


def test_no_bare_seed():
    found = {where: BARE.findall(text) for where, text in _texts().items()}
    assert not {w: f for w, f in found.items() if f}


def test_the_readme_defines_the_hand_derivation_once():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("**the hand derivation**") == 1
    definition = readme[readme.index("**the hand derivation**"):][:400]
    assert "published with EViT's verification plans" in definition and "evit-seed" in readme


def test_the_identifiers_say_what_they_are():
    assert "hand derivation" in BUILTIN["evit-seed"][2]
    for name in ("derive", "prove", "cost"):
        help_text = " ".join(_parsers()[name].format_help().split())
        assert "seed, ranks without a tie-break as in the hand derivation" in help_text, name
