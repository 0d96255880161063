"""The one compiled part of storymesh, optional: everything else is in pyproject.toml.

`storymesh.broker._wire` reads and writes a whole ZeroMQ message per call on the broker's
hot path (storymesh/broker/wire.py). It is built when a C compiler is present; without one
the build says so and goes on (optional=True), and the broker uses its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "storymesh.broker._wire",
            sources=["storymesh/broker/_wire.c"],
            libraries=["dl"],  # dlopen: in libc since glibc 2.34, a separate library before
            optional=True,
        )
    ]
)
