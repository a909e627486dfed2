"""Index arithmetic: sizes (N, C, k) and index variables (i, j, r) as `Sym`, their affine combinations as `Affine`.

Integer index arithmetic is kept in a canonical affine form, so that `N + 1 - 1` and `N` are the same shape and
build the same node. `bound` gives an expression's exact extremes over nested ranges.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


class IRError(ValueError):
    """A malformed program: the message names the node and what disagrees."""


@dataclass(frozen=True)
class Sym:
    """A size (N, C, H, k), an index variable ranging over [lo, hi), or a size derived from others as floor(lo / hi)
    (`T // 2`: lo the numerator, an affine in sizes, hi the divisor, a constant; built by `floordiv`)."""

    name: str
    kind: str  # "size" or "var"
    lo: Affine | None = None
    hi: Affine | None = None

    def sort_key(self) -> tuple:
        return (self.kind != "size", self.name, str(self.lo), str(self.hi))

    @property
    def derived(self) -> bool:
        """A size computed from other sizes (floor division), never given or read off a shape itself."""
        return self.kind == "size" and self.lo is not None

    def quotient(self, env: dict[Sym, int]) -> int:
        """The value of a derived size from the sizes it is computed from."""
        return self.lo.value(env) // self.hi.const

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
        coeffs, const = _hermite(coeffs, const)
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
    def base_syms(self) -> frozenset[Sym]:
        """The syms, with a derived size (T // 2) replaced by the sizes it is computed from (T)."""
        out: set[Sym] = set()
        for s, _ in self.terms:
            out |= s.lo.base_syms if s.derived else {s}
        return frozenset(out)

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
            return self.const + sum(c * (env[s] if s in env or not s.derived else s.quotient(env))
                                    for s, c in self.terms)
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


def floordiv(a: Affine, d: int) -> Affine:
    """floor(a / d) for an affine `a` in sizes: exact parts come out (`(2*T + 3)//2 = T + 1 + (1)//2`), and the rest
    is a derived size, `(T + 1)//2`, whose numerator has coefficients and constant in [0, d)."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise IRError(f"floor division needs a positive integer divisor, got {d!r}")
    if a.vars:
        raise IRError(f"floor division of an index variable is not an index expression: ({a})//{d}")
    whole = Affine._make({s: c // d for s, c in a.terms}, a.const // d)
    rest = Affine._make({s: c % d for s, c in a.terms}, a.const % d)
    if rest.is_const:
        return whole
    sym = Sym(f"({rest})//{d}" if len(rest.terms) > 1 or rest.const else f"{rest}//{d}", "size", rest, Affine((), d))
    return whole + Affine(((sym, 1),), 0)


def _hermite(coeffs: dict[Sym, int], const: int) -> tuple[dict[Sym, int], int]:
    """Hermite's identity, sum_{k < d} floor((u + k) / d) = u: T//2 + (T + 1)//2 is T, so cat(even, odd) rows are T."""
    firsts = [s for s in coeffs if s.derived and coeffs[s] and s.lo.const == 0]
    for s in firsts:
        d = s.hi.const
        group = [Sym(f"({s.lo + k})//{d}", "size", s.lo + k, s.hi) if k else s for k in range(d)]
        cs = [coeffs.get(g, 0) for g in group]
        if all(c > 0 for c in cs) or all(c < 0 for c in cs):
            m = min(cs, key=abs)
            coeffs = dict(coeffs)
            for g in group:
                coeffs[g] -= m
            for t, c in s.lo.terms:
                coeffs[t] = coeffs.get(t, 0) + m * c
    return coeffs, const


def relaxations(a: Affine, upper: bool) -> list[Affine]:
    """Affines R in plain sizes with D*a >= R (upper=False) or D*a <= R (upper=True) for a constant D > 0: each
    derived size floor(u/d) is replaced by a bound, (u - d + 1)/d <= floor(u/d) <= u/d, or from below by
    floor(min u / d) when u has no negative coefficient (sizes are >= 1). Several when there is a choice; [a]
    when nothing is derived."""
    derived = [(s, c) for s, c in a.terms if s.derived]
    if not derived:
        return [a]
    D = math.lcm(*(s.hi.const for s, _ in derived))
    base = Affine._make({s: c * D for s, c in a.terms if not s.derived}, a.const * D)
    options: list[list[Affine]] = []
    for s, c in derived:
        u, d = s.lo, s.hi.const
        scale = c * (D // d)
        if (c > 0) == upper:  # floor(u/d) <= u/d
            options.append([u.scale(scale)])
        else:  # floor(u/d) >= (u - d + 1)/d, and >= floor(min u / d) when u grows with every size (sizes >= 1)
            opts = [(u - (d - 1)).scale(scale)]
            if all(k >= 0 for _, k in u.terms):
                opts.append(Affine((), (u.const + sum(k for _, k in u.terms)) // d * d * scale))
            options.append(opts)
    return [base + sum(choice, Affine()) for choice in itertools.product(*options)]


def provably_negative(a: Affine) -> bool:
    """True when `a` < 0 for every assignment of sizes >= 1 (a sufficient test, never a false alarm)."""
    return any(r.const + sum(c for _, c in r.terms) < 0 and all(c <= 0 for _, c in r.terms)
               for r in relaxations(a, upper=True))


Shape = tuple[Affine, ...]  # a node's shape: one size expression per axis
