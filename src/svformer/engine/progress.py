"""Progress bars with rate and ETA on a terminal; silence elsewhere (CI and log files get one summary
line per epoch from the training loop instead)."""
from __future__ import annotations

import sys


def interactive() -> bool:
    return sys.stderr.isatty()


def progress(iterable, desc: str = "", total=None, enabled: bool = True, initial: int = 0):
    if not enabled or not interactive():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, initial=initial, dynamic_ncols=True, leave=False)
