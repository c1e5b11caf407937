"""The deployment files, checked without a container engine: the image's inputs, the compose file and the manifests
(tests/system/test_container.py builds and runs them with podman)."""

import ast
import re
import subprocess
import sys
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from serve import DRAIN_S
from tests.helpers import ROOT

KUBERNETES = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
SERVED = "serve.py"  # the container's command, from which every served module is reached


def imported(module: Path) -> set[str]:
    """Every name a module imports, dotted, with each name taken from a package as a possible submodule."""
    tree = ast.parse(module.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and not n.level:
            names |= {n.module} | {f"{n.module}.{a.name}" for a in n.names}
    return names


def source(name: str) -> Path | None:
    """The checkout's file for a dotted module name, if it is the project's own."""
    path = ROOT / name.replace(".", "/")
    found = [f for f in (path.with_suffix(".py"), path / "__init__.py") if f.is_file()]
    return found[0] if found else None


def served_modules() -> set[Path]:
    """The project's own modules that serving imports: serve.py, the app it names, and what they import."""
    seen: set[Path] = set()
    todo = [ROOT / SERVED, ROOT / "main.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += [f for name in imported(path) if (f := source(name))]
    return seen


def test_the_image_copies_every_module_the_service_imports():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [src for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE) for src in line.split()[:-1]]
    files = {f for src in copied for f in ROOT.glob(src) if f.is_file()}
    folders = [ROOT / src for src in copied if src.endswith("/")]
    assert all(f in files or any(f.is_relative_to(d) for d in folders) for f in served_modules())
    assert any(f.is_relative_to(ROOT / "digits") for f in served_modules())  # the walk reaches into the package
    assert all(list(ROOT.glob(src)) for src in copied)
    assert re.search(r'^CMD \["python", "serve.py"', dockerfile, re.MULTILINE)
    assert re.search(r"^USER digits$", dockerfile, re.MULTILINE)  # not root
    assert "/healthz" in dockerfile.split("HEALTHCHECK", 1)[1]


def requirement_closure(path: Path) -> set[str]:
    """The distributions a requirements file installs: its own and everything they depend on."""
    names = [
        Requirement(line.split("#")[0]).name for line in path.read_text().splitlines() if line.split("#")[0].strip()
    ]
    found: set[str] = set()
    while names:
        name = canonicalize_name(names.pop())
        if name not in found:
            found.add(name)
            for dep in distribution(name).requires or []:
                req = Requirement(dep)
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    names.append(req.name)
    return found


def test_the_serving_requirements_install_every_package_the_service_imports():
    installed = requirement_closure(ROOT / "requirements-serve.txt")
    owners = packages_distributions()
    third_party = {
        top
        for f in served_modules()
        for name in imported(f)
        if (top := name.split(".")[0]) in owners and not source(top)
    }
    missing = {m for m in third_party if not {canonicalize_name(d) for d in owners[m]} & installed}
    assert third_party
    assert not missing
    everything = (ROOT / "requirements.txt").read_text()
    assert "-r requirements-serve.txt" in everything  # one install source for a checkout


def test_compose_runs_what_the_service_reads():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    app, nginx, db = (compose["services"][s] for s in ("app", "nginx", "db"))
    assert (ROOT / "deploy" / app["build"] / "Dockerfile").exists()
    assert {"DATABASE_URL", "PREDICTION_SECRET", "WORKERS"} <= set(app["environment"])
    assert app["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert app["deploy"]["replicas"] >= 2
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    [mount] = nginx["volumes"]
    source, target, _ = mount.split(":")
    assert (ROOT / "deploy" / source).is_file()
    assert target.startswith("/etc/nginx/conf.d/")
    assert "server app:8000" in (ROOT / "deploy" / source).read_text()  # the compose service's name and port
    assert db["image"].startswith("postgres:15")


def validate(*files: Path) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run([str(tool), "--strict", *map(str, files)], capture_output=True, text=True)


def test_the_kubernetes_manifests_pass_the_api_schemas():
    kinds = {yaml.safe_load(f.read_text())["kind"] for f in KUBERNETES}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "Secret", "ConfigMap"}
    result = validate(*KUBERNETES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_mistake(tmp_path):
    broken = tmp_path / "deployment.yaml"
    broken.write_text(
        (ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text().replace("readinessProbe:", "readynessProbe:")
    )
    assert validate(broken).returncode != 0


def pod() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())["spec"]["template"]["spec"]


def test_the_pods_are_probed_and_configured_from_the_secret():
    spec = pod()
    container, _ = spec["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    [source] = container["envFrom"]
    secret = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "secret.example.yaml").read_text())
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {"PREDICTION_SECRET", "DATABASE_URL"}
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_a_rolling_update_never_drops_a_request():
    """New weights are a new image: no pod goes before its replacement is ready, and each drains within its
    grace period after it has left the Service's endpoints."""
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert (rolling["maxUnavailable"], rolling["maxSurge"]) == (0, 1)
    spec = pod()
    for container in spec["containers"]:
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        assert int(command[1]) + DRAIN_S < spec["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("manifest", KUBERNETES, ids=lambda p: p.name)
def test_every_manifest_is_one_named_resource(manifest):
    docs = list(yaml.safe_load_all(manifest.read_text()))
    assert len(docs) == 1
    assert docs[0]["metadata"]["name"] == "digits"


def sidecar_config() -> str:
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "nginx-configmap.yaml").read_text())
    return configmap["data"]["nginx.conf"]


def test_the_service_is_reached_through_nginx_alone():
    """uvicorn can't bound how long a client takes over its headers: the Service sends traffic to nginx."""
    spec = pod()
    app, nginx = spec["containers"]
    service = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "service.yaml").read_text())
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in nginx["ports"]}
    assert port["targetPort"] not in {p["name"] for p in app["ports"]}
    assert "127.0.0.1" in {e.get("value") for e in app["env"] if e["name"] == "FORWARDED_ALLOW_IPS"}
    assert nginx["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"] for m in nginx["volumeMounts"]}
    assert {v["name"] for v in spec["volumes"] if "configMap" in v} <= mounts


def test_the_sidecar_runs_deploy_nginx_conf_with_only_the_pods_differences():
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    expected = site[site.index("limit_conn_zone") :]
    differences = {
        "server app:8000 ": "server 127.0.0.1:8000 ",  # the service beside it, not compose's replicas
        "listen 80;": "listen 8080;",  # a user can't bind 80
    }
    for shipped, pod_has in differences.items():
        expected = expected.replace(shipped, pod_has)
    config = sidecar_config()
    # Around it, what a main context needs on a read-only root: its files in /tmp/nginx.
    assert config.endswith(expected + "}\n")
    head = config[: -len(expected + "}\n")]
    assert all(line.startswith(("worker_processes", "pid /tmp/nginx/", "error_log", "events", "http {",
                                "access_log")) or "_temp_path /tmp/nginx/" in line
               for line in head.splitlines())  # fmt: skip


@pytest.mark.parametrize("which", ["deploy/nginx.conf", "the sidecar's"])
def test_nginx_accepts_the_configuration(tmp_path, which):
    nginx = Path("/usr/sbin/nginx")
    if not nginx.exists():
        pytest.skip("nginx is not installed: `make test` installs Debian's nginx")
    if which == "the sidecar's":
        config = sidecar_config().replace("/tmp/nginx", str(tmp_path)).replace("127.0.0.1:8000", "127.0.0.1:9")
    else:
        site = (ROOT / "deploy" / "nginx.conf").read_text().replace("app:8000", "127.0.0.1:9")
        config = f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n{site}\n}}\n"
    (tmp_path / "nginx.conf").write_text(config)
    r = subprocess.run([str(nginx), "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
