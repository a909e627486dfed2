"""to_module(): a data-oblivious program at static sizes as a torch.nn.Module whose source needs only torch.

The module's class is generated as Python source (codegen.py writes `forward`, one line per node), executed
in a namespace holding only torch, and kept as `module.source`: save it to a .py file and it imports with
torch alone. Sizes not read off the inputs (k) and size-level early returns (`if k == N: return x`) are
resolved here, once; the batch axis stays dynamic. Input checks (shapes, floating dtype, finiteness of what
forward reads: ir/reads.py) run at the Python boundary in a forward pre-hook that steps aside while torch
traces, compiles or exports, so `forward` itself has no `.item()` and no data-dependent branch.
"""

from __future__ import annotations

import linecache
import textwrap
from collections.abc import Mapping
from typing import Any

from ..ir.nodes import IRError, Sym
from ..ir.ops import SELECTIONS
from ..ir.program import InputError, Program
from ..ir.reads import named_reads, read_views
from .codegen import Generator, identifier

_CLASS = '''\
"""{doc}"""

import torch


def _check_hook(module, args, kwargs):
    """Checks the inputs of an eager call; steps aside while torch traces, compiles or exports."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return None
    module.check_inputs(*args, **kwargs)
    return None


class {cls}(torch.nn.Module):
    """{name} at {sizes_text}: made only of data-oblivious operations; the batch axis is dynamic."""

    sizes = {sizes!r}
    input_shapes = {shapes!r}  # without the leading batch axis
    outputs = {outputs!r}  # how many arrays forward returns (a tuple when more than one)
    requires = {requires!r}  # conditions on values the inputs must meet (Program.requires)
    reads = {reads!r}  # (input, key, where): the views of the inputs forward reads, checked finite

    def __init__(self, dtype=torch.float32, validate=True):
        super().__init__()
{buffers}        self.validate = validate
        if validate:
            self.register_forward_pre_hook(_check_hook, with_kwargs=True)

    def forward(self, {params}):
        dt = {first}.dtype
{body}

    def check_inputs(self, *args, **kwargs):
        """Raises ValueError unless the inputs are floating tensors of one dtype and batch size, of the
        static shapes, with finite values."""
        names = list(self.input_shapes)
        if len(args) > len(names):
            raise ValueError(f"{{type(self).__name__}} takes {{len(names)}} inputs, got {{len(args)}}")
        given = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in given:
                raise ValueError(f"unexpected or repeated input {{key!r}}; the inputs are {{', '.join(names)}}")
            given[key] = value
        missing = [n for n in names if n not in given]
        if missing:
            raise ValueError(f"missing input {{', '.join(missing)}}")
        first = given[names[0]]
        for n in names:
            t, want = given[n], self.input_shapes[n]
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{{n}} must be a torch.Tensor, got {{type(t).__name__}}")
            if not t.dtype.is_floating_point:
                raise ValueError(f"{{n}} must be a floating-point tensor, got {{t.dtype}}")
            if t.ndim != len(want) + 1 or tuple(t.shape[1:]) != want:
                dims = ", ".join(["B", *(str(d) for d in want)])
                raise ValueError(f"{{n}} must have shape [{{dims}}], got {{list(t.shape)}}")
            if t.shape[0] != first.shape[0] or t.dtype != first.dtype:
                raise ValueError(f"{{names[0]}} and {{n}} disagree: {{list(first.shape)}} {{first.dtype}} "
                                 f"against {{list(t.shape)}} {{t.dtype}}")
        for n, key, where in self.reads:  # what forward reads of each input (linearize/ir/reads.py)
            if not bool(torch.isfinite(given[n] if key is None else given[n][key]).all()):
                raise ValueError(f"{{n}} contains NaN or infinite values" + (where and f" in {{n}}{{where}}, which the "
                                 "program reads"))
        for n, condition in self.requires:  # the program's conditions on values (ToMe: size > 0)
            t = given[n]
            if condition == "positive" and not bool((t > 0).all()):
                raise ValueError(f"{{n}} must be > 0 everywhere")
            squares = (t * t).sum(-1)
            if condition == "normable_rows" and not bool(((squares > 0) & torch.isfinite(squares)).all()):
                raise ValueError(f"{{n}} must have a finite nonzero L2 norm in every row")
'''


def resolve_sizes(program: Program, static_sizes: Mapping[str, Any]) -> dict[Sym, int]:
    """Every size of the program from `static_sizes` (by name, or case-insensitively: n=196 for N), checked
    against the program's ranges; an InputError names what is missing, unknown or out of range."""
    syms = {s for n in program.inputs for d in n.arg[1] for s in d.syms} | {c.size for c in program.constraints}
    by_name = {s.name: s for s in syms}
    env: dict[Sym, int] = {}
    for key, value in static_sizes.items():
        sym = by_name.get(key)
        if sym is None:
            folded = [s for s in syms if s.name.lower() == key.lower()]
            sym = folded[0] if len(folded) == 1 else None
        if sym is None:
            raise InputError(f"unknown size {key!r}: {program.name} has sizes {', '.join(sorted(by_name))}")
        if sym in env:
            raise InputError(f"size {sym.name} given twice")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"size {sym.name} must be a nonnegative integer, got {value!r}")
        env[sym] = value
    missing = sorted(s.name for s in syms if s not in env)
    if missing:
        raise InputError(f"{program.name} needs static sizes {', '.join(missing)} "
                         f"(e.g. to_module(program, {', '.join(f'{m}=...' for m in missing)}))")
    shapes = {n.arg[0]: tuple(d.value(env) for d in n.arg[1]) for n in program.inputs}
    given = {c.size.name: env[c.size] for c in program.constraints}
    # checks the ranges (1 <= k <= N) and that the shapes agree; adds derived sizes (T // 2) and clips (ToMe's r)
    return program.bind_sizes(shapes, given)


def module_source(program: Program, **static_sizes: int) -> tuple[str, str]:
    """The generated module's Python source and its class name."""
    dependent = sorted({n.op.name.lower() for r in program.roots() for n in r.toposort() if n.op in SELECTIONS})
    if dependent:
        raise IRError(f"program {program.name} uses {', '.join(dependent)}, which are data-dependent: "
                      "pass linearize(program).result (linearize.to_module does this)")
    env = resolve_sizes(program, static_sizes)
    names = program.input_names
    for name in names:
        if not name.isidentifier() or name in {"self", "dt", "torch"}:
            raise IRError(f"input name {name!r} cannot be a parameter of forward")
    gen = Generator(program, env)
    body = gen.forward(program.active_root(env))
    shapes = {n.arg[0]: tuple(d.value(env) for d in n.arg[1]) for n in program.inputs}
    reads = named_reads(read_views(program.active_roots(env), program.inputs, env), env)
    cls = identifier("".join(w.capitalize() for w in program.name.replace("-", "_").split("_")) or "Program",
                     set()) + "Oblivious"
    sizes = {s.name: v for s, v in sorted(env.items(), key=lambda t: t[0].name) if not s.derived}
    sizes_text = ", ".join(f"{k} = {v}" for k, v in sizes.items())
    buffers = "".join(f"        self.register_buffer({name!r}, {code}.to(dtype), persistent=False)\n"
                      for name, code in gen.buffers)
    doc = (f"Generated by linearize from the program `{program.name}` at {sizes_text}; it needs only torch.\n\n"
           + textwrap.indent(str(program), "    "))
    source = _CLASS.format(doc=doc.replace('"""', "'''").replace("\\", "\\\\"), cls=cls, name=program.name,
                           sizes_text=sizes_text, sizes=sizes,
                           shapes=shapes, reads=reads,
                           buffers=buffers, params=", ".join(names), first=names[0],
                           outputs=len(program.outputs), requires=tuple(program.requires),
                           body=textwrap.indent(body, " " * 8))
    return source, cls


def to_module(program: Program, *, validate: bool = True, dtype: Any = None, **static_sizes: int) -> Any:
    """A torch.nn.Module computing the program (which must be free of data-dependent ops) at static sizes.

    to_module(linearize(evit).result, N=196, k=138, C=768, H=12) (or n=..., c=..., h=...: names match
    case-insensitively); called as module(x, attn) on [B, N+1, C] and [B, H, N+1, N+1] for any B. The
    constants are built in `dtype` (default float32) and cast to the input's dtype in forward. validate=True
    checks every eager call's inputs (shapes, dtype, finiteness) in a pre-hook that steps aside under
    torch.export, torch.compile, torch.jit.trace and torch.onnx.export.
    """
    import torch

    source, cls = module_source(program, **static_sizes)
    filename = f"<linearize.export {program.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks
    namespace: dict[str, Any] = {"__name__": f"linearize_export_{identifier(program.name, set())}"}
    exec(compile(source, filename, "exec"), namespace)
    module_class = namespace[cls]
    module_class.source = source
    return module_class(dtype=torch.float32 if dtype is None else dtype, validate=validate)
