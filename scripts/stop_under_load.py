"""Stop one of two replicas under load the way Kubernetes does, and count what clients lose.

    python scripts/stop_under_load.py --prestop 0 --prestop 5                   # local processes
    python scripts/stop_under_load.py --image localhost/ninserve:cpu-smoke --prestop 0 --prestop 5
    python scripts/stop_under_load.py --base-port 18600 ...                      # fixed ports

Kubernetes deletes a pod in two parallel tracks: the endpoint is removed from the Service, which
reaches kube-proxy, ingress controllers and gateways after a propagation delay (about a second,
more on a busy cluster), while the kubelet runs the container's preStop hook and only then sends
SIGTERM. ninserve (uvicorn) closes its listener at SIGTERM and finishes what is in flight, so a
client that still picks the stopping pod in between gets "connection refused".

This plays both tracks against real servers: two replicas (`ninserve serve` processes, or
containers of the image under podman), clients that open a new connection per request and pick a
replica round robin from the current endpoint list, and at the stop: the endpoint list loses
replica A after --propagation seconds, while A gets SIGTERM after --prestop seconds (the
preStop sleep). Each --prestop value is one run; one JSON line per run, prefixed `STOP `, counts
answered requests, refused and reset connections, and answers other than 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: ninserve\r\nConnection: close\r\n\r\n"


def free_ports(n: int) -> list[int]:
    """n distinct free ports: all held open until all are chosen, so none is handed out twice."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Replica:
    """One server on 127.0.0.1:port: a local `ninserve serve`, or the image under podman."""

    def __init__(self, port: int, image: str | None, env: dict[str, str]) -> None:
        self.port, self.image, self.name = port, image, f"ninserve-stop-{os.getpid()}-{port}"
        settings = {"NINSERVE_INTRA_OP_THREADS": "1", "NINSERVE_LOG_LEVEL": "warning"} | env
        if image is None:
            command = [
                sys.executable,
                "-c",
                "import sys; from app.cli.main import main; sys.exit(main())",
                "serve",
            ]
            child_env = os.environ | settings | {"NINSERVE_PORT": str(port), "NINSERVE_DEVICE": "cpu"}
            self.proc = subprocess.Popen(command, cwd=ROOT, env=child_env, stderr=subprocess.DEVNULL)
        else:
            envs = [a for k, v in settings.items() for a in ("--env", f"{k}={v}")]
            limits = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]  # runc needs them
            locked = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
            command = ["podman", "run", "--detach", "--name", self.name, "--runtime", "runc"]
            command += ["--no-healthcheck", *limits, *locked, "--publish", f"127.0.0.1:{port}:8000"]
            subprocess.run([*command, *envs, image], check=True, stdout=subprocess.DEVNULL)

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(REQUEST.replace(b"/healthz", b"/readyz"))
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def exited(self) -> bool:
        """Whether a local server has already ended (a taken port, a model that cannot load)."""
        return self.image is None and self.proc.poll() is not None

    def sigterm(self) -> None:
        if self.image is None:
            self.proc.send_signal(signal.SIGTERM)
        else:
            subprocess.run(
                ["podman", "kill", "--signal", "TERM", self.name], check=True, stdout=subprocess.DEVNULL
            )

    def wait(self, timeout: float = 60) -> int:
        if self.image is None:
            return self.proc.wait(timeout)
        out = subprocess.run(["podman", "wait", self.name], capture_output=True, text=True, timeout=timeout)
        return int(out.stdout.strip() or -1)

    def remove(self) -> None:
        if self.image is None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        else:
            subprocess.run(
                ["podman", "rm", "--force", "--time", "2", self.name], capture_output=True, check=False
            )


@dataclass
class Tally:
    ok: int = 0
    refused: int = 0
    reset: int = 0
    other_status: dict[str, int] = field(default_factory=dict)
    timeouts: int = 0

    def lost(self) -> int:
        return self.refused + self.reset + self.timeouts + sum(self.other_status.values())


async def one_request(port: int, tally: Tally) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except ConnectionRefusedError:
        tally.refused += 1
        return
    except TimeoutError:
        tally.timeouts += 1
        return
    try:
        writer.write(REQUEST)
        await writer.drain()
        status = (await asyncio.wait_for(reader.readline(), 5)).split(b" ")[1:2]
        await asyncio.wait_for(reader.read(), 5)
        if status == [b"200"]:
            tally.ok += 1
        else:
            key = status[0].decode() if status else "none"
            tally.other_status[key] = tally.other_status.get(key, 0) + 1
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
        tally.reset += 1
    except TimeoutError:
        tally.timeouts += 1
    finally:
        writer.close()


async def scenario(replicas: list[Replica], prestop: float, propagation: float, clients: int) -> dict:
    """Load both replicas, then stop replicas[0] Kubernetes' way; counts until it has exited."""
    endpoints = [r.port for r in replicas]
    tally, stop = Tally(), asyncio.Event()
    sigterm_at: list[float] = []

    async def client(i: int) -> None:
        n = i
        while not stop.is_set():
            await one_request(endpoints[n % len(endpoints)], tally)
            n += 1

    async def delete_pod() -> int:
        victim = replicas[0]

        async def remove_endpoint() -> None:
            await asyncio.sleep(propagation)
            endpoints.remove(victim.port)

        async def kubelet() -> int:
            await asyncio.sleep(prestop)  # the preStop hook
            sigterm_at.append(time.monotonic())
            victim.sigterm()
            return await asyncio.to_thread(victim.wait)

        _, code = await asyncio.gather(remove_endpoint(), kubelet())
        return code

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.sleep(1.0)  # load on both replicas first
    started = time.monotonic()
    exit_code = await delete_pod()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    return {
        "prestop_s": prestop,
        "propagation_s": propagation,
        "clients": clients,
        "answered_200": tally.ok,
        "refused": tally.refused,
        "reset": tally.reset,
        "timeouts": tally.timeouts,
        "other_status": tally.other_status,
        "lost": tally.lost(),
        "sigterm_after_s": round(sigterm_at[0] - started, 2),
        "exit_code": exit_code,
    }


def run(
    image: str | None,
    prestops: list[float],
    propagation: float,
    clients: int,
    base_port: int | None,
    env: dict[str, str],
) -> list[dict]:
    results = []
    for i, prestop in enumerate(prestops):
        ports = [base_port + 2 * i, base_port + 2 * i + 1] if base_port else free_ports(2)
        replicas: list[Replica] = []
        try:  # started one by one inside the try: a second that fails to start stops the first
            for port in ports:
                replicas.append(Replica(port, image, env))
            deadline = time.monotonic() + 120
            while not all(r.ready() for r in replicas):
                if time.monotonic() > deadline:
                    raise SystemExit("stop_under_load: the replicas did not become ready in 120 s")
                if any(r.exited() for r in replicas):
                    raise SystemExit("stop_under_load: a replica exited before it became ready")
                time.sleep(0.2)
            results.append(asyncio.run(scenario(replicas, prestop, propagation, clients)))
        finally:
            for replica in replicas:
                replica.remove()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="run the replicas as containers of this image (podman)")
    parser.add_argument(
        "--prestop", type=float, action="append", help="preStop sleep, s (repeatable; default 0 and 5)"
    )
    parser.add_argument(
        "--propagation", type=float, default=2.0, help="endpoint removal delay, s (default 2)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--base-port", type=int, help="use ports from here on (default: free ports)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a NINSERVE_* setting"
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    for result in run(
        args.image, args.prestop or [0.0, 5.0], args.propagation, args.clients, args.base_port, env
    ):
        print("STOP " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
