"""A steering program that attacks its host, one way per MODE (a test fixture).

    python3 hostile.py MODE [ARG ...] --in=%IN --out=%OUT [--n=%NUM_POINTS] [--max=%MAX_POINTS]

Modes that probe the sandbox report on stdout what they tried and answer with good
points; ``connect`` and ``secrets`` exit 3 instead when an attempt got through
(``ESCAPED: ...``):

* ``write PATH...``: create each PATH (whether that reached the host, with its private
  ``/tmp``, only the host can tell);
* ``connect PORT``: open a TCP connection to 127.0.0.1:PORT;
* ``secrets NAME=VALUE...``: look for each variable in its own environment and VALUE in
  the environment of every process it can see (``/proc/*/environ``).

Modes that exhaust a resource never answer:

* ``forkbomb``: fork children that sleep until a fork fails; prints how many it got
  (and with ``--stay`` keeps them until it is killed);
* ``memory BYTES``: allocate BYTES at once;
* ``spin``: burn CPU forever;
* ``linger MARKER``: start a detached ``sleep`` whose command line holds MARKER, then
  either wait forever (``--stay``) or exit without output.
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time

from random_search import new_points

MODES = ("write", "connect", "secrets", "forkbomb", "memory", "spin", "linger")


def attempt_writes(paths):
    for path in paths:
        try:
            with open(path, "w") as f:
                f.write("written from inside the sandbox\n")
        except OSError as exc:
            print(f"blocked: {path}: {exc.strerror}")
        else:
            print(f"wrote {path}")


def attempt_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
            return [f"connected to 127.0.0.1:{port}"]
    except OSError as exc:
        print(f"blocked: 127.0.0.1:{port}: {exc}")
        return []


def attempt_secrets(pairs):
    escaped = []
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name in os.environ:
            escaped.append(f"{name} is in the environment")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if value.encode() in f.read():
                        escaped.append(f"{name}'s value is in /proc/{entry}/environ")
            except OSError:
                continue
    print(f"checked {len(pairs)} secrets")
    return escaped


def forkbomb(stay):
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError as exc:
            print(f"fork failed after {children} children: {exc}", flush=True)
            if stay:
                time.sleep(3600)
            sys.exit(4)
        if pid == 0:
            time.sleep(3600)
            os._exit(0)
        children += 1
        if children >= 100_000:
            print(f"forked {children} children", flush=True)
            sys.exit(5)


def linger(marker, stay):
    subprocess.Popen(
        ["/bin/sh", "-c", f"exec sleep 3600 {marker}"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"left a child behind: {marker}", flush=True)
    if stay:
        time.sleep(3600)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("args", nargs="*")
    parser.add_argument("--in", dest="infile", required=True)
    parser.add_argument("--out", dest="outfile", required=True)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--max", type=int, default=10)
    parser.add_argument("--stay", action="store_true")
    args = parser.parse_args()

    escaped = []
    if args.mode == "write":
        attempt_writes(args.args)
    elif args.mode == "connect":
        escaped = attempt_connect(args.args[0])
    elif args.mode == "secrets":
        escaped = attempt_secrets(args.args)
    elif args.mode == "forkbomb":
        forkbomb(args.stay)
    elif args.mode == "memory":
        block = bytearray(int(args.args[0]))
        print(f"allocated {len(block)} bytes", flush=True)
        sys.exit(6)
    elif args.mode == "spin":
        while True:
            pass
    elif args.mode == "linger":
        linger(args.args[0], args.stay)
        sys.exit(7)
    if escaped:
        for line in escaped:
            print(f"ESCAPED: {line}", flush=True)
        sys.exit(3)
    with open(args.infile) as f:
        data = json.load(f)
    known = [point for point, _loss in data["points"]]
    count = max(0, min(args.n, args.max - len(known)))
    points = new_points(data["opt_space"], known, count, random.Random(len(known)))
    with open(args.outfile, "w") as f:
        json.dump(points, f)


if __name__ == "__main__":
    main()
