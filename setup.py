"""The optional compiled modules: the engine's kernels (convtool.engine._native) and PNG row
unfiltering (convtool.images._png); everything else is in pyproject.toml.

A failed compile never fails the install: the package then runs on its numpy engine.
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -O3 and the vectoriser; no fused multiply-add, so every SIMD level rounds alike; no -march:
# the source compiles its kernels for x86-64-v4, v3 and the baseline (`#pragma GCC target`)
# and picks one level's when the module loads.
UNIX_FLAGS = [
    "-O3",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-Wno-psabi",  # vector types are passed inside one clone only: no ABI is crossed
]


class OptionalBuildExt(build_ext):
    """Build the extension if the machine can; warn and go on without it if not."""

    def build_extension(self, ext):
        if self.compiler.compiler_type == "unix":
            ext.extra_compile_args = UNIX_FLAGS + list(ext.extra_compile_args or [])
        try:
            super().build_extension(ext)
        except Exception as error:  # any failure (no compiler, old compiler): no kernels
            print(
                f"warning: convtool's compiled kernels were not built ({error}); "
                "the numpy engine will be used",
                file=sys.stderr,
            )


setup(
    ext_modules=[
        Extension(
            "convtool.engine._native",
            ["convtool/engine/_native.c"],
            depends=[
                "convtool/engine/_native_level.h",
                "convtool/engine/_native_float.h",
                "convtool/engine/_native_int.h",
                "convtool/engine/_native_match.h",
            ],
            optional=True,
        ),
        Extension("convtool.images._png", ["convtool/images/_png.c"], optional=True),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
