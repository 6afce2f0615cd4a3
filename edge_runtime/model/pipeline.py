"""Folders at the speed of the model: prepare the next images while the current one runs.

``prefetch(items, prepare)`` runs ``prepare`` (decode, resize, input conversion) on upcoming
items in worker threads and yields ``(item, prepared)`` in the order of ``items``; the caller
invokes the model on each in turn. Pillow's decoder and resize, numpy's conversions and the
interpreter's ``invoke`` all release the GIL, so on two cores the next photo decodes on one
while the model runs on the other.

The protocol:
- at most ``depth`` items are prepared ahead (a bounded queue: memory stays flat on a folder
  of any size, and no more than ``depth`` files are read that are never used);
- an item whose ``prepare`` raises one of ``skip`` (a file that is not an image: ImageError)
  is yielded with the exception in place of its tensor, at its place in the order, so the
  caller reports it and goes on, as the sequential loop did;
- any other exception is raised in the caller's thread when its item comes up;
- when the caller stops early (``break``, an error, Ctrl-C), the items not started are
  dropped and the generator returns only after the running ones finish: no thread outlives
  the loop, and nothing is left half-read.

Plain threads and a queue; nothing here touches an interpreter.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, TypeVar, Union

from edge_runtime.errors import EdgeclsError

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")
R = TypeVar("R")

DEPTH = 4  # images prepared ahead: enough to ride out one slow file, small enough to not matter in memory


def default_workers() -> int:
    """Two preparing threads where there are two cores or more (one on one core). A model slower
    than decoding keeps them mostly waiting on the bounded queue; a fast model on large photos
    (decode-bound) gets both cores decoding while the caller's thread invokes in between. More
    than two only take time from the interpreter's own threads."""
    return max(1, min(2, os.cpu_count() or 1))


def prefetch(items: Iterable[T], prepare: Callable[[T], R], depth: int = DEPTH, workers: int | None = None,
             skip: tuple[type[BaseException], ...] = (EdgeclsError,)) -> Iterator[tuple[T, Union[R, BaseException]]]:
    """Yield ``(item, prepare(item))`` in order, ``prepare`` running up to ``depth`` items ahead
    in ``workers`` threads; ``(item, error)`` where ``prepare`` raised one of ``skip``.
    ``depth=0`` prepares each item in the caller's thread when it comes up (the sequential path)."""
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, got {depth}")
    source = iter(items)
    first = next(source, _END)
    second = next(source, _END) if first is not _END else _END
    ahead = [i for i in (first, second) if i is not _END]
    if depth == 0 or second is _END:  # sequential, or one image: no thread to start (nor to import)
        yield from _sequential(itertools.chain(ahead, source), prepare, skip)  # type: ignore[arg-type]
        return
    from concurrent.futures import ThreadPoolExecutor  # imports logging: only where a folder is run

    source = itertools.chain(ahead, source)  # type: ignore[assignment]
    pool = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="edgecls-prepare")
    pending: deque[tuple[T, Future[R]]] = deque()
    try:
        while True:
            while len(pending) < depth:
                item = next(source, _END)
                if item is _END:
                    break
                pending.append((item, pool.submit(prepare, item)))  # type: ignore[arg-type]
            if not pending:
                return
            item, future = pending.popleft()
            try:
                value: Union[R, BaseException] = future.result()
            except skip as e:
                value = e
            yield item, value
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _sequential(items: Iterable[T], prepare: Callable[[T], R],
                skip: tuple[type[BaseException], ...]) -> Iterator[tuple[T, Union[R, BaseException]]]:
    for item in items:
        try:
            value: Union[R, BaseException] = prepare(item)
        except skip as e:
            value = e
        yield item, value


_END = object()
