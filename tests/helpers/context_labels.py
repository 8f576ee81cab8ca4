"""PASCAL-Context's 59 classes as the official release's `labels.txt` numbers them, pinned here
independently of `gsag.data.pascal_context` so that a wrong entry in the code's table fails.

The release's `labels.txt` lists its 459 classes alphabetically, one `<id>: <name>` a line
(1: accordion, 2: aeroplane, ...). The 59-class benchmark keeps the 59 below, whose ids are also
the ones the dataset's Detail-API converter keeps (`PUBLISHED_ID_ORDER`, with 0 for unlabelled,
in the order that converter lists them).
"""

from __future__ import annotations

CONTEXT59_LABELS_TXT: dict[int, str] = {
    2: "aeroplane",
    9: "bag",
    18: "bed",
    19: "bedclothes",
    22: "bench",
    23: "bicycle",
    25: "bird",
    31: "boat",
    33: "book",
    34: "bottle",
    44: "building",
    45: "bus",
    46: "cabinet",
    59: "car",
    65: "cat",
    68: "ceiling",
    72: "chair",
    80: "cloth",
    85: "computer",
    98: "cow",
    104: "cup",
    105: "curtain",
    113: "dog",
    115: "door",
    144: "fence",
    158: "floor",
    159: "flower",
    162: "food",
    187: "grass",
    189: "ground",
    207: "horse",
    220: "keyboard",
    232: "light",
    258: "motorbike",
    259: "mountain",
    260: "mouse",
    284: "person",
    295: "plate",
    296: "platform",
    308: "pottedplant",
    324: "road",
    326: "rock",
    347: "sheep",
    349: "shelves",
    354: "sidewalk",
    355: "sign",
    360: "sky",
    366: "snow",
    368: "sofa",
    397: "table",
    415: "track",
    416: "train",
    420: "tree",
    424: "truck",
    427: "tvmonitor",
    440: "wall",
    445: "water",
    454: "window",
    458: "wood",
}

PUBLISHED_ID_ORDER = (
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162,
    420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72,
    458, 34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115,
)  # fmt: skip


def labels_txt() -> str:
    """A 459-line `labels.txt`: the 59 pinned names at their ids, placeholders elsewhere."""
    return "".join(f"{i}: {CONTEXT59_LABELS_TXT.get(i, f'thing{i}')}\n" for i in range(1, 460))
