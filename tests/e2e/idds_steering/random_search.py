"""A random-search steering program in the iDDS ask-and-tell style (a test fixture).

    python3 random_search.py --in=%IN --out=%OUT --n=%NUM_POINTS --max=%MAX_POINTS
    python3 random_search.py %IN %OUT %NUM_POINTS %MAX_POINTS

Reads the input file ({"points": [[{point}, loss_or_null], ...], "opt_space": {...}}),
"tells" itself every point so far, "asks" min(n, max - points so far) new points and
writes them as a JSON list; writes [] once max points exist. The space may be in the
iDDS form (Choice, Scalar, Log) or the phpo form (method + dimension). Uses only the
standard library; the draw is seeded by the number of points so far (and --seed).
"""

import argparse
import json
import math
import random


def _bounds(entry):
    if "bounds" in entry:
        return entry["bounds"][0], entry["bounds"][1]
    params = entry.get("params", {})
    return params["lower"], params["upper"]


def _draw_idds(entry, rng):
    kind = entry["type"]
    if kind == "Choice":
        return rng.choice(entry["params"]["choices"])
    low, high = _bounds(entry)
    log = kind == "Log" or entry.get("log", False)
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)
    if entry.get("integer", False):
        return min(max(round(value), math.ceil(low)), math.floor(high))
    return min(max(value, low), high)


def _draw_phpo(entry, rng):
    method = entry["method"]
    dim = entry["dimension"]
    if method == "categorical":
        return rng.choice(dim["categories"])
    if method == "normal":
        return rng.gauss(dim["mu"], dim["sigma"])
    if method == "lognormal":
        return math.exp(rng.gauss(dim["mu"], dim["sigma"]))
    low, high = dim["low"], dim["high"]
    if method.startswith(("log", "qlog")):
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if method.startswith("q"):
        return low + round((value - low) / dim["q"]) * dim["q"]
    if method.endswith("int"):
        return min(max(round(value), low), high)
    return min(max(value, low), high)


def draw(space, rng):
    """One random point of ``space`` (iDDS or phpo form, entry by entry)."""
    return {
        name: _draw_idds(entry, rng) if "type" in entry else _draw_phpo(entry, rng)
        for name, entry in space.items()
    }


def new_points(space, known, count, rng):
    """Up to ``count`` random points, none equal to a known one."""
    seen = {json.dumps(p, sort_keys=True) for p in known}
    points = []
    for _ in range(count * 50):
        if len(points) == count:
            break
        point = draw(space, rng)
        key = json.dumps(point, sort_keys=True)
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="IN OUT NUM MAX, when not given as options")
    parser.add_argument("--in", dest="infile")
    parser.add_argument("--out", dest="outfile")
    parser.add_argument("--n", type=int)
    parser.add_argument("--max", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.files:
        if len(args.files) != 4:
            parser.error("give IN OUT NUM MAX, or --in --out --n --max")
        args.infile, args.outfile = args.files[0], args.files[1]
        args.n, args.max = int(args.files[2]), int(args.files[3])
    if None in (args.infile, args.outfile, args.n, args.max):
        parser.error("--in, --out, --n and --max are required")
    return args


def main(argv=None):
    args = parse_args(argv)
    with open(args.infile) as f:
        data = json.load(f)
    known = [point for point, _loss in data["points"]]
    count = max(0, min(args.n, args.max - len(known)))
    rng = random.Random(args.seed * 1_000_003 + len(known))
    points = new_points(data["opt_space"], known, count, rng)
    with open(args.outfile, "w") as f:
        json.dump(points, f)
    print(f"{len(known)} points so far, {len(points)} new")


if __name__ == "__main__":
    main()
