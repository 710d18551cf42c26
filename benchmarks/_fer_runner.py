"""Runs PyPI ``fer`` for ``benchmarks/vs_fer.py`` inside its own virtual environment (not mobilefer's).

A small JSON-lines server: it reads one command per line on stdin and answers one line on stdout,
prefixed with ``@@ `` (TensorFlow and fer log to the same streams; other lines are ignored by the
caller). Commands:

* ``{"cmd": "load", "frames": [png paths], "threads": t}``: build ``FER()`` with its defaults (Haar
  cascade, mini-Xception as the quantized TFLite model) and read the frames. With ``threads``, OpenCV
  (``cv2.setNumThreads``) and the TFLite interpreter (created with ``num_threads`` from the same
  model file fer loads, placed in fer's interpreter cache) use that many threads; without, their defaults;
* ``{"cmd": "detect", "i": k}``: faces of frame k (boxes as x1, y1, x2, y2; label; probabilities);
* ``{"cmd": "time", "i": k, "number": n}``: mean ms of n ``detect_emotions`` calls on frame k;
* ``{"cmd": "val", "npz": path}``: predictions of fer's emotion classifier on each 48x48 FER2013 face,
  preprocessed as ``FER.detect_emotions`` does after detection (``cv2.resize`` to the model's 64x64
  input, ``/ 255``, ``(x - 0.5) * 2``, then ``FER._classify_emotions``);
* ``{"cmd": "quit"}``.

Only numpy, OpenCV and fer are imported here.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def reply(obj: Any) -> None:
    sys.stdout.write("@@ " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    import cv2
    import fer as fer_package
    import numpy as np
    from fer.fer import FER

    detector: Any = None
    frames: list[Any] = []
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        cmd = msg["cmd"]
        if cmd == "load":
            threads = msg.get("threads")
            if threads:
                import pkg_resources
                import tensorflow as tf

                cv2.setNumThreads(int(threads))
                path = pkg_resources.resource_filename("fer", "data/emotion_model_quantized.tflite")
                interpreter = tf.lite.Interpreter(model_path=path, num_threads=int(threads))
                interpreter.allocate_tensors()
                FER._tflite_interpreter_cache = interpreter
            detector = FER()
            frames = [cv2.imread(p, cv2.IMREAD_COLOR) for p in msg["frames"]]
            detector.detect_emotions(frames[0])  # loads the interpreter
            import tensorflow as tf

            reply({"fer": fer_package.__version__, "tensorflow": tf.__version__, "opencv": cv2.__version__,
                   "threads": f"{threads} (cv2 and TFLite)" if threads else "fer's defaults"})
        elif cmd == "detect":
            faces = detector.detect_emotions(frames[msg["i"]])
            out = []
            for face in faces:
                x, y, w, h = (int(v) for v in face["box"])
                probs = {k: float(v) for k, v in face["emotions"].items()}
                out.append({"box": [x, y, x + w, y + h], "label": max(probs, key=lambda k: probs[k]), "probs": probs})
            reply({"faces": out})
        elif cmd == "time":
            frame = frames[msg["i"]]
            n = int(msg["number"])
            start = time.perf_counter()
            for _ in range(n):
                detector.detect_emotions(frame)
            reply({"ms": (time.perf_counter() - start) * 1000.0 / n})
        elif cmd == "val":
            with np.load(msg["npz"]) as data:
                images = data["images"]
            size = detector._FER__emotion_target_size  # (64, 64) for the default TFLite model
            faces = np.array([cv2.resize(img, size) for img in images], dtype="float32")
            faces = (faces / 255.0 - 0.5) * 2.0
            start = time.perf_counter()
            probs = np.asarray(detector._classify_emotions(faces))
            seconds = time.perf_counter() - start
            reply({"pred": probs.argmax(1).tolist(), "input_size": list(size), "ms_per_face": 1000 * seconds / len(faces)})
        elif cmd == "quit":
            reply({"bye": True})
            return 0
        else:
            reply({"error": f"unknown command {cmd!r}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
