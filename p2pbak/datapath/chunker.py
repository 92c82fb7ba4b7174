"""Content-defined chunking (FastCDC): an edit re-chunks only around itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from pyfastcdc import FastCDC

MIN_SIZE = 512 * 1024
AVG_SIZE = 1024 * 1024  # FastCDC's nominal average; the mean comes out near 1.3 MiB
MAX_SIZE = 8 * 1024 * 1024

_CDC = FastCDC(avg_size=AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE, normalized_chunking=1)


def chunks(stream: BinaryIO, size_hint: int) -> Iterator[memoryview]:
    """The chunks of an open file, in order; each view is valid until the next one.

    A file that fits one maximal chunk is read in one call; a bigger one is streamed
    through a buffer of twice the maximum chunk size, never held whole.
    """
    if size_hint <= MAX_SIZE:
        data = stream.read()
        if not data:
            return
        if len(data) <= MAX_SIZE:
            for chunk in _CDC.cut_buf(data):
                yield chunk.data
            return
        stream.seek(0)  # grew since stat: stream it
    yield from _streamed(stream)


def _streamed(stream: BinaryIO) -> Iterator[memoryview]:
    for chunk in _CDC.cut_stream(stream):
        yield chunk.data


def file_chunks(path: str, size_hint: int) -> Iterator[memoryview]:
    """The chunks of the file at `path`. A small one is read with one os.read, no file
    object: a backup of many small files spends more on open()'s objects than on reading."""
    if size_hint <= MAX_SIZE:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, size_hint + 1)
            whole = len(data) <= size_hint and not os.read(fd, 1)  # at its end, not short
        finally:
            os.close(fd)
        if whole:
            if data:
                for chunk in _CDC.cut_buf(data):
                    yield chunk.data
            return
    with open(path, "rb") as f:  # big, or it grew since stat: streamed (not read again)
        yield from _streamed(f)
