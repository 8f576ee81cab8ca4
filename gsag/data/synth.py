"""A generated *context benchmark* written in PASCAL VOC's on-disk layout.

Every image has a scene band along its top or bottom edge (a grey road with a dashed line, or
blue water with waves) and 2–5 textured objects placed away from the band. Some classes share
their local appearance exactly and are told apart only by a cue elsewhere in the image:

- a *hull* (striped rounded box) is `car` on a road scene and `boat` on a water scene;
- a *figure* (striped upright ellipse) is `rider` when the image also holds a `horse`
  (a triangle, anywhere), else `walker`.

`disc`, `block` and `horse` are recognisable from their own pixels. Colours, sizes and positions
are drawn independently of the class; each context flag is a fair coin. Rules and measured speed:
docs/data.md.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from gsag.atomic import atomic_path
from gsag.atomic import write_bytes as atomic_write_bytes
from gsag.data.io import ClassInfo, save_mask, voc_colormap, write_classes_yaml

SYNTH_CLASSES: list[str] = [
    "background",
    "disc",
    "block",
    "horse",
    "car",
    "boat",
    "rider",
    "walker",
]
SYNTH_PALETTE: list[tuple[int, int, int]] = voc_colormap(len(SYNTH_CLASSES))
DISC, BLOCK, HORSE, CAR, BOAT, RIDER, WALKER = range(1, 8)
#: Version of the generating rules; bump when the output for a seed changes.
#: 1: objects placed in random order, so the horse was dropped (and its image relabelled
#:    "no horse") in about a quarter of the images that drew one: rider was 1/3 of figure pixels.
#: 2 (default): the horse is placed first and always fits, so both context coins are fair.
VERSION = 2
VERSIONS = (1, 2)

#: Each split draws its images from its own random stream (seed, split code, index, version), so
#: the held-out test images are new images of the same generator version, and adding them left
#: every train and val image of a seed byte-identical.
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
#: The splits `generate` writes, in order: choose on val, report on test.
SPLITS = ("train", "val", "test")


def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) weights of linear interpolation from `cells` samples to `size` pixels."""
    position = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    low = np.minimum(position.astype(int), cells - 2)
    weights = np.zeros((size, cells))
    weights[np.arange(size), low] = 1 - (position - low)
    weights[np.arange(size), low + 1] = position - low
    return weights


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth low-frequency texture, the same distribution for every scene. (S, S, 3) float."""
    base = rng.uniform(90, 170, size=3)
    coarse = rng.normal(0.0, 25.0, size=(6, 6, 3))
    weights = _interpolation_matrix(size, 6)
    smooth = [weights @ coarse[..., c] @ weights.T for c in range(3)]  # 3 x (S, S)
    return base + np.stack(smooth, axis=-1)  # (S, S, 3)


def _band(rng: np.random.Generator, image: np.ndarray, water: bool, top: bool, height: int):
    """Paint the scene band (road or water) over `height` rows at the top or bottom edge."""
    size = image.shape[0]
    rows = slice(0, height) if top else slice(size - height, size)
    yy, xx = np.mgrid[0:height, 0:size].astype(np.float32)
    if water:
        colour = np.array([40.0, 90.0, 170.0]) + rng.normal(0, 12, size=3)
        phase = rng.uniform(0, 2 * np.pi)
        period = rng.uniform(0.15, 0.3) * size
        wave = np.sin(2 * np.pi * xx / period + phase + yy * 0.9) > 0.6
        band = colour + wave[..., None] * 45.0
    else:
        colour = np.full(3, 70.0) + rng.normal(0, 8, size=3)
        dash = rng.uniform(0.08, 0.15) * size
        line = (np.abs(yy - height / 2) < max(1.0, height / 10)) & ((xx // dash) % 2 == 0)
        band = colour + line[..., None] * 150.0
    image[rows] = band


def _shape(kind: str, r: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask of a shape of radius `r` centred at 0 on offset grids `yy`, `xx`."""
    if kind == "disc":
        return yy**2 + xx**2 <= r**2
    if kind == "block":
        return (np.abs(yy) <= 0.85 * r) & (np.abs(xx) <= 0.85 * r)
    if kind == "horse":  # upward triangle, apex at -r, base at +0.8 r
        return (yy <= 0.8 * r) & (np.abs(xx) <= (yy + r) / 1.8)
    if kind == "hull":  # rounded box (superellipse), wide
        return (xx / (1.3 * r)) ** 4 + (yy / (0.55 * r)) ** 4 <= 1
    if kind == "figure":  # upright ellipse
        return (xx / (0.5 * r)) ** 2 + (yy / (1.2 * r)) ** 2 <= 1
    raise ValueError(kind)


def _extent(kind: str, r: float) -> tuple[float, float]:
    """Half height and half width of a shape's bounding box."""
    return {
        "disc": (r, r),
        "block": (0.85 * r, 0.85 * r),
        "horse": (r, r),
        "hull": (0.55 * r, 1.3 * r),
        "figure": (1.2 * r, 0.5 * r),
    }[kind]


def _texture(kind: str, yy: np.ndarray, xx: np.ndarray, r: float) -> np.ndarray:
    """Brightness multiplier (H, W) of a shape: stripes for hulls and figures, flat otherwise."""
    if kind in ("hull", "figure"):
        period = max(2.0, r / 2.5)
        coord = yy if kind == "hull" else xx
        return np.where(((coord + r) // period) % 2 == 0, 1.0, 0.6)
    return np.ones_like(yy)


def _hsv_colour(rng: np.random.Generator) -> np.ndarray:
    """A random saturated RGB colour (0..255), independent of the class."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0.5, 0.9), rng.uniform(150, 245)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def render(
    seed: int, split: str, index: int, size: int, version: int = VERSION
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one sample: image uint8 (S, S, 3), mask uint8 (S, S) and its context flags.

    The sample depends only on (seed, split, index, size, version).
    """
    if version not in VERSIONS:
        raise ValueError(f"synthetic generator version {version} is unknown; use one of {VERSIONS}")
    if split not in _SPLIT_CODES:
        raise ValueError(f"synthetic split {split!r} is unknown; use one of {SPLITS}")
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index, version])
    image = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    water, band_top, horse = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5
    band = max(2, round(0.12 * size))
    _band(rng, image, water, band_top, band)

    # objects stay at least `margin` pixels away from the band
    margin = round(0.15 * size)
    y_lo, y_hi = (band + margin, size - 1) if band_top else (0, size - band - margin - 1)
    kinds = ["hull" if rng.random() < 0.5 else "figure"]
    kinds += ["horse"] * horse
    others = ["disc", "block", "hull", "figure"]
    kinds += [others[k] for k in rng.choice(4, size=rng.integers(1, 5), p=[0.2, 0.2, 0.3, 0.3])]
    kinds = [kinds[k] for k in rng.permutation(len(kinds))]
    if version >= 2 and horse:  # the context object first: it always fits on an empty canvas
        kinds.remove("horse")
        kinds.insert(0, "horse")
    labels = {
        "disc": DISC,
        "block": BLOCK,
        "horse": HORSE,
        "hull": BOAT if water else CAR,
        "figure": RIDER if horse else WALKER,
    }
    taken = np.zeros((size, size), bool)
    border = max(1, round(size / 128))
    placed_horse = False
    for kind in kinds:
        for _ in range(30):
            r = rng.uniform(0.1, 0.18) * size
            hy, hx = _extent(kind, r)
            if y_hi - y_lo < 2 * hy + 2:
                continue
            cy = rng.uniform(y_lo + hy + 1, y_hi - hy - 1)
            cx = rng.uniform(hx + 1, size - hx - 2)
            pad = 2 * border  # keep the 255 rings of neighbours apart
            top, bottom = max(int(cy - hy) - pad, 0), min(int(cy + hy) + pad + 2, size)
            left, right = max(int(cx - hx) - pad, 0), min(int(cx + hx) + pad + 2, size)
            if taken[top:bottom, left:right].any():
                continue
            yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
            shape = _shape(kind, r, yy - cy, xx - cx)
            if not shape.any():
                continue
            colour = _hsv_colour(rng)
            shade = _texture(kind, yy - cy, xx - cx, r)[..., None] * colour  # (h, w, 3)
            window = image[top:bottom, left:right]
            window[shape] = shade[shape]
            ring = ndimage.binary_dilation(shape, iterations=border) & ~ndimage.binary_erosion(
                shape, iterations=border, border_value=1
            )
            mask_window = mask[top:bottom, left:right]
            mask_window[shape] = labels[kind]
            mask_window[ring] = 255
            taken[top:bottom, left:right] = True
            placed_horse |= kind == "horse"
            break
    if horse and not placed_horse:  # keep the rider rule exact: no horse drawn -> walkers
        mask[mask == RIDER] = WALKER
        horse = False
    image += rng.normal(0.0, 6.0, size=image.shape)
    pixels = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return pixels, mask, {"water": bool(water), "horse": bool(horse), "band_top": bool(band_top)}


def _write_one(args: tuple[Path, int, str, int, int, int, int]) -> None:
    root, seed, split, index, size, quality, version = args
    image, mask, _ = render(seed, split, index, size, version)
    name = f"{split}_{index:05d}"
    jpg = root / "JPEGImages" / f"{name}.jpg"
    with atomic_path(jpg) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=quality)
    save_mask(root / "SegmentationClass" / f"{name}.png", mask, SYNTH_PALETTE)


def split_counts(num_train: int, num_val: int, num_test: int | None = None) -> dict[str, int]:
    """{split: images} that `generate` writes: `num_test` None means as many test images as
    val. Raises ValueError on counts that cannot be written."""
    num_test = num_val if num_test is None else num_test
    if num_train < 1 or num_val < 0 or num_test < 0:
        raise ValueError(
            f"need num_train >= 1, num_val >= 0 and num_test >= 0, "
            f"got {num_train}, {num_val}, {num_test}"
        )
    return dict(zip(SPLITS, (num_train, num_val, num_test), strict=True))


def generate(
    out_dir: str | Path,
    num_train: int = 600,
    num_val: int = 150,
    size: int = 128,
    seed: int = 0,
    workers: int = 1,
    quality: int = 90,
    progress=None,
    version: int = VERSION,
    num_test: int | None = None,
) -> Path:
    """Write the context benchmark as a VOC tree and return its root.

    Writes `JPEGImages/<split>_<i>.jpg`, `SegmentationClass/<split>_<i>.png` (palette PNGs,
    255 borders around objects), `ImageSets/Segmentation/{train,val,test,trainval}.txt` and
    `classes.yaml`. The output is a function of (seed, size, counts, version) only. The test
    split is held out: choose settings on val, report on test (`data.val_split=test`).

    Args:
        out_dir: folder to write (created; existing files of the same names are replaced).
        num_train: training images.
        num_val: validation images.
        size: image side in pixels (square images), at least 32.
        seed: random seed.
        workers: processes used to render (1 = this process).
        quality: JPEG quality.
        progress: optional callable `(done, total)` called as images are written.
        version: generating rules (see `VERSION`); 1 reproduces the first benchmark.
        num_test: held-out test images; None: as many as val (0: no test split, as before
            it existed).
    """
    if size < 32:
        raise ValueError(f"synthetic image size {size} is too small; use at least 32")
    if version not in VERSIONS:
        raise ValueError(f"synthetic generator version {version} is unknown; use one of {VERSIONS}")
    counts = split_counts(num_train, num_val, num_test)
    num_test = counts["test"]
    root = Path(out_dir)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(root, seed, s, i, size, quality, version) for s, n in counts.items() for i in range(n)]
    _write_all(jobs, workers, progress)
    lists = {s: [f"{s}_{i:05d}" for i in range(n)] for s, n in counts.items() if n or s != "test"}
    lists["trainval"] = lists["train"] + lists["val"]
    for split, ids in lists.items():
        text = "".join(f"{i}\n" for i in ids)
        atomic_write_bytes(root / "ImageSets" / "Segmentation" / f"{split}.txt", text.encode())
    generator = {"version": version, "seed": seed, "size": size, "num_train": num_train,
                 "num_val": num_val, "num_test": num_test}  # fmt: skip
    _write_classes(root, generator)
    return root


def synth_settings(root: str | Path) -> dict | None:
    """The generator settings that `generate` recorded in `root/classes.yaml`; None when `root`
    holds no output of it (no such file, unreadable, or without them)."""
    from gsag.safe_yaml import YamlError, load_yaml

    try:
        data = load_yaml((Path(root) / "classes.yaml").read_text(encoding="utf-8"), str(root))
    except (OSError, UnicodeDecodeError, YamlError):
        return None
    settings = data.get("generator") if isinstance(data, dict) else None
    return settings if isinstance(settings, dict) else None


def _write_all(jobs: list[tuple], workers: int, progress) -> None:
    """Render and write every image of `jobs`, in `workers` processes (1: this one)."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for done, _ in enumerate(pool.map(_write_one, jobs, chunksize=16), 1):
                if progress:
                    progress(done, len(jobs))
    else:
        for done, job in enumerate(jobs, 1):
            _write_one(job)
            if progress:
                progress(done, len(jobs))


def _write_classes(root: Path, generator: dict) -> None:
    """classes.yaml: the classes and palette, the generator settings and the context rules."""
    write_classes_yaml(
        root / "classes.yaml",
        ClassInfo(list(SYNTH_CLASSES), list(SYNTH_PALETTE), 255),
        extra={
            "dataset": "gsag synthetic context benchmark",
            "generator": generator,
            "context_rules": {
                "car": "hull shape on a road scene (grey band with a dashed line)",
                "boat": "hull shape on a water scene (blue band with waves)",
                "rider": "figure shape in an image that also holds a horse",
                "walker": "figure shape in an image without a horse",
            },
        },
    )
