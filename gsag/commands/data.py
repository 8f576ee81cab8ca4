"""`gsag data`: generate the synthetic context benchmark, check a dataset, prepare VOC + SBD."""

from __future__ import annotations

import argparse
import os

from gsag.commands import add_alias, add_quiet_argument, bounded, check_output, config_type

#: gsag.data.synth.VERSIONS, repeated so that building the parser imports no NumPy/SciPy
SYNTH_VERSIONS = (1, 2)
HELP = (
    "make, check and prepare datasets "
    "(synth | check | prepare-voc | prepare-cityscapes | prepare-ade20k | prepare-context)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _synth_arguments(
        sub.add_parser("synth", help="write the generated context benchmark as a VOC tree")
    )
    _check_arguments(sub.add_parser("check", help="open every image/mask pair and report problems"))
    _prepare_arguments(sub)
    for action in sub.choices.values():
        add_quiet_argument(action)


def _synth_arguments(p: argparse.ArgumentParser) -> None:
    from gsag.config import MAX_SIDE, MAX_WORKERS, MIN_INPUT

    p.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    count = bounded(int, 1, "images", "--num-train 600")
    p.add_argument("--num-train", type=count, default=600, help="training images (default: 600)")
    p.add_argument("--num-val", type=count, default=150, help="validation images (default: 150)")
    p.add_argument(
        "--size",
        type=bounded(int, MIN_INPUT, "size", "--size 128", high=MAX_SIDE),
        default=128,
        help="image side in pixels (default: 128)",
    )
    p.add_argument(
        "--seed",
        type=config_type("train.seed", "seed", "--seed 0"),
        default=0,
        help="random seed (default: 0)",
    )
    p.add_argument(
        "--version",
        type=int,
        choices=SYNTH_VERSIONS,
        default=SYNTH_VERSIONS[-1],
        help="generating rules (default: 2; 1 = the first benchmark, see docs/data.md)",
    )
    p.add_argument(
        "--workers",
        type=bounded(int, 1, "workers", "--workers 2", high=MAX_WORKERS),
        default=min(2, os.cpu_count() or 1),
        help="processes (default: 2)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an OUT that holds other files, moving them to OUT.old-<time> first",
    )


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="a VOC tree or an images/ + masks/ + classes.yaml folder")
    p.add_argument("--split", action="append", help="split to check (repeatable; default all)")
    p.add_argument(
        "--show",
        type=bounded(int, 0, "show", "--show 50"),
        default=50,
        help="issues to list (default: 50)",
    )
    p.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "voc", "folder", "cityscapes", "ade20k", "context59", "context60"],
        help="dataset layout (default: auto-detect)",
    )


def _prepare_arguments(sub: argparse._SubParsersAction) -> None:
    """The actions that fetch and convert the public datasets."""
    p = sub.add_parser(
        "prepare-voc", help="make the VOC + SBD train_aug split (10 582 images on the real data)"
    )
    p.add_argument("--voc", help="VOC2012 folder (default with --download: OUT/VOCdevkit)")
    p.add_argument("--sbd", help="SBD folder (default with --download: OUT/benchmark_RELEASE)")
    p.add_argument(
        "--download", action="store_true", help="fetch the official archives first (md5-checked)"
    )
    p.add_argument("--out", default="data", help="where --download puts them (default: data)")
    add_alias(p, "--data-dir", "out")

    p = sub.add_parser(
        "prepare-cityscapes",
        help="unpack the Cityscapes zips and write *_gtFine_labelTrainIds.png (19 classes)",
    )
    p.add_argument(
        "--out", default="data/cityscapes", help="tree to fill (default: data/cityscapes)"
    )
    add_alias(p, "--root", "out")
    p.add_argument(
        "--leftimg", help="leftImg8bit_trainvaltest.zip (skip if --out has leftImg8bit/)"
    )
    p.add_argument("--gtfine", help="gtFine_trainvaltest.zip (skip if --out has gtFine/)")

    p = sub.add_parser("prepare-ade20k", help="fetch and unpack ADE20K SceneParsing (150 classes)")
    p.add_argument("--out", default="data", help="where it goes (default: data)")
    add_alias(p, "--data-dir", "out")
    p.add_argument(
        "--download", action="store_true", help="fetch ADEChallengeData2016.zip (sha1-checked)"
    )
    p.add_argument("--zip", help="an ADEChallengeData2016.zip fetched elsewhere, to unpack")

    p = sub.add_parser(
        "prepare-context", help="convert PASCAL-Context trainval.tar.gz to 60-class PNG masks"
    )
    p.add_argument("--voc2010", required=True, help="the VOC2010 folder (or VOCdevkit above it)")
    p.add_argument(
        "--annotations", required=True, help="trainval.tar.gz or its unpacked trainval/ folder"
    )
    p.add_argument("--labels", help="the release's labels.txt, to check the class id table")


def _track(label: str, work, quiet: bool = False):
    """Run `work(progress)` under a rich progress bar (none when `quiet`); `progress(done, total)`
    advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    from gsag.engine.progress import task_bar

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with task_bar(*columns, TimeRemainingColumn(), quiet=quiet) as bar:
        task = bar.add_task(label, total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def _synth_settings(args) -> dict:
    """The generator settings of `gsag data synth` as classes.yaml records them."""
    keys = ("version", "seed", "size", "num_train", "num_val")
    return {k: getattr(args, k) for k in keys}


def _check_synth_out(args, console) -> None:
    """Refuse an `--out` that holds anything but an earlier output of the same settings (which
    is rewritten as it was); `--overwrite` moves what is there aside first. Writes nothing
    unless it moves."""
    from gsag.data.synth import synth_settings
    from gsag.engine.run_dir import aside_name, check_movable, move_aside
    from gsag.errors import UsageError

    out = check_output(args.out, "--out", datasets=True)
    if not out.is_dir() or not any(out.iterdir()):
        return
    wanted = _synth_settings(args)
    earlier = synth_settings(out)  # None: no output of gsag data synth
    if earlier is not None and all(earlier.get(k) == v for k, v in wanted.items()):
        return
    if args.overwrite:
        ours = "an output of gsag data synth (a classes.yaml naming its generator settings)"
        aside = move_aside(check_movable(out, lambda p: synth_settings(p) is not None, ours))
        console.print(f"moved what was in {out} to {aside}")
        return
    if earlier is None:
        raise UsageError(
            f"--out {out} already holds other files, not an output of gsag data synth; choose "
            "a new or empty folder (--overwrite only moves aside an earlier synth output)"
        )
    raise UsageError(
        f"--out {out} already holds gsag data synth output of other settings ({earlier}); "
        f"writing {wanted} there would replace its split lists and classes.yaml. Choose an "
        f"empty folder, or pass --overwrite to move them to {aside_name(out)}"
    )


def _run_synth(args, console) -> int:
    import time

    from gsag.data.synth import generate, split_counts

    _check_synth_out(args, console)
    counts = split_counts(args.num_train, args.num_val)  # what `generate` writes, test included
    total = sum(counts.values())
    start = time.perf_counter()
    root = _track(
        "rendering",
        lambda progress: generate(
            args.out, args.num_train, args.num_val, args.size, args.seed, workers=args.workers,
            progress=progress, version=args.version,
        ), quiet=args.quiet)  # fmt: skip
    seconds = time.perf_counter() - start
    console.print(
        f"wrote {total} images ({', '.join(f'{n} {s}' for s, n in counts.items())}; "
        f"{args.size}x{args.size}) to [bold]{root}[/] in {seconds:.1f} s "
        f"({total / seconds:.0f} images/s); classes in {root / 'classes.yaml'}"
    )
    return 0


def _run_check(args, console) -> int:
    from rich.markup import escape
    from rich.table import Table

    from gsag.data.check import check_dataset

    report = _track(
        "checking",
        lambda progress: check_dataset(args.root, args.split, progress, args.layout),
        quiet=args.quiet,
    )
    console.print(
        f"{report.root}: {report.layout} layout, splits {', '.join(report.splits)}, "
        f"{report.pairs} pairs, {report.info.num_classes} classes, "
        f"ignore {report.info.ignore_index}"
    )
    for issue in (report.errors + report.warnings)[: args.show]:
        level = "[red]error[/]  " if issue.error else "[yellow]warning[/]"
        console.print(
            f"{level} {escape(str(issue.path))}: {escape(issue.message)}",
            soft_wrap=True,
            markup=True,
        )
    if len(report.issues) > args.show:
        console.print(f"... and {len(report.issues) - args.show} more (raise --show)")
    for note, count in sorted(report.conversions.items()):
        console.print(f"[yellow]{count} image(s): {note}[/]")
    histogram = Table(
        title="pixels per class",
        caption="weight: loss.class_weights auto (median frequency) of the splits checked; "
        "training counts its training split (--split NAME checks one)",
    )
    histogram.add_column("index", justify="right")
    histogram.add_column("class")
    histogram.add_column("pixels", justify="right")
    histogram.add_column("share", justify="right")
    histogram.add_column("weight", justify="right")
    counts = report.class_pixels
    total = max(int(counts.sum()) + report.ignore_pixels, 1)
    weights = report.class_weights()
    for index, (name, count) in enumerate(zip(report.info.classes, counts, strict=True)):
        histogram.add_row(
            str(index), name, f"{int(count):,}", f"{count / total:.2%}", f"{weights[index]:.3f}"
        )
    ignore = report.ignore_pixels
    histogram.add_row(
        str(report.info.ignore_index), "(ignore)", f"{ignore:,}", f"{ignore / total:.2%}", ""
    )
    console.print(histogram)
    if report.ok:
        console.print(f"[green]ok[/]: {report.pairs} pairs, {len(report.warnings)} warning(s)")
        return 0
    console.print(f"[red]{len(report.errors)} error(s)[/] in {report.pairs} pairs")
    return 1


def _run_prepare(args, console) -> int:

    from gsag.data.download import SBD_BENCHMARK, VOC2012_TRAINVAL, download, extract
    from gsag.data.sbd import prepare_voc

    voc, sbd = args.voc, args.sbd
    if args.download:
        data_dir = check_output(args.out, "--out", datasets=True)
        for archive in (VOC2012_TRAINVAL, SBD_BENCHMARK):
            path = _track(
                f"downloading {archive.name}",
                lambda progress, a=archive: download(a, data_dir, progress=progress),
                quiet=args.quiet,
            )
            if not (data_dir / archive.unpacks_to).exists():
                _track(
                    f"unpacking {archive.name}",
                    lambda progress, p=path: extract(p, data_dir, progress),
                    quiet=args.quiet,
                )
        voc = voc or str(data_dir / VOC2012_TRAINVAL.unpacks_to)
        sbd = sbd or str(data_dir / SBD_BENCHMARK.unpacks_to)
    if not voc or not sbd:
        from gsag.errors import UsageError

        raise UsageError("give --voc DIR and --sbd DIR, or --download")
    counts = _track(
        "writing train_aug masks",
        lambda progress: prepare_voc(voc, sbd, progress),
        quiet=args.quiet,
    )
    console.print(
        f"VOC train {counts['voc_train']}, VOC val {counts['voc_val']}, SBD train "
        f"{counts['sbd_train']}, SBD val {counts['sbd_val']} -> [bold]train_aug "
        f"{counts['train_aug']}[/] ({counts['from_voc']} VOC masks, {counts['from_sbd']} from SBD)"
    )
    return 0


def _run_prepare_cityscapes(args, console) -> int:
    from pathlib import Path

    from gsag.data.cityscapes import write_train_ids
    from gsag.data.download import extract

    root = check_output(args.out, "--out", datasets=True)
    for archive, top in ((args.leftimg, "leftImg8bit"), (args.gtfine, "gtFine")):
        if archive and not (root / top).is_dir():
            _track(
                f"unpacking {Path(archive).name}",
                lambda p, a=archive: extract(a, root, p),
                quiet=args.quiet,
            )
    counts = _track(
        "writing trainIds", lambda progress: write_train_ids(root, progress), quiet=args.quiet
    )
    console.print(
        f"{counts['masks']} labelIds masks, {counts['written']} *_gtFine_labelTrainIds.png "
        f"written -> [bold]{root}[/]"
    )
    return 0


def _run_prepare_ade20k(args, console) -> int:
    from pathlib import Path

    from gsag.data.ade20k import find_ade20k_root
    from gsag.data.download import ADE20K_SCENE_PARSING, download, extract

    data_dir = Path(args.out)
    if args.download or args.zip:
        check_output(data_dir, "--out", datasets=True)
    archive = Path(args.zip) if args.zip else None
    if args.download:
        archive = _track(
            "downloading ADEChallengeData2016.zip",
            lambda p: download(ADE20K_SCENE_PARSING, data_dir, progress=p),
            quiet=args.quiet,
        )
    if archive is not None and find_ade20k_root(data_dir) is None:
        _track("unpacking", lambda p: extract(archive, data_dir, p), quiet=args.quiet)
    root = find_ade20k_root(data_dir)
    if root is None:
        from gsag.data.errors import DataError

        raise DataError(f"no ADEChallengeData2016 in {data_dir}; pass --download or --zip FILE")
    counts = {
        s: len(list((root / "images" / s).glob("ADE_*.jpg"))) for s in ("training", "validation")
    }
    console.print(
        f"[bold]{root}[/]: training {counts['training']}, validation {counts['validation']} "
        "images (labels are shifted down by one when read: 0 = other is ignored)"
    )
    return 0


def _run_prepare_context(args, console) -> int:
    from gsag.data.context_prepare import prepare_context

    check_output(args.voc2010, "--voc2010", datasets=True)  # the masks are written into it
    counts = _track(
        "writing context masks",
        lambda p: prepare_context(args.voc2010, args.annotations, args.labels, p),
        quiet=args.quiet,
    )
    console.print(
        f"{counts['masks']} annotations ({counts['written']} new masks): train "
        f"{counts['train']}, val {counts['val']} -> [bold]{args.voc2010}[/]"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the action; its errors (`DataError`, ...) reach `gsag.cli.main` like every command's:
    one `error:` line on stderr, exit code 2."""
    from rich.console import Console

    console = Console()
    actions = {
        "synth": _run_synth,
        "check": _run_check,
        "prepare-voc": _run_prepare,
        "prepare-cityscapes": _run_prepare_cityscapes,
        "prepare-ade20k": _run_prepare_ade20k,
        "prepare-context": _run_prepare_context,
    }
    return actions[args.data_command](args, console)
