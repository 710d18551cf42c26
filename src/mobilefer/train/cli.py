"""``mobilefer train`` and ``mobilefer eval`` sub-commands (wired into :mod:`mobilefer.cli`).

``mobilefer train CONFIG.yaml [--set section.key=value ...] [--out RUNS_DIR] [--resume RUN_DIR]``
trains into ``RUNS_DIR/<train.name>-<timestamp>/``; ``--resume`` continues a run on its schedule.

``mobilefer eval CHECKPOINT DATA [--tta] [--json] [--format FORM] [--usage USAGE]`` prints accuracy,
macro-F1, per-class precision/recall/F1 and the confusion matrix (or one JSON line with ``--json``).

Progress and diagnostics go to stderr through :mod:`logging`; results go to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mobilefer.errors import InvalidConfigError, MobileferError

if TYPE_CHECKING:  # pragma: no cover
    from mobilefer.train.evaluate import Evaluation
    from mobilefer.train.trainer import TrainResult

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_train_parser", "add_eval_parser", "run_train", "run_eval", "main"]

logger = logging.getLogger(__name__)

#: Exit codes: success, runtime failure (data, checkpoint, ...), invalid configuration or arguments.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _setup_logging(rank: int = 0, training: bool = False) -> None:
    """Logging to stderr unless the application configured it already.

    A training run always reports its epochs (``mobilefer.train`` at INFO on rank 0, even when the
    ``mobilefer`` command runs without ``-v``); ranks > 0 only report warnings.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if rank > 0:
        logging.getLogger("mobilefer").setLevel(logging.WARNING)
    elif training and logging.getLogger("mobilefer.train").level == logging.NOTSET:
        logging.getLogger("mobilefer.train").setLevel(logging.INFO)


def add_train_parser(subparsers: SubParsers) -> None:
    """Add the ``train`` sub-command (its handler is :func:`run_train`)."""
    p = subparsers.add_parser(
        "train",
        help="train a classifier from a YAML config",
        description="Train a classifier from a YAML config into RUNS_DIR/<train.name>-<timestamp>/ "
        "(config.yaml, metrics.json, curves.png, confusion_matrix.png, best.safetensors, preset.json, "
        "last.safetensors). Runs unchanged under torchrun for DDP.",
    )
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="training config (see docs/training.md)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value (YAML scalar), e.g. --set optim.lr=0.001; repeatable",
    )
    p.add_argument("--out", default="runs", metavar="RUNS_DIR", help="parent folder of run directories (default: ./runs)")
    p.add_argument(
        "--resume", metavar="RUN_DIR",
        help="continue this run from its last.safetensors with its saved config.yaml (same schedule)",
    )
    p.add_argument(
        "--stop-after", type=int, default=None, metavar="EPOCH",
        help="stop after this epoch without changing the schedule (continue later with --resume)",
    )
    p.set_defaults(func=run_train)


def add_eval_parser(subparsers: SubParsers) -> None:
    """Add the ``eval`` sub-command (its handler is :func:`run_eval`)."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on labelled data",
        description="Accuracy, macro-F1, per-class precision/recall/F1 and confusion matrix of a checkpoint "
        "(best.safetensors, last.safetensors, a run directory, or 'default' for the shipped model) on a "
        "FER2013 .npz, a Kaggle FER2013 .csv or a folder of class folders, at the checkpoint's preset.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint file, run directory, or 'default'")
    p.add_argument("data", metavar="DATA", help=".npz file, .csv file or folder of class folders")
    p.add_argument("--tta", action="store_true", help="average the logits of each image and its mirror image")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of tables")
    p.add_argument(
        "--format", choices=("fer2013_npz", "fer2013_csv", "imagefolder"), default=None,
        help="data form (default: inferred from DATA: .npz, .csv or folder)",
    )
    p.add_argument("--usage", default="PublicTest", help="csv rows to evaluate (Usage column; default PublicTest)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--skip-unreadable", action="store_true", help="skip undecodable images in folders (logged)")
    p.set_defaults(func=run_eval)


# ------------------------------------------------------------------------------------------ train
def _check_resume_config(args: argparse.Namespace, run_dir: Path) -> None:
    """With ``--resume``, a CONFIG/--set may be given only if it resolves to the run's saved config."""
    import yaml

    from mobilefer.train.config import config_from_dict, config_to_dict, load_config

    if not args.config and not args.overrides:
        return
    if not args.config:
        raise InvalidConfigError("--set needs a CONFIG; --resume continues with the run's saved config.yaml")
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        raise InvalidConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    saved = config_to_dict(config_from_dict(yaml.safe_load(saved_file.read_text(encoding="utf-8")), base_dir=run_dir))
    given = config_to_dict(load_config(args.config, args.overrides))
    differing = [
        f"{section}.{key}"
        for section, values in given.items()
        for key, value in values.items()
        if saved.get(section, {}).get(key) != value
    ]
    if differing:
        raise InvalidConfigError(
            f"{differing[0]}: differs from the saved config of {run_dir} (a resumed run keeps its config; "
            f"differing keys: {', '.join(differing)})"
        )


def _train_summary(result: TrainResult) -> str:
    best = result.best
    return (
        f"run {result.run_dir}\n"
        f"epochs {result.epochs_run}, best epoch {result.best_epoch}: val accuracy {best.accuracy:.4f}, "
        f"macro-F1 {best.macro_f1:.4f} on {best.n} images ({result.images_per_second:.0f} train img/s)\n"
    )


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``mobilefer train``; returns the exit code (0 ok, 1 failure, 2 invalid config)."""
    rank = int(os.environ.get("RANK", "0"))
    _setup_logging(rank, training=True)
    try:
        from mobilefer.train.config import load_config
        from mobilefer.train.trainer import resume, train

        stop_after: int | None = args.stop_after
        if stop_after is not None and stop_after < 1:
            raise InvalidConfigError(f"--stop-after must be >= 1, got {stop_after}")
        if args.resume:
            run_dir = Path(args.resume)
            _check_resume_config(args, run_dir)
            result = resume(run_dir, stop_after=stop_after)
        else:
            if not args.config:
                raise InvalidConfigError("a CONFIG.yaml is required (or --resume RUN_DIR)")
            cfg = load_config(args.config, args.overrides)
            result = train(cfg, args.out, stop_after=stop_after)
    except InvalidConfigError as exc:
        logger.error("invalid configuration: %s", exc)
        return EXIT_USAGE
    except (MobileferError, OSError) as exc:
        logger.error("training failed: %s", exc)
        return EXIT_FAILURE
    finally:
        _finish_distributed()
    if rank == 0:
        sys.stdout.write(_train_summary(result))
        sys.stdout.flush()
    return EXIT_OK


def _finish_distributed() -> None:
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ eval
def _table(evaluation: Evaluation) -> str:
    r = evaluation.result
    names = [c.name for c in r.per_class]
    width = max([5, *(len(n) for n in names)])
    lines = [
        f"checkpoint  {evaluation.checkpoint}",
        f"data        {evaluation.data} ({evaluation.format}, {r.n} images{', TTA' if evaluation.tta else ''})",
        f"accuracy    {r.accuracy:.4f}",
        f"macro-F1    {r.macro_f1:.4f}",
    ]
    if r.loss is not None:
        lines.append(f"loss        {r.loss:.4f}")
    lines += ["", f"{'class':<{width}}  precision  recall      f1  support"]
    for c in r.per_class:
        lines.append(f"{c.name:<{width}}  {c.precision:9.4f}  {c.recall:6.4f}  {c.f1:6.4f}  {c.support:7d}")
    cell = max([5, *(len(n) for n in names), *(len(str(v)) for row in r.confusion_matrix for v in row)])
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * width + "".join(f"  {n:>{cell}}" for n in names))
    for name, row in zip(names, r.confusion_matrix, strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"  {v:>{cell}d}" for v in row))
    return "\n".join(lines) + "\n"


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``mobilefer eval``; returns the exit code (0 ok, 1 failure, 2 invalid arguments)."""
    _setup_logging()
    if args.batch_size < 1 or args.threads < 0:
        logger.error("--batch-size must be >= 1 and --threads >= 0")
        return EXIT_USAGE
    try:
        if args.threads > 0:
            import torch

            torch.set_num_threads(args.threads)
        from mobilefer.train.evaluate import evaluate_checkpoint

        evaluation = evaluate_checkpoint(
            args.checkpoint, args.data, fmt=args.format, usage=args.usage, tta=args.tta,
            batch_size=args.batch_size, skip_unreadable=args.skip_unreadable,
        )
    except (MobileferError, OSError) as exc:
        logger.error("evaluation failed: %s", exc)
        return EXIT_FAILURE
    out = json.dumps(evaluation.to_dict()) + "\n" if args.json else _table(evaluation)
    sys.stdout.write(out)
    sys.stdout.flush()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m mobilefer.train.cli {train,eval} ...`` (the same sub-commands as ``mobilefer``)."""
    parser = argparse.ArgumentParser(prog="python -m mobilefer.train.cli", description="mobilefer train / eval")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_eval_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
