"""The documentation site: `mkdocs build --strict` succeeds (a broken link, a missing page in the nav, an
unresolvable API entry fail it), the API reference has an entry for every public name, each with a docstring,
and the notebooks are rendered, not executed."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import linearize as L

ROOT = Path(__file__).resolve().parent.parent
API = (ROOT / "docs" / "api.md").read_text()
ENTRIES = re.findall(r"^::: ([\w.]+)$", API, re.M)
# public beyond linearize.__all__: what the package loads on first use, and the verification entry points
MORE = {"check": "linearize.verify.check.check", "to_sympy": "linearize.show.sympy_bridge.to_sympy",
        "prove": "linearize.verify.prove.prove", "cost": "linearize.verify.cost.cost",
        "mpc_cost": "linearize.verify.cost_mpc.mpc_cost", "get": "linearize.programs.get"}
OPTIONAL = {"bounds": "linearize.verify.bounds", "to_module": "linearize.export"}  # added by later issues


def _resolve(path: str):
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _own_doc(obj) -> str:
    """The object's own docstring: not one inherited (Enum's) nor a dataclass's generated signature."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        return "" if doc.startswith(f"{obj.__name__}(") else doc.strip()
    return (obj.__doc__ or "").strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # run from a temporary directory: mkdocs-jupyter caches in ./.cache
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(out / "html")], cwd=out, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return out / "html"


def test_mkdocs_build_strict(site):
    for page in ("index.html", "api/index.html", "cli/index.html", "cost/index.html",
                 "notebooks/01_evit_walkthrough/index.html"):
        assert (site / page).is_file(), page


def test_every_public_name_has_an_api_entry_with_a_docstring():
    public = {name: getattr(L, name) for name in L.__all__ if name != "programs"}
    entries = {path: _resolve(path) for path in ENTRIES}
    documented = {id(obj) for obj in entries.values()}
    missing = [name for name, obj in public.items() if id(obj) not in documented]
    missing += [name for name, path in MORE.items() if path not in ENTRIES]
    for name, module in OPTIONAL.items():  # document them once they exist
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if id(obj) not in documented:
            missing.append(name)
    assert not missing, f"docs/api.md has no entry for {missing}"
    undocumented = [path for path, obj in entries.items() if not _own_doc(obj)]
    assert not undocumented, f"no docstring: {undocumented}"


def test_the_api_page_renders_every_entry(site):
    html = (site / "api" / "index.html").read_text()
    for path in ENTRIES:
        name = path.rpartition(".")[2]
        assert re.search(rf'id="{re.escape(path)}"', html), path
        assert name in html


def test_notebooks_are_rendered_with_their_outputs(site):
    html = (site / "notebooks" / "01_evit_walkthrough" / "index.html").read_text()
    assert "linearize" in html and "\\sum" in html  # the committed LaTeX outputs, not re-executed
