"""convtool: exact, fast 2-D convolution for images, from the command line and from Python.

The public API, imported lazily so that ``import convtool`` (and the CLI's ``--version``)
stays quick::

    import convtool
    image = convtool.read_image("photo.png")                  # float pixels (H, W, C)
    edges = convtool.convolve(image.pixels[..., 0], "sobel-x")
    blurred = convtool.correlate(image.pixels, "gaussian:sigma=2", channel_axis=-1,
                                 padding="edge")               # (H, W, C): each channel
    magnitude = convtool.gradient_magnitude(image.pixels[..., 0], "scharr")
    convtool.write_image("edges.tif", convtool.Image(edges, depth="float"))

``convolve``/``correlate`` filter the last two axes of any array (leading axes, such as
channels, in one call), or each channel along ``channel_axis``; a kernel is a spec, a
``Kernel``, a file or an array. ``Chain`` applies a parsed ``-k`` chain to an image as the
CLI does.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "convolve": "pipeline.filters",
    "correlate": "pipeline.filters",
    "convolve_transposed": "pipeline.filters",
    "correlate_transposed": "pipeline.filters",
    "Padding": "padding",
    "Kernel": "kernels",
    "LayerKernel": "kernels",
    "get_kernel": "kernels",
    "compose": "kernels",
    "list_kernels": "kernels",
    "read_kernel_file": "kernels",
    "gradient_magnitude": "pipeline.filters",
    "Chain": "pipeline",
    "FilterOptions": "pipeline",
    "parse_steps": "pipeline",
    "Image": "images",
    "read_image": "images",
    "write_image": "images",
    "explain": "teach",
    "match_template": "match",
    "find_matches": "match",
    "ConvtoolError": "errors",
    "UsageError": "errors",
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604 - the keys are the names


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convtool' has no attribute {name!r}")
