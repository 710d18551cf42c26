"""End-to-end accuracy of the FER pipeline per detector, and crop-rule calibration.

Protocol (see ``mobilefer.calibration``): each FER2013 val face upscaled to 160 px and pasted at a
random position into a 640x480 canvas (blurred real photo from ../shared/images as background); the
pipeline's detector runs; a face counts as correct only if it is found and its label is right.

Usage::

    python benchmarks/e2e_accuracy.py                       # shipped classifier, all 3589 val faces
    python benchmarks/e2e_accuracy.py --fit --n 1500        # grid-search crop rules per detector
    python benchmarks/e2e_accuracy.py --classifier runs/x/best.safetensors --n 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> int:
    from mobilefer.calibration import detect_faces, evaluate_rules, fit_crop_rule, load_backgrounds
    from mobilefer.classify import ExpressionClassifier
    from mobilefer.detect import create_detector
    from mobilefer.train.data import load_fer2013_npz, stratified_subset
    from mobilefer.train.trainer import evaluate_arrays

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", default="default", help="checkpoint, or 'default' (shipped)")
    parser.add_argument("--val", default=str(SHARED / "data/fer2013/fer2013_val.npz"))
    parser.add_argument("--n", type=int, default=0, help="stratified subset of val faces (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", default="ultraface-rfb-320,ultraface-slim-320,haar")
    parser.add_argument("--fit", action="store_true", help="grid-search the crop rule per detector")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--margins", default="0,0.05,0.1,0.15,0.2,0.3", help="crop margins tried by --fit")
    parser.add_argument("--shifts", default="-0.05,0,0.05", help="vertical centre shifts tried by --fit")
    parser.add_argument("--json", default="", help="write the results as JSON here")
    parser.add_argument(
        "--save-calibrated", default="",
        help="with --fit: write a copy of the checkpoint whose preset holds the fitted crop rule per detector "
        "(the weights are unchanged; the RFB-320 rule also becomes the 'default' rule)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenCV/onnxruntime threads")
    args = parser.parse_args()
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    clf = (
        ExpressionClassifier.default(backend=args.backend, threads=args.threads)
        if args.classifier == "default"
        else ExpressionClassifier.from_checkpoint(args.classifier, backend=args.backend, threads=args.threads)
    )
    size, color = clf.preset.input_size[0], clf.preset.color
    val = load_fer2013_npz(args.val, 48, "gray")
    idx = stratified_subset(val.labels, args.n, args.seed)
    val = val.subset(idx)
    direct = evaluate_arrays(clf.model, load_fer2013_npz(args.val, size, color).subset(idx), clf.preset)
    backgrounds = load_backgrounds(sorted((SHARED / "images").glob("*.jpg")))
    weights = SHARED / "weights/ultraface"
    rows = []
    for name in args.detectors.split(","):
        w = None
        if name.startswith("ultraface"):
            w = weights / ("version-RFB-320.pth" if "rfb" in name else "version-slim-320.pth")
        detector = create_detector(name, weights=w)
        if args.backend == "onnxruntime" and name != "haar":
            from mobilefer.pipeline import Pipeline

            detector = Pipeline(detector, clf, backend="onnxruntime", threads=args.threads).detector
        t0 = time.perf_counter()
        found = detect_faces(detector, val.images, backgrounds, args.seed)
        t_detect = time.perf_counter() - t0
        current = clf.preset.crop_rule(name)
        (res_current,) = evaluate_rules(clf, name, found, val.labels, [current])
        row = {
            "detector": name,
            "n": res_current.n,
            "detection_rate": res_current.detection_rate,
            "e2e_accuracy": res_current.accuracy,
            "accuracy_found": res_current.accuracy_found,
            "rule": vars(current) if hasattr(current, "__dict__") else str(current),
            "detect_seconds": t_detect,
        }
        if args.fit:
            best, _ = fit_crop_rule(
                clf, name, found, val.labels,
                margins=[float(v) for v in args.margins.split(",")],
                shifts=[float(v) for v in args.shifts.split(",")],
            )
            row["best_rule"] = {"margin": best.rule.margin, "shift_y": best.rule.shift_y, "square": best.rule.square}
            row["best_e2e_accuracy"] = best.accuracy
        rows.append(row)
        print(f"{name}: found {res_current.found}/{res_current.n}, e2e {res_current.accuracy:.4f}"
              + (f", best {row['best_e2e_accuracy']:.4f} at {row['best_rule']}" if args.fit else ""), file=sys.stderr)
    print(f"\nclassifier {clf.name}: direct val accuracy {direct.accuracy:.4f}, macro-F1 {direct.macro_f1:.4f}"
          f" on {direct.n} faces (seed {args.seed})\n")
    print("| detector | found | e2e accuracy | accuracy on found | crop margin | shift_y |" + (" fitted e2e | fitted margin/shift |" if args.fit else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if args.fit else ""))
    for r in rows:
        rule = clf.preset.crop_rule(str(r["detector"]))
        line = (f"| {r['detector']} | {r['detection_rate']:.3f} | {r['e2e_accuracy']:.4f} | {r['accuracy_found']:.4f} |"
                f" {rule.margin} | {rule.shift_y} |")
        if args.fit:
            br = r["best_rule"]
            line += f" {r['best_e2e_accuracy']:.4f} | {br['margin']}/{br['shift_y']} |"  # type: ignore[index]
        print(line)
    if args.save_calibrated:
        if not args.fit or args.classifier == "default":
            parser.error("--save-calibrated needs --fit and an explicit --classifier checkpoint")
        from mobilefer.checkpoint import load_classifier, save_classifier
        from mobilefer.preset import CropRule

        ckpt = load_classifier(args.classifier)
        preset = ckpt.preset
        for r in rows:
            br = r["best_rule"]
            rule = CropRule(margin=br["margin"], square=br["square"], shift_y=br["shift_y"])  # type: ignore[index]
            preset = preset.with_crop_rule(str(r["detector"]), rule)
            if r["detector"] == "ultraface-rfb-320":
                preset = preset.with_crop_rule("default", rule)
        metrics = dict(ckpt.metrics)
        for r in rows:
            metrics[f"e2e_accuracy_{r['detector']}"] = float(r["best_e2e_accuracy"])  # type: ignore[arg-type]
        save_classifier(args.save_calibrated, ckpt.model, ckpt.spec, preset, metrics)
        print(f"\nwrote {args.save_calibrated} with crop rules {dict(preset.crop_rules)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"direct_accuracy": direct.accuracy, "direct_macro_f1": direct.macro_f1,
                                               "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
