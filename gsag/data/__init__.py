"""Datasets, transforms and data tools: PASCAL VOC 2012 (+ SBD), Cityscapes, ADE20K,
PASCAL-Context, users' folders and a generated context benchmark, all returning `(image, mask)`
pairs. See docs/data.md.

The names below load on first use: `import gsag.data.io` alone does not import torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gsag.lazy import lazy_attributes

if TYPE_CHECKING:
    from gsag.data.ade20k import ADE20KSegmentation
    from gsag.data.base import SegmentationDataset
    from gsag.data.cityscapes import CityscapesSegmentation
    from gsag.data.errors import BadSampleError, DataError, DownloadError
    from gsag.data.folder import FolderSegmentation
    from gsag.data.io import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        ClassInfo,
        colorize,
        read_classes_yaml,
        read_image,
        read_mask,
        rgb_to_index,
        save_mask,
        voc_colormap,
        write_classes_yaml,
    )
    from gsag.data.layout import detect_layout, open_dataset
    from gsag.data.pascal_context import PascalContextSegmentation
    from gsag.data.voc import VOC_CLASSES, VOC_PALETTE, VOCSegmentation

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "ADE20KSegmentation",
    "BadSampleError",
    "CityscapesSegmentation",
    "ClassInfo",
    "DataError",
    "DownloadError",
    "FolderSegmentation",
    "PascalContextSegmentation",
    "SegmentationDataset",
    "VOCSegmentation",
    "colorize",
    "detect_layout",
    "open_dataset",
    "read_classes_yaml",
    "read_image",
    "read_mask",
    "rgb_to_index",
    "save_mask",
    "voc_colormap",
    "write_classes_yaml",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "IMAGENET_MEAN": "gsag.data.io",
        "IMAGENET_STD": "gsag.data.io",
        "VOC_CLASSES": "gsag.data.voc",
        "VOC_PALETTE": "gsag.data.voc",
        "ADE20KSegmentation": "gsag.data.ade20k",
        "BadSampleError": "gsag.data.errors",
        "CityscapesSegmentation": "gsag.data.cityscapes",
        "ClassInfo": "gsag.data.io",
        "DataError": "gsag.data.errors",
        "DownloadError": "gsag.data.errors",
        "FolderSegmentation": "gsag.data.folder",
        "PascalContextSegmentation": "gsag.data.pascal_context",
        "SegmentationDataset": "gsag.data.base",
        "VOCSegmentation": "gsag.data.voc",
        "colorize": "gsag.data.io",
        "detect_layout": "gsag.data.layout",
        "open_dataset": "gsag.data.layout",
        "read_classes_yaml": "gsag.data.io",
        "read_image": "gsag.data.io",
        "read_mask": "gsag.data.io",
        "rgb_to_index": "gsag.data.io",
        "save_mask": "gsag.data.io",
        "voc_colormap": "gsag.data.io",
        "write_classes_yaml": "gsag.data.io",
    },
)
