"""Reading images and masks, writing masks, and the `classes.yaml` class description."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from gsag.atomic import atomic_path, write_bytes
from gsag.data.errors import BadSampleError, DataError
from gsag.safe_yaml import YamlError, load_yaml

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: File suffixes read as images (dataset folders, `gsag predict` inputs); compared lower-case.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Image modes that are converted to RGB when read; `gsag data check` counts them.
CONVERTED_MODES = {
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "P": "palette",
    "PA": "palette with alpha",
    "RGBA": "RGBA",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "I;16": "16-bit",
    "I;16B": "16-bit",
    "I;16L": "16-bit",
    "I": "32-bit integer",
    "F": "32-bit float",
    "1": "1-bit",
}


def voc_colormap(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: colour `i` spreads the bits of `i` over R, G and B."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


@dataclass
class ClassInfo:
    """Class names, colours and the ignore label of a dataset."""

    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def read_classes_yaml(path: str | Path) -> ClassInfo:
    """Read a `classes.yaml`: `classes: [names]`, optional `palette: [[r, g, b], ...]`,
    optional `ignore_index` (default 255). Missing palette entries come from the VOC map."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class description ({e})") from e
    except YamlError as e:
        raise DataError(str(e)) from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise DataError(
            f"{path}: expected a mapping with a 'classes' list, e.g. 'classes: [background, cat]'"
        )
    classes = [str(c) for c in data["classes"]]
    if not 1 <= len(classes) <= 255:
        raise DataError(f"{path}: {len(classes)} classes; between 1 and 255 are supported")
    twice = repeated(classes)
    if twice:
        name, places = twice
        raise DataError(
            f"{path}: class {name!r} is named {len(places)} times (indices "
            f"{', '.join(map(str, places))}); every class needs its own name, e.g. "
            f"{name}_{places[1]}"
        )
    ignore_index = data.get("ignore_index", 255)
    if not isinstance(ignore_index, int) or not 0 <= ignore_index <= 255:
        raise DataError(f"{path}: ignore_index {ignore_index!r} must be an integer in [0, 255]")
    if 0 <= ignore_index < len(classes):
        raise DataError(
            f"{path}: ignore_index {ignore_index} is also a class index "
            f"(0..{len(classes) - 1}); use 255"
        )
    default = voc_colormap(256)
    palette_in = data.get("palette") or []
    if not isinstance(palette_in, list) or len(palette_in) > len(classes):
        raise DataError(f"{path}: 'palette' must be a list of at most {len(classes)} [r, g, b]")
    palette = []
    for i in range(len(classes)):
        if i < len(palette_in):
            colour = palette_in[i]
            if (
                not isinstance(colour, (list, tuple))
                or len(colour) != 3
                or not all(isinstance(v, int) and 0 <= v <= 255 for v in colour)
            ):
                raise DataError(f"{path}: palette entry {i} is {colour!r}; expected [r, g, b]")
            palette.append(tuple(colour))
        else:
            palette.append(default[i])
    return ClassInfo(classes, palette, ignore_index)


def repeated(names: list[str]) -> tuple[str, list[int]] | None:
    """(the first name listed more than once, every index it has), or None when all differ."""
    places: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        places.setdefault(name, []).append(i)
    return next(((n, p) for n, p in places.items() if len(p) > 1), None)


def write_classes_yaml(path: str | Path, info: ClassInfo, extra: dict | None = None) -> None:
    """Write a `classes.yaml` atomically (names, palette, ignore index, optional extra keys)."""
    data = {
        "classes": list(info.classes),
        "palette": [list(c) for c in info.palette],
        "ignore_index": info.ignore_index,
    }
    data.update(extra or {})
    write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())


def _full_palette(palette: list[tuple[int, int, int]]) -> list[int]:
    """A 256-entry flat PIL palette: the class colours, then the VOC map (255 = ignore colour)."""
    colours = list(palette) + voc_colormap(256)[len(palette) :]
    colours[255] = voc_colormap(256)[255]
    return [v for c in colours[:256] for v in c]


def colorize(mask, palette: list[tuple[int, int, int]]) -> Image.Image:
    """Turn an index mask (H, W) (tensor or array, values 0..255) into a PIL palette image."""
    array = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"colorize: expected an (H, W) mask, got shape {tuple(array.shape)}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(
            f"colorize: values {int(array.min())}..{int(array.max())} do not fit a palette PNG "
            "(0..255)"
        )
    image = Image.fromarray(array.astype(np.uint8), mode="P")
    image.putpalette(_full_palette(palette))
    return image


def save_mask(path: str | Path, mask, palette: list[tuple[int, int, int]]) -> None:
    """Save an index mask as a palette PNG (the stored index is the label), atomically."""
    with atomic_path(path) as tmp:
        colorize(mask, palette).save(tmp, format="PNG")


def _open(path: Path, what: str) -> tuple[Image.Image, list[str]]:
    """Open and fully decode an image; turn decoding problems into `BadSampleError`."""
    notes: list[str] = []
    if not path.is_file():
        raise BadSampleError(path, f"{what} is missing")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
        for w in caught:
            if issubclass(w.category, Image.DecompressionBombWarning):
                notes.append(f"very large image ({image.width}x{image.height} pixels)")
    except Image.DecompressionBombError as e:
        raise BadSampleError(
            path,
            f"decompression bomb refused ({e}); if the image is genuine, raise "
            "PIL.Image.MAX_IMAGE_PIXELS or downscale it",
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise BadSampleError(
            path, f"unreadable or truncated {what} ({e}); re-export or remove it"
        ) from e
    return image, notes


#: Transparent pixels are composited onto this colour: the ImageNet mean, which normalises to
#: ~0, the value sliding-window padding uses too.
BACKGROUND_RGB: tuple[int, int, int] = (124, 116, 104)

#: EXIF orientation -> the PIL transpose that displays the image upright.
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read an image as RGB uint8 (H, W, 3), upright as displayed (EXIF orientation applied).

    Grayscale, palette, CMYK and 16-bit images are converted; transparent pixels (RGBA, LA, PA,
    or P with a transparent colour) are composited onto `BACKGROUND_RGB`. Each conversion is
    reported in the returned notes (used by `gsag data check`).

    Raises:
        BadSampleError: missing, unreadable, truncated, or a decompression bomb.
    """
    array, notes, _ = read_image_oriented(path)
    return array, notes


def read_image_oriented(path: str | os.PathLike) -> tuple[np.ndarray, list[str], int]:
    """`read_image` plus the EXIF orientation that was applied (1 = none)."""
    image, notes = _open(Path(path), "image")
    array, more, orientation = image_to_rgb(image)
    return array, notes + more, orientation


def image_to_rgb(image: Image.Image) -> tuple[np.ndarray, list[str], int]:
    """A decoded PIL image -> upright RGB uint8 (H, W, 3), conversion notes, EXIF orientation."""
    notes: list[str] = []
    orientation = int(image.getexif().get(0x0112, 1) or 1)
    if orientation in EXIF_TRANSPOSE:
        image = image.transpose(EXIF_TRANSPOSE[orientation])
        notes.append(f"applied EXIF orientation {orientation}")
    else:
        orientation = 1
    if image.mode != "RGB":
        notes.append(f"converted {CONVERTED_MODES.get(image.mode, image.mode)} image to RGB")
        if image.mode.startswith("I;16") or image.mode in ("I", "F"):
            return _high_depth_to_rgb(image), notes, orientation
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            flat = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
            image = Image.alpha_composite(flat, rgba)
        image = image.convert("RGB")
    return np.array(image), notes, orientation


def _high_depth_to_rgb(image: Image.Image) -> np.ndarray:
    """16-bit, 32-bit integer or float single-channel image -> RGB uint8 (H, W, 3)."""
    array = np.asarray(image, dtype=np.float64)
    # 16-bit data (older Pillow opens 16-bit PNGs as "I"); floats scale to their maximum
    if image.mode == "F":
        top = max(float(array.max()), 1.0)
    else:
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
    array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(array[..., None], 3, axis=2)


def orient_mask(mask: np.ndarray, orientation: int, image_shape: tuple[int, ...]) -> np.ndarray:
    """Line a mask up with its EXIF-rotated image.

    The rule: a mask is left as stored unless its image was turned by 90 degrees (EXIF
    orientation 5-8) and the mask has the image's stored size (its height and width swapped
    relative to the upright image): it was then drawn on the stored pixels and gets the same
    turn. Masks of upright size, and masks of images that were only flipped or turned by 180
    degrees, are taken as drawn on the image as displayed.
    """
    h, w = image_shape[:2]
    if orientation not in (5, 6, 7, 8) or h == w or mask.shape != (w, h):
        return mask
    turned = Image.fromarray(mask.astype(np.int32)).transpose(EXIF_TRANSPOSE[orientation])
    return np.asarray(turned).astype(np.int64)


def read_mask(path: str | Path) -> np.ndarray:
    """Read an index mask (H, W) int64 from a palette or single-channel PNG.

    The stored index is the label (for palette PNGs the colours are ignored).

    Raises:
        BadSampleError: missing, unreadable, or an RGB(A) colour mask (with the hint to convert).
    """
    path = Path(path)
    image, _ = _open(path, "mask")
    if image.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
        return np.asarray(image).astype(np.int64)
    if image.mode in ("RGB", "RGBA", "LA", "PA"):
        raise BadSampleError(
            path,
            f"mask is an {image.mode} colour image; index masks are expected (a palette PNG or "
            "a single-channel PNG whose values are class indices). Convert it with "
            "gsag.data.rgb_to_index(mask, palette) and save_mask(...)",
        )
    raise BadSampleError(path, f"mask mode {image.mode} is not an index mask")


def rgb_to_index(rgb: np.ndarray, palette: list[tuple[int, int, int]], ignore_index: int = 255):
    """Map an RGB colour mask (H, W, 3) to class indices using `palette`.

    Colours not in the palette become `ignore_index`.
    """
    rgb = np.asarray(rgb)[..., :3].astype(np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    out = np.full(codes.shape, ignore_index, dtype=np.int64)
    for index, (r, g, b) in enumerate(palette):
        out[codes == ((r << 16) | (g << 8) | b)] = index
    return out


def check_labels(mask: np.ndarray, info: ClassInfo, path: str | Path) -> None:
    """Raise `BadSampleError` if `mask` holds values outside [0, num_classes) ∪ {ignore}."""
    if mask.size and mask.min() >= 0 and mask.max() <= 255:
        values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))  # fast path, 8-bit
    else:
        values = np.unique(mask)
    bad = values[((values < 0) | (values >= info.num_classes)) & (values != info.ignore_index)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise BadSampleError(
            path,
            f"label values {shown} outside [0, {info.num_classes}) and not the ignore index "
            f"{info.ignore_index}; fix the mask or the class list ({info.num_classes} classes)",
        )
