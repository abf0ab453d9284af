"""Environment variables set for the length of a call, then put back as they were."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def temporarily(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` (and so for libraries reading the C environment) while
    the block runs; variables that were unset are removed again afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
