"""The trio-asyncio loop the store's asyncio world runs on, and the one way to call into it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio_asyncio

T = TypeVar("T")


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[Any]:
    """A trio-asyncio loop whose nurseries do not turn one error into an ExceptionGroup.

    Callers of the store expect the StoreError (or their own exception from the body of
    ``open_store``) itself; a group of several errors is passed on unchanged.
    """
    try:
        async with trio_asyncio.open_loop() as loop:
            yield loop
    except BaseExceptionGroup as group:
        sole: BaseException = group
        while isinstance(sole, BaseExceptionGroup):
            if len(sole.exceptions) != 1:
                raise
            sole = sole.exceptions[0]
        context = sole.__context__
        try:
            raise sole
        finally:
            sole.__context__ = context  # not "during handling of ExceptionGroup"


async def on_loop(loop: Any, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await the asyncio-flavoured ``fn(*args)`` on ``loop`` from trio."""
    result: T = await trio_asyncio.aio_as_trio(fn, loop=loop)(*args)
    return result
