"""Fetch and unpack dataset archives: streamed, resumable, md5-checked, atomic."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsag.data.errors import DataError, DownloadError


@dataclass(frozen=True)
class Archive:
    """An official archive: where to get it, what it is called, its md5 (or, where only that
    is published, its sha1), what it unpacks to."""

    name: str
    urls: tuple[str, ...]
    md5: str
    unpacks_to: str
    sha1: str = ""

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, expected hex digest): sha1 when given, else md5."""
        return ("sha1", self.sha1) if self.sha1 else ("md5", self.md5)


VOC2012_TRAINVAL = Archive(
    "VOCtrainval_11-May-2012.tar",
    (
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    ),
    "6cd6e144f989b92b3379bac3b3de84fd",
    "VOCdevkit/VOC2012",
)
SBD_BENCHMARK = Archive(
    "benchmark.tgz",
    (
        "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
    ),
    "82b4d87ceb2ed10f6038a1cba92111cb",
    "benchmark_RELEASE",
)
ADE20K_SCENE_PARSING = Archive(
    "ADEChallengeData2016.zip",
    ("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",),
    "",
    "ADEChallengeData2016",
    sha1="219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
)


def md5sum(path: str | Path, chunk: int = 1 << 20, algorithm: str = "md5") -> str:
    """The hex digest of a file (md5 unless `algorithm` names another hashlib algorithm)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _status(response) -> int | None:
    return getattr(response, "status", None) or response.getcode()


def download(
    archive: Archive,
    folder: str | Path,
    opener=urllib.request.urlopen,
    progress=None,
    timeout: float = 30.0,
    chunk: int = 1 << 20,
) -> Path:
    """Download `archive` into `folder` and return its path.

    The data streams into `<name>.part`; an interrupted download resumes from there (HTTP Range)
    when the server allows it. The checksum (`Archive.checksum`) is checked before the file is
    moved into place. A file already in place with the right checksum is not fetched again.

    Args:
        archive: what to fetch.
        folder: where to put it.
        opener: `urllib.request.urlopen`-like callable `(request, timeout=...)` (tests swap it).
        progress: optional callable `(done_bytes, total_bytes or None)`.

    Raises:
        DownloadError: no URL could be reached, or the checksum does not match.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / archive.name
    algorithm, expected = archive.checksum
    if target.is_file() and md5sum(target, algorithm=algorithm) == expected:
        return target
    part = folder / f"{archive.name}.part"
    errors = []
    for url in archive.urls:
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with opener(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
                if offset and _status(response) != 206:
                    offset = 0  # the server ignored the range: start again
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length is not None else None
                with open(part, "ab" if offset else "wb") as f:
                    done = offset
                    while block := response.read(chunk):
                        f.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            break
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
    else:
        raise DownloadError(
            f"could not download {archive.name} ({'; '.join(errors)}). Without internet access, "
            f"fetch it elsewhere from {archive.urls[0]} ({algorithm} {expected}), place it at "
            f"{target} and rerun, or unpack it yourself and pass its folder "
            f"({archive.unpacks_to}) to the 'gsag data prepare-...' command"
        )
    got = md5sum(part, algorithm=algorithm)
    if got != expected:
        part.unlink()
        raise DownloadError(
            f"{archive.name}: {algorithm} {got} does not match the expected {expected}; the file "
            "was deleted, rerun to fetch it again"
        )
    os.replace(part, target)
    return target


# the "data" filter (Python >= 3.11.4) repeats our checks and silences 3.12+'s warning
_SAFE: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = Path(member.name)
    if name.is_absolute() or ".." in name.parts or member.issym() or member.islnk():
        raise DataError(f"{archive}: refusing unsafe entry {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: refusing special entry {member.name!r}")


def _check_zip_member(member: zipfile.ZipInfo, archive: Path) -> None:
    name = Path(member.filename)
    mode = member.external_attr >> 16
    if name.is_absolute() or ".." in name.parts or stat.S_ISLNK(mode):
        raise DataError(f"{archive}: refusing unsafe entry {member.filename!r}")


def _unpack(archive_path: Path, staging: Path, progress) -> None:
    """Unpack a zip or a tar into `staging`, refusing unsafe entries before writing any."""
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as archive:
            entries = archive.infolist()
            for entry in entries:
                _check_zip_member(entry, archive_path)
            for done, entry in enumerate(entries, 1):
                archive.extract(entry, staging)
                if progress:
                    progress(done, len(entries))
        return
    with tarfile.open(archive_path, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, archive_path)
        for done, member in enumerate(members, 1):
            tar.extract(member, staging, set_attrs=False, **_SAFE)
            if progress:
                progress(done, len(members))


#: What the archive readers raise on a file that is not a whole zip or tar (a text file named
#: .zip, a download cut short, flipped bytes): each becomes one `DataError` naming the file.
_BAD_ARCHIVE = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    gzip.BadGzipFile,
    lzma.LZMAError,
    zlib.error,
    NotImplementedError,  # a zip compression method Python cannot read
)


def _unpack_checked(archive_path: Path, staging: Path, progress) -> None:
    """`_unpack`, with a file that is not a readable archive as one `DataError`."""
    if not archive_path.is_file():
        what = "a folder" if archive_path.is_dir() else "not there"
        raise DataError(f"{archive_path} is {what}; give the downloaded archive file")
    try:
        _unpack(archive_path, staging, progress)
    except _BAD_ARCHIVE as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, tarfile.ReadError) and "could not be opened" in detail:
            detail = "neither a zip nor a plain, gzip, bzip2 or xz tar"
        raise DataError(
            f"{archive_path} is not a readable zip or tar archive ({detail}); it may be cut "
            "short or another file: download it again (and check its size and checksum)"
        ) from e


def extract(archive_path: str | Path, folder: str | Path, progress=None) -> list[Path]:
    """Unpack a tar/tgz or zip into `folder` safely (no absolute paths, `..`, links or devices).

    Entries are unpacked into a temporary folder first and each top-level entry is moved into
    place with `os.replace`, so an interrupted unpack leaves nothing half-written behind. Existing
    top-level entries are kept.

    Returns:
        The top-level entries now in `folder`.
    """
    archive_path, folder = Path(archive_path), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".extract-"))
    try:
        _unpack_checked(archive_path, staging, progress)
        tops = []
        for entry in sorted(staging.iterdir()):
            destination = folder / entry.name
            if not destination.exists():
                os.replace(entry, destination)
            tops.append(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tops
