"""The docs' code examples run, and the docs name every rule: documentation that cannot go stale silently."""

import re
from pathlib import Path

import pytest

from linearize.rewrite import ALL_RULES

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_code_examples_run(page: Path) -> None:
    namespace: dict = {}
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)


def test_every_rule_is_documented() -> None:
    text = (ROOT / "docs" / "rules.md").read_text()
    documented = set(re.findall(r"^### ([\w-]+)", text, re.M))
    assert set(ALL_RULES) <= documented, f"undocumented rules: {sorted(set(ALL_RULES) - documented)}"


def test_every_rule_states_its_math_as_the_docs_do() -> None:
    """Each rule's one-line math (its first equation, before side conditions) is an equation with two sides, and
    docs/rules.md states that same equation in code under the rule's heading."""
    text = (ROOT / "docs" / "rules.md").read_text()
    sections = dict(re.findall(r"^### ([\w-]+)(.*?)(?=^#|\Z)", text, re.M | re.S))
    for name, rule in ALL_RULES.items():
        equation = re.split(r";|,?  ", rule.math)[0]
        lhs, _, rhs = equation.partition(" = ")
        assert lhs.strip() and rhs.strip(), f"{name}: {rule.math!r} does not start with an equation"
        shown = [s for s in re.findall(r"`([^`]+)`", sections[name]) if " = " in s]
        assert any(equation.startswith(s) for s in shown), f"{name}: docs/rules.md does not state `{equation}`"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    lines = [ln.split("#")[0].strip() for ln in first_block.strip().splitlines()]
    assert lines[0] == "pip install -e '.[dev]' && linearize check evit"
    assert lines[1] == "python -m pytest"
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_cli_reference_covers_every_command_and_option() -> None:
    import argparse

    from linearize.cli import build_parser
    text = (ROOT / "docs" / "cli.md").read_text()
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert name in sections, f"docs/cli.md has no section for `linearize {name}`"
        options = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        missing = {o for o in options if o not in sections[name]}
        assert not missing, f"docs/cli.md does not document {sorted(missing)} of `linearize {name}`"


def test_cli_reference_transcripts_are_what_the_commands_print(capsys, tmp_path, monkeypatch) -> None:
    import numpy as np

    from linearize.cli import main
    transcripts = re.findall(r"```\n\$ linearize (.*?)\n(.*?)```", (ROOT / "docs" / "cli.md").read_text(), re.S)
    assert len(transcripts) >= 2
    monkeypatch.chdir(tmp_path)  # in.npz as the page describes it: B = 2, N + 1 = 9, C = 4, H = 3
    rng = np.random.default_rng(0)
    np.savez("in.npz", x=rng.random((2, 9, 4), dtype=np.float32), attn=rng.random((2, 3, 9, 9), dtype=np.float32))
    for cmd, out in transcripts:
        assert main(cmd.split()) == 0
        assert capsys.readouterr().out == out, cmd
