"""`ninserve train`, `ninserve export`, `ninserve quantize` and `ninserve eval`.

Imports of torch and the training code happen inside the handlers, so `ninserve serve` works in
an install without the `train` extra; app/cli/main.py turns a missing extra into a one-line message.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from model.config import HELP, TrainConfig
from model.help import DefaultsHelp
from model.places import OVERWRITE_FLAG, REPOSITORY, RUNS

DEFAULT_ARTIFACT = Path(__file__).parent / "artifacts" / "nin-cifar10.onnx"
DEFAULT_DATA = Path(TrainConfig.data)
OVERWRITE_HELP = "allow replacing files that git tracks (the shipped model; what `make artifacts` does)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train NiN (resumable; bf16 on CPU, AMP on CUDA)",
        description="Train NiN on CIFAR-10 (python batches, or a folder or zip of <split>/<class>/<image>) "
        "and write RUN_DIR/checkpoint.pt after each epoch (RUN_DIR: runs/NAME/, untracked); `ninserve "
        "export` turns it into a repository model. Each flag overrides the field of model/config.py's "
        "TrainConfig of the same name.",
    )
    for f in fields(TrainConfig):
        if f.name in {"classes"}:
            continue
        flag = "--" + f.name.replace("_", "-")
        shown = f" (default: {f.default})" if f.default not in ("",) else ""
        p.add_argument(flag, type=type(f.default), default=None, help=HELP[f.name] + shown)
    p.add_argument("--name", help=f"the run's name: RUN_DIR is {RUNS}/NAME/ (default: the UTC start time)")
    p.add_argument(
        "--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt (default: the latest run)"
    )
    p.add_argument("--stop-after", type=int, help="stop after this epoch (resume later with --resume)")
    p.add_argument(OVERWRITE_FLAG, action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "export",
        help="export a checkpoint into a model repository (parity-checked)",
        description="Export a checkpoint of `ninserve train` to the self-contained ONNX artifact the server "
        "loads (uint8 pixels in; scores and confidence maps out), BatchNorm folded, as the next version of a "
        "repository model: REPOSITORY/MODEL/<next version>/model.onnx (and model-int8.onnx with --int8), "
        "which appears whole, so a polling server never sees half of it. It is written only if ONNX "
        "Runtime matches PyTorch on it.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("--checkpoint", type=Path, help="from ninserve train (default: the latest run's)")
    p.add_argument(
        "--repository",
        type=Path,
        help=f"the model repository (default: NINSERVE_MODEL_REPOSITORY, else {REPOSITORY}/)",
    )
    p.add_argument("--model-name", help="the repository model (default: the run's folder name)")
    p.add_argument(
        "--int8", action="store_true", help="add the int8 variant (ninserve quantize) to the version"
    )
    p.add_argument("--data", type=Path, help="--int8 calibration data (default: the data the run trained on)")
    p.add_argument("--calibration-images", type=int, default=1024, help="--int8: images to calibrate on")
    p.add_argument("--out", type=Path, help="one ONNX file to write instead of a repository version")
    p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="EMA or raw trained weights")
    p.add_argument("--flip-tta", action="store_true", help="bake horizontal-flip averaging into the graph")
    p.add_argument(OVERWRITE_FLAG, action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(handler=_export)

    p = sub.add_parser(
        "quantize",
        help="static int8 (QDQ, per-channel) artifact for CPU",
        description="Quantize the fp32 artifact to int8 for CPU serving (NINSERVE_PRECISION=int8): weights "
        "per channel, activations calibrated on training-split images, then checked on the validation split.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="the fp32 artifact")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_ARTIFACT.with_name("nin-cifar10-int8.onnx"), help="int8 artifact"
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training data: calibration and check")
    p.add_argument("--calibration-images", type=int, default=1024, help="images to calibrate on")
    p.add_argument(
        "--method", choices=["minmax", "percentile", "entropy"], default="percentile", help="calibration"
    )
    p.add_argument(OVERWRITE_FLAG, action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(handler=_quantize)

    p = sub.add_parser(
        "eval",
        help="evaluate an ONNX artifact (ONNX Runtime)",
        description="Measure an artifact's top-1 with ONNX Runtime on the validation split recorded in it "
        "(or the data's test split); --write-metadata stamps it into the artifact's val_top1.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="ONNX artifact to evaluate")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the data the artifact was trained on")
    p.add_argument(
        "--split",
        choices=["val", "test"],
        default="val",
        help="val: the held-out part of the training data recorded in the artifact; "
        "test: the data's own test/ split or test_batch, where it has one",
    )
    p.add_argument(
        "--report-dir", type=Path, help="write eval.json, confusion_matrix.png and confidence_maps.png here"
    )
    p.add_argument(
        "--write-metadata",
        action="store_true",
        help="stamp the measured validation top-1 into the artifact's val_top1 (needs --split val)",
    )
    p.set_defaults(handler=_eval)


def _train(args: argparse.Namespace) -> int:
    from model.errors import DataError
    from model.places import latest_run, refuse_tracked, run_name

    given = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if f.name != "classes" and getattr(args, f.name) is not None
    }
    config = TrainConfig(**given)
    if not config.run_dir:
        if args.resume and args.name is None:
            latest = latest_run()
            if latest is None:
                raise DataError(f"--resume: no run under {RUNS}/ to continue; name one with --run-dir")
            config.run_dir = str(latest)
        else:
            config.run_dir = str(RUNS / (args.name or run_name()))
    refuse_tracked(Path(config.run_dir), args.overwrite_tracked, "--run-dir")
    if args.resume and "data" not in given:
        config.data = ""  # take the data path recorded in the checkpoint
    print(f"run: {config.run_dir}", flush=True)
    from model.train import train

    train(config, resume=args.resume, stop_after=args.stop_after)
    return 0


def _export(args: argparse.Namespace) -> int:
    from model.errors import DataError
    from model.places import latest_run, refuse_tracked
    from model.publish import export_version, quiet_export  # first: a missing `train` extra says so

    checkpoint = args.checkpoint
    if checkpoint is None:
        run = latest_run()
        if run is None:
            raise DataError(f"no run under {RUNS}/ to export; name a checkpoint with --checkpoint")
        checkpoint = run / "checkpoint.pt"
    if args.out is not None:
        refuse_tracked(args.out, args.overwrite_tracked, "--out")
        quiet_export(checkpoint, args.out, weights=args.weights, flip_tta=args.flip_tta)
        return 0
    export_version(
        checkpoint,
        repository=args.repository,
        model=args.model_name,
        int8=args.int8,
        data=args.data,
        calibration_images=args.calibration_images,
        weights=args.weights,
        flip_tta=args.flip_tta,
    )
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from model.places import refuse_tracked
    from model.quantize import quantize

    refuse_tracked(args.out, args.overwrite_tracked, "--out")
    quantize(args.model, args.out, args.data, args.calibration_images, args.method)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from model.errors import DataError
    from model.evaluate import artifact_metadata, evaluate, load_split, open_session, write_metadata

    if args.write_metadata and args.split != "val":
        raise DataError("--write-metadata stamps the validation figure (val_top1): use it with --split val")
    session = open_session(args.model)
    print(f"evaluating {args.model} on the {args.split} split of {args.data}", flush=True)
    data = load_split(artifact_metadata(session), args.data, args.split)
    report = evaluate(session, data)
    print(f"{args.split} top-1: {report.top1:.4f} on {report.count} images")
    for name, acc in report.per_class.items():
        print(f"  {name:>12s}  {acc:.4f}")
    if args.report_dir:
        from model.report import plot_confidence_maps, plot_confusion

        args.report_dir.mkdir(parents=True, exist_ok=True)
        (args.report_dir / "eval.json").write_text(report.to_json())
        plot_confusion(report, args.report_dir / "confusion_matrix.png")
        # The first image of each of six classes in the split: the same figure on every run.
        picks = [int(np.flatnonzero(data.labels == c)[0]) for c in range(min(6, len(data.classes)))]
        plot_confidence_maps(
            session,
            data.images[picks],
            data.labels[picks],
            data.classes,
            args.report_dir / "confidence_maps.png",
        )
        print(f"wrote eval.json, confusion_matrix.png, confidence_maps.png to {args.report_dir}")
    if args.write_metadata:
        write_metadata(
            args.model,
            {
                "val_top1": f"{report.top1:.4f}",
                "val_top1_source": f"ninserve eval: ONNX Runtime CPU, {report.count} held-out images",
            },
        )
        print(f"wrote val_top1 {report.top1:.4f} into {args.model}")
    return 0
