"""The example's evaluation: ridge regression fitted by mini-batch SGD on synthetic data.

It follows the evaluation contract of a phpo task: the point's parameters are read from
``input.json`` in the working directory, the validation loss is written to
``output.json`` (``{"status": 0, "loss": ...}``), one ``{"step", "value"}`` line per epoch
goes to ``intermediate.jsonl`` (for a pruner), and ``meta.json`` and ``metrics.tgz`` are
the files the config names as evaluationMeta and evaluationMetrics. Only the standard
library is used, so any ``python3`` on the compute node runs it, and nothing touches
the network.
"""

import io
import json
import math
import random
import tarfile

FEATURES = 8
DIVERGED = 1e6
"""The loss reported when SGD diverged (a large learning rate): a finite, bad value."""


def sample(rng, weights, n):
    rows = []
    for _ in range(n):
        x = [rng.gauss(0.0, 1.0) for _ in range(FEATURES)]
        rows.append((x, sum(w * v for w, v in zip(weights, x)) + rng.gauss(0.0, 0.3)))
    return rows


def mse(w, b, rows):
    total = 0.0
    for x, y in rows:
        err = sum(wi * xi for wi, xi in zip(w, x)) + b - y
        total += err * err
    loss = total / len(rows)
    return loss if math.isfinite(loss) else DIVERGED


def train(params, curve):
    rng = random.Random(7)  # the same data for every point
    weights = [rng.gauss(0.0, 1.0) for _ in range(FEATURES)]
    train_rows, valid_rows = sample(rng, weights, 400), sample(rng, weights, 200)
    lr, l2 = float(params["learning_rate"]), float(params["l2"])
    batch, epochs = int(params["batch_size"]), int(params["epochs"])
    w, b = [0.0] * FEATURES, 0.0
    order = random.Random(11)
    losses = []
    for epoch in range(epochs):
        order.shuffle(train_rows)
        for start in range(0, len(train_rows), batch):
            chunk = train_rows[start : start + batch]
            grad_w, grad_b = [0.0] * FEATURES, 0.0
            for x, y in chunk:
                err = sum(wi * xi for wi, xi in zip(w, x)) + b - y
                if not math.isfinite(err) or abs(err) > 1e150:
                    return [*losses, DIVERGED]
                grad_w = [g + err * xi for g, xi in zip(grad_w, x)]
                grad_b += err
            w = [wi - lr * (g / len(chunk) + l2 * wi) for wi, g in zip(w, grad_w)]
            b -= lr * grad_b / len(chunk)
        losses.append(mse(w, b, valid_rows))
        curve.write(json.dumps({"step": epoch, "value": losses[-1]}) + "\n")
        curve.flush()
    return losses


def write_metrics(losses):
    data = json.dumps({"validation_mse": losses}).encode()
    with tarfile.open("metrics.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("metrics.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def main():
    with open("input.json") as f:
        params = json.load(f)
    with open("intermediate.jsonl", "w") as curve:
        losses = train(params, curve)
    loss = losses[-1] if losses else DIVERGED
    write_metrics(losses)
    with open("meta.json", "w") as f:
        json.dump({"model": "ridge", "epochs_run": len(losses), "features": FEATURES}, f)
    message = "diverged" if loss >= DIVERGED else f"validation MSE after {len(losses)} epochs"
    with open("output.json", "w") as f:
        json.dump({"status": 0, "loss": loss, "message": message}, f)
    print(f"{params} -> {loss:.6g}")


if __name__ == "__main__":
    main()
