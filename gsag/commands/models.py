"""`gsag models`: the model table (name, backbone, params; GFLOPs at a given input size with
`--flops`), or one model's settings: its head options with their defaults (`gsag models NAME`) or
as a config resolves them (`gsag models --config FILE`), and its parameters with and without the
aux head.

Parameters are counted on models built on the meta device (shapes only, no memory, no weight
initialisation), so the table and the settings print in seconds. GFLOPs need a real forward pass
per model (tens of seconds for ResNet-50 at 512x512 on a CPU), hence only with `--flops`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gsag.commands import add_set_argument, bounded, refuse_unused, remember_defaults

HELP = "list the models with their parameter count (and GFLOPs), or show one model's settings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gsag.config import MAX_CLASSES, MAX_SIDE, MIN_INPUT, OUTPUT_STRIDES

    parser.add_argument(
        "name",
        nargs="?",
        help="show this model's head options with their defaults and its parameter count",
    )
    parser.add_argument(
        "--config", help="show the model of this config: its resolved head options and size"
    )
    add_set_argument(parser, " of --config")
    parser.add_argument(
        "--backbone", default="resnet50", help="backbone for every row (default: resnet50)"
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="add GFLOPs at --size (one forward pass per model: slow on a CPU, with a progress bar)",
    )
    parser.add_argument(
        "--size",
        type=bounded(int, MIN_INPUT, "size", "--size 512", high=MAX_SIDE),
        default=512,
        help="square input size for --flops (default: 512)",
    )
    parser.add_argument(
        "--num-classes",
        type=bounded(int, 1, "classes", "--num-classes 21", high=MAX_CLASSES),
        help="classes (default: the config's dataset with --config, else 21 as in VOC)",
    )
    parser.add_argument(
        "--output-stride",
        type=int,
        choices=OUTPUT_STRIDES,
        help="default: the head's where timm can dilate the backbone (8; 32 for upernet and "
        "segformer), else the backbone's own",
    )
    parser.add_argument(
        "--backbones",
        nargs="?",
        const="",
        metavar="PATTERN",
        help="list the backbone families the tests cover, or the timm models matching PATTERN "
        "(wildcards, e.g. 'convnext*')",
    )
    parser.add_argument(
        "--models", nargs="+", metavar="NAME", help="only these models (default: all)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    remember_defaults(parser)  # for `refuse_unused`


#: the options each way of using `gsag models` reads; another one given is refused, not ignored
USES: dict[str, set[str]] = {
    "--backbones": {"backbones"},
    "NAME": {"name", "backbone", "num_classes", "output_stride"},
    "--config": {"config", "overrides", "num_classes"},
    "the table": {"backbone", "flops", "size", "num_classes", "output_stride", "models"}
    | {"markdown"},
}


def _way(args: argparse.Namespace) -> str:
    """Which way of `gsag models` the options choose (a key of `USES`)."""
    ways = (("--backbones", args.backbones), ("NAME", args.name), ("--config", args.config))
    return next((way for way, value in ways if value is not None), "the table")


def model_table(
    backbone: str,
    size: int,
    num_classes: int = 21,
    output_stride: int | None = None,
    names: list[str] | None = None,
    progress: Callable[[int, str], object] | None = None,
    flops: bool = False,
) -> list[dict]:
    """One row per model: name, backbone, params (M, inference: no aux head), the output stride
    it runs at and, with `flops`, GFLOPs at `size` x `size`.

    Without `flops` the models are built on the meta device (no memory, no initialisation),
    and for the short-name backbones only their heads are (`head_params`): the backbone's count
    is in `BACKBONE_FEATURES`, so neither timm nor its backbones are loaded.
    `progress(done, name)` is called before each model is built and measured."""
    from gsag.flops import count_gflops, count_params
    from gsag.models.table import list_models

    rows = []
    for done, name in enumerate(names or list_models()):
        if progress is not None:
            progress(done, name)
        fast = None if flops else head_params(name, backbone, num_classes, output_stride)
        if fast is not None:
            count, stride = fast
            rows.append({"model": name, "backbone": backbone, "params_m": count / 1e6,
                         "output_stride": stride})  # fmt: skip
            continue
        from gsag.models import create_model

        with _build_device(flops):
            model = create_model(
                name, num_classes, backbone=backbone, output_stride=output_stride, aux=False
            )
        row = {"model": name, "backbone": backbone, "params_m": count_params(model) / 1e6}
        if flops:
            row["gflops"] = count_gflops(model, size)
        row["output_stride"] = model.model_args["output_stride"]
        rows.append(row)
    return rows


def head_params(
    name: str, backbone: str, num_classes: int, output_stride: int | None
) -> tuple[int, int] | None:
    """(parameters, output stride) of `create_model(name, num_classes, backbone, output_stride,
    aux=False)`, counted from `BACKBONE_FEATURES` and the head alone, built on the meta device
    on the levels its `LevelSpec` reads; None for a backbone not in that table."""
    import torch

    from gsag.flops import count_params
    from gsag.models.table import BACKBONE_FEATURES, head_levels, make_head

    if backbone not in BACKBONE_FEATURES:
        return None
    channels, backbone_params = BACKBONE_FEATURES[backbone]
    spec = head_levels(name)
    stride = output_stride or spec.output_stride  # ResNets are dilated to it: no neck
    with torch.device("meta"):
        head = make_head(name, [channels[s] for s in spec.strides], num_classes, stride)
    return backbone_params + count_params(head), stride


def _build_device(real: bool):
    """Where to build a model: the CPU when it must run, else the meta device (shapes only)."""
    import torch

    return torch.device("cpu" if real else "meta")


def to_markdown(rows: list[dict], size: int) -> str:
    """The rows as a Markdown table (a GFLOPs column when the rows have one)."""
    flops = bool(rows) and "gflops" in rows[0]
    head = "| model | backbone | params (M) |" + (f" GFLOPs @ {size}x{size} |" if flops else "")
    lines = [
        head + " output stride |",
        "| --- | --- | ---: |" + (" ---: |" if flops else "") + " ---: |",
    ]
    for r in rows:
        line = f"| {r['model']} | {r['backbone']} | {r['params_m']:.2f} |"
        line += f" {r['gflops']:.2f} |" if flops else ""
        lines.append(line + f" {r['output_stride']} |")
    return "\n".join(lines)


def model_settings(
    name: str,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int | None = None,
    aux: bool = True,
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One model's settings and size.

    Returns:
        {"model_args": the `create_model` arguments, "options": [(option, value, default)] for
        every head option (and `levels`), "backbone": the resolved backbone setup (in words),
        "params": all parameters, "aux_params": those of the training-only aux head (0 without
        it), "params_line": both in words}.
    """
    from gsag.flops import count_params
    from gsag.models import create_model, head_defaults
    from gsag.models.backbone import default_levels, probe_backbone
    from gsag.models.head_widths import head_widths
    from gsag.models.table import head_levels

    kwargs = kwargs or {}
    with _build_device(False):  # only counted: shapes are enough
        model = create_model(
            name, num_classes, backbone=backbone, output_stride=output_stride, aux=aux, **kwargs
        )
    levels = list(default_levels(probe_backbone(backbone), head_levels(name).strides))
    defaults = {**head_defaults(name), "levels": levels}
    if hasattr(model.head, "widths"):  # GSAG: the widths its rule gives on this backbone
        defaults.update(head_widths(model.backbone.channels))
    args = model.model_args
    return {
        "model_args": args,
        "backbone": backbone_setup(model),
        "options": [(k, args.get(k, default), default) for k, default in defaults.items()],
        "params": count_params(model),
        "aux_params": count_params(model.aux_head) if model.aux_head is not None else 0,
        "params_line": model.params_line(),
    }


def backbone_setup(model) -> list[str]:
    """A built model's backbone setup in words: levels, strides, neck, padding, mean/std."""
    b, neck_module = model.backbone, model.neck
    if neck_module is not None:
        grid = f"1/{neck_module.stride}"
        which = (
            f"the levels coarser than {grid} to {grid}, keep the finer ones"
            if any(neck_module.kept)
            else f"every level to {grid}"
        )
        neck = f"resize {which} (timm cannot dilate {b.name})"
    elif b.dilatable:
        neck = f"none (dilated to output stride {b.output_stride})"
    else:
        neck = "none (the head reads the native strides)"
    return [
        f"backbone levels {list(b.levels)}: strides {b.reductions}, channels {b.channels}"
        + (" (simple pyramid from ViT blocks)" if b.pyramid is not None else ""),
        f"neck: {neck}",
        f"input padded to a multiple of {b.pad_multiple}"
        if b.pad_multiple > 1
        else "input not padded",
        f"input mean {_rounded(model.mean)}, std {_rounded(model.std)} (the backbone's own)",
    ]


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def list_backbones_text(pattern: str) -> list[str]:
    """`gsag models --backbones [PATTERN]`: the tested families, or timm's names matching."""
    import timm

    from gsag.models.backbone import BACKBONES, TESTED_FAMILIES

    if pattern:
        names = timm.list_models(pattern)
        tagged = timm.list_pretrained(pattern)
        if not names and not tagged:
            return [f"no timm model matches {pattern!r}; try a wildcard, e.g. '*{pattern}*'"]
        return [*names, *(f"{t} (pretrained tag)" for t in tagged if t not in names)]
    lines = ["families the tests cover (tiny model in the tests; a full-size example):"]
    lines += [f"  {fam:32} {tiny:30} {real}" for fam, (tiny, real) in TESTED_FAMILIES.items()]
    lines += [
        f"short names: {', '.join(BACKBONES)}",
        "any other timm model that gives feature maps works too; search timm's "
        f"{len(timm.list_models())} names with `gsag models --backbones 'convnext*'`",
    ]
    return lines


def config_num_classes(cfg) -> int | None:
    """The number of classes of a config's dataset, or None when it cannot be opened here."""
    if cfg.data.synthetic:
        from gsag.data.synth import SYNTH_CLASSES

        return len(SYNTH_CLASSES)
    from gsag.data import open_dataset
    from gsag.data.errors import DataError

    try:
        return open_dataset(cfg.data.root, cfg.data.val_split, layout=cfg.data.layout).num_classes
    except (DataError, OSError):
        return None


def _show_settings(args: argparse.Namespace, console) -> int:
    from rich.table import Table

    notes = []
    if args.config:
        from gsag.config import load_config
        from gsag.engine.checks import check_model_config

        cfg = load_config(args.config, args.overrides)
        check_model_config(cfg)  # errors name the config key
        m = cfg.model
        num_classes = args.num_classes or config_num_classes(cfg)
        if num_classes is None:
            num_classes = 21
            notes.append(f"21 classes assumed: {cfg.data.root} could not be opened here")
        name, backbone, stride, aux, kwargs = m.name, m.backbone, m.output_stride, m.aux, m.kwargs
        source = f"{args.config}, "
    else:
        num_classes = args.num_classes or 21
        name, backbone, stride, aux, kwargs = args.name, args.backbone, args.output_stride, True, {}
        cfg = None
        source = ""
    settings = model_settings(name, num_classes, backbone, stride, aux, kwargs)  # errors: one line
    stride = settings["model_args"]["output_stride"]
    console.print(
        f"{name} on {backbone} ({source}output stride {stride}, {num_classes} classes)",
        highlight=False,
    )
    lines = settings["backbone"]
    if cfg is not None and cfg.data.mean:  # the config's own normalisation wins over the backbone's
        lines[-1] = f"input mean {cfg.data.mean}, std {cfg.data.std} (data.mean / data.std)"
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    table = Table()
    for col in ("head option", "value", "default"):
        table.add_column(col)
    for option, value, default in settings["options"]:
        mark = "" if value == default else " *"
        table.add_row(option, f"{value!r}{mark}", repr(default))
    console.print(table)
    console.print(settings["params_line"], highlight=False)
    if any(value != default for _, value, default in settings["options"]):
        console.print("*: set by the config", highlight=False)
    for note in notes:
        console.print(note, highlight=False)
    return 0


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gsag.engine.progress import task_bar
    from gsag.errors import UsageError, check_names
    from gsag.models.check import check_model_args
    from gsag.models.table import list_models

    console = Console()
    if args.name and args.config:
        raise UsageError("gsag models: give a model name or --config, not both")
    refuse_unused(args, "gsag models", _way(args), USES, choosers=("name", "config", "backbones"))
    if args.backbones is not None:
        for line in list_backbones_text(args.backbones):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return 0
    check_names([args.name] if args.name else [], list_models(), "model")
    check_names(args.models or [], list_models(), "--models")
    if args.name or args.config:
        return _show_settings(args, console)
    names = args.models or list_models()
    for name in names:  # a ModelArgError becomes one `error:` line
        check_model_args(name, args.backbone, {})
    num_classes = args.num_classes or 21
    what = "counting GFLOPs of" if args.flops else "counting"
    with task_bar(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"{what} models on {args.backbone}", total=len(names))
        rows = model_table(
            args.backbone,
            args.size,
            num_classes,
            args.output_stride,
            names,
            progress=lambda done, name: progress.update(
                task, completed=done, description=f"{what} {name} on {args.backbone}"
            ),
            flops=args.flops,
        )
    if args.markdown:
        print(to_markdown(rows, args.size))
        return 0
    console.print(_table(rows, args))
    if args.flops:
        console.print("GFLOPs: 1 multiply-add = 2 FLOPs; counted by gsag.flops.count_gflops.")
    else:
        console.print(f"add --flops for GFLOPs at {args.size}x{args.size} (one forward pass each)")
    return 0


def _table(rows: list[dict], args: argparse.Namespace):
    """The rows as a rich table; a GFLOPs column with --flops."""
    from rich.table import Table

    size = f"; input {args.size}x{args.size}" if args.flops else ""
    table = Table(title=f"gsag models (inference, no aux head{size})")
    cols = ["model", "backbone", "params (M)"] + ([f"GFLOPs @ {args.size}"] if args.flops else [])
    for col in [*cols, "output stride"]:
        table.add_column(col, justify="left" if col in ("model", "backbone") else "right")
    for r in rows:
        cells = [r["model"], r["backbone"], f"{r['params_m']:.2f}"]
        cells += [f"{r['gflops']:.2f}"] if args.flops else []
        table.add_row(*cells, str(r["output_stride"]))
    return table
