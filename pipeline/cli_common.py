"""What the command line's modules share: exit codes and the progress bars."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "Bars"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Bars:
    """A :data:`pipeline.core.progress.ProgressFn` drawing one tqdm bar per label on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: dict[str, Any] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        bar = self.bars.get(label)
        if bar is None:
            bar = self.bars[label] = tqdm(total=total, desc=label, unit="task", file=sys.stderr)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
