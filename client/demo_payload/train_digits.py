"""Demo evaluation payload: an SVM on scikit-learn's bundled digits, scored by 3-fold CV.

Reads the point from input.json, writes output.json ({"status": 0, "loss": ...}) and a
metrics tarball, exactly as an evaluation container does; needs no network.
"""

import io
import json
import tarfile
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC


def main() -> None:
    with open("input.json") as f:
        params = json.load(f)
    digits = load_digits()
    started = time.time()
    model = SVC(C=params["C"], gamma=params["gamma"])
    scores = cross_val_score(model, digits.data, digits.target, cv=3)
    loss = 1.0 - float(scores.mean())
    metrics = {"accuracy_per_fold": [float(s) for s in scores], "seconds": time.time() - started}
    data = json.dumps(metrics).encode()
    with tarfile.open("metrics.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("metrics.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with open("output.json.tmp", "w") as f:
        json.dump({"status": 0, "loss": loss, "message": f"accuracy {1 - loss:.4f}"}, f)
    import os

    os.replace("output.json.tmp", "output.json")


if __name__ == "__main__":
    main()
