"""What ``chromoseg run INPUT...`` processes: image files, folders and glob patterns turned into
one ``ImageJob`` per image.

- A folder is searched recursively for files with an image suffix (``IMAGE_SUFFIXES``); its
  root is the folder itself.
- A file is taken whatever its suffix (a bad one then fails with a clear message); its root is
  its folder.
- A glob pattern (``*``, ``?``, ``[``; ``**`` recursive) takes every file it matches; its root is
  the pattern's longest folder prefix without wildcards.
- A path that exists as none of these becomes a job that fails with "no such file".

The slide of an image is the name of the folder holding it. ``image`` (the table's column, COCO's
``file_name``) is its path relative to its root, prefixed by the root's name when two roots give
the same relative path. Skipped on purpose: ADIR label images (``<name>K.tif`` beside
``<name>D.tif``), and files that are an extra channel (``--channel NAME=PATTERN``) of another
image. ``PATTERN`` names the channel's file beside the image, ``{stem}`` standing for the image's
file name without its suffix: ``--channel fish={stem}_fish.tif``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.core.errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ImageJob:
    """One image to process.

    ``image``: posix path relative to its input root (unique in the batch). ``key``: the stem of
    its output files under ``images/`` (``image`` without the suffix unless that would collide).
    ``channels``: extra channel name -> file path.
    """

    path: Path
    slide: str
    image: str
    key: str
    channels: dict[str, Path] = field(default_factory=dict)


def parse_channels(specs: list[str]) -> dict[str, str]:
    """``["fish={stem}_fish.tif", ...]`` -> ``{"fish": "{stem}_fish.tif"}``; InputError if bad."""
    channels: dict[str, str] = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not pattern:
            raise InputError(
                f"--channel {spec!r}: expected NAME=PATTERN, e.g. fish={{stem}}_fish.tif"
            )
        if name == "dapi" or name in channels:
            raise InputError(f"--channel {spec!r}: channel name {name!r} is taken")
        if "{stem}" not in pattern:
            raise InputError(f"--channel {spec!r}: the pattern must contain {{stem}}")
        channels[name] = pattern
    return channels


def _glob_root(pattern: str) -> Path:
    parts = PurePosixPath(Path(pattern).as_posix()).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _is_adir_label(path: Path) -> bool:
    name = path.name
    return name.endswith("K.tif") and path.with_name(name[: -len("K.tif")] + "D.tif").is_file()


def _candidates(item: str) -> list[tuple[Path, Path]]:
    """(file, root) pairs for one INPUT item."""
    path = Path(item)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        return [(p, path) for p in files]
    if path.exists() or not glob.has_magic(item):
        return [(path, path.parent)]
    root = _glob_root(item)
    return [(Path(p), root) for p in sorted(glob.glob(item, recursive=True)) if Path(p).is_file()]


def find_jobs(
    items: list[str], channels: dict[str, str] | None = None, exclude: Path | None = None
) -> list[ImageJob]:
    """One job per image found in ``items`` (module docstring), sorted by ``image``. Files under
    ``exclude`` (the output folder: its overlays and label TIFFs are images too) are left out.

    Raises InputError when nothing at all is found.
    """
    channels = channels or {}
    excluded = exclude.resolve() if exclude is not None else None
    seen: dict[Path, tuple[Path, Path]] = {}
    for item in items:
        for path, root in _candidates(item):
            resolved = path.resolve()
            if excluded is not None and resolved.is_relative_to(excluded):
                continue
            if resolved not in seen and not _is_adir_label(path):
                seen[resolved] = (path, root)
    channel_files = {
        (path.parent / pattern.format(stem=path.stem)).resolve()
        for path, _ in seen.values()
        for pattern in channels.values()
    }
    found = [
        (path, root) for resolved, (path, root) in seen.items() if resolved not in channel_files
    ]
    if not found:
        raise InputError(f"no image found in {' '.join(items)}")
    relative = [_relative(path, root) for path, root in found]
    clashes = {name for name in relative if relative.count(name) > 1}
    relative = [
        f"{root.resolve().name}/{name}" if name in clashes else name
        for name, (_, root) in zip(relative, found, strict=True)
    ]
    stems = [str(PurePosixPath(name).with_suffix("")) for name in relative]
    keys = [
        name if stems.count(stem) > 1 else stem for name, stem in zip(relative, stems, strict=True)
    ]
    jobs = [
        ImageJob(
            path=path,
            slide=path.resolve().parent.name,
            image=name,
            key=key,
            channels={
                channel: path.parent / pattern.format(stem=path.stem)
                for channel, pattern in channels.items()
            },
        )
        for (path, _), name, key in zip(found, relative, keys, strict=True)
    ]
    return sorted(jobs, key=lambda job: job.image)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name
