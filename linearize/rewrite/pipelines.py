"""The rewrite passes, one file per family, and the default pipeline.

Order matters only for readability of the derivation and for which pattern is seen first: sums over
sorted ranges become masked sums before sorts are expanded, so the fused token never builds a sort; and a sum or
mean over a complement is rewritten (select) before rows kept in index order are placed by prefix counts (order).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..ir.form import linearized_problems
from ..ir.program import Program
from .engine import Derivation, LinearizeError, Pass, Rule, run_pipeline
from .order import ORDER
from .rank import DISTINCT_RANKS, STABLE_RANKS
from .select import SELECT
from .share import SHARE
from .simplify import SIMPLIFY
from .sort import MASKED_SUMS, SORT

DEFAULT_PIPELINE: tuple[Pass, ...] = (SELECT, ORDER, MASKED_SUMS, SORT, SIMPLIFY, STABLE_RANKS, SIMPLIFY)
# the hand derivation's ranks, without a tie-break (wrong on ties; kept to show why)
SEED_PIPELINE: tuple[Pass, ...] = (SELECT, ORDER, MASKED_SUMS, SORT, SIMPLIFY, DISTINCT_RANKS, SIMPLIFY)
# the default, then one comparison per pair of keys (used by `linearize cost`; see docs/prove.md)
SHARED_PIPELINE: tuple[Pass, ...] = (*DEFAULT_PIPELINE, SHARE, SIMPLIFY)
# by name, for the commands' --pipeline
PIPELINES: dict[str, tuple[Pass, ...]] = {"default": DEFAULT_PIPELINE, "shared": SHARED_PIPELINE,
                                          "seed": SEED_PIPELINE}

ALL_PASSES: tuple[Pass, ...] = (SELECT, ORDER, MASKED_SUMS, SORT, STABLE_RANKS, DISTINCT_RANKS, SHARE, SIMPLIFY)
ALL_RULES: dict[str, Rule] = {r.name: r for p in ALL_PASSES for r in p.rules}

__all__ = [
    "ALL_PASSES",
    "ALL_RULES",
    "DEFAULT_PIPELINE",
    "DISTINCT_RANKS",
    "MASKED_SUMS",
    "ORDER",
    "PIPELINES",
    "SEED_PIPELINE",
    "SELECT",
    "SHARE",
    "SHARED_PIPELINE",
    "SIMPLIFY",
    "SORT",
    "STABLE_RANKS",
    "linearize",
]


def linearize(program: Program, pipeline: Iterable[Pass] | None = None, *, require: bool = True) -> Derivation:
    """Run the default pipeline (or the given passes); refuse a result that is not in linearized form."""
    d = run_pipeline(program, DEFAULT_PIPELINE if pipeline is None else pipeline)
    if require:
        problems = linearized_problems(d.result)
        if problems:
            raise LinearizeError(f"{program.name} cannot be lowered to linearized form: " + "; ".join(problems), d)
    return d
