"""A steering program that misbehaves on purpose, one way per MODE (a test fixture).

    python3 misbehave.py MODE --in=%IN --out=%OUT [--n=%NUM_POINTS] [--max=%MAX_POINTS]
                         [--counter FILE] [--fail-times K] [--pids FILE]

MODE is one of: exit1 (a message on stderr, exit code 1), invalid_json, not_a_list,
wrong_shape (a list whose item is not a point), out_of_space (a valid point and one
outside the space), empty ([]), no_output (exit 0 without writing), sleep (never ends;
starts a background child too and writes both pids to --pids), repeat_open (every point
not yet evaluated again, plus one new one), too_many (ten times --n new points,
ignoring --max), flaky (exit 3 for the first --fail-times runs, then a good answer).
Every run appends a line to --counter, so a test can count the attempts.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time

from random_search import draw, new_points

MODES = (
    "exit1",
    "invalid_json",
    "not_a_list",
    "wrong_shape",
    "out_of_space",
    "empty",
    "no_output",
    "sleep",
    "repeat_open",
    "too_many",
    "flaky",
)


def outside(space, point):
    """``point`` with its first bounded dimension (else its first one) out of the space."""
    for name, entry in space.items():
        low_high = entry.get("bounds") or [
            entry.get("dimension", {}).get(key) for key in ("low", "high")
        ]
        if entry.get("type") != "Choice" and None not in low_high:
            low, high = low_high
            return {**point, name: high + (high - low) + 1}
    name = next(iter(space))
    return {**point, name: "not-a-choice"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--in", dest="infile", required=True)
    parser.add_argument("--out", dest="outfile", required=True)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--max", type=int, default=10)
    parser.add_argument("--counter")
    parser.add_argument("--fail-times", type=int, default=1)
    parser.add_argument("--pids")
    args = parser.parse_args()

    runs = 1
    if args.counter:
        with open(args.counter, "a") as f:
            f.write("run\n")
        with open(args.counter) as f:
            runs = len(f.readlines())
    with open(args.infile) as f:
        data = json.load(f)
    space = data["opt_space"]
    known = [point for point, _loss in data["points"]]
    rng = random.Random(len(known))
    print(f"misbehave {args.mode}: run {runs}, {len(known)} points so far", flush=True)

    output = None
    if args.mode == "exit1":
        print("Simulated crash: the optimiser could not converge", file=sys.stderr)
        sys.exit(1)
    elif args.mode == "invalid_json":
        with open(args.outfile, "w") as f:
            f.write('[{"x": 0.5,')
    elif args.mode == "not_a_list":
        output = {"points": [draw(space, rng)]}
    elif args.mode == "wrong_shape":
        output = ["a point"]
    elif args.mode == "out_of_space":
        output = [draw(space, rng), outside(space, draw(space, rng))]
    elif args.mode == "empty":
        output = []
    elif args.mode == "no_output":
        pass
    elif args.mode == "sleep":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        if args.pids:
            with open(args.pids, "w") as f:
                f.write(f"{os.getpid()} {child.pid}\n")
        time.sleep(300)
    elif args.mode == "repeat_open":
        open_points = [point for point, loss in data["points"] if loss is None]
        output = open_points + new_points(space, known, 1, rng)
    elif args.mode == "too_many":
        output = new_points(space, known, 10 * args.n, rng)
    elif args.mode == "flaky":
        if runs <= args.fail_times:
            print(f"flaky failure {runs} of {args.fail_times}", file=sys.stderr)
            sys.exit(3)
        count = max(0, min(args.n, args.max - len(known)))
        output = new_points(space, known, count, rng)
    if output is not None:
        with open(args.outfile, "w") as f:
            json.dump(output, f)


if __name__ == "__main__":
    main()
