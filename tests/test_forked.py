"""How many worker processes a run forks (``pipeline.forked.forked_processes``)."""

import dataclasses
import sys

import torch
from test_pipeline_helpers import fake_models

from pipeline.forked import MAX_PROCESSES, forked_processes


def test_workers_are_forked_only_on_linux_with_the_networks_on_the_cpu(monkeypatch):
    cpu = fake_models()
    assert forked_processes(3, cpu, images=10) == (3 if sys.platform.startswith("linux") else 1)
    assert forked_processes(3, dataclasses.replace(cpu, on_cpu=False), images=10) == 1
    monkeypatch.setattr(sys, "platform", "darwin")
    assert forked_processes(3, cpu, images=10) == 1


def test_no_more_workers_than_images_and_auto_follows_torch_threads(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    cpu = fake_models()
    assert forked_processes(4, cpu, images=2) == 2
    assert forked_processes(4, cpu, images=0) == 1
    assert forked_processes(1, cpu, images=10) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert forked_processes("auto", cpu, images=10) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1: one process
    assert forked_processes("auto", cpu, images=10) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert forked_processes("auto", cpu, images=100) == MAX_PROCESSES
