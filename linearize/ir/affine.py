"""Index arithmetic: sizes (N, C, k) and index variables (i, j, r) as `Sym`, their affine combinations as `Affine`.

Integer index arithmetic is kept in a canonical affine form, so that `N + 1 - 1` and `N` are the same shape and
build the same node. `bound` gives an expression's exact extremes over nested ranges.
"""

from __future__ import annotations

from dataclasses import dataclass


class IRError(ValueError):
    """A malformed program: the message names the node and what disagrees."""


@dataclass(frozen=True)
class Sym:
    """A size (N, C, H, k) or an index variable ranging over [lo, hi)."""

    name: str
    kind: str  # "size" or "var"
    lo: Affine | None = None
    hi: Affine | None = None

    def sort_key(self) -> tuple:
        return (self.kind != "size", self.name, str(self.lo), str(self.hi))

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Affine:
    """const + sum(coeff * sym): the only integer arithmetic index expressions may use."""

    terms: tuple[tuple[Sym, int], ...] = ()
    const: int = 0

    @staticmethod
    def of(x: Affine | int | Sym) -> Affine:
        if isinstance(x, Affine):
            return x
        if isinstance(x, Sym):
            return Affine(((x, 1),), 0)
        if isinstance(x, bool) or not isinstance(x, int):
            raise IRError(f"index expression must be an integer or affine in sizes and index variables, got {x!r}")
        return Affine((), x)

    @staticmethod
    def _make(coeffs: dict[Sym, int], const: int) -> Affine:
        terms = tuple(sorted(((s, c) for s, c in coeffs.items() if c), key=lambda t: t[0].sort_key()))
        return Affine(terms, const)

    def __add__(self, other: Affine | int) -> Affine:
        other = Affine.of(other)
        coeffs = dict(self.terms)
        for s, c in other.terms:
            coeffs[s] = coeffs.get(s, 0) + c
        return Affine._make(coeffs, self.const + other.const)

    def __neg__(self) -> Affine:
        return Affine(tuple((s, -c) for s, c in self.terms), -self.const)

    def __sub__(self, other: Affine | int) -> Affine:
        return self + (-Affine.of(other))

    def scale(self, factor: int) -> Affine:
        return Affine._make({s: c * factor for s, c in self.terms}, self.const * factor)

    @property
    def syms(self) -> frozenset[Sym]:
        return frozenset(s for s, _ in self.terms)

    @property
    def vars(self) -> frozenset[Sym]:
        return frozenset(s for s, _ in self.terms if s.kind == "var")

    @property
    def is_const(self) -> bool:
        return not self.terms

    def coeff(self, sym: Sym) -> int:
        return dict(self.terms).get(sym, 0)

    def subs(self, mapping: dict[Sym, Affine]) -> Affine:
        out = Affine((), self.const)
        for s, c in self.terms:
            out = out + (mapping[s].scale(c) if s in mapping else Affine(((s, c),), 0))
        return out

    def value(self, env: dict[Sym, int]) -> int:
        try:
            return self.const + sum(c * env[s] for s, c in self.terms)
        except KeyError as e:
            raise IRError(f"size {e.args[0].name} has no value") from None

    def __str__(self) -> str:
        parts: list[str] = []
        for s, c in self.terms:
            mag = "" if abs(c) == 1 else f"{abs(c)}*"
            parts.append(("- " if c < 0 else "+ ") + mag + s.name)
        if self.const or not parts:
            parts.append(("- " if self.const < 0 else "+ ") + str(abs(self.const)))
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]


def bound(a: Affine, upper: bool, keep: frozenset[Sym] = frozenset()) -> Affine:
    """The exact max (upper) or min of `a` over its index variables' nested ranges; the variables in `keep` stay.

    Innermost variables are eliminated first, so `j` in [0, i) with `i` in [0, N) gives max j = N - 2.
    """
    for _ in range(64):
        vs = a.vars - keep
        if not vs:
            return a
        # a variable no other remaining variable's range refers to is innermost
        inner = next(v for v in sorted(vs, key=Sym.sort_key)
                     if not any(v in (w.lo.vars | w.hi.vars) for w in vs if w != v))
        take_hi = (a.coeff(inner) > 0) == upper
        a = a.subs({inner: inner.hi - 1 if take_hi else inner.lo})
    raise IRError(f"index variable ranges refer to each other cyclically in {a}")


def provably_negative(a: Affine) -> bool:
    """True when `a` < 0 for every assignment of sizes >= 1 (a sufficient test, never a false alarm)."""
    return a.const + sum(c for _, c in a.terms) < 0 and all(c <= 0 for _, c in a.terms)


Shape = tuple[Affine, ...]  # a node's shape: one size expression per axis
