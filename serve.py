"""Serve the model the way `make run` and the container do: one worker per core, with one set of metrics.

    python serve.py                                # http://127.0.0.1:8000/upload
    python serve.py --host 0.0.0.0 --port 8080 --workers 4

Each worker is a whole copy of the service with one inference thread and one torch thread, so a request
never waits for another worker's. `uvicorn main:app` serves as well; under several uvicorn workers of
your own, point PROMETHEUS_MULTIPROC_DIR at an empty directory first, so that /metrics adds them up.
Kept apart from main.py so that the supervising process never imports torch: cold start stays one import.
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import uvicorn
from uvicorn.supervisors import multiprocess

from digits.service.protocol import WorkerProtocol

# uvicorn can't bound how long a client takes to send its headers: on the internet, put a proxy in front
# (deploy/nginx.conf; the Kubernetes pods have one beside the service), which waits for whole requests.
LIMIT_CONCURRENCY = 256
DRAIN_S = 20  # on SIGTERM, requests in flight have this long to finish; new ones go elsewhere
WORKER_READY_S = 60  # how long a worker may take to start; past it, the reload keeps the old worker


class WorkerProcess(multiprocess.Process):
    """uvicorn's worker process, with the far end of its health check's pipe closed in the supervisor once the
    worker has its own. uvicorn kept both ends, so a worker killed while the supervisor waited for its answer
    never closed the pipe: the supervisor waited out the whole WORKER_READY_S, neither replacing the worker nor
    heeding a signal (tests/system/test_workers.py failed so 1 run in 10 after the unit and API tests)."""

    def start(self) -> None:
        super().start()
        self.child_conn.close()


def default_workers() -> int:
    # The cores this process may run on (a container's cpuset, a taskset), not all the host's.
    return int(os.environ.get("WORKERS") or len(os.sched_getaffinity(0)))


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the digit recognizer with several workers.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="worker processes (default: $WORKERS, else one per core: %(default)s here)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="proxies whose X-Forwarded-For names the client (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    # prometheus-client chooses its multiprocess mode when a worker imports it, so the variable is set
    # before any worker starts. Files left by an earlier run would be counted again: start empty.
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics = Path(given or tempfile.mkdtemp(prefix="digits-metrics-"))
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    # Each worker's sandbox (digits/service/sandbox.py) gets its share of the cores, and two processes at least:
    # while four clients looped on the costliest file, a phone photo waited 1.8 s (p50) with one a worker, 0.63 s
    # with two, 0.21 s with three (2 cores, 2 workers; bench/hostile.py --only service). 40 MB each.
    cores = len(os.sched_getaffinity(0))
    os.environ.setdefault("DECODE_PROCESSES", str(max(2, cores // args.workers)))
    multiprocess.Process = WorkerProcess  # type: ignore[misc]  # the class uvicorn's supervisor starts workers with
    try:
        uvicorn.run(
            "main:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            access_log=False,
            # The client address /feedback counts corrections by: X-Forwarded-For is believed from these alone.
            forwarded_allow_ips=args.forwarded_allow_ips,
            # Connections a worker holds at once; past it, new requests get 503 at once instead of memory.
            limit_concurrency=LIMIT_CONCURRENCY,
            timeout_keep_alive=5,  # seconds an idle connection is kept
            timeout_graceful_shutdown=DRAIN_S,
            # On SIGHUP (new weights), each worker's replacement must be ready before the old one drains and
            # stops. Under load, a new worker shares the cores while it imports torch and loads the weights: on
            # 2 cores with 4 clients it took over uvicorn's 5 s, which aborted the reload.
            timeout_worker_healthcheck=WORKER_READY_S,
            http=WorkerProtocol,  # no connection reset as a worker retires, no answer cut as one dies (protocol.py)
        )
    finally:
        if not given:
            shutil.rmtree(metrics, ignore_errors=True)


if __name__ == "__main__":
    main()
