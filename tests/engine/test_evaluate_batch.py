"""Batched evaluation (`eval.batch_size`): consecutive images of one size share a forward pass,
and everything `evaluate` returns or reports equals the one-image-at-a-time run."""

from __future__ import annotations

import json

import pytest
import torch

import gsag
from gsag.engine import evaluate as evaluate_module
from gsag.engine.evaluate import evaluate, size_batches
from gsag.engine.infer import infer
from gsag.engine.train import train
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test

CLASSES = 5
# (image height, width, mask height, width) of each sample, in order: runs of one size, a size
# coming back after another, images whose mask is larger than the image (logits resized), and
# last an image of the size before it with a mask of another size
SIZES = [(48, 48, 48, 48)] * 3 + [(40, 56, 40, 56)] * 2 + [(48, 48, 48, 48)] + \
        [(32, 32, 64, 64)] * 2 + [(48, 48, 48, 48)] * 4 + [(48, 48, 64, 64)]  # fmt: skip
#: One flipped pixel moves one count between two cells of the confusion matrix (|diff| sum 2).
#: Stacking images changes only the batch dimension of each operation, so per-image logits move
#: by float rounding (~3e-8 here, against logits ~0.1); an argmax flips only where two classes
#: are that close. 4 flips of the 35,000 pixels is far above what rounding gives (0 measured)
#: and far below what a mixed-up image or a dropped batch would (hundreds of pixels).
MAX_FLIPPED_PIXELS = 4


class MixedSizes(torch.utils.data.Dataset):
    """Normalised random images and random masks (with ignored pixels) of the sizes `SIZES`."""

    num_classes = CLASSES
    ignore_index = 255

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.samples = []
        for h, w, mh, mw in SIZES:
            mask = torch.randint(0, CLASSES, (mh, mw), generator=g)
            mask[torch.rand(mh, mw, generator=g) < 0.1] = self.ignore_index
            self.samples.append((torch.randn(3, h, w, generator=g), mask))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return gsag.create_model("gsag_hybrid", CLASSES, backbone="test_resnet", pretrained=False,
                             head_channels=16, key_channels=8, num_heads=2, fuse_channels=16)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return MixedSizes()


def flipped_pixels(a: dict, b: dict) -> int:
    """Pixels predicted differently between two evaluations, from their confusion matrices."""
    diff = (torch.tensor(a["confusion"]) - torch.tensor(b["confusion"])).abs().sum().item()
    return int(diff) // 2


def test_size_batches_stacks_runs_of_one_size_in_order(data):
    for batch_size, expected in [
        (1, [1] * len(SIZES)),
        (2, [2, 1, 2, 1, 2, 2, 2, 1]),
        (4, [3, 2, 1, 2, 4, 1]),
        (100, [3, 2, 1, 2, 4, 1]),
    ]:
        batches = list(size_batches(iter(data), batch_size))
        assert [len(images) for images, _ in batches] == expected, batch_size
        images = [image for batch, _ in batches for image in batch]
        masks = [mask for _, batch in batches for mask in batch]
        assert all(map(torch.equal, images, [image for image, _ in data]))
        assert all(map(torch.equal, masks, [mask for _, mask in data]))
        assert len(images) == len(masks) == len(data)


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "whole"},
        {"mode": "slide", "crop_size": 32, "stride": 24},
        {"mode": "multiscale", "scales": [0.75, 1.25], "flip": True},
        {
            "mode": "multiscale",
            "scales": [0.75, 1.0],
            "window": "slide",
            "crop_size": 32,
            "stride": 32,
        },
    ],
    ids=["whole", "slide", "multiscale-flip", "multiscale-slide"],
)
def test_batched_evaluation_equals_one_image_at_a_time(model, data, options):
    single = evaluate(model, data, **options)
    batched = evaluate(model, data, batch_size=4, **options)
    assert flipped_pixels(single, batched) <= MAX_FLIPPED_PIXELS
    assert batched["images"] == single["images"] == len(SIZES)
    assert batched["mIoU"] == pytest.approx(single["mIoU"], abs=1e-3)
    # every pixel counted once: valid mask pixels of all images, none padded in
    valid = sum(int((mask != 255).sum()) for _, mask in data)
    assert sum(map(sum, batched["confusion"])) == valid


def test_batched_logits_equal_single_image_logits(model, data):
    images = torch.stack([image for image, _ in list(data)[8:12]])  # four 48x48 images
    model.eval()
    batched = infer(model, images, "multiscale", scales=[0.75, 1.0], flip=True)
    single = torch.cat([infer(model, x[None], "multiscale", scales=[0.75, 1.0], flip=True)
                        for x in images])  # fmt: skip
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)


def test_progress_counts_images_and_max_images_cuts_the_same_images(model, data):
    calls: list[tuple[int, int]] = []
    batched = evaluate(model, data, batch_size=2, max_images=7, progress=lambda *a: calls.append(a))
    single = evaluate(model, data, max_images=7)
    # the first 7 images are batched [2, 1, 2, 1, 1] (sizes change after the 3rd, 5th, 6th)
    assert calls == [(2, 7), (3, 7), (5, 7), (6, 7), (7, 7)]
    assert batched["images"] == 7
    assert flipped_pixels(single, batched) <= MAX_FLIPPED_PIXELS
    valid = sum(int((mask != 255).sum()) for _, mask in list(data)[:7])
    assert sum(map(sum, batched["confusion"])) == valid  # those 7 images, each once


def test_kept_samples_are_the_first_images_across_batches(model, data):
    single = evaluate(model, data, keep_samples=5)["samples"]
    batched = evaluate(model, data, batch_size=4, keep_samples=5)["samples"]  # batches 3 + 2
    assert len(batched) == 5
    for (image, mask), (b_image, b_mask, b_pred), (_, _, pred) in zip(
        list(data)[:5], batched, single, strict=True
    ):
        assert torch.equal(b_image, image) and torch.equal(b_mask, mask)
        assert b_pred.shape == mask.shape and int((b_pred != pred).sum()) <= MAX_FLIPPED_PIXELS
        assert b_image.untyped_storage().nbytes() == image.numel() * 4  # not a view of a batch


def test_shards_batch_their_own_images_and_sum_to_the_whole(model, data):
    full = evaluate(model, data, batch_size=4)
    shards = [evaluate(model, data, batch_size=4, rank=r, world_size=2, keep_samples=len(data))
              for r in (0, 1)]  # fmt: skip
    summed = torch.tensor(shards[0]["confusion"]) + torch.tensor(shards[1]["confusion"])
    assert flipped_pixels(full, {"confusion": summed.tolist()}) <= MAX_FLIPPED_PIXELS
    for rank, shard in enumerate(shards):
        kept = [image for image, _, _ in shard["samples"]]
        expected = [image for image, _ in list(data)[rank::2]]
        assert len(kept) == len(expected)
        assert all(torch.equal(a, b) for a, b in zip(kept, expected, strict=True))


def test_batch_size_below_one_is_refused(model, data):
    with pytest.raises(ValueError, match="batch size 0 must be >= 1"):
        evaluate(model, data, batch_size=0)


def test_train_report_and_gsag_eval_pass_eval_batch_size(synth_root, tmp_path, monkeypatch):
    """Training's evaluations, the run report and `gsag eval` all batch by `eval.batch_size`
    (`--batch-size` overriding the checkpoint's), with the metrics of batch 1."""
    from gsag.cli import main
    from gsag.trained.report import write_run_report

    seen: list[int] = []

    def spy(*args, batch_size=1, **kwargs):
        seen.append(batch_size)
        return evaluate(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", spy)
    monkeypatch.setattr(gsag.engine.train, "evaluate", spy)
    run = tmp_path / "run"
    result = train(tiny_config(synth_root, run, "train.iters=2", "eval.batch_size=3"), quiet=True)
    assert seen == [3]  # eval_interval 2: one evaluation
    write_run_report(run / "last.pt", tmp_path / "report", num_images=1)
    assert seen == [3, 3]
    common = [str(run / "last.pt"), "--quiet", "--workers", "0", "--max-images", "2"]
    assert main(["eval", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["eval", *common, "--batch-size", "1", "--out", str(tmp_path / "b")]) == 0
    assert seen == [3, 3, 3, 1]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert (a["settings"]["batch_size"], b["settings"]["batch_size"]) == (3, 1)
    assert flipped_pixels(a, b) <= MAX_FLIPPED_PIXELS
    assert flipped_pixels(a, result["metrics"]) <= MAX_FLIPPED_PIXELS  # same 2 images, last.pt
