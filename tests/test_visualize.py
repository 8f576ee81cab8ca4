"""Masks in colour: the lookup table, report panels and TensorBoard panels agree."""

from __future__ import annotations

import numpy as np
import torch

from gsag.data.colours import colour_mask
from gsag.engine.tb import tensorboard_panel
from gsag.trained.draw import overlay

PALETTE = [(0, 0, 0), (200, 0, 0), (0, 90, 10)]


def test_colour_mask_marks_ignore_white_and_unknown_black():
    mask = np.array([[0, 1, 2], [255, 7, 1]])
    rgb = colour_mask(mask, PALETTE)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert [tuple(c) for c in rgb[0]] == PALETTE
    assert tuple(rgb[1, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (0, 0, 0)
    assert tuple(colour_mask(mask, PALETTE, ignore_index=None)[1, 0]) == (0, 0, 0)


def test_overlay_tints_foreground_only():
    rgb = np.full((1, 3, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1, 255]])
    shown = np.asarray(overlay(rgb, mask, [(0, 0, 0), (200, 0, 0)], alpha=0.6))
    assert tuple(shown[0, 1]) == (160, 40, 40)  # 0.4 * 100 + 0.6 * (200, 0, 0)
    assert tuple(shown[0, 0]) == tuple(shown[0, 2]) == (100, 100, 100)  # background, ignore


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


def test_report_figure_has_titles_and_a_legend_of_the_classes_present():
    from gsag.trained.draw import REPORT_TITLES, pyplot, report_figure

    classes = ["background", "red", "green", "unused"]
    palette = [*PALETTE, (1, 2, 3)]
    rgb = np.full((8, 10, 3), 90, dtype=np.uint8)
    truth = np.zeros((8, 10), dtype=np.int64)
    truth[:2] = 255
    truth[4:, 4:] = 1
    pred = np.zeros((8, 10), dtype=np.int64)
    pred[5:, 5:] = 2
    fig = report_figure(rgb, truth, pred, classes, palette)
    assert [ax.get_title() for ax in fig.axes] == list(REPORT_TITLES) == [
        "image", "truth", "prediction", "overlay"]  # fmt: skip
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["background", "red", "green", "ignore"]  # "unused" is in neither mask
    colours = [tuple(round(255 * c) for c in p.get_facecolor()[:3]) for p in legend.get_patches()]
    assert colours == [(0, 0, 0), (200, 0, 0), (0, 90, 10), (255, 255, 255)]
    shown = [ax.get_images()[0].get_array() for ax in fig.axes]
    np.testing.assert_array_equal(shown[2], colour_mask(pred, palette))
    pyplot().close(fig)


def test_outlined_overlay_keeps_a_grey_class_visible_on_a_grey_photo():
    """VOC's class 7 is (128, 128, 128): blended over a grey photo it vanishes; its outline not."""
    palette = [(0, 0, 0)] * 7 + [(128, 128, 128)]
    rgb = np.full((12, 12, 3), 128, dtype=np.uint8)
    mask = np.zeros((12, 12), dtype=np.int64)
    mask[3:9, 3:9] = 7
    plain = np.asarray(overlay(rgb, mask, palette, alpha=0.6)).astype(int)
    drawn = np.asarray(overlay(rgb, mask, palette, alpha=0.6, outline=True)).astype(int)
    assert np.abs(plain - rgb).max() == 0  # the problem: nothing to see
    ring = np.zeros((12, 12), dtype=bool)
    ring[3:9, 3:9] = True
    ring[4:8, 4:8] = False  # the region's own border pixels
    assert (np.abs(drawn - 128).max(axis=2)[ring] >= 100).all()
    np.testing.assert_array_equal(drawn[~ring], plain[~ring])  # inside and outside unchanged
    white = np.asarray(overlay(rgb, np.where(mask, 1, 0), [(0, 0, 0), (0, 0, 120)], outline=True))
    assert tuple(white[3, 3]) == (255, 255, 255)  # a dark class gets a white edge


def test_confusion_cells_show_row_percentages():
    from gsag.engine.eval_report import confusion_labels

    norm = torch.tensor([[0.875, 0.125, 0.0], [0.002, 0.998, 0.0], [0.0, 0.0, 0.0]])
    assert confusion_labels(norm) == {(0, 0): "88", (0, 1): "12", (1, 0): "<1", (1, 1): "100"}


def test_predict_overlay_has_the_report_legend(tmp_path):
    """`gsag predict`'s overlays carry the legend of the report's panels (they had none): the
    same entries and colours, drawn under the overlay by the same function."""
    from PIL import Image

    from gsag.trained.draw import overlay_figure, pyplot, report_figure, save_figure

    classes = ["background", "red", "green", "unused"]
    palette = [*PALETTE, (1, 2, 3)]
    rgb = np.full((40, 50, 3), 90, dtype=np.uint8)
    pred = np.zeros((40, 50), dtype=np.int64)
    pred[5:20, 5:20], pred[25:, 30:] = 1, 2

    def entries(fig):
        (legend,) = fig.legends
        labels = [t.get_text() for t in legend.get_texts()]
        colours = [tuple(round(255 * c) for c in p.get_facecolor()[:3])
                   for p in legend.get_patches()]  # fmt: skip
        return list(zip(labels, colours, strict=True))

    report, drawn = (
        report_figure(rgb, pred, pred, classes, palette),
        overlay_figure(rgb, pred, classes, palette),
    )
    assert entries(drawn) == entries(report) == [
        ("background", (0, 0, 0)), ("red", (200, 0, 0)), ("green", (0, 90, 10))]  # fmt: skip
    pyplot().close(report)
    path = save_figure(drawn, tmp_path / "overlay.png", tight=False)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    k = 480 // 50 + 1  # enlarged by a whole factor to at least 480 pixels wide
    assert pixels.shape[1] == 50 * k and pixels.shape[0] > 40 * k
    legend = pixels[40 * k :].reshape(-1, 3)
    for colour in [(200, 0, 0), (0, 90, 10)]:  # the patches are drawn under the picture
        assert (np.abs(legend.astype(int) - colour).sum(1) == 0).sum() > 20
