"""`gsag ablate`: train a grid of models x backbones x seeds and summarise it (resumable)."""

from __future__ import annotations

import argparse

from gsag.commands import (
    add_device_argument,
    add_path_argument,
    add_set_argument,
    add_threads_argument,
    check_output,
    config_type,
    finish_path_argument,
)

HELP = "train and evaluate a model x backbone x seed grid; mean ± std table and plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_argument(parser, "config", "YAML config shared by every run")
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="models to train (default: every model of `gsag models`)",
    )
    parser.add_argument("--backbones", nargs="+", default=None, help="default: the config's")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["base"],
        help="named configurations run for every model (default: base = the config as is); "
        "GSAG hybrid ablations: no_group no_local no_pointwise no_global no_global_context "
        "global_only no_mapping no_gate k3 k11 ce (docs/usage.md)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=config_type("train.seed", "seed", "--seeds 0 1 2"),
        default=[0, 1, 2],
        help="seeds",
    )
    parser.add_argument("--out", required=True, help="report folder (runs go to OUT/runs/)")
    add_set_argument(parser, " for every run")
    add_device_argument(parser)
    add_threads_argument(parser)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the report from the combinations that already finished",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="the report's primary analysis is paired by seed (paired t, exact sign-flip p, "
        "Holm by family; cue counts at 0.75/0.85/0.95 with Fisher's test): for grids whose "
        "seed k is shared by every group",
    )


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from gsag import ablate
    from gsag.config import load_config
    from gsag.errors import check_names
    from gsag.models import list_models

    finish_path_argument(args, "config")
    check_output(args.out, "--out")
    args.models = args.models or list_models()
    check_names(args.models, list_models(), "--models")
    if args.threads:
        args.overrides = [*args.overrides, f"train.num_threads={args.threads}"]
    console = Console()
    shared = [o for o in args.overrides if "@" not in o.split("=", 1)[0]]  # no per-model ones
    base = load_config(args.config, shared)  # fails early on a bad config or override
    backbones = args.backbones or [base.model.backbone]
    combos = ablate.grid(args.models, backbones, args.seeds, args.variants)
    start = time.perf_counter()
    state = {"i": 0}

    def on_start(combo: ablate.Combo, finished: bool) -> None:
        state["i"] += 1
        verb = "already done" if finished else "training"
        console.print(
            f"[bold][{state['i']}/{len(combos)}][/] {combo.label} / {combo.backbone} / "
            f"seed {combo.seed}: {verb}"
        )

    def on_done(combo: ablate.Combo, result: dict) -> None:
        elapsed = (time.perf_counter() - start) / 60
        console.print(f"    mIoU {100 * result['mIoU']:.2f} %  ({elapsed:.1f} min so far)")

    # errors (an unknown variant, nothing finished for --report-only) become one line in main
    out = ablate.run_ablation(
        args.config,
        args.models,
        backbones,
        args.seeds,
        args.out,
        overrides=args.overrides,
        device=args.device,
        on_start=on_start,
        on_done=on_done,
        variants=args.variants,
        report_only=args.report_only,
        paired=args.paired,
    )
    console.print(
        out["paths"]["markdown"].read_text(), markup=False, highlight=False, soft_wrap=True
    )
    console.print(f"report: [bold]{out['paths']['markdown']}[/]")
    return 0
