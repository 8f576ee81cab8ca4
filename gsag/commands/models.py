"""`gsag models`: the model table (name, backbone, params, GFLOPs at a given input size)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

HELP = "list the models with their parameter count and GFLOPs (optionally as Markdown)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone", default="resnet50", help="backbone for every row (default: resnet50)"
    )
    parser.add_argument(
        "--size", type=int, default=512, help="square input size for GFLOPs (default: 512)"
    )
    parser.add_argument("--num-classes", type=int, default=21, help="classes (default: 21, VOC)")
    parser.add_argument(
        "--output-stride", type=int, default=8, choices=(8, 16, 32), help="default: 8"
    )
    parser.add_argument(
        "--models", nargs="+", metavar="NAME", help="only these models (default: all)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")


def model_table(
    backbone: str,
    size: int,
    num_classes: int = 21,
    output_stride: int = 8,
    names: list[str] | None = None,
    progress: Callable[[int, str], object] | None = None,
) -> list[dict]:
    """One row per model: name, backbone, params (M, inference: no aux head), GFLOPs.

    `progress(done, name)` is called before each model is built and measured."""
    import gsag
    from gsag.flops import count_gflops, count_params

    rows = []
    for done, name in enumerate(names or gsag.list_models()):
        if progress is not None:
            progress(done, name)
        model = gsag.create_model(
            name, num_classes, backbone=backbone, output_stride=output_stride, aux=False
        )
        rows.append(
            {
                "model": name,
                "backbone": backbone,
                "params_m": count_params(model) / 1e6,
                "gflops": count_gflops(model, size),
            }
        )
    return rows


def to_markdown(rows: list[dict], size: int) -> str:
    """The rows as a Markdown table."""
    lines = [
        f"| model | backbone | params (M) | GFLOPs @ {size}x{size} |",
        "| --- | --- | ---: | ---: |",
    ]
    lines += [
        f"| {r['model']} | {r['backbone']} | {r['params_m']:.2f} | {r['gflops']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    import gsag

    console = Console()
    names = args.models or gsag.list_models()
    for name in names:
        if name not in gsag.list_models():
            console.print(f"[red]unknown model {name!r}; valid: {', '.join(gsag.list_models())}")
            return 2
    if args.backbone not in gsag.list_backbones():
        console.print(
            f"[red]unknown backbone {args.backbone!r}; valid: {', '.join(gsag.list_backbones())}"
        )
        return 2
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"counting on {args.backbone}", total=len(names))
        rows = model_table(
            args.backbone,
            args.size,
            args.num_classes,
            args.output_stride,
            names,
            progress=lambda done, name: progress.update(
                task, completed=done, description=f"counting {name} on {args.backbone}"
            ),
        )
    if args.markdown:
        print(to_markdown(rows, args.size))
        return 0
    table = Table(
        title=f"gsag models (inference, no aux head; input {args.size}x{args.size}, "
        f"output stride {args.output_stride})"
    )
    for col in ("model", "backbone", "params (M)", f"GFLOPs @ {args.size}"):
        table.add_column(col, justify="right" if "(" in col or "@" in col else "left")
    for r in rows:
        table.add_row(r["model"], r["backbone"], f"{r['params_m']:.2f}", f"{r['gflops']:.2f}")
    console.print(table)
    console.print("GFLOPs: 1 multiply-add = 2 FLOPs; counted by gsag.flops.count_gflops.")
    return 0
