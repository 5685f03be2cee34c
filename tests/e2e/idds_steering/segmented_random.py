"""A random-search steering program for segmented ("model_id") tasks (a test fixture).

    python3 segmented_random.py --in=%IN --out=%OUT --n=%NUM_POINTS --max=%MAX_POINTS

The input's points are [[model_id, {point}], loss_or_null] and its opt_space is
[{"model_id": i, "search_space": {...}}, ...]. For each model id the program asks
min(n, max - points of that model so far) new points and writes them all as
[[model_id, {point}], ...]; a model with max points already gets none.
"""

import json
import random

from random_search import new_points, parse_args


def main(argv=None):
    args = parse_args(argv)
    with open(args.infile) as f:
        data = json.load(f)
    known = {entry["model_id"]: [] for entry in data["opt_space"]}
    for (model_id, point), _loss in data["points"]:
        known[model_id].append(point)
    output = []
    for entry in data["opt_space"]:
        model_id = entry["model_id"]
        count = max(0, min(args.n, args.max - len(known[model_id])))
        rng = random.Random(args.seed * 1_000_003 + model_id * 1009 + len(known[model_id]))
        for point in new_points(entry["search_space"], known[model_id], count, rng):
            output.append([model_id, point])
    with open(args.outfile, "w") as f:
        json.dump(output, f)
    print(f"{len(output)} new points for {len(known)} models")


if __name__ == "__main__":
    main()
