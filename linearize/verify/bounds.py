"""`linearize.bounds`: sound lower and upper bounds on a program's output over boxes of inputs, through its
linearized form, with the rank interval and the status (certainly kept, certainly dropped, undecided) of every
token of a program that selects by rank.

The per-op interval rules are in intervals.py, the rules that use the derivation's structure in selection.py;
docs/bounds.md states every rule and what was measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..eval.compiled import Compiled
from ..ir import Affine, InputError, Node, Program
from ..ir.form import is_linearized
from .intervals import IntervalEvaluation
from .kernels import get_kernels
from .patterns import match_rank, match_ranked_sum, match_selected_row
from .selection import STRUCTURAL_RULES

KEPT, UNDECIDED, DROPPED = 1, 0, -1
TIES = ("any", "stable")


@dataclass
class Bounds:
    """lower <= output <= upper for every input in the boxes, arrays shaped like the output ([B, ...]).

    For a program that selects by rank: rank_lower/rank_upper [B, N] bound each token's 0-based rank (token i
    is row i + 1 of x), and k is the number of ranks kept, so a token is certainly kept when rank_upper < k,
    certainly dropped when rank_lower >= k, and undecided otherwise. They are None when the program selects
    nothing at these sizes (EViT's k == N returns x).
    """

    lower: Any
    upper: Any
    rank_lower: Any = None
    rank_upper: Any = None
    k: int | None = None
    ties: str = "any"
    naive: bool = False

    @property
    def width(self) -> Any:
        return self.upper - self.lower

    @property
    def status(self) -> Any:
        """An int8 array [B, N]: KEPT (1), DROPPED (-1) or UNDECIDED (0); None without a selection."""
        if self.rank_lower is None or self.k is None:
            return None
        import numpy as np
        lo, hi = _numpy(self.rank_lower), _numpy(self.rank_upper)
        return np.where(hi < self.k, KEPT, np.where(lo >= self.k, DROPPED, UNDECIDED)).astype(np.int8)

    def summary(self) -> dict[str, Any]:
        """Token counts by status (over the batch) and the mean and max width of the output bounds."""
        width = _numpy(self.width)
        out: dict[str, Any] = {"shape": list(width.shape), "mean_width": float(width.mean()) if width.size else 0.0,
                               "max_width": float(width.max()) if width.size else 0.0, "k": self.k}
        status = self.status
        if status is not None:
            out |= {"kept": int((status == KEPT).sum()), "dropped": int((status == DROPPED).sum()),
                    "undecided": int((status == UNDECIDED).sum())}
        return out


def _numpy(a: Any) -> Any:
    import numpy as np
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def bounds(program: Program, lower: Mapping[str, Any] | None = None, upper: Mapping[str, Any] | None = None, *,
           backend: str = "numpy", ties: str = "any", naive: bool = False, **given: Any) -> Bounds:
    """Bounds on `program`'s output for every input in the boxes `lower[name] <= input <= upper[name]` (batched
    arrays); an input passed by keyword (`x=...`) is exact, as are sizes (`k=...`). A program not yet in
    linearized form is linearized with the default pipeline first.

    ties="any" bounds every order of tied scores (torch.topk orders ties arbitrarily); ties="stable" only the
    stable order (lower index first), which the linearized form computes. naive=True skips the structural rules:
    plain interval propagation, every undecided heaviside/delta taken as [0, 1].
    """
    if ties not in TIES:
        raise InputError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    if isinstance(program.output, tuple):  # ToMe's (x, size): not propagated here yet
        raise InputError(f"{program.name} has {len(program.outputs)} outputs; bounds takes a program with one")
    if not is_linearized(program):
        from ..rewrite import linearize
        program = linearize(program).result
    lower, upper = dict(lower or {}), dict(upper or {})
    for name in sorted(set(lower) ^ set(upper)):
        raise InputError(f"input {name} has a {'lower' if name in lower else 'upper'} bound but no "
                         f"{'upper' if name in lower else 'lower'} bound")
    for name in lower:
        if name not in program.input_names:
            raise InputError(f"{program.name} has no input {name!r} (its inputs: {', '.join(program.input_names)})")
        if name in given:
            raise InputError(f"input {name} is given both as a box and as an exact array")
    exact = {name: given.pop(name) for name in program.input_names if name in given}
    f = Compiled(program, backend)
    env, lo_arrays, dtype = f.prepare({**exact, **lower, **given})
    _, hi_arrays, _ = f.prepare({**exact, **upper, **given})
    for name in program.input_names:
        if name not in lower:  # exact: one array for both bounds
            hi_arrays[name] = lo_arrays[name]
            continue
        lo, hi = lo_arrays[name], hi_arrays[name]
        if tuple(lo.shape) != tuple(hi.shape):
            raise InputError(f"the bounds of {name} have different shapes: {list(lo.shape)} and {list(hi.shape)}")
        if bool((lo > hi).any()):
            raise InputError(f"the lower bound of {name} exceeds its upper bound at {int(_numpy(lo > hi).sum())} "
                             "entries")
    kernels = get_kernels(f.backend.name)
    iv = IntervalEvaluation(f.backend, kernels, env, lo_arrays, hi_arrays, dtype,
                            rules=() if naive else STRUCTURAL_RULES, ties=ties)
    root = program.active_root(env)
    box = iv.box(root)
    batch = next(iter(lo_arrays.values())).shape[0]
    lo, hi = (a if a.shape[0] == batch else f.backend.broadcast_to(a, (batch, *a.shape[1:])) for a in (box.lo, box.hi))
    if lo is hi:  # an exact output: still two arrays, so that a caller may write to one
        hi = lo.copy() if hasattr(lo, "copy") else lo.clone()
    rank_lo, rank_hi, k = _selection(iv, root, batch)
    return Bounds(lo, hi, rank_lo, rank_hi, k, ties, naive)


def _selection(iv: IntervalEvaluation, root: Node, batch: int) -> tuple[Any, Any, int | None]:
    """The rank intervals of the one rank the output selects by, and how many ranks it keeps; Nones otherwise."""
    nodes = root.toposort()
    ranks = [n for n in nodes if match_rank(n) is not None and n in iv.memo]
    if len(ranks) != 1:
        return None, None, None
    rank = ranks[0]
    if rank in iv.ranks:
        r_lo, r_hi = iv.ranks[rank]
    else:  # naive: the plain propagation's bounds on the rank
        box = iv.memo[rank]
        r_lo, r_hi = (iv.xp.to_dtype(a, iv.xp.int_dtype) for a in (box.lo, box.hi))
    r_lo, r_hi = (a if a.shape[0] == batch else iv.xp.broadcast_to(a, (batch, *a.shape[1:])) for a in (r_lo, r_hi))
    kept = set()
    for n in nodes:
        row, masked = match_selected_row(n), match_ranked_sum(n)
        if row is not None and row.test.rank is rank and len(row.test.e.vars) == 1:
            r = next(iter(row.test.e.vars))
            if row.test.e == Affine.of(r) and r.lo.value(iv.env) == 0:  # the rows of ranks 0, 1, ..., hi - 1
                kept.add(r.hi.value(iv.env))
        if masked is not None and masked.test.rank is rank:
            t = masked.test.e.value(iv.env)
            kept.add(t + 1 if masked.test.sign > 0 else t)
    return r_lo, r_hi, kept.pop() if len(kept) == 1 else None
