"""The trio-asyncio loop the store's asyncio world runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio_asyncio


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
