"""The e2e evaluation payload: a known loss, one failure per negative-x point, and a
check that the network really is out of reach."""

import json
import os
import socket
import sys

MARKERS = sys.argv[1]
API_PORT = int(sys.argv[2])


def offline() -> bool:
    try:
        socket.create_connection(("127.0.0.1", API_PORT), timeout=2).close()
    except OSError:
        return True
    return False


with open("input.json") as f:
    params = json.load(f)
marker = os.path.join(MARKERS, "failed-" + repr(params["x"]))
if params["x"] < 0 and not os.path.exists(marker):
    with open(marker, "w"):
        pass
    print("failing on purpose, once", flush=True)
    sys.exit(1)
loss = (params["x"] - 0.5) ** 2 + params["n"]
with open("metrics.json", "w") as f:
    json.dump({"loss": loss}, f)
os.system("tar czf metrics.tgz metrics.json")
with open("output.json", "w") as f:
    json.dump({"status": 0, "loss": loss, "message": "offline" if offline() else "ONLINE"}, f)
