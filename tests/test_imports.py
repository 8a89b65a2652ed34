"""Start-up and exit of the program: importing the detector leaves torch's compiler out (torchvision
works the same), and how the program exits."""

import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter: the test session has imported torchvision and dynamo already.
SCRIPT = textwrap.dedent(
    """
    import sys

    import torch

    import detector.model  # noqa: F401
    print("dynamo after detector import:", "torch._dynamo" in sys.modules)

    from torchvision.ops import roi_align
    features = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    boxes = torch.tensor([[0, 1.0, 1.0, 5.0, 6.0], [1, 0.0, 2.0, 7.0, 7.0]])
    pooled = roi_align(features, boxes, output_size=(2, 2), spatial_scale=1.0, sampling_ratio=2)
    print("roi_align sum:", round(float(pooled.sum()), 3))

    module = sys.modules["torchvision.ops.roi_align"]  # the name roi_align is the function
    print("deferred call:", module.is_compile_supported("cpu"))
    import torch._dynamo.utils as real
    print("real module:", real.__file__.endswith("utils.py"), hasattr(real, "counters"))
    """
)


def run(script: str) -> str:
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_detector_import_defers_dynamo_and_torchvision_ops_still_work():
    out = run(SCRIPT)
    assert "dynamo after detector import: False" in out
    assert "real module: True True" in out
    # The deferred function answers as the real one does.
    expected = run(
        "from torch._dynamo.utils import is_compile_supported as f\n"
        "print('deferred call:', f('cpu'))"
    )
    assert expected.strip() in out
    # roi_align gives the figures it gives with dynamo imported first.
    with_dynamo = run("import torch._dynamo\n" + SCRIPT)
    line = next(x for x in out.splitlines() if x.startswith("roi_align sum"))
    assert line in with_dynamo


class Exited(Exception):
    pass


def exit_calls(monkeypatch, children: list) -> list:
    """``pipeline.cli.entry`` run with main returning 3 and ``children`` alive: what it called."""
    from pipeline import cli

    calls = []

    def leave(how):
        def record(code):
            calls.append((how, code))
            raise Exited

        return record

    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 3)
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("keep memory"))
    monkeypatch.setattr(cli.multiprocessing, "active_children", lambda: children)
    monkeypatch.setattr(cli.os, "_exit", leave("os._exit"))
    monkeypatch.setattr(cli.sys, "exit", leave("sys.exit"))
    monkeypatch.setattr(cli.gc, "freeze", lambda: calls.append("freeze"))
    with pytest.raises(Exited):
        cli.entry()
    return calls


def test_the_program_leaves_at_once_with_mains_code(monkeypatch):
    assert exit_calls(monkeypatch, []) == ["keep memory", "main", ("os._exit", 3)]


def test_with_child_processes_the_program_exits_normally(monkeypatch):
    assert exit_calls(monkeypatch, ["a worker"]) == [
        "keep memory",
        "main",
        "freeze",
        ("sys.exit", 3),
    ]


class FakeLibc:
    """A C library that records its ``mallopt`` calls (or has none)."""

    def __init__(self, has_mallopt: bool):
        self.calls = []
        if has_mallopt:
            self.mallopt = lambda parameter, value: self.calls.append((parameter, value)) or 1


@pytest.mark.parametrize("platform", ["linux", "darwin"])
@pytest.mark.parametrize("has_mallopt", [True, False])
def test_freed_memory_is_kept_where_glibc_can_be_told(monkeypatch, platform, has_mallopt):
    from pipeline import cli

    libc = FakeLibc(has_mallopt)
    monkeypatch.setattr(cli.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(cli.sys, "platform", platform)
    cli.keep_freed_memory()
    told = platform == "linux" and has_mallopt
    # M_MMAP_THRESHOLD (-3) 32 MB, M_TRIM_THRESHOLD (-1) 1 GB, M_TOP_PAD (-2) 64 MB
    expected = [(-3, 32 << 20), (-1, 1 << 30), (-2, 64 << 20)] if told else []
    assert libc.calls == expected
