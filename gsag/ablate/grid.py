"""The grid of an ablation: models x backbones x variants x seeds, and the config of each cell.

`{seed}` in an override stands for the run's seed: with `--set data.root=runs/ctx_d{seed}`
every seed trains on its own generated dataset (`gsag data synth --seed k`), so the spread over
seeds covers a new draw of the data too, not only training randomness. With
`--set data.val_split=test` a run evaluates on the held-out test split instead of val.
`<model>@key=value` applies to that model (or `<model>-<variant>` label) only, e.g.
`deeplabv3@optim.lr=3e-3`, so heads can run at the learning rate chosen for each on val.

Named variants (`VARIANTS`) are the component ablation of GSAG hybrid: each is a list of
overrides applied on top of the shared config, e.g. `no_gate` sets `model.kwargs.gate=false`.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsag.ablate.records import RESULT_FILE, data_identity, find_recorded, fingerprint
from gsag.errors import OptionError

BASE = "base"
#: Replaced by the combination's seed in the shared overrides (e.g. a data root per seed).
SEED_FIELD = "{seed}"
#: The component ablation of GSAG hybrid: variant name -> overrides on top of the shared config.
VARIANTS: dict[str, tuple[str, ...]] = {
    BASE: (),
    "no_group": ("model.kwargs.group_formation=false",),
    # the local branch: PSA and the gate that mixes it with G (called no_pointwise before)
    "no_local": ("model.kwargs.pointwise=false",),
    # the PSA alone: a 1x1 window attends to its own position only, so L = V; the gate stays
    "no_pointwise": ("model.kwargs.kernel_size=1",),
    # the global self-attention; G is the pooled context vector alone
    "no_global": ("model.kwargs.global_attention=false",),
    # every image-wide path: GSA, attention-mean pooling and mapping (L alone, no gate)
    "no_global_context": (
        "model.kwargs.global_attention=false",
        "model.kwargs.vector_mapping=false",
    ),
    # the global branch, gate and mapping only: no group formation, no PSA
    "global_only": ("model.kwargs.group_formation=false", "model.kwargs.kernel_size=1"),
    "no_mapping": ("model.kwargs.vector_mapping=false",),
    "no_gate": ("model.kwargs.gate=false",),
    "k3": ("model.kwargs.kernel_size=3",),
    "k11": ("model.kwargs.kernel_size=11",),
    "ce": ("loss.type=ce",),
    # the GSAG head's widths before they followed the backbone (gsag.models.head_widths)
    "fixed_widths": (
        "model.kwargs.head_channels=512",
        "model.kwargs.key_channels=256",
        "model.kwargs.num_heads=8",
    ),
}


@dataclass(frozen=True)
class Combo:
    """One cell of the grid."""

    model: str
    backbone: str
    seed: int
    variant: str = BASE

    @property
    def label(self) -> str:
        """The model, or `<model>-<variant>` for a named variant."""
        return self.model if self.variant == BASE else f"{self.model}-{self.variant}"

    @property
    def name(self) -> str:
        return f"{self.label}__{self.backbone}__s{self.seed}"


def grid(
    models: Sequence[str],
    backbones: Sequence[str],
    seeds: Sequence[int],
    variants: Sequence[str] = (BASE,),
) -> list[Combo]:
    """All combinations, seeds innermost (so a partial run covers few models fully)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise OptionError(
            f"--variants: unknown ablation variant(s) {unknown}; valid: {', '.join(VARIANTS)}"
        )
    return [
        Combo(m, b, s, v) for b, m, v, s in itertools.product(backbones, models, variants, seeds)
    ]


def overrides_for(combo: Combo, overrides: Sequence[str]) -> list[str]:
    """The shared overrides that apply to `combo`: plain `key=value` ones, and
    `<group>@key=value` ones whose group is the combination's model or label (e.g.
    `deeplabv3@optim.lr=3e-3`: each head at the learning rate chosen for it)."""
    out = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if "@" not in key:
            out.append(item)
        elif key.split("@", 1)[0] in (combo.model, combo.label):
            out.append(item.split("@", 1)[1])
    return out


def combo_overrides(combo: Combo) -> list[str]:
    """The `--set` style overrides that turn the shared config into this combination's run."""
    return [
        *VARIANTS[combo.variant],
        f"model.name={combo.model}",
        f"model.backbone={combo.backbone}",
        f"train.seed={combo.seed}",
    ]


def resolve_combo(
    config: str | os.PathLike | None,
    combo: Combo,
    out_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
):
    """(resolved `Config` of the combination with its run folder set, dropped kwarg names).

    `{seed}` in an override is the combination's seed, so the data can be part of the grid:
    `data.root=runs/ctx_d{seed}` trains seed k on a dataset generated with seed k.
    """
    from gsag.config import load_config

    shared = [o.replace(SEED_FIELD, str(combo.seed)) for o in overrides_for(combo, overrides)]
    cfg = load_config(None if config is None else str(config), [*shared, *combo_overrides(combo)])
    cfg.model.kwargs, dropped = model_kwargs_for(combo.model, cfg.model.kwargs)
    runs = Path(out_dir) / "runs"
    data = data_identity(cfg)
    run_dir = runs / f"{combo.name}__{fingerprint(cfg.to_dict(), data)}"
    legacy = runs / f"{combo.name}__{fingerprint(cfg.to_dict())}" / RESULT_FILE
    recorded = not (run_dir / RESULT_FILE).is_file() and legacy.is_file()
    if recorded and "data" not in json.loads(legacy.read_text()):  # before the data counted
        run_dir = legacy.parent
    elif not (run_dir / RESULT_FILE).is_file() and not (run_dir / "last.pt").is_file():
        run_dir = find_recorded(runs, combo.name, cfg, data) or run_dir
    cfg.output.run_dir = str(run_dir)
    return cfg, dropped


def model_kwargs_for(model: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split the shared `model.kwargs` into those `model` takes and the names it drops.

    One config serves every model of the grid, so head options of another family (e.g. GSAG's
    `num_heads` for DeepLabV3) are dropped; shared ones (e.g. `head_channels`) and `levels`
    apply to every model. Anything that is no head option of any model is kept, so that the
    engine's check refuses it as it would in `gsag train`.
    """
    from gsag.models.table import EXTRA, head_defaults, list_models

    taken = {*head_defaults(model), *EXTRA}
    others = {k for name in list_models() for k in head_defaults(name)} - taken
    dropped = sorted(k for k in kwargs if k in others)
    return {k: v for k, v in kwargs.items() if k not in dropped}, dropped
