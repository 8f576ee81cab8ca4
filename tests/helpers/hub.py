"""A Hugging Face Hub cache filled by hand, laid out as `huggingface_hub` lays it out.

HF_HUB_CACHE/models--OWNER--NAME/
    blobs/<sha256 for LFS files, git blob sha1 for the others>
    snapshots/<commit>/<path> -> ../../blobs/<blob> (relative symlinks)
    refs/<branch or tag>       the commit hash, no newline
    trees/<commit>.json        the repo's file listing (huggingface_hub >= 1.x)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

LFS_SUFFIXES = (".safetensors", ".onnx", ".bin", ".pt", ".png")  # as .gitattributes sends to LFS


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def cache_repo(
    cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",)
) -> Path:
    """Put every file of `folder` into `cache` as commit `commit` of model repo `repo_id`, with
    `refs` pointing at it; returns the snapshot folder."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        rel = path.relative_to(folder).as_posix()
        entry: dict = {"size": len(data), "blob_id": git_blob_sha1(data)}
        blob = entry["blob_id"]
        if rel.endswith(LFS_SUFFIXES):
            blob = hashlib.sha256(data).hexdigest()
            entry.update(lfs_sha256=blob, lfs_size=len(data))
        (storage / "blobs" / blob).write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(storage / "blobs" / blob, link.parent))
        files[rel] = entry
    (storage / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)
    (storage / "trees").mkdir(exist_ok=True)
    listing = {"format_version": 1, "files": files}
    (storage / "trees" / f"{commit}.json").write_text(json.dumps(listing))
    return snapshot


def random_image(h: int = 40, w: int = 52, seed: int = 0) -> np.ndarray:
    """A random RGB uint8 image (H, W, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def folder_files(folder: Path) -> set[str]:
    """The files under `folder`, as relative POSIX paths."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def one_error_line(capsys) -> str:
    """What `gsag` printed on stderr, checked to be one `error: ...` line."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err
