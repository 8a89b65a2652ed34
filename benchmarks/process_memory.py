"""Peak memory of a process together with its descendants (``chromoseg run``'s forked workers,
``pipeline.forked``), sampled from Linux's ``/proc``: ``ru_maxrss`` names one process only.

    with TreeMemory(pid) as memory:
        ...                      # the process runs
    memory.peak_rss_mib          # the largest sum of resident memory over the tree
    memory.peak_pss_mib          # the same with pages shared between processes counted once

The summed resident memory counts the pages that forked workers share with their parent (the
models, the imported libraries) once per process, an upper bound; the proportional set size
(PSS) divides each shared page among the processes that map it. Both are sampled every
``interval`` seconds, so a peak shorter than that can be missed.
"""

from __future__ import annotations

import threading
from pathlib import Path

PROC = Path("/proc")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children, grandchildren), from each thread's
    ``children`` list."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for children in (PROC / str(current) / "task").glob("*/children"):
            try:
                todo += [int(child) for child in children.read_text().split()]
            except OSError:  # ended meanwhile
                continue
    return tree


def _kib(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    """The ``keys`` lines (kB) of a /proc status-like file; {} when the process has ended."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {line.split(":")[0]: int(line.split()[1]) for line in lines if line.startswith(keys)}


def tree_memory_mib(pid: int) -> tuple[float, float]:
    """(summed resident memory, summed PSS) of ``pid`` and its descendants now, MiB."""
    rss = pss = 0
    for member in descendants(pid):
        rss += _kib(PROC / str(member) / "status", ("VmRSS",)).get("VmRSS", 0)
        pss += _kib(PROC / str(member) / "smaps_rollup", ("Pss:",)).get("Pss", 0)
    return rss / 1024, pss / 1024


class TreeMemory:
    """Samples ``tree_memory_mib(pid)`` in a thread while the ``with`` block runs (module
    docstring)."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.peak_rss_mib = self.peak_pss_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            rss, pss = tree_memory_mib(self.pid)
            self.peak_rss_mib = max(self.peak_rss_mib, rss)
            self.peak_pss_mib = max(self.peak_pss_mib, pss)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
