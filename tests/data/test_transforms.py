"""Training/evaluation pipelines: geometry stays aligned, crops obey cat_max_ratio, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsag.data import IMAGENET_MEAN, IMAGENET_STD, VOCSegmentation
from gsag.data.transforms import RandomCrop, eval_transforms, rescale_size, train_transforms
from gsag.engine.sampler import stream_loader

# eight well-separated colours; label i is painted in COLOURS[i]
COLOURS = torch.tensor(
    [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
     [0, 255, 255], [255, 255, 255]],
    dtype=torch.float32,
)  # fmt: skip


def _blocky_pair(height: int, width: int, block: int, seed: int):
    """A mask of random `block`-pixel squares and an image painted from it (uint8 (3, H, W))."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, len(COLOURS), (height // block + 1, width // block + 1), generator=g)
    mask = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width]
    image = COLOURS[mask].permute(2, 0, 1).to(torch.uint8)  # (3, H, W)
    return image, mask.long()


def _denormalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x * std + mean) * 255.0


@pytest.mark.parametrize("seed", range(6))
def test_mask_stays_aligned_with_image(seed):
    """Decode the label from each output pixel's colour: it must equal the output mask."""
    torch.manual_seed(seed)
    image, mask = _blocky_pair(75, 110, block=9, seed=seed)
    pipeline = train_transforms(
        crop_size=64, base_size=(110, 75), scale_range=(0.5, 2.0), cat_max_ratio=0.75,
        photometric=False, hflip=0.5,
    )  # fmt: skip
    out_image, out_mask = pipeline(image, mask)
    assert out_image.shape == (3, 64, 64) and out_image.dtype == torch.float32
    assert out_mask.shape == (64, 64) and out_mask.dtype == torch.int64
    rgb = _denormalise(out_image).permute(1, 2, 0)  # (H, W, 3)
    decoded = torch.cdist(rgb.reshape(-1, 3), COLOURS).argmin(1).reshape(64, 64)
    valid = out_mask != 255
    # only judge pixels whose 3x3 neighbourhood has one label (bilinear blurs the edges)
    padded = torch.nn.functional.pad(out_mask[None, None].float(), (1, 1, 1, 1), value=-1.0)
    low = -torch.nn.functional.max_pool2d(-padded, 3, 1)[0, 0]
    high = torch.nn.functional.max_pool2d(padded, 3, 1)[0, 0]
    interior = valid & (low == high)
    assert interior.sum() > 500
    agree = (decoded[interior] == out_mask[interior]).float().mean().item()
    assert agree > 0.99
    # padding: mask 255 exactly where the image is the (normalised) zero fill
    assert set(out_mask.unique().tolist()) <= set(range(len(COLOURS))) | {255}
    assert torch.all(out_image[:, ~valid] == 0)


def test_photometric_changes_colour_not_mask():
    image, mask = _blocky_pair(40, 40, block=5, seed=0)
    plain = train_transforms(crop_size=40, base_size=None, scale_range=(1, 1), hflip=0,
                             photometric=False, cat_max_ratio=1.0)  # fmt: skip
    jitter = train_transforms(crop_size=40, base_size=None, scale_range=(1, 1), hflip=0,
                              photometric=True, cat_max_ratio=1.0)  # fmt: skip
    changed = 0
    for seed in range(8):
        torch.manual_seed(seed)
        a_img, a_mask = plain(image, mask)
        torch.manual_seed(seed)
        b_img, b_mask = jitter(image, mask)
        assert torch.equal(a_mask, b_mask) and torch.equal(a_mask, mask)
        changed += not torch.allclose(a_img, b_img)
    assert changed >= 6  # each of four steps fires with p = 1/2


def _max_share(crop: np.ndarray, ignore: int = 255) -> tuple[int, float]:
    values, counts = np.unique(crop[crop != ignore], return_counts=True)
    return len(values), counts.max() / counts.sum()


def test_crop_respects_cat_max_ratio_when_possible():
    # class 1 fills the image except a 30x30 square of class 2 and a 20x20 ignore patch
    mask = np.ones((100, 100), np.int64)
    mask[60:90, 10:40] = 2
    mask[5:25, 70:90] = 255
    mask_t = torch.from_numpy(mask)
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    ok = {}
    for ratio in (0.75, 1.0):
        torch.manual_seed(0)
        crop = RandomCrop(40, cat_max_ratio=ratio)
        passes = []
        for _ in range(200):
            _, out = crop(image, mask_t)
            n, share = _max_share(out.numpy())
            passes.append(n > 1 and share < 0.75)
        ok[ratio] = np.mean(passes)
    # about 20 % of positions pass; ten tries make a miss rare (0.8 ** 10 ~ 0.11)
    assert ok[1.0] < 0.35
    assert ok[0.75] > 0.8


def test_crop_smaller_image_is_padded():
    image = torch.full((3, 20, 30), 128, dtype=torch.uint8)
    mask = torch.ones(20, 30, dtype=torch.int64)
    pipeline = train_transforms(crop_size=(32, 48), base_size=None, scale_range=(1, 1),
                                photometric=False, hflip=0)  # fmt: skip
    out_image, out_mask = pipeline(image, mask)
    assert out_image.shape == (3, 32, 48) and out_mask.shape == (32, 48)
    assert torch.all(out_mask[:20, :30] == 1) and torch.all(out_mask[20:] == 255)
    assert torch.all(out_mask[:, 30:] == 255) and torch.all(out_image[:, 20:] == 0)


@pytest.mark.parametrize(("h", "w", "scale", "ratio"), [(375, 500, (2048, 512), 1.0),
                                                        (500, 333, (2048, 512), 0.5),
                                                        (64, 64, (128, 96), 2.0)])  # fmt: skip
def test_rescale_size_keeps_ratio_within_scale(h, w, scale, ratio):
    out_h, out_w = rescale_size(h, w, scale, ratio)
    long_edge, short_edge = max(scale) * ratio, min(scale) * ratio
    assert max(out_h, out_w) <= long_edge + 0.5 and min(out_h, out_w) <= short_edge + 0.5
    # one of the two limits is reached
    assert max(out_h, out_w) >= long_edge - 1 or min(out_h, out_w) >= short_edge - 1
    assert abs(out_h / out_w - h / w) < 0.01


@pytest.mark.parametrize(("h", "w", "scale", "ratio", "expected"), [
    (1024, 2048, (2048, 1024), 0.5, (512, 1024)),  # Cityscapes: 2048x1024 base, non-square
    (1024, 2048, (2048, 1024), 2.0, (2048, 4096)),
    (384, 512, (2048, 512), 1.0, (512, 683)),  # ADE20K evaluation: short side 512
    (1200, 300, (2048, 512), 1.0, (2048, 512)),  # a tall image meets the long-edge limit
    (375, 500, (520, 520), 1.0, (390, 520)),  # PASCAL-Context: 520x520 base
])  # fmt: skip
def test_rescale_size_for_the_dataset_recipes(h, w, scale, ratio, expected):
    assert rescale_size(h, w, scale, ratio) == expected


def test_cityscapes_crop_is_height_by_width():
    image, mask = _blocky_pair(64, 128, block=8, seed=3)
    pipeline = train_transforms(crop_size=(16, 32), base_size=(128, 64), scale_range=(1, 1),
                                photometric=False, hflip=0)  # fmt: skip
    out_image, out_mask = pipeline(image, mask)
    assert out_image.shape == (3, 16, 32) and out_mask.shape == (16, 32)


def test_eval_transforms_resize_image_keep_mask():
    image, mask = _blocky_pair(48, 80, block=8, seed=1)
    out_image, out_mask = eval_transforms(scale=(160, 96))(image, mask)
    assert out_image.shape == (3, 96, 160)
    assert torch.equal(out_mask, mask) and out_mask.dtype == torch.int64
    plain_image, _ = eval_transforms()(image, mask)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(plain_image, (image.float() / 255 - mean) / std, atol=1e-6)


def _batches(dataset, seed: int, num_workers: int) -> list[torch.Tensor]:
    """The training loader's micro-batches of 2 over 2 iterations of batch 8 (2 accumulation
    steps), as process 1 of 2 sees them."""
    loader = stream_loader(dataset, batch_size=8, micro=2, accum_steps=2, rank=1, world_size=2,
                           seed=seed, start=0, iters=2, num_workers=num_workers,
                           pin_memory=False)  # fmt: skip
    return [image for image, _ in loader]


def test_seeded_loader_is_deterministic(synth_root):
    """The training stream's augmentation depends on the seed only: not on loader workers."""
    dataset = VOCSegmentation(
        synth_root, "train", transforms=train_transforms(crop_size=48, base_size=(64, 64))
    )
    first, second = _batches(dataset, 7, num_workers=2), _batches(dataset, 7, num_workers=0)
    other = _batches(dataset, 8, num_workers=2)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("factor", [3.0, 0.5, 1.5])
def test_mask_resize_samples_the_image_pixel_centres(factor):
    """On a horizontal ramp (value = column) the resized image and mask must agree everywhere."""
    from gsag.data.transforms import resize_pair

    width = 60
    ramp = torch.arange(width).repeat(8, 1)  # (8, W): label = column
    image = ramp.to(torch.uint8)[None].repeat(3, 1, 1)  # (3, 8, W)
    out_w = int(width / factor)
    out_image, out_mask = resize_pair(image, ramp.to(torch.uint8), (8, out_w))
    centre = out_image[0, 4].float()  # bilinear: the value at each output pixel centre
    assert (centre - out_mask[4].float()).abs().max() <= 0.5 + 1e-3


@pytest.mark.parametrize(
    ("size", "expected"), [(7, (7, 7)), ([5], (5, 5)), ([4, 9], (4, 9)), ((4.0, 9.0), (4, 9))]
)
def test_pair_reads_a_side_or_height_and_width(size, expected):
    from gsag.data.sizes import pair

    assert pair(size) == expected


@pytest.mark.parametrize("factor", [1.37, 0.63, 2.9])
def test_mask_resize_keeps_its_value_set_with_ignore(factor):
    """Far-apart labels and 255 (ignore) survive a non-integer resize: no value in between.

    Averaging labels (bilinear) would invent e.g. 127 between 0 and 255 or a class id between
    two others, silently relabelling boundary pixels; nearest neighbour cannot.
    """
    from gsag.data.transforms import RandomResize, resize_pair

    values = torch.tensor([0, 3, 120, 201, 255], dtype=torch.uint8)
    g = torch.Generator().manual_seed(7)
    coarse = values[torch.randint(0, len(values), (6, 9), generator=g)]
    mask = coarse.repeat_interleave(5, 0).repeat_interleave(5, 1)  # (30, 45), 5-pixel blocks
    image = torch.zeros(3, *mask.shape, dtype=torch.uint8)
    size = (round(30 * factor), round(45 * factor))
    _, out = resize_pair(image, mask, size)
    assert tuple(out.shape) == size
    assert set(out.unique().tolist()) == set(values.tolist())
    # the training pipeline's random resize goes through the same rule
    torch.manual_seed(0)
    _, out = RandomResize(None, (factor, factor))(image, mask)
    assert set(out.unique().tolist()) == set(values.tolist())
