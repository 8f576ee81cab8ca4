"""prepare-voc on tiny generated VOC/SBD trees and archives; downloads without a network."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from gsag.data import VOC_PALETTE, DownloadError, VOCSegmentation, read_mask, save_mask
from gsag.data.download import Archive, download, extract
from gsag.data.sbd import prepare_voc


def _label(name: str) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, name)))
    return rng.integers(0, 21, (12, 16)).astype(np.uint8)


def _make_voc_and_sbd(root: Path) -> tuple[Path, Path]:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    sbd = root / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "img").mkdir()
    for name in ("v1", "v2", "v3", "s1", "s2"):
        Image.new("RGB", (16, 12), (9, 9, 9)).save(voc / "JPEGImages" / f"{name}.jpg")
    Image.new("RGB", (16, 12), (7, 7, 7)).save(sbd / "img" / "s3.jpg")  # only SBD has it
    for name in ("v1", "v2", "v3"):
        mask = _label(name)
        mask[0] = 255  # VOC masks carry ignore borders
        save_mask(voc / "SegmentationClass" / f"{name}.png", mask, VOC_PALETTE)
    for name in ("s1", "s2", "s3", "v2", "v3"):
        segmentation = _label(name + "sbd")
        struct = {"Segmentation": segmentation, "Boundaries": np.zeros(1), "CategoriesPresent": 1}
        scipy.io.savemat(sbd / "cls" / f"{name}.mat", {"GTcls": struct})
    (voc / "ImageSets/Segmentation/train.txt").write_text("v1\nv2\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("v3\n")
    (sbd / "train.txt").write_text("s1\ns2\nv3\n")  # v3 is VOC val: must be left out
    (sbd / "val.txt").write_text("s3\nv2\n")
    return voc, sbd


def test_prepare_voc_builds_train_aug(tmp_path):
    voc, _ = _make_voc_and_sbd(tmp_path)
    counts = prepare_voc(tmp_path, tmp_path / "benchmark_RELEASE")
    assert counts == {
        "voc_train": 2, "voc_val": 1, "sbd_train": 3, "sbd_val": 2,
        "train_aug": 5, "from_voc": 2, "from_sbd": 3,
    }  # fmt: skip
    aug = (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    assert aug == sorted({"v1", "v2", "s1", "s2", "s3"})
    for name in ("v1", "v2"):  # VOC's own masks, borders included
        assert (voc / "SegmentationClassAug" / f"{name}.png").read_bytes() == (
            voc / "SegmentationClass" / f"{name}.png"
        ).read_bytes()
    for name in ("s1", "s2", "s3"):
        assert np.array_equal(
            read_mask(voc / "SegmentationClassAug" / f"{name}.png"), _label(name + "sbd")
        )
    assert (voc / "JPEGImages" / "s3.jpg").is_file()
    dataset = VOCSegmentation(voc, "train_aug")
    assert len(dataset) == 5 and dataset.mask_dir.name == "SegmentationClassAug"
    _, mask = dataset[dataset.ids.index("s1")]
    assert np.array_equal(mask.numpy(), _label("s1sbd"))


def _tar(source: Path, top: str, target: Path) -> Archive:
    with tarfile.open(target, "w:gz" if target.suffix == ".tgz" else "w") as tar:
        tar.add(source / top, arcname=top)
    md5 = hashlib.md5(target.read_bytes()).hexdigest()
    return Archive(target.name, (target.as_uri(),), md5, top)


def test_prepare_voc_download_from_archives(tmp_path, monkeypatch):
    from gsag.cli import main
    from gsag.data import download as download_module

    _make_voc_and_sbd(tmp_path / "src")
    (tmp_path / "mirror").mkdir()
    voc_archive = _tar(tmp_path / "src", "VOCdevkit", tmp_path / "mirror" / "VOCtrainval.tar")
    voc_archive = Archive(voc_archive.name, voc_archive.urls, voc_archive.md5, "VOCdevkit/VOC2012")
    sbd_archive = _tar(tmp_path / "src", "benchmark_RELEASE", tmp_path / "mirror" / "benchmark.tgz")
    monkeypatch.setattr(download_module, "VOC2012_TRAINVAL", voc_archive)
    monkeypatch.setattr(download_module, "SBD_BENCHMARK", sbd_archive)
    data = tmp_path / "data"
    assert main(["data", "prepare-voc", "--download", "--data-dir", str(data)]) == 0
    assert len(VOCSegmentation(data, "train_aug")) == 5
    assert (data / "VOCtrainval.tar").is_file() and not list(data.glob("*.part"))


class _Response(io.BytesIO):
    def __init__(self, data: bytes, status: int) -> None:
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(len(data))}

    def getcode(self) -> int:
        return self.status


def test_download_resumes_and_checks_md5(tmp_path):
    payload = bytes(range(256)) * 40
    archive = Archive(
        "a.tar", ("http://example.invalid/a.tar",), hashlib.md5(payload).hexdigest(), "a"
    )
    seen = []

    def flaky(request, timeout):
        seen.append(request.get_header("Range"))
        if len(seen) == 1:  # the connection drops after 1000 bytes
            response = _Response(payload, 200)
            response.read = lambda n=-1, r=response: (
                io.BytesIO.read(r, 1000) if r.tell() == 0 else _raise()
            )
            return response
        start = int(request.get_header("Range").split("=")[1].rstrip("-"))
        return _Response(payload[start:], 206)

    def _raise():
        raise ConnectionResetError("connection reset")

    with pytest.raises(DownloadError, match="could not download"):
        download(archive, tmp_path, opener=flaky, chunk=1000)
    assert (tmp_path / "a.tar.part").stat().st_size == 1000
    path = download(archive, tmp_path, opener=flaky, chunk=1000)
    assert seen == [None, "bytes=1000-"] and path.read_bytes() == payload
    download(archive, tmp_path, opener=flaky)  # in place with the right md5: not fetched again
    assert len(seen) == 2


def test_download_rejects_bad_checksum_and_explains_no_network(tmp_path):
    source = tmp_path / "file.bin"
    source.write_bytes(b"not the archive")
    bad = Archive("file.bin", (source.as_uri(),), "0" * 32, "x")
    with pytest.raises(DownloadError, match="does not match"):
        download(bad, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())

    def offline(request, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(DownloadError, match=r"Without internet access.*place it at"):
        download(bad, tmp_path / "out", opener=offline)


def test_extract_refuses_path_traversal(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    from gsag.data import DataError

    with pytest.raises(DataError, match="unsafe entry"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
