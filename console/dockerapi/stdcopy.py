"""Docker's stream multiplexing for non-tty attach, exec and logs.

Each frame is an 8-byte header then the payload::

    [stream][0][0][0][size: big-endian uint32] payload...
     1 = stdout, 2 = stderr (0 = stdin, 3 = an error from the daemon)

With a tty there is no framing: the pty's bytes go out raw.
"""

from __future__ import annotations

import struct

STDIN = 0
STDOUT = 1
STDERR = 2
SYSTEMERR = 3

_HEADER = struct.Struct(">BxxxL")
HEADER_SIZE = _HEADER.size
# The header's length field is 32 bits; stay far below it.
MAX_FRAME = 1 << 20


def frame(stream: int, data: bytes) -> bytes:
    """``data`` as one or more frames of ``stream``."""
    if len(data) <= MAX_FRAME:
        return _HEADER.pack(stream, len(data)) + data
    return b"".join(_HEADER.pack(stream, len(part)) + part
                    for part in (data[i:i + MAX_FRAME] for i in range(0, len(data), MAX_FRAME)))


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Split a complete multiplexed byte string into (stream, payload) frames."""
    frames, pos = [], 0
    while pos < len(data):
        if len(data) - pos < HEADER_SIZE:
            raise ValueError("truncated stdcopy header")
        stream, size = _HEADER.unpack_from(data, pos)
        pos += HEADER_SIZE
        if len(data) - pos < size:
            raise ValueError("truncated stdcopy frame")
        frames.append((stream, data[pos:pos + size]))
        pos += size
    return frames
