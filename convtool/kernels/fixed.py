"""The fixed kernels: the text files shipped in the top-level ``kernels/`` folder.

Fixed kernels (``sobel-x``, ``kirsch-n``, ...) are data, not code: each is a text kernel
file (:func:`convtool.kernels.files.parse_text_file`, with its ``description:`` header),
installed as the package ``convtool._kernels`` and read from the source tree's ``kernels/``
when running from a checkout. Each is read once, on first use.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from convtool.errors import KernelError
from convtool.kernels import files as kernel_files
from convtool.kernels.value import Kernel, from_data

__all__ = ["fixed_files", "fixed_kernel", "load_fixed"]


def _kernel_folder():
    """The fixed kernels: the installed package convtool._kernels, else the source tree's."""
    import importlib.resources  # (tempfile, zipfile...): only when a fixed kernel is named

    try:
        folder = importlib.resources.files("convtool._kernels")
        if folder.is_dir():
            return folder
    except ModuleNotFoundError:
        pass  # running from a source checkout: kernels/ sits next to convtool/
    return Path(__file__).resolve().parents[2] / "kernels"


@functools.cache
def fixed_files() -> dict[str, Any]:
    """The fixed kernel files by name (``sobel-x`` for ``sobel-x.txt``)."""
    try:
        items = list(_kernel_folder().iterdir())
    except OSError:
        items = []
    return {item.name[: -len(".txt")]: item for item in items if item.name.endswith(".txt")}


@functools.cache
def load_fixed(name: str) -> tuple[Kernel, str]:
    """The fixed kernel ``name`` and its file's description; errors carry the file's path."""
    item = fixed_files().get(name)
    if item is None:
        raise KernelError(f"no kernel file for {name!r} in {_kernel_folder()}")
    try:
        data = kernel_files.parse_text_file(item.read_text(encoding="utf-8"))
        return from_data(data, name), data.description
    except KernelError as exc:
        raise KernelError(str(exc), path=str(item)) from None


def fixed_kernel(name: str) -> Kernel:
    """The fixed kernel ``name`` (``sobel-x``), read once from its file."""
    return load_fixed(name)[0]
