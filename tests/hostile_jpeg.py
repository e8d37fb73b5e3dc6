"""Hostile JPEGs for tests and benchmarks: a progressive JPEG with scans repeated.

libjpeg decodes every repeated scan again (it only warns that the progression
is bogus), so a few bytes per scan buy a whole pass over the image's blocks.
"""

from __future__ import annotations

import re

_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI = 0xDA, 0xD9


def split_scans(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(head, scans, tail) of a well-formed JPEG, each scan with the tables written just before it.

    Pillow writes optimised Huffman tables before each scan, so a scan can be
    repeated as long as its tables travel with it.
    """
    scans: list[bytes] = []
    position, head_end, unit_start = 2, None, 0
    while data[position + 1] != _EOI:
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if data[position + 1] == _SOS:
            end = _END_OF_SCAN.search(data, end).start()
            head_end = position if head_end is None else head_end
            scans.append(data[unit_start if scans else position : end])
            unit_start = end
        position = end
    return data[:head_end], scans, data[position:]


def with_repeated_scan(data: bytes, scan_index: int, repeats: int) -> bytes:
    """`data` with its scan number `scan_index` (and its tables) repeated `repeats` more times."""
    head, scans, tail = split_scans(data)
    return head + b"".join(scans) + scans[scan_index] * repeats + tail
