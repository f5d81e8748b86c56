"""Request bodies that are archives (load, import, cp): streamed to a file, never held in memory."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

WRITE_BATCH = 1 << 20


async def receive_to_file(api, request, prefix: str) -> Path:
    """The request body in a new file under <root>/tmp; the caller removes it."""
    loop = asyncio.get_running_loop()
    handle = tempfile.NamedTemporaryFile(dir=api.tmp, prefix=prefix, suffix=".tar", delete=False)
    path = Path(handle.name)
    try:
        buffered, size = [], 0
        async for data in request.iter_body(api.upload_limit):
            buffered.append(data)
            size += len(data)
            if size >= WRITE_BATCH:
                await loop.run_in_executor(api.executor, handle.write, b"".join(buffered))
                buffered, size = [], 0
        if buffered:
            await loop.run_in_executor(api.executor, handle.write, b"".join(buffered))
        await loop.run_in_executor(api.executor, handle.close)
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    return path
