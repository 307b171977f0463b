"""Run Podman's container health checks where no systemd does.

Podman 4 schedules each container's health check with a systemd timer; with no systemd
(a container or VM whose init is something else) the checks never run, every container
stays "starting", and compose's ``depends_on: condition: service_healthy`` waits for
ever. Docker's daemon runs them itself. This loop does what the timers would do: it asks
the Podman API for the running containers that have a health check and runs each one
(``GET /libpod/containers/<id>/healthcheck`` runs it and records the result) once its
interval has passed, so Podman updates their health as Docker would.

Started by ``scripts/podman-engine.sh up`` next to the API service; it ends when the
service's socket stops answering, or on SIGTERM. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import time
import urllib.parse

API = "/v4.0.0/libpod"
DEFAULT_INTERVAL = 30.0  # Docker's, for a check that sets none
POLL = 0.5  # how often the list of containers is read


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def get(socket_path: str, path: str, timeout: float = 10.0):
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return response.status, json.loads(body) if body else None


def run(socket_path: str) -> int:
    due: dict[str, float] = {}  # container id -> when its next check is due (monotonic)
    query = urllib.parse.quote(json.dumps({"health": ["starting", "healthy", "unhealthy"]}))
    while True:
        try:
            _, containers = get(socket_path, f"{API}/containers/json?filters={query}")
        except (ConnectionError, FileNotFoundError):
            return 0  # the API service is gone: so is our job
        now = time.monotonic()
        for container in containers or []:
            cid = container["Id"]
            if now < due.get(cid, 0.0):
                continue
            try:
                _, info = get(socket_path, f"{API}/containers/{cid}/json")
                check = (info or {}).get("Config", {}).get("Healthcheck") or {}
                interval = (check.get("Interval") or 0) / 1e9 or DEFAULT_INTERVAL
                timeout = (check.get("Timeout") or 0) / 1e9 or 30.0
                due[cid] = now + interval
                get(socket_path, f"{API}/containers/{cid}/healthcheck", timeout=timeout + 5)
            except (OSError, http.client.HTTPException, ValueError):
                continue  # the container went away meanwhile, or a check hung: try again later
        live = {c["Id"] for c in containers or []}
        for cid in [c for c in due if c not in live]:
            del due[cid]
        time.sleep(POLL)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else "/run/podman/podman.sock"))
