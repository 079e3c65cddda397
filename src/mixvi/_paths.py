"""Keeping file names inside the directories they belong to.

Two rules, applied by the model files, the CLI and the data loaders:

- a name that is joined onto a directory (a file-name prefix, an output file) is a plain
  name: no separators, no ``..``, not absolute, so it cannot point elsewhere;
- mixvi never *writes* through a link that leads out of the directory it was told to write
  into, since that would overwrite a file the user never named. Reads may follow links the
  user placed (e.g. a data directory that links to a shared copy of the dataset).
"""

from __future__ import annotations

import os
from pathlib import Path


class PathOutsideDirectoryError(ValueError):
    """A path would leave the directory it was meant to stay in."""


def plain_name(name: str, what: str) -> str:
    """Check that ``name`` is a bare file name (or prefix) and return it.

    Parameters
    ----------
    name
        The name to check; ``""`` is allowed (an empty prefix).
    what
        What the name is, for the error message (e.g. ``"prefix"``).

    Returns
    -------
    ``name`` unchanged.

    Raises
    ------
    PathOutsideDirectoryError
        If ``name`` has a path separator, is ``.`` or ``..``, or is absolute.
    """
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    if any(sep in name for sep in seps) or name in (".", "..") or os.path.isabs(name):
        raise PathOutsideDirectoryError(
            f"{what} {name!r} must be a plain file name, without directories or '..'."
        )
    return name


def output_path(directory: str | os.PathLike, name: str) -> Path:
    """``directory / name``, refused if writing there would land outside ``directory``.

    Parameters
    ----------
    directory
        The output directory the caller named.
    name
        A plain file or subdirectory name inside it.

    Returns
    -------
    The path to write.

    Raises
    ------
    PathOutsideDirectoryError
        If ``name`` is not a plain name, or ``directory / name`` already exists as a link
        that resolves outside ``directory``.
    """
    directory = Path(directory)
    path = directory / plain_name(name, "output name")
    if not path.resolve().is_relative_to(directory.resolve()):
        raise PathOutsideDirectoryError(
            f"{path} links to {path.resolve()}, outside {directory}; remove the link or choose "
            "another output directory."
        )
    return path
