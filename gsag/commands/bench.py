"""`gsag bench`: params, GFLOPs, latency, memory and a training step, side by side."""

from __future__ import annotations

import argparse

from gsag.commands import (
    add_device_argument,
    add_quiet_argument,
    add_threads_argument,
    bounded,
    check_output,
    set_threads,
)

HELP = "benchmark models side by side against a DeepLabV3 baseline (markdown + JSON)"

DOC_START = "<!-- {}:start -->"
DOC_END = "<!-- {}:end -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _compared_arguments(parser)
    _timing_arguments(parser)
    _output_arguments(parser)


def _compared_arguments(parser: argparse.ArgumentParser) -> None:
    """What is compared: models, backbones, input sizes, batch."""
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="models to compare (default: every model of `gsag models`; DeepLabV3 is always "
        "added as the baseline)",
    )
    parser.add_argument(
        "--torchvision-peer",
        action="store_true",
        help="add torchvision's deeplabv3_resnet50 (random weights) as an outside reference",
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=["resnet50"],
        help="backbones: short names or any timm model (`gsag models --backbones`)",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["512"],
        help="input sizes: 512 (square) or 512x1024 (HxW); several make a sweep",
    )
    parser.add_argument(
        "--batch",
        type=bounded(int, 1, "batch", "--batch 1", high=1024),
        default=1,
        help="inference batch size",
    )


def _timing_arguments(parser: argparse.ArgumentParser) -> None:
    """How it is measured: device, repeats, what is timed, precision and compilation."""
    add_device_argument(parser)
    parser.add_argument(
        "--warmup",
        type=bounded(int, 0, "warmup", "--warmup 2", high=1000),
        default=2,
        help="untimed forwards first",
    )
    parser.add_argument(
        "--repeats",
        type=bounded(int, 1, "repeats", "--repeats 5", high=1000),
        default=5,
        help="timed forwards",
    )
    parser.add_argument(
        "--train-repeats",
        type=bounded(int, 1, "train repeats", "--train-repeats 2", high=1000),
        default=2,
        help="timed training steps (--no-train skips them)",
    )
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--no-memory", action="store_true", help="skip peak memory")
    add_threads_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument(
        "--amp",
        choices=["auto", "bf16", "fp16", "none"],
        default="auto",
        help="autocast for inference and the training step (auto: bf16 on CUDA, fp32 on CPU)",
    )
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory")
    parser.add_argument(
        "--compile", choices=["none", "head", "model"], default="none", help="torch.compile mode"
    )
    parser.add_argument(
        "--best",
        action="store_true",
        help="time each model eager and compiled (--compile, default model); keep the faster",
    )
    parser.add_argument(
        "--rounds",
        type=bounded(int, 1, "rounds", "--rounds 3", high=1000),
        default=3,
        help="interleaved rounds (each: every model, --repeats)",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend; 'eager' traces without generating code (quick checks)",
    )


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    """The heads' class count, and where the tables go."""
    from gsag.config import MAX_CLASSES

    parser.add_argument(
        "--num-classes",
        type=bounded(int, 1, "classes", "--num-classes 21", high=MAX_CLASSES),
        default=21,
        help="classes of the heads",
    )
    parser.add_argument("--out", default="runs/bench", help="folder for bench.md and bench.json")
    parser.add_argument(
        "--update-doc",
        help="also replace the table between <!-- SECTION:start --> and <!-- SECTION:end --> "
        "in this markdown file",
    )
    parser.add_argument(
        "--doc-section",
        help="SECTION name for --update-doc (default: bench-gpu on CUDA, bench on CPU)",
    )


def parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '512x1024' -> (512, 1024)."""
    from gsag.config import MAX_SIDE, MIN_INPUT
    from gsag.errors import UsageError

    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if (
        len(values) not in (1, 2)
        or not MIN_INPUT <= min(values, default=0) <= max(values) <= MAX_SIDE
    ):
        raise UsageError(
            f"--sizes {text!r} is not like 512 or 512x1024 (each in [{MIN_INPUT}, {MAX_SIDE}])"
        )
    return (values[0], values[-1])


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

    from gsag import bench
    from gsag.engine.compile import resolve_amp
    from gsag.engine.progress import task_bar
    from gsag.errors import UsageError, check_names
    from gsag.models.backbone import check_backbone_name

    console = Console()
    args.models = args.models or bench.default_models()
    check_names(args.models, bench.valid_models(), "--models")
    for backbone in args.backbones:  # a short name or any timm model (nearest names if not)
        check_backbone_name(backbone)
    set_threads(args.threads)
    sizes = [parse_size(s) for s in args.sizes]
    check_output(args.out, "--out")
    section = args.doc_section or ("bench-gpu" if args.device.startswith("cuda") else "bench")
    if args.update_doc:
        check_output(args.update_doc, "--update-doc", file=True)
        _doc_around(Path(args.update_doc), section)  # misplaced markers fail before timing
    names = list(dict.fromkeys([*args.models, bench.BASELINE]))
    names += [bench.PEER] if args.torchvision_peer else []
    if args.rounds < 1 or args.repeats < 1:
        raise UsageError(f"--rounds {args.rounds} and --repeats {args.repeats} must be >= 1")
    settings = bench.BenchSettings(
        device=args.device,
        warmup=args.warmup,
        repeats=args.repeats,
        train_repeats=args.train_repeats,
        num_classes=args.num_classes,
        memory=not args.no_memory,
        train_step=not args.no_train,
        amp=resolve_amp(args.amp, args.device),
        channels_last=args.channels_last,
        compile=args.compile,
        best=args.best,
        rounds=args.rounds,
        compile_backend=args.compile_backend,
    )
    env = bench.environment(args.device)
    total = len(names) * len(args.backbones) * len(sizes)
    console.print(bench.settings_line(settings), markup=False, highlight=False)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with task_bar(*columns, TimeElapsedColumn(), console=console, quiet=args.quiet) as bar:
        task = bar.add_task("benchmarking", total=total)

        def done(row: bench.BenchRow) -> None:
            bar.console.print(row_done_line(row, settings.device), markup=False, highlight=False)
            bar.advance(task)

        def partial(rows: list[bench.BenchRow]) -> None:  # a time limit keeps finished rows
            bench.add_ratios(rows)
            bench.write_results(rows, env, args.out, settings)

        rows = bench.run_bench(
            names, args.backbones, sizes, args.batch, settings, on_row=done, on_progress=partial
        )
    if (load := bench.load_average()) is not None:
        env["load_average_1min_at_end"] = load
    paths = bench.write_results(rows, env, args.out, settings)
    table = bench.to_markdown(rows, env, settings)
    console.print(bench.compact_table(rows, env), markup=False, highlight=False, soft_wrap=True)
    if args.update_doc:
        _update_doc(Path(args.update_doc), table, section)
        console.print(f"updated {args.update_doc}")
    console.print(f"wrote {paths['markdown']} and {paths['json']}")
    return 1 if any(r.error for r in rows) else 0


def row_done_line(row, device: str) -> str:
    """What `gsag bench` says as each row is measured, before the table: the model, its input
    and its median forward time, labelled (CPU time first on a CPU, as in the ratios)."""
    what = f"measured {row.model}/{row.backbone} at {row.batch}x{row.height}x{row.width}"
    if row.error:
        return f"{what}: error: {row.error}"
    wall = f"{row.latency_ms:.1f} ms wall"
    if device == "cpu":
        return f"{what}: forward pass {row.cpu_ms:.1f} ms CPU time, {wall} (medians)"
    return f"{what}: forward pass {wall} (median)"


def _update_doc(path, table: str, section: str = "bench") -> None:
    """Replace what lies between the section's start and end markers (appended if missing)."""
    from gsag.atomic import write_text

    head, tail = _doc_around(path, section)
    write_text(path, f"{head}{table}{tail}")


def _doc_around(path, section: str) -> tuple[str, str]:
    """(the file up to its start marker and newline, from its end marker on); both markers
    are appended when neither is there. Raises `UsageError` on markers out of place."""
    from gsag.errors import UsageError

    start, end = DOC_START.format(section), DOC_END.format(section)
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--update-doc {path}: cannot be read as text ({e})") from e
    counts = (text.count(start), text.count(end))
    if counts == (0, 0):
        return f"{text.rstrip()}\n\n{start}\n", f"{end}\n"
    if counts != (1, 1) or text.index(end) < text.index(start):
        raise UsageError(
            f"--update-doc {path}: found {counts[0]} {start} and {counts[1]} {end}; the table "
            "goes between one start marker and one end marker after it: fix them, or remove both "
            "to append the table"
        )
    head, rest = text.split(start, 1)
    return f"{head}{start}\n", end + rest.split(end, 1)[1]
