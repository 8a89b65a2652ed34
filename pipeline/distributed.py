"""The Dask engine of ``chromoseg run``: the images of a batch spread over a dask.distributed
cluster (``--engine dask``), with the same outputs as the in-process engine.

- ``--scheduler ADDRESS`` (e.g. ``tcp://10.0.0.5:8786``) sends the images to a running cluster;
  without it, ``--workers N`` worker processes (one thread each) are started on this machine,
  listening on 127.0.0.1 only.
- Each task is a small group of images (``group_size``: at most ``batch.images``, and at least
  two tasks per worker), processed on the worker by the in-process engine's own batch code
  (``pipeline.run._BatchRun.process``: the group's crops share the U-Net's batches), so every
  output file is written there, atomically (temporary name, then rename). The input files and
  the output folder must therefore be reachable under the same absolute paths from the workers
  as from the client (a shared filesystem on a real cluster); relative paths are resolved on
  the client.
- Workers load the models once: ``worker_models`` keeps them per worker process, keyed by the
  loader that makes them (``load_default_models`` for the shipped or configured models; tests
  pass their own loader).
- A worker that dies (crash, out of memory, node lost) loses no image: the scheduler runs its
  tasks again on other workers. A task that kills ``distributed.scheduler.allowed-failures`` + 1
  workers (dask's default: 3 + 1) is split into one task per image, so that only the image that
  kills every worker running it is reported as failed (in ``run.json``, and on stderr).
- The client keeps the run's bookkeeping (``pipeline.run._BatchRun``): ``--resume`` skips the
  images whose outputs are complete, ``run.json`` is rewritten as images finish, and the batch
  table and ``instances.json`` are assembled at the end from the per-image files, in image
  order, exactly as in-process.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.core.errors import InputError, one_line
from pipeline.inputs import ImageJob
from pipeline.measure import column_names
from pipeline.models import Models, load_models
from pipeline.run import MANIFEST_EVERY_S, RunSummary, _BatchRun, assemble, group_size

MALLOC_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"

_models: dict[bytes, Models] = {}
_models_lock = threading.Lock()


class WorkerLostError(RuntimeError):
    """An image whose task was lost with its worker more often than dask allows."""


def load_default_models(config: PipelineConfig, device: str | None) -> Models:
    """The models a pipeline config names, on ``device`` (None: cuda where the worker has it)."""
    return load_models(config, device)


def worker_models(loader: Callable[[], Models]) -> Models:
    """``loader()``, called once per process for equal loaders (pickled bytes compared)."""
    key = pickle.dumps(loader)
    with _models_lock:
        if key not in _models:
            _models[key] = loader()
        return _models[key]


def _resolved(job: ImageJob, base: str) -> ImageJob:
    """``job`` with its image and channel paths made absolute against ``base``."""
    return replace(
        job,
        path=Path(base, job.path),
        channels={name: Path(base, path) for name, path in job.channels.items()},
    )


def _as_given(message: str, job: ImageJob, resolved: ImageJob) -> str:
    """``message`` naming the paths of ``job`` as the user gave them, not their resolved form."""
    for name, path in [("", job.path), *job.channels.items()]:
        absolute = resolved.path if name == "" else resolved.channels[name]
        message = message.replace(str(absolute), str(path))
    return message


def process_on_worker(
    jobs: list[ImageJob],
    loader: Callable[[], Models],
    config: PipelineConfig,
    pixel_size: float | None,
    out_dir: str,
    base: str,
) -> list[tuple[str, dict | str]]:
    """Process a group of images and write their outputs, on a worker, exactly as the in-process
    engine processes one of its batches (``_BatchRun.process``: the crops of the group share the
    U-Net's batches).

    Returns per job ``("done", record)`` or ``("failed", one-line message)``; a bad image does not
    stop the group. ``base``: the client's working folder, against which relative input paths
    are resolved; messages name the paths as the user gave them.
    """
    resolved = [_resolved(job, base) for job in jobs]
    batch = _BatchRun(
        resolved, worker_models(loader), config, Path(out_dir), pixel_size, 1, None, True
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        batch.process(resolved, pool, batch.tqdm(disable=True))
    outcomes = []
    for job, resolved_job in zip(jobs, resolved, strict=True):
        entry = batch.entries[job.image]
        if entry["status"] == "done":
            outcomes.append(("done", batch.records[job.image]))
        else:
            outcomes.append(("failed", _as_given(entry["error"], job, resolved_job)))
    return outcomes


@contextmanager
def dask_client(scheduler: str | None, workers: int):
    """A dask Client on the cluster at ``scheduler``, or on a new local cluster of ``workers``
    processes (one thread each) that closes with it, listening on 127.0.0.1 only (its dashboard,
    when bokeh is installed, on a free port). InputError if the scheduler cannot be reached."""
    import dask
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except OSError as error:
                raise InputError(
                    f"cannot reach the dask scheduler at {scheduler}: {one_line(error)}"
                ) from error
        else:
            # dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's
            # adaptive mmap threshold: every large tensor is then mapped and unmapped afresh, and
            # the models ran slower (Dask 0.76-1.00x of in-process, bench_all.py): keep the default.
            stack.enter_context(dask.config.set({MALLOC_TRIM_KEY: None}))
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(Client(cluster))
        yield client


class _DaskBatchRun(_BatchRun):
    """``_BatchRun`` whose images are processed by the tasks of a dask cluster."""

    def collect(self, future, group: list[ImageJob], progress, last_try: bool) -> list[ImageJob]:
        """Record the outcome of a finished task for each image of ``group``. For a task lost with
        its workers (dask's KilledWorker), return its images to be run again, one by one, unless
        this was their ``last_try``: then they are recorded as failed."""
        try:
            outcomes = future.result()
        except Exception as error:  # KilledWorker: the task took down too many workers
            if not last_try:
                return group
            message = f"every worker that ran it died ({type(error).__name__}); see their logs"
            outcomes = [("lost", message)] * len(group)
        finally:
            future.release()
        for job, (status, outcome) in zip(group, outcomes, strict=True):
            if status == "done":
                self.succeed(job, outcome, "done")
            else:
                error = WorkerLostError if status == "lost" else InputError
                self.fail(job, error(outcome))
            progress.update()
        if time.perf_counter() - self.written > MANIFEST_EVERY_S:
            self.write_manifest()
            self.written = time.perf_counter()
        return []

    def run_on(self, client, loader: Callable[[], Models], resume: bool) -> RunSummary:
        from distributed import as_completed

        todo = self.pending(resume)
        progress = self.tqdm(
            total=len(self.jobs), initial=self.summary.resumed, unit="image", disable=self.quiet
        )
        workers = len(client.scheduler_info()["workers"])
        size = group_size(len(todo), workers, self.config.batch.images)
        arguments = (loader, self.config, self.pixel_size, str(self.out_dir.resolve()), os.getcwd())
        self.written = time.perf_counter()

        def submit(group: list[ImageJob]):
            return client.submit(process_on_worker, group, *arguments, pure=False)

        groups = {submit(todo[i : i + size]): todo[i : i + size] for i in range(0, len(todo), size)}
        suspects = []  # images of tasks lost with their workers
        for future in as_completed(groups):
            suspects += self.collect(future, groups[future], progress, last_try=False)
        # Then each suspect alone, one at a time: only an image that kills every worker that runs
        # it is reported lost, not those that shared its task or its worker.
        for job in suspects:
            self.collect(submit([job]), [job], progress, last_try=True)
        progress.close()
        channels = list(self.jobs[0].channels) if self.jobs else []
        header = column_names(channels, self.pixel_size is not None)
        self.summary.chromosomes = assemble(self.jobs, self.out_dir, self.records, header)
        self.summary.seconds = time.perf_counter() - self.started
        self.write_manifest()
        return self.summary


def run_dask(
    jobs: list[ImageJob],
    models: Models,
    config: PipelineConfig,
    out_dir: str | Path,
    pixel_size: float | None = None,
    resume: bool = False,
    quiet: bool = False,
    workers: int = 2,
    command: list[str] | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    loader: Callable[[], Models] | None = None,
) -> RunSummary:
    """``pipeline.run.run_batch`` on a dask cluster (module docstring); same arguments, plus:

    ``workers``: local worker processes when no ``scheduler`` address is given. ``models``: the
    client's copy (its hashes and crop margin go into the fingerprints and ``run.json``).
    ``loader``: a picklable zero-argument callable that makes the same models on a worker
    (default: ``load_default_models(config, device)``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loader = loader or partial(load_default_models, config, device)
    batch = _DaskBatchRun(jobs, models, config, out_dir, pixel_size, 1, command, quiet)
    with dask_client(scheduler, workers) as client:
        batch.manifest["engine"] = {
            "name": "dask",
            "scheduler": client.scheduler.address,
            "workers": len(client.scheduler_info()["workers"]),
        }
        return batch.run_on(client, loader, resume)
