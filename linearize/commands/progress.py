"""Progress bars for long commands (check, prove): tqdm on stderr, on a terminal only.

Quiet when stdout or stderr is not a terminal (piped, redirected, run by a script) and with --json, so that
output meant for a program is never interleaved with a bar.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def wanted(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and sys.stdout.isatty() and sys.stderr.isatty()


class Bar:
    """A tqdm bar, or nothing when disabled; `update(done, total, desc)` moves it to `done` of `total`. The bar
    appears at the first update (when the total is known) and redraws whenever its description changes."""

    def __init__(self, enabled: bool, total: int, unit: str, desc: str = "") -> None:
        self.enabled, self.total, self.unit, self.desc = enabled, total, unit, desc
        self.bar: Any = None

    def update(self, done: int, total: int | None = None, desc: str | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total or self.total, unit=self.unit, desc=desc or self.desc, file=sys.stderr,
                            leave=False)
        if total is not None and total != self.bar.total:
            self.bar.total = total
        if desc is not None and desc != self.bar.desc:
            self.bar.set_description_str(desc, refresh=False)
            self.bar.n = done
            self.bar.refresh()
            return
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
