"""TensorBoard: a writer whose failures (e.g. a full disk) warn once and never stop training, and
the image | truth | prediction panels every tracker shows (`tensorboard_panel`, `stack_panels`).

TensorBoard writes events from a background thread; a failed write there would print a thread
traceback and re-raise on the next `add_scalar`. Here the thread's record writer swallows the
error, and the writer stops logging after one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gsag.data.colours import Palette, colour_mask


class SafeWriter:
    """Forwards `add_*`, `flush` and `close` to a `SummaryWriter` until one of them fails."""

    def __init__(self, writer: Any, run_dir: Path) -> None:
        self._writer = writer
        self._run_dir = run_dir
        self.error: BaseException | None = None
        self._warned = False
        self._guard_thread()

    def _guard_thread(self) -> None:
        try:  # torch.utils.tensorboard -> tensorboard's EventFileWriter -> RecordWriter
            record = self._writer._get_file_writer().event_writer._async_writer._writer
        except AttributeError:  # another tensorboard version: foreground guard only
            return
        for name in ("write", "flush"):
            setattr(record, name, self._guarded(getattr(record, name)))

    def _guarded(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.error is not None:
                return None
            try:
                return method(*args, **kwargs)
            except Exception as e:  # logging must never stop a run
                self.error = e
                return None

        return call

    def _fail(self, e: BaseException | None = None) -> None:
        self.error = self.error or e
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"TensorBoard logging to {self._run_dir} stopped ({self.error}); training goes on "
            "and metrics.jsonl still records every step",
            stacklevel=3,
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._writer, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.error is None:
                try:
                    return method(*args, **kwargs)
                except Exception as e:
                    self.error = e
            self._fail()  # here or in the background thread
            return None

        return call


def open_writer(run_dir: Path, resumed_at: int = 0) -> SafeWriter | None:
    """A `SafeWriter` on `run_dir`; after a resume at iteration `resumed_at`, the killed run's
    events beyond it are hidden from TensorBoard, also those of a run started again at 0 (None
    when tensorboard is not installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    earlier = any(run_dir.glob("events.out.tfevents.*"))
    purge = resumed_at + 1 if resumed_at or earlier else None
    writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge)
    return SafeWriter(writer, run_dir)


def tensorboard_panel(
    image: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    palette: Palette,
    ignore_index: int = 255,
) -> torch.Tensor:
    """(3, H, 3W) uint8 for `SummaryWriter.add_image`: the image | ground truth | prediction,
    both masks in plain colours.

    Args:
        image: the normalised input (3, h, w) float; un-normalised with `mean`/`std` ([0, 1]
            scale) and resized (nearest) to the masks' size when that differs.
        mask, pred: index masks (H, W) on the CPU.
        palette, ignore_index: as for `colour_mask`.
    """
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    img = ((image.float() * s + m).clamp(0, 1) * 255).to(torch.uint8)  # (3, h, w)
    if img.shape[-2:] != mask.shape[-2:]:
        img = F.interpolate(img[None].float(), size=mask.shape[-2:])[0].to(torch.uint8)
    rgb = img.permute(1, 2, 0).numpy()  # (H, W, 3)
    truth_rgb, pred_rgb = (colour_mask(m, palette, ignore_index) for m in (mask, pred))
    panel = np.concatenate([rgb, truth_rgb, pred_rgb], axis=1)  # (H, 3W, 3)
    return torch.from_numpy(panel).permute(2, 0, 1)


def stack_panels(panels: Sequence[torch.Tensor]) -> np.ndarray:
    """Panels (3, H_i, W_i) uint8 one above the other, each padded black on the right to the
    widest: (sum H_i, max W_i, 3) uint8, the `val_predictions` image of every tracker."""
    width = max(p.shape[-1] for p in panels)
    rows = [F.pad(p, (0, width - p.shape[-1])) for p in panels]
    return torch.cat(rows, dim=1).permute(1, 2, 0).contiguous().numpy()
