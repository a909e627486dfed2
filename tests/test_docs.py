"""The docs' code examples run, and the docs name every rule: documentation that cannot go stale silently."""

import re
from pathlib import Path

import pytest

from linearize.passes import ALL_RULES

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


def test_every_rule_states_its_math() -> None:
    for name, rule in ALL_RULES.items():
        assert "=" in rule.math, name


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    lines = [ln.split("#")[0].strip() for ln in first_block.strip().splitlines()]
    assert lines[0] == "pip install -e '.[dev]' && linearize check evit"
    assert lines[1] == "python -m pytest"
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()
