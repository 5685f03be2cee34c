"""A steering program that counts %NUM_POINTS as ATLAS's hpogrid does (a test fixture).

    python3 hpogrid_counting.py --n=%NUM_POINTS --max=%MAX_POINTS --in=%IN --out=%OUT

hpogrid reads ``--n`` as the number of points that should be open after the round: it
counts the points of ``%IN`` whose loss is null (pending), and writes ``n - pending``
new points (none, ``[]``, when as many are pending already), never more than ``max``
minus the points so far. Segmented inputs are counted per model_id, as hpogrid does.
The points are random draws (random_search.py, sent with the task).
"""

import argparse
import json
import random

from random_search import new_points


def generate(space, entries, n, max_points, rng):
    known = [point for point, _loss in entries]
    pending = sum(loss is None for _point, loss in entries)
    if n - pending <= 0:
        print(f"{pending} point(s) pending, as many as {n}: no new point")
        return []
    count = max(0, min(n - pending, max_points - len(known)))
    return new_points(space, known, count, rng)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--in", dest="infile", required=True)
    parser.add_argument("--out", dest="outfile", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--max", type=int, required=True)
    args = parser.parse_args()
    with open(args.infile) as f:
        data = json.load(f)
    rng = random.Random(len(data["points"]))
    if isinstance(data["opt_space"], dict):
        entries = [(point, loss) for point, loss in data["points"]]
        result = generate(data["opt_space"], entries, args.n, args.max, rng)
    else:
        result = []
        for model in data["opt_space"]:
            model_id = model["model_id"]
            entries = [(p[1], loss) for p, loss in data["points"] if p[0] == model_id]
            points = generate(model["search_space"], entries, args.n, args.max, rng)
            result.extend([model_id, point] for point in points)
    with open(args.outfile, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
