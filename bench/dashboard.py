"""The dashboard's picture in docs/: deploy/grafana/dashboard.json's panels, drawn from a real Prometheus that
scrapes the service (`serve.py`, 2 workers) while its traffic drifts and its weights are swapped.

    python bench/dashboard.py        # about 4 minutes; writes docs/dashboard.png

Grafana itself is on none of the registries this project installs from (PyPI, Debian, npm), so matplotlib draws
each panel from the panel's own queries, asked of Prometheus (Debian's `prometheus`, which `make debs` installs)
over its HTTP API, laid out as the dashboard lays them out. What happens meanwhile, in four clients' traffic:
MNIST digits; then uploads as from a new phone, a third of them things that are no digit; a SIGHUP with new
weights in the middle; corrections throughout.
"""

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own modules, one folder up

from common import free_port, serve
from digits.imaging.png import encode
from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS, save_weights, sha256_path
from digits.training import dataset, report

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
OUT = ROOT / "docs" / "dashboard.png"
PHASE_S = 75  # digits as MNIST has them, then the drifted uploads, each this long
STEP_S = 2  # the resolution of the queries, and the scrape and rule interval's ten times


def post(url: str, body: bytes, content_type: str = "image/png") -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def traffic(
    url: str, uploads: list[bytes], labels: list[int], numbers: np.ndarray, stop: threading.Event, seed: int
) -> None:
    """One client: uploads at random, now and then a number of three of these digits, and a correction of every
    twentieth answer."""
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        i = int(rng.integers(len(uploads)))
        answer = post(url + "/predict", uploads[i])
        if rng.random() < 0.05:
            correction = json.dumps({"prediction_id": answer["prediction_id"], "label": labels[i] % 10}).encode()
            with contextlib.suppress(HTTPError):  # a correction the service refuses, as any client's may be
                post(url + "/feedback", correction, "application/json")
        if rng.random() < 0.02:
            post(url + "/predict/number", encode(255 - np.hstack(list(numbers[rng.integers(len(numbers), size=3)]))))
        time.sleep(0.01)


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": STEP_S})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        return json.load(r)["data"]["result"]


def draw(prometheus: str, start: float, end: float, swapped: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = json.loads(DASHBOARD.read_text())["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // 8
    fig, axes = plt.subplots(rows, 2, figsize=(15, 3.4 * rows), squeeze=False)
    fig.suptitle(f"{json.loads(DASHBOARD.read_text())['title']}: deploy/grafana/dashboard.json", fontsize=13)
    for panel in panels:
        ax = axes[panel["gridPos"]["y"] // 8][panel["gridPos"]["x"] // 12]
        ax.set_title(panel["title"], fontsize=10, loc="left")
        heat = []
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", f"{4 * STEP_S}s")
            for series in query_range(prometheus, expr, start, end):
                t, v = np.array(series["values"], dtype=float).T
                label = target["legendFormat"]
                for key, value in series["metric"].items():
                    label = label.replace("{{" + key + "}}", value)
                if panel["type"] == "heatmap":
                    heat.append((float(series["metric"]["le"]), v))
                else:
                    ax.plot(t - start, v, label=label)
        if heat:  # the buckets' counts, each less the bucket under it
            heat.sort()
            counts = np.diff(np.vstack([np.zeros_like(heat[0][1])] + [v for _, v in heat]), axis=0)
            edges = [0.0] + [le for le, _ in heat]
            ax.imshow(counts, aspect="auto", origin="lower", cmap="viridis", extent=(0, end - start, 0, len(edges) - 1))
            ax.set_yticks(range(len(edges)), [f"{e:g}" for e in edges], fontsize=7)
        elif ax.lines:
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xlim(0, end - start)
        ax.axvline(PHASE_S, color="grey", linestyle=":", linewidth=1)
        ax.axvline(swapped - start, color="red", linestyle=":", linewidth=1)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("seconds (grey: the uploads change; red: SIGHUP with new weights)", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


def ready(api: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(api + "/-/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("Prometheus did not start")


def clients(
    url: str, uploads: list[bytes], labels: list[int], numbers: np.ndarray, stop: threading.Event
) -> list[threading.Thread]:
    started = [threading.Thread(target=traffic, args=(url, uploads, labels, numbers, stop, seed)) for seed in range(4)]
    for c in started:
        c.start()
    return started


def main() -> None:
    if shutil.which("prometheus") is None:
        raise SystemExit("needs Debian's prometheus: make debs")
    images, labels = dataset.load(train=False)
    numbers = images[:1000].numpy()
    digits = [encode(255 - d) for d in numbers]
    rng = np.random.default_rng(0)
    # A new phone: the digits in a large grey JPEG, and a third of it clothes.
    drifted = [report.render_as_uploaded(d, "jpeg", rng) for d in numbers[:400]]
    clothes = [encode(c) for c in report.clothes()[:200]]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "mnist_mlp.safetensors"
        shutil.copyfile(DEFAULT_WEIGHTS, weights)
        shutil.copyfile(sha256_path(DEFAULT_WEIGHTS), sha256_path(weights))
        env = {"WEIGHTS_PATH": str(weights), "DATABASE_URL": f"sqlite:///{tmp}/fb.db", "FEEDBACK_PER_HOUR": "100000"}
        with serve(env=env, workers=2) as (url, server):
            port = free_port()
            config = Path(tmp) / "prometheus.yml"
            shutil.copyfile(ROOT / "deploy" / "prometheus" / "alerts.yaml", Path(tmp) / "alerts.yaml")
            config.write_text(
                f"global: {{scrape_interval: {STEP_S // 2}s, evaluation_interval: {STEP_S // 2}s}}\n"
                "rule_files: [alerts.yaml]\n"
                f"scrape_configs: [{{job_name: digits, static_configs: [{{targets: ['{url.split('//')[1]}']}}]}}]\n"
            )
            prometheus = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            api = f"http://127.0.0.1:{port}"
            try:
                ready(api, prometheus)
                start = time.time()
                stop = threading.Event()
                running = clients(url, digits, labels.tolist(), numbers, stop)
                time.sleep(PHASE_S)
                stop.set()
                for c in running:
                    c.join()
                stop.clear()
                running = clients(url, drifted + clothes, labels[:400].tolist() + [0] * len(clothes), numbers, stop)
                time.sleep(PHASE_S / 2)
                shipped = Predictor(weights)
                staged = Path(tmp) / "new.safetensors"
                save_weights(shipped.state, staged, shipped.metadata | {"retrained": "for the picture"})
                staged.replace(weights)
                sha256_path(staged).replace(sha256_path(weights))
                swapped = time.time()
                server.send_signal(signal.SIGHUP)
                time.sleep(PHASE_S / 2)
                stop.set()
                for c in running:
                    c.join()
                time.sleep(3 * STEP_S)  # the last scrapes
                draw(api, start, time.time(), swapped)
            finally:
                prometheus.terminate()
                prometheus.wait()


if __name__ == "__main__":
    main()
