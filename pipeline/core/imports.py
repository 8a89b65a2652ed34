"""Import torchvision without torch's compiler.

``torchvision.ops.roi_align`` imports ``torch._dynamo.utils`` for one function,
``is_compile_supported``, which it calls only where torchvision's compiled ops are missing. That
import pulls in dynamo, sympy and the symbolic-shape machinery: about 0.9 s of the 2.9 s a
``chromoseg run`` process spends before its first image on this machine, for code chromoseg never
runs. (torchvision compiles its fallback lazily precisely "to avoid eagerly importing dynamo"; the
top-level import undoes that.)

``torchvision_without_dynamo()`` stands a small module in for ``torch._dynamo.utils`` while
torchvision is imported: its ``is_compile_supported`` imports the real one on its first call, and
any other name asked of it (dunders aside) loads the real module too, so behaviour is unchanged;
only the import is deferred. The stand-in is removed when the block ends, so a later
``import torch._dynamo`` gets the real package.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator

DYNAMO_UTILS = "torch._dynamo.utils"


def _real_dynamo_utils(stand_in: types.ModuleType) -> types.ModuleType:
    if sys.modules.get(DYNAMO_UTILS) is stand_in:
        del sys.modules[DYNAMO_UTILS]
    return importlib.import_module(DYNAMO_UTILS)


def _stand_in() -> types.ModuleType:
    module = types.ModuleType(DYNAMO_UTILS, "Defers importing torch._dynamo.utils (see above).")

    def is_compile_supported(device_type: str) -> bool:
        return _real_dynamo_utils(module).is_compile_supported(device_type)

    def __getattr__(name: str):  # noqa: N807 (a module's own attribute hook)
        if name.startswith("__"):  # inspect and pickle probe every module's dunders
            raise AttributeError(name)
        return getattr(_real_dynamo_utils(module), name)

    module.is_compile_supported = is_compile_supported
    module.__getattr__ = __getattr__
    return module


@contextlib.contextmanager
def torchvision_without_dynamo() -> Iterator[None]:
    """Within this block, importing torchvision does not import ``torch._dynamo``.

    Does nothing where torchvision or dynamo is imported already.
    """
    if "torchvision" in sys.modules or DYNAMO_UTILS in sys.modules:
        yield
        return
    stand_in = _stand_in()
    sys.modules[DYNAMO_UTILS] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(DYNAMO_UTILS) is stand_in:
            del sys.modules[DYNAMO_UTILS]
