"""Datasets, transforms and data tools: PASCAL VOC 2012 (+ SBD), Cityscapes, ADE20K,
PASCAL-Context, users' folders and a generated context benchmark, all returning `(image, mask)`
pairs. See docs/data.md."""

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
