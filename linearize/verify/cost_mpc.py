"""The cost of a linearized program under secure multi-party computation (MPC), as SymPy formulas in the sizes.

    c = mpc_cost(linearize(get("evit"), SHARED_PIPELINE).result)
    c.formulas["secret_products"]      # N*(C*k + C + 1)
    c.at(N=196, k=138, C=768, H=12)    # {"secret_products": ..., "rounds": 4, ...}

The model (docs/cost.md): the inputs `x` and `attn` are secret-shared; sizes, `k`, constants and index arithmetic
are public. Additions, subtractions, public x secret products and data movement (indexing, slicing,
concatenation) are local: no communication. A secret x secret product costs one multiplication (a Beaver
triple) and one round; a comparison of secrets (heaviside or delta of a secret value) is one call of a secure
comparison protocol, and the stated protocol costs **one round per comparison layer**: every comparison whose
operands are ready is done in the same round, as secret-shared comparison protocols batch them. Counted:

- secret_products: secret x secret products (the one-hot selections, the masks times the scores);
- public_products: public x secret products (1/H of the head mean), local but counted;
- comparisons and rank_tests: secure comparisons of scores, and of ranks against public positions (as in cost.py);
- multiplicative_depth: secret x secret products on the longest path (what bounds an HE circuit's depth, with
  comparisons counted apart, since HE evaluates them by a protocol or a polynomial of its own depth);
- comparison_layers: comparisons on the longest path;
- rounds: the longest path, a comparison or a secret x secret product one round each.

Every node is counted as cost.py counts it (once per point of its free index variables, a table only at the
entries read); depths are per node: a node's depth is its deepest operand's plus its own layer.
`bitonic(...)` gives the same quantities for the sorting-network alternative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..ir import Node, Op
from ..ir.program import Program
from .cost import CostError, _Counter

COUNTS = ("secret_products", "public_products", "comparisons", "rank_tests")
DEPTHS = ("multiplicative_depth", "comparison_layers", "rounds")
PROTOCOL = ("x and attn secret-shared; sizes, k and constants public; additions, public x secret products and "
            "data movement local; a secret x secret product one round (Beaver triple); secure comparisons one "
            "round per comparison layer")

Layers = tuple[Any, Any, Any]  # (comparison layers, multiplication layers, rounds) a node adds to its operands'
NONE: Layers = (0, 0, 0)


class _Mpc(_Counter):
    def secret(self, n: Node) -> bool:
        return n in self.data

    def log2_ceil(self, n: Node) -> sp.Expr:
        return sp.ceiling(sp.log(self.length(n), 2))


@dataclass(frozen=True)
class MpcRule:
    counts: Callable[[_Mpc, Node, sp.Expr], dict[str, sp.Expr]]  # (model, node, elements x points) -> counts
    layers: Callable[[_Mpc, Node], Layers]


def _local(m: _Mpc, n: Node, amount: sp.Expr) -> dict[str, sp.Expr]:
    return {}


LOCAL = MpcRule(_local, lambda m, n: NONE)


def _product(m: _Mpc, n: Node, amount: sp.Expr) -> dict[str, sp.Expr]:
    both = all(m.secret(s) for s in n.src)
    return {"secret_products" if both else "public_products": amount}


def _division(m: _Mpc, n: Node, amount: sp.Expr) -> dict[str, sp.Expr]:
    if m.secret(n.src[1]):
        raise CostError(f"{m.program.name} divides by a secret value, which this MPC model does not price")
    return {"public_products": amount}


def _compare(m: _Mpc, n: Node, amount: sp.Expr) -> dict[str, sp.Expr]:
    return {m.comparison_kind(n): amount}


def _amax(m: _Mpc, n: Node, amount: sp.Expr) -> dict[str, sp.Expr]:
    # a tournament: L - 1 comparisons, each followed by a selection b * (u - v) + v, a secret x secret product
    return {"comparisons": amount * (m.length(n) - 1), "secret_products": amount * (m.length(n) - 1)}


def _tournament(m: _Mpc, n: Node) -> Layers:
    levels = m.log2_ceil(n)
    return levels, levels, 2 * levels


def _sqrt(m: _Mpc, n: Node, amount: sp.Expr) -> dict[str, sp.Expr]:
    if m.secret(n.src[0]):
        raise CostError(f"{m.program.name} takes the square root of a secret value, which this MPC model does not "
                        "price")
    return {}


def _exp(m: _Mpc, n: Node, amount: sp.Expr) -> dict[str, sp.Expr]:
    if m.secret(n.src[0]):
        raise CostError(f"{m.program.name} takes exp of a secret value, which this MPC model does not price")
    return {}


# op -> its MPC cost; ops without a linearized cost (the selections) are refused before this table is read
MPC: dict[Op, MpcRule] = {
    **{op: LOCAL for op in (Op.INPUT, Op.CONST, Op.AFFINE, Op.ADD, Op.SUB, Op.NEG, Op.INDEX, Op.SLICE, Op.CAT,
                            Op.SUM, Op.STACK, Op.DEF)},
    Op.MUL: MpcRule(_product, lambda m, n: (0, 1, 1) if all(m.secret(s) for s in n.src) else NONE),
    Op.DIV: MpcRule(_division, lambda m, n: NONE),
    Op.HEAVISIDE: MpcRule(_compare, lambda m, n: (1, 0, 1)),
    Op.DELTA: MpcRule(_compare, lambda m, n: (1, 0, 1)),
    Op.MEAN: MpcRule(lambda m, n, amount: {"public_products": amount}, lambda m, n: NONE),
    Op.AMAX: MpcRule(_amax, _tournament),
    Op.EXP: MpcRule(_exp, lambda m, n: NONE),  # of public values only: local
    Op.SQRT: MpcRule(_sqrt, lambda m, n: NONE),  # of public values only: local
}


@dataclass
class MpcCost:
    program: str
    formulas: dict[str, sp.Expr]  # by COUNTS and DEPTHS
    sizes: dict[str, sp.Symbol]

    def at(self, **sizes: int) -> dict[str, int]:
        """The counts and depths at the given sizes (every size the formulas use)."""
        env = {self.sizes[name]: sp.Integer(value) for name, value in sizes.items() if name in self.sizes}
        out = {}
        for name, f in self.formulas.items():
            value = sp.sympify(f).xreplace(env)
            if not value.is_number:
                missing = ", ".join(sorted(str(s) for s in value.free_symbols))
                raise ValueError(f"size {missing} has no value")
            out[name] = int(value)
        return out


def mpc_cost(program: Program) -> MpcCost:
    """The MPC counts and depths of a linearized program (the module docstring states the model)."""
    m = _Mpc(program)
    nodes, demand = m.read()
    counts = dict.fromkeys(COUNTS, sp.Integer(0))
    depth: dict[Node, Layers] = {}
    for n in nodes:
        if n not in m.data:
            depth[n] = NONE
            continue
        rule = MPC[n.op]
        each = demand.get(n) if n in demand else m.points(m.ranges(n.free))
        for name, amount in rule.counts(m, n, each * m.elements(n)).items():
            counts[name] += amount
        own = rule.layers(m, n)
        deepest = [sp.Max(*(depth[s][i] for s in n.src)) if n.src else 0 for i in range(3)]
        depth[n] = tuple(sp.sympify(d + o) for d, o in zip(deepest, own))
    formulas = {k: sp.factor(sp.expand(v)) for k, v in counts.items()}
    deepest = [sp.Max(*(depth[o][i] for o in program.outputs)) for i in range(3)]  # the deepest output
    formulas.update(zip(DEPTHS, (deepest[1], deepest[0], deepest[2])))
    return MpcCost(program.name, formulas, m.sizes)


def bitonic(fused: bool) -> MpcCost:
    """The sorting-network alternative, in the same model: a bitonic sort of the N (score, token row) pairs,
    padded to P = 2^ceil(log2 N), each compare-exchange a comparison and C + 1 secret x secret products (the
    swap d = b * (v - u), u + d, v - d of the score and the row); then the first k rows are kept (free) and, for
    EViT (fused), the fused token sums score * row over the N - k others. The head mean is as in the linearized
    form (N public products). Ties: compare (score, token index) as one key, so the order is the stable one."""
    N, C, k = (sp.Symbol(s, integer=True, positive=True) for s in ("N", "C", "k"))
    log = sp.ceiling(sp.log(N, 2))
    layers = log * (log + 1) / 2
    comparators = 2 ** log / 2 * layers
    formulas = {"secret_products": comparators * (C + 1) + ((N - k) * C if fused else 0),
                "public_products": N, "comparisons": comparators, "rank_tests": sp.Integer(0),
                "multiplicative_depth": layers + (1 if fused else 0), "comparison_layers": layers,
                "rounds": 2 * layers + (1 if fused else 0)}
    return MpcCost("bitonic sort" + (" + fused token" if fused else ""), formulas, {"N": N, "C": C, "k": k})


def formula_text(f: sp.Expr) -> str:
    """A formula as text, ceil(log2(N)) written so."""
    return str(f).replace("ceiling(log(N)/log(2))", "ceil(log2(N))")


def describe(result: MpcCost, alternative: MpcCost, values: dict[str, int]) -> dict[str, Any]:
    """JSON-ready: the counts and depths at the given sizes, the formulas, the protocol, and the alternative's."""
    def one(r: MpcCost) -> dict[str, Any]:
        return {**r.at(**values), "formulas": {k: formula_text(v) for k, v in r.formulas.items()}}
    return {"program": result.program, "model": "mpc", "protocol": PROTOCOL, "sizes": values, **one(result),
            "sorting_network": {"name": alternative.program, **one(alternative)}}
