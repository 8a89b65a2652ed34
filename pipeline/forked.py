"""Images processed by forked worker processes, one core each (``batch.processes``).

One process whose networks use both cores of a 2-core machine leaves one idle while it maps
crops back, stitches, measures and writes (single-threaded Python, numpy and OpenCV: about half
of an image's time). Worker processes of one thread each keep every core busy
(docs/results.md, "Whole processes"). They are forked once the models are loaded, so they start
at once and share the models' memory; each claims groups of images one at a time, runs the
in-process engine's own loop on them (``pipeline.run._BatchRun.outcomes``: read, detect,
segment, stitch, measure, write every output) and sends each image's record, or its error as one
line, to the parent, which keeps the run's bookkeeping (progress bar, ``run.json``, the batch
table) as in one process.

Each worker runs its networks on one thread: GNU OpenMP, which torch uses on Linux, hangs in a
forked child that asks for more threads once the parent has used its own. So workers are forked
only on Linux with the networks on the CPU, as many as torch's threads (at most
``MAX_PROCESSES``). A worker that dies loses only the images of the group it was on:
they are reported failed (``--resume`` runs them again); the others take the remaining groups.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import wait

from pipeline.core.errors import InputError, one_line

MAX_PROCESSES = 8  # each worker adds a few hundred MB of memory of its own


class WorkerDiedError(RuntimeError):
    """An image whose worker process ended before finishing it."""


def forked_processes(setting, models, images: int) -> int:
    """The processes a run of ``images`` images uses: ``setting`` (``batch.processes``: a
    number, or ``auto``: torch's thread count, at most ``MAX_PROCESSES``), no more than the
    images, and 1 (this process alone) where forking is unsafe (not Linux; networks not on the
    CPU, ``models.on_cpu``)."""
    if not models.on_cpu or not sys.platform.startswith("linux"):
        return 1
    if setting == "auto":
        import torch

        setting = min(torch.get_num_threads(), MAX_PROCESSES)
    return max(1, min(int(setting), images))


def forked_outcomes(batch_run, batches: list[list], processes: int) -> Iterator[tuple]:
    """Fork ``processes`` workers (at most one per batch) that share ``batches`` (lists of
    ``ImageJob``; ``batch_run``: the run's ``pipeline.run._BatchRun``), and return an iterator of
    ``(job, record or exception)`` over every image of them, in the order they finish."""
    context = multiprocessing.get_context("fork")
    claimed = context.Value("i", 0)  # the next batch a worker takes
    workers = {}
    for _ in range(min(processes, len(batches))):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_work, args=(batch_run, batches, claimed, sender), daemon=True
        )
        process.start()
        sender.close()
        workers[receiver] = process
    return _collect(batches, workers)


def _work(batch_run, batches: list[list], claimed, sender) -> None:
    """A worker: claim batches until none is left, process them, send each image's outcome."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers on Ctrl-C
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)  # module docstring: more would hang

    def claims():
        while True:
            with claimed.get_lock():
                index = claimed.value
                claimed.value += 1
            if index >= len(batches):
                return
            yield batches[index]

    with ThreadPoolExecutor(max_workers=batch_run.workers) as pool:
        for batch in claims():  # one at a time: reading ahead would claim two
            for job, outcome in batch_run.outcomes(iter([batch]), pool):
                if isinstance(outcome, BaseException):
                    outcome = one_line(outcome)
                sender.send((job.image, outcome))


def _collect(batches: list[list], workers: dict) -> Iterator[tuple]:
    """The workers' outcomes as they come: ``(job, record)``, or ``(job, InputError(message))``
    for a failed image; images no worker finished, once every worker has ended:
    ``(job, WorkerDiedError)``."""
    jobs = {job.image: job for batch in batches for job in batch}
    exit_codes = []
    try:
        while workers:
            for receiver in wait(list(workers)):
                try:
                    image, outcome = receiver.recv()
                except EOFError:  # the worker ended
                    process = workers.pop(receiver)
                    process.join()
                    exit_codes.append(process.exitcode)
                    continue
                job = jobs.pop(image)
                yield job, outcome if isinstance(outcome, dict) else InputError(outcome)
    finally:
        for process in workers.values():  # left early (Ctrl-C): stop the rest
            process.terminate()
    ended = ", ".join(str(code) for code in exit_codes if code) or "0"
    for job in jobs.values():
        message = f"its worker process ended (exit status {ended}) before finishing it"
        yield job, WorkerDiedError(f"{message}; --resume runs it again")
