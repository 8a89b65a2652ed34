"""The Dask engine of ``chromoseg run``: the images of a batch spread over a dask.distributed
cluster (``--engine dask``), with the same outputs as the in-process engine.

- ``--scheduler ADDRESS`` (e.g. ``tcp://10.0.0.5:8786``) sends the images to a running cluster;
  without it, ``--workers N`` worker processes (one thread each) are started on this machine,
  listening on 127.0.0.1 only.
- Each task is one image: ``pipeline.run.process_image`` then ``write_image_outputs`` on the
  worker, so every output file is written there, atomically (temporary name, then rename). The
  input files and the output folder must therefore be reachable under the same absolute paths
  from the workers as from the client (a shared filesystem on a real cluster); relative paths
  are resolved on the client.
- Workers load the models once: ``worker_models`` keeps them per worker process, keyed by the
  loader that makes them (``load_default_models`` for the shipped or configured models; tests
  pass their own loader).
- A worker that dies (crash, out of memory, node lost) loses no image: the scheduler runs its
  images again on other workers; an image that kills workers ``distributed.scheduler.
  allowed-failures`` + 1 times (dask's default: 3 + 1) is reported as failed in ``run.json``.
- The client keeps the run's bookkeeping (``pipeline.run._BatchRun``): ``--resume`` skips the
  images whose outputs are complete, ``run.json`` is rewritten as images finish, and the batch
  table and ``instances.json`` are assembled at the end from the per-image files, in image
  order, exactly as in-process.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

from pipeline import InputError
from pipeline.inputs import ImageJob
from pipeline.measure import column_names
from pipeline.models import Models, load_models
from pipeline.run import (
    RunSummary,
    _BatchRun,
    assemble,
    one_line,
    process_image,
    read_record,
    write_image_outputs,
)

MANIFEST_EVERY_S = 5.0  # run.json is rewritten at most this often while images finish

_models: dict[bytes, Models] = {}
_models_lock = threading.Lock()


class WorkerLostError(RuntimeError):
    """An image whose task was lost with its worker more often than dask allows."""


def load_default_models(config: dict, device: str | None) -> Models:
    """The models a pipeline config names, on ``device`` (None: cuda where the worker has it)."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_models(config, device)


def worker_models(loader: Callable[[], Models]) -> Models:
    """``loader()``, called once per process for equal loaders (pickled bytes compared)."""
    key = pickle.dumps(loader)
    with _models_lock:
        if key not in _models:
            _models[key] = loader()
        return _models[key]


def process_on_worker(
    job: ImageJob,
    loader: Callable[[], Models],
    config: dict,
    pixel_size: float | None,
    out_dir: str,
    stamp: str,
    base: str,
):
    """Process one image and write its outputs on a worker.

    Returns ``("done", record)`` or ``("failed", one-line message)``; never raises for a bad image
    (as in-process, one bad image must not stop the batch). ``base``: the client's working folder,
    against which relative input paths are resolved; messages name the paths as the user gave them.
    """
    resolved = replace(
        job,
        path=Path(base, job.path),
        channels={name: Path(base, path) for name, path in job.channels.items()},
    )
    try:
        result = process_image(resolved, worker_models(loader), config, pixel_size)
        return "done", write_image_outputs(result, Path(out_dir), stamp)
    except Exception as error:
        message = one_line(error)
        for original, absolute in [(job.path, resolved.path)] + [
            (job.channels[name], resolved.channels[name]) for name in job.channels
        ]:
            message = message.replace(str(absolute), str(original))
        return "failed", message


@contextmanager
def dask_client(scheduler: str | None, workers: int):
    """A dask Client on the cluster at ``scheduler``, or on a new local cluster of ``workers``
    processes (one thread each) that closes with it, listening on 127.0.0.1 only (its dashboard,
    when bokeh is installed, on a free port). InputError if the scheduler cannot be reached."""
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
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                )
            )
            client = stack.enter_context(Client(cluster))
        yield client


class _DaskBatchRun(_BatchRun):
    """``_BatchRun`` whose images are processed by the tasks of a dask cluster."""

    def run_on(self, client, loader: Callable[[], Models], resume: bool) -> RunSummary:
        from distributed import as_completed

        todo = []
        for job in self.jobs:
            record = read_record(self.out_dir, job, self.stamps[job.image]) if resume else None
            if record is None:
                todo.append(job)
            else:
                self.succeed(job, record, "resumed")
        progress = self.tqdm(
            total=len(self.jobs), initial=self.summary.resumed, unit="image", disable=self.quiet
        )
        base, out_dir = os.getcwd(), str(self.out_dir.resolve())
        futures = {
            client.submit(
                process_on_worker, job, loader, self.config, self.pixel_size, out_dir,
                self.stamps[job.image], base, pure=False,
            ): job
            for job in todo
        }
        written = time.perf_counter()
        for future in as_completed(futures):
            job = futures[future]
            try:
                status, outcome = future.result()
            except Exception as error:  # KilledWorker: the image took down too many workers
                self.fail(job, WorkerLostError(
                    f"every worker that ran it died ({type(error).__name__}); see the workers' logs"
                ))
            else:
                if status == "done":
                    self.succeed(job, outcome, "done")
                else:
                    self.fail(job, InputError(outcome))
            future.release()
            progress.update()
            if time.perf_counter() - written > MANIFEST_EVERY_S:
                self.write_manifest()
                written = time.perf_counter()
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
    config: dict,
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
