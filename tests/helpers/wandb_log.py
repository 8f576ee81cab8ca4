"""Reading back what W&B wrote offline: the records of a run-<id>.wandb file (a LevelDB-style
log of protobuf records: 32 KiB blocks, each record with a 7-byte header)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(raw: bytes) -> Iterator[bytes]:
    assert raw[:4] == b":W&B", raw[:8]
    pos, pending = 7, b""  # after the file header
    while pos + 7 <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        data = raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield data
        elif kind == FIRST:
            pending = data
        elif kind == MIDDLE:
            pending += data
        elif kind == LAST:
            yield pending + data


def read_records(path: Path) -> list[Any]:
    """The `Record` protobufs of a run-<id>.wandb file."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for data in _chunks(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        records.append(record)
    return records


def history(path: Path) -> dict[int, dict[str, str]]:
    """{step: {key: JSON value}} of the history records (keys of nested items joined by /)."""
    steps: dict[int, dict[str, str]] = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            items = steps.setdefault(record.history.step.num, {})
            for item in record.history.item:
                items[item.key or "/".join(item.nested_key)] = item.value_json
    return steps
