"""Masks in colour: the lookup table, report panels and TensorBoard panels agree."""

from __future__ import annotations

import numpy as np
import torch

from gsag.visualize import colour_mask, prediction_panel, tensorboard_panel

PALETTE = [(0, 0, 0), (200, 0, 0), (0, 90, 10)]


def test_colour_mask_marks_ignore_white_and_unknown_black():
    mask = np.array([[0, 1, 2], [255, 7, 1]])
    rgb = colour_mask(mask, PALETTE)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert [tuple(c) for c in rgb[0]] == PALETTE
    assert tuple(rgb[1, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (0, 0, 0)
    assert tuple(colour_mask(mask, PALETTE, ignore_index=None)[1, 0]) == (0, 0, 0)


def test_prediction_panel_shows_image_truth_and_overlay():
    rgb = np.full((4, 5, 3), 100, dtype=np.uint8)
    truth = np.array([[0, 1, 255, 1, 0]] * 4)
    pred = np.ones((4, 5), dtype=np.int64)
    palette = [(0, 0, 0), (200, 0, 0)]
    panel = np.asarray(prediction_panel(rgb, truth, pred, palette, min_height=4))
    assert panel.shape == (4, 15, 3)
    np.testing.assert_array_equal(panel[:, :5], rgb)
    assert tuple(panel[0, 5 + 1]) == (200, 0, 0) and tuple(panel[0, 5 + 2]) == (255, 255, 255)
    assert tuple(panel[0, 10]) == (160, 40, 40)  # 0.4 * 100 + 0.6 * (200, 0, 0)


def test_tensorboard_panel_unnormalises_resizes_and_colours_both_masks():
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    image = torch.zeros(3, 2, 3)  # the mean colour, at half the masks' size
    mask = torch.tensor([[0, 1, 2, 255, 1, 0]] * 4)
    pred = torch.tensor([[2, 2, 1, 1, 0, 0]] * 4)
    panel = tensorboard_panel(image, mask, pred, mean, std, PALETTE)
    assert panel.shape == (3, 4, 18) and panel.dtype == torch.uint8
    assert (panel[:, :, :6] == 127).all()  # 0.5 * 255, resized to (4, 6)
    truth = panel[:, 0, 6:12].T.tolist()
    assert truth == [[0, 0, 0], [200, 0, 0], [0, 90, 10], [255, 255, 255], [200, 0, 0], [0, 0, 0]]
    assert panel[:, 0, 12:].T.tolist()[0] == [0, 90, 10]
