"""The model card (README.md) of a pretrained folder, generated from the run, never typed.

Its metadata block is what the Hub reads (`library_name: gsag`, `pipeline_tag:
image-segmentation`, tags, datasets and a `model-index` holding the measured mIoU); the text has
the metrics of metrics.json with how they were measured, the classes, parameters and GFLOPs, a
three-line usage example, the plots of the run, its limitations and the full training config.
A model trained on gsag's generated benchmark says in its first line that it does not segment
photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from gsag.trained.draw import plot_training_curve
from gsag.trained.folder import PLOTS_DIR, Trained, example_size
from gsag.trained.meta import unnamed_classes
from gsag.version import __version__

SYNTHETIC_DATASET = "gsag-generated-context-benchmark"
PLACEHOLDER_OWNER = "your-name"
SYNTHETIC_NOTICE = (
    "**Trained on gsag's generated context benchmark (drawn shapes on flat backgrounds), not on "
    "photos: this model does not segment photos.**"
)

UNNAMED_NOTE = (
    "The classes are unnamed (class_0, class_1, ...): the model was saved from memory without "
    "class names. Save it again with `gsag.save_pretrained(model, folder, classes=[...])` to "
    "name them."
)


def is_synthetic(trained: Trained) -> bool:
    """Whether the model was trained on `gsag.data.synth`'s generated benchmark."""
    from gsag.data.synth import SYNTH_CLASSES

    data = (trained.meta.get("config") or {}).get("data") or {}
    return bool(data.get("synthetic")) or list(trained.meta["classes"]) == SYNTH_CLASSES


def dataset_name(trained: Trained) -> str:
    """What the card's `datasets` entry calls the training data."""
    if is_synthetic(trained):
        return SYNTHETIC_DATASET
    data = (trained.meta.get("config") or {}).get("data") or {}
    layout = data.get("layout")
    root = Path(str(data.get("root") or "unknown")).name
    return layout if layout and layout not in ("auto", "voc", "folder") else root


def is_own_evaluation(settings: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether an evaluation's settings (metrics.json's) are the run's own: its config's
    validation split and data, every image, and its `eval` section's mode, flip, and scales
    (multiscale) or window (slide). Training's evaluations and `gsag demo`'s report are; a
    multi-scale + flip `gsag eval` of a run trained with whole-image evaluation is not."""
    data, e = config.get("data") or {}, config.get("eval") or {}
    mode = e.get("mode", "whole")
    same = [
        settings.get("split") == data.get("val_split", "val"),
        Path(str(settings.get("data"))) == Path(str(data.get("root"))),
        not settings.get("max_images"),
        settings.get("mode") == mode,
        bool(settings.get("flip")) == bool(e.get("flip")),
    ]
    if mode == "multiscale":
        same.append([float(v) for v in settings.get("scales") or []] == e.get("scales"))
    if mode == "slide":
        same += [settings.get(k) == e.get(k) for k in ("crop_size", "stride")]
    return all(same)


def evaluation_words(settings: dict[str, Any]) -> str:
    """Which evaluation, in words: split, mode, window or scales, flip."""
    mode = settings.get("mode", "?")
    words = [f"split `{settings.get('split', '?')}`", f"mode {mode}"]
    if mode == "slide":
        words.append(f"window {settings.get('crop_size')}, stride {settings.get('stride')}")
    if mode == "multiscale":
        words.append("scales " + ", ".join(f"{v:g}" for v in settings.get("scales") or []))
    else:
        words.append("one scale")
    words.append("flip" if settings.get("flip") else "no flip")
    return ", ".join(words)


def write_plots(trained: Trained, folder: Path) -> dict[str, str]:
    """plots/curve.png (from the run's metrics.jsonl) and plots/confusion.png (beside its
    metrics.json), where they exist; returns {name: path relative to `folder`}."""
    plots: dict[str, str] = {}
    log = trained.run_dir / "metrics.jsonl" if trained.run_dir else None
    if log is not None and log.is_file():
        plot_training_curve(log, folder / PLOTS_DIR / "curve.png")
        plots["training curve"] = f"{PLOTS_DIR}/curve.png"
    confusion = trained.metrics_path.parent / "confusion.png" if trained.metrics_path else None
    if confusion is not None and confusion.is_file():
        (folder / PLOTS_DIR).mkdir(exist_ok=True)
        shutil.copyfile(confusion, folder / PLOTS_DIR / "confusion.png")
        plots["confusion matrix (row-normalised)"] = f"{PLOTS_DIR}/confusion.png"
    return plots


def card_metadata(trained: Trained, config: dict[str, Any], repo_id: str | None) -> str:
    """The YAML metadata block (without the `---` lines), written with huggingface_hub."""
    from huggingface_hub import EvalResult, ModelCardData

    args = config["model_args"]
    name = (repo_id or "").split("/")[-1] or f"{args['name']}-{args['backbone']}"
    metrics = trained.metrics
    results = None
    if metrics is not None:
        settings = metrics.get("settings") or {}
        results = [
            EvalResult(
                task_type="image-segmentation",
                task_name="Semantic segmentation",
                dataset_type=dataset_name(trained),
                dataset_name=dataset_name(trained),
                dataset_split=settings.get("split"),
                metric_type="mean_iou",
                metric_name="mIoU",
                metric_value=float(metrics["mIoU"]),
            )
        ]
    data = ModelCardData(
        library_name="gsag",
        pipeline_tag="image-segmentation",
        license=None,
        tags=["gsag", "semantic-segmentation", args["name"], args["backbone"]],
        datasets=[dataset_name(trained)],
        model_name=name if results else None,
        eval_results=results,
    )
    return data.to_yaml()


def render_card(
    trained: Trained, config: dict[str, Any], plots: dict[str, str], repo_id: str | None
) -> str:
    """The whole README.md."""
    body: list[str] = [SYNTHETIC_NOTICE, ""] if is_synthetic(trained) else []
    args = config["model_args"]
    body += [f"# {args['name']} on {args['backbone']}: {dataset_name(trained)}", ""]
    body += _model_lines(trained, config)
    body += _usage_lines(repo_id)
    body += _metrics_lines(trained, config)
    body += _class_lines(config, trained.metrics)
    for title, path in plots.items():
        body += [f"## {title.capitalize()}", "", f"![{title}]({path})", ""]
    body += _limitation_lines(trained, config)
    full = yaml.safe_dump(config.get("config") or {}, sort_keys=False).rstrip()
    body += ["## Training config", "", "```yaml", full, "```", ""]
    body += [f"Generated by gsag {__version__} from {_source(trained)}.", ""]
    return f"---\n{card_metadata(trained, config, repo_id)}\n---\n\n" + "\n".join(body)


def _source(trained: Trained) -> str:
    if trained.checkpoint is not None:
        return f"`{trained.checkpoint.parent.name}/{trained.checkpoint.name}`"
    return "a model in memory"


def _model_lines(trained: Trained, config: dict[str, Any]) -> list[str]:
    """Architecture, parameters (without the aux head) and GFLOPs at the eval crop size."""
    from gsag.flops import count_gflops, count_params

    model = trained.model
    params = count_params(model) - (count_params(model.aux_head) if model.aux_head else 0)
    h, w = example_size(config["eval"].get("crop_size"))
    gflops = count_gflops(model, (h, w))
    args = config["model_args"]
    options = {k: v for k, v in args.items() if k not in ("name", "backbone", "num_classes")}
    return [
        f"- model: `{args['name']}` head on a `{args['backbone']}` backbone, "
        f"{len(config['classes'])} classes; arguments: `{options}`",
        f"- {params / 1e6:.2f} M parameters (without the training-only aux head), "
        f"{gflops:.2f} GFLOPs for one {h}x{w} image",
        f"- input: RGB, pixel values x {config['input']['scale']:.6g}, then normalised with "
        f"mean {config['input']['mean']} and std {config['input']['std']}",
        "",
    ]


def _usage_lines(repo_id: str | None) -> list[str]:
    where = repo_id or f"{PLACEHOLDER_OWNER}/MODEL"
    return [
        "## Usage",
        "",
        "```python",
        "import gsag",
        f'predictor = gsag.Predictor.from_pretrained("{where}")',
        'mask = predictor.predict("image.jpg")  # (H, W) class indices',
        "```",
        "",
        f"or `gsag predict hf://{where} --input images/ --out predictions/`.",
        "",
    ]


def _metrics_lines(trained: Trained, config: dict[str, Any]) -> list[str]:
    """The metrics of metrics.json (percent) and how they were measured."""
    from gsag.engine.eval_report import fmt_pct

    metrics = trained.metrics
    if metrics is None:
        return ["## Results", "", "No evaluation of this checkpoint with the run's own settings "
                "(its validation split and `eval` section) was found in its run folder, so this "
                "card reports no accuracy; evaluate it with `gsag eval` (or pass another "
                "evaluation's metrics.json with `--evaluation`) and save it again.", ""]  # fmt: skip
    s = metrics.get("settings") or {}
    run = config.get("config") or {}
    train = run.get("train") or {}
    keys = [k for k in ("mIoU", "aAcc", "mAcc", "FWIoU") if k in metrics]
    iteration = config["training"].get("iteration", "?")
    own = "the run's own settings" if is_own_evaluation(s, run) else "chosen with --evaluation"
    return [
        "## Results",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + " ---: |" * len(keys),
        "| " + " | ".join(fmt_pct(metrics[k]) for k in keys) + " |",
        "",
        f"- evaluation: {evaluation_words(s)} ({own})",
        f"- measured on `{s.get('data', '?')}` ({metrics.get('images', '?')} images)",
        f"- device: {s.get('device') or 'not recorded'}",
        f"- checkpoint: iteration {iteration} of {train.get('iters', '?')}, batch "
        f"{train.get('batch_size', '?')}, one run with seed {train.get('seed', '?')}",
        f"- dataset: {dataset_name(trained)}; training config in full below",
        f"- source: `{_relative(trained.metrics_path, trained.run_dir)}` in the run folder",
        "",
    ]


def _relative(path: Path | None, folder: Path | None) -> str:
    if path is None or folder is None or folder.resolve() not in path.resolve().parents:
        return str(path)
    return path.resolve().relative_to(folder.resolve()).as_posix()


def _class_lines(config: dict[str, Any], metrics: dict[str, Any] | None) -> list[str]:
    from gsag.engine.eval_report import fmt_pct

    ious = metrics.get("IoU") if metrics else None
    lines = [
        "## Classes",
        "",
        "| index | class | colour (RGB) | IoU |",
        "| ---: | --- | --- | ---: |",
    ]
    for i, (name, colour) in enumerate(zip(config["classes"], config["palette"], strict=True)):
        iou = fmt_pct(ious[i]) if ious else "–"
        lines.append(f"| {i} | {name} | {tuple(colour)} | {iou} |")
    if config["classes"] == unnamed_classes(len(config["classes"])):
        lines += ["", UNNAMED_NOTE]
    return [*lines, ""]


def _limitation_lines(trained: Trained, config: dict[str, Any]) -> list[str]:
    """What the numbers do not show."""
    train = (config.get("config") or {}).get("train") or {}
    lines = ["## Limitations", ""]
    if is_synthetic(trained):
        lines.append("- The training and validation images are generated shapes; the numbers say "
                     "nothing about photos, where this model's output is meaningless.")  # fmt: skip
    lines += [
        f"- One training run (seed {train.get('seed', '?')}): the spread over seeds is unknown, "
        "and differences of a point or two between models may be noise.",
        "- The numbers hold for the split and inference mode named above; other image sizes, "
        "modes or data from another source give other numbers.",
        f"- Only the {len(config['classes'])} classes listed are predicted; anything else is "
        "labelled as one of them.",
        "",
    ]
    return lines
