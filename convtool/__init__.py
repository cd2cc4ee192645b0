"""convtool: exact, fast 2-D convolution for images."""

__version__ = "0.1.0"
