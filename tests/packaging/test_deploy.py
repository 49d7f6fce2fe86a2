"""deploy/: the Kubernetes, KServe, Prometheus and Grafana files, and the Dockerfile.

Offline checks: the kustomize overlays are rendered with `kubectl kustomize` (skipped,
with the reason, where kubectl is absent) and every core object is validated against
the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail); the
KServe runtime's containers are validated as core Containers. Then a real server runs
with the manifests' own arguments: the probe paths answer 200 and every tritonx metric
the dashboard, the HPA and the adapter rules query is exported on /metrics.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from serverutil import run_server

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"  # oldest Kubernetes these manifests target
OVERLAYS = ("cpu", "gpu", "s3")
# Metrics that come from other exporters (NVIDIA's dcgm-exporter), not from tritonx.
EXTERNAL_METRIC_PREFIXES = ("DCGM_",)


def _render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not installed: the kustomize overlays were not rendered"
        )
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [obj for obj in yaml.safe_load_all(out.stdout) if obj]


def _validate(obj: dict[str, Any]) -> None:
    """Schema-validates one object: core kinds whole, CRD kinds by their pod parts."""
    kind = obj["kind"]
    if kind == "ClusterServingRuntime" or kind == "ServingRuntime":
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "runtime"},
            "spec": {"containers": obj["spec"]["containers"]},
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        return
    if kind in ("InferenceService", "ServiceMonitor"):
        return  # checked field by field in the tests below
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = _by_kind(objs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    objs = _render(DEPLOY / "kubernetes" / "overlays" / overlay)
    kinds = sorted(o["kind"] for o in objs)
    # The s3 overlay reads the repository from a bucket: no shared volume.
    volume = [] if overlay == "s3" else ["PersistentVolumeClaim"]
    assert kinds == sorted(
        [
            "Deployment",
            "HorizontalPodAutoscaler",
            *volume,
            "PodDisruptionBudget",
            "Service",
            "Service",
            "ServiceMonitor",
        ]
    )
    for obj in objs:
        _validate(obj)
    container = _container(objs)
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    # Grace: the preStop sleep, --exit-timeout-secs and tritonx's 3 s unload margin.
    (deployment,) = _by_kind(objs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    exit_timeout = next(
        int(a.split("=", 1)[1])
        for a in container["args"]
        if a.startswith("--exit-timeout-secs=")
    )
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + exit_timeout + 3
    service = next(
        s for s in _by_kind(objs, "Service") if s["metadata"]["name"] == "tritonx"
    )
    assert {p["port"]: p.get("appProtocol") for p in service["spec"]["ports"]} == {
        8000: "http",
        8001: "kubernetes.io/h2c",
        8002: "http",
    }
    (monitor,) = _by_kind(objs, "ServiceMonitor")
    labels = service["metadata"]["labels"]
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert labels.get(key) == value
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    if overlay == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"] for v in spec["volumes"]}
    if overlay == "s3":
        assert "--model-repository=s3://my-models/triton" in container["args"]
        assert container["envFrom"] == [
            {"secretRef": {"name": "tritonx-s3", "optional": True}}
        ]
        # Downloads land in /tmp; only that volume is left.
        assert mounts == {"tmp": "/tmp"} and volumes == {"tmp"}
    else:
        assert mounts == {"models": "/models", "tmp": "/tmp"}
        assert "--model-repository=/models" in container["args"]


def test_a_broken_manifest_fails_validation() -> None:
    objs = _render(DEPLOY / "kubernetes" / "overlays" / "cpu")
    (deployment,) = _by_kind(objs, "Deployment")
    broken = copy.deepcopy(deployment)
    probe = broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)


def test_kserve_objects() -> None:
    objs = _render(DEPLOY / "kserve")
    (runtime,) = _by_kind(objs, "ClusterServingRuntime")
    (isvc,) = _by_kind(objs, "InferenceService")
    _validate(runtime)
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert formats == {"triton", "onnx"}
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] in spec["protocolVersions"]


# --- the manifests' arguments on a real server ---------------------------------------


def _as_local(args: list[str], repo: Path) -> list[str]:
    """The container's flags with the repository here and every port chosen freely."""
    local = []
    for arg in args:
        flag, _, _value = arg.partition("=")
        if flag in ("--model-repository", "--model-store"):
            arg = f"{flag}={repo}"
        elif flag.endswith("-port"):
            continue  # run_server asks for port 0
        local.append(arg)
    return local


def _exported_metric_names(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def _queried_metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(nv_[a-z_]+|DCGM_[A-Z_]+)\b", expr))
    return names


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "tritonx-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [
        v["definition"] for v in dashboard["templating"]["list"] if "definition" in v
    ]
    assert len(exprs) >= 10
    return exprs


def _infer_simple_onnx(url: str) -> None:
    """The example repository's ONNX model answers: 1 + 1 = 2."""
    client = httpclient.InferenceServerClient(url)
    inputs = [httpclient.InferInput(n, [1, 4], "FP32") for n in ("INPUT0", "INPUT1")]
    for i in inputs:
        i.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    result = client.infer("simple_onnx", inputs)
    assert result.as_numpy("OUTPUT0").tolist() == [[2.0] * 4]


def test_deployment_args_serve_and_export_every_queried_metric() -> None:
    objs = _render(DEPLOY / "kubernetes" / "overlays" / "cpu")
    args = _as_local(_container(objs)["args"], ROOT / "model_repository")
    with run_server([], *args) as server:
        for path in ("/v2/health/ready", "/v2/health/live"):
            with urllib.request.urlopen(f"http://{server.http_url}{path}") as r:
                assert r.status == 200
        _infer_simple_onnx(server.http_url)
        exported = _exported_metric_names(server.metrics_url)

    queries = _dashboard_queries()
    (hpa,) = _by_kind(objs, "HorizontalPodAutoscaler")
    queries += [
        m["pods"]["metric"]["name"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods"
    ]
    adapter = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())
    for rule in adapter["rules"]["custom"]:
        queries += [rule["seriesQuery"], rule["metricsQuery"]]
    queried = set().union(*(_queried_metric_names(q) for q in queries))
    ours = {m for m in queried if not m.startswith(EXTERNAL_METRIC_PREFIXES)}
    assert len(ours) >= 10
    missing = sorted(ours - exported)
    # The HPA's names are the adapter's; the adapter renames one series.
    missing = [m for m in missing if m != "nv_inference_queue_us_per_request"]
    assert not missing, f"queried but not exported: {missing}"


def test_kserve_runtime_args_serve_v2() -> None:
    objs = _render(DEPLOY / "kserve")
    (runtime,) = _by_kind(objs, "ClusterServingRuntime")
    (container,) = runtime["spec"]["containers"]
    assert container["command"] == ["tritonx-server"]
    args = _as_local(container["args"], ROOT / "model_repository")
    with run_server([], *args) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_server_ready()
        assert client.is_model_ready("add_sub")


def test_dockerfile_builds_with_the_tested_scripts() -> None:
    """No container engine here: the image's steps are the scripts the tests run."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    runs = re.findall(r"^RUN (.+)$", text, re.MULTILINE)
    # Stage 1: the system packages and the wheel, exactly as test_wheel.py builds it.
    assert runs[0].startswith("./scripts/install-system-deps.sh")
    build = re.fullmatch(r"\./scripts/build-wheel\.sh (\S+)", runs[1])
    assert build is not None, runs[1]
    for script in ("install-system-deps.sh", "build-wheel.sh"):
        assert (ROOT / "scripts" / script).stat().st_mode & 0o111
    # Stage 2: that wheel, pip-installed; the console script pyproject declares.
    dist = build.group(1)
    assert f"COPY --from=build {dist}/ /tmp/dist/" in text
    assert runs[2].startswith(
        'pip install --no-cache-dir "$(echo /tmp/dist/tritonx-*.whl)[cloud]"'
    )
    assert "cloud = " in (ROOT / "pyproject.toml").read_text()
    assert 'ENTRYPOINT ["tritonx-server"]' in text
    assert (
        'tritonx-server = "tritonx.cli:main"' in (ROOT / "pyproject.toml").read_text()
    )
    assert "EXPOSE 8000 8001 8002" in text
    assert re.search(r"^USER 1000", text, re.MULTILINE)
    health = re.search(
        r"^HEALTHCHECK .*(http://127\.0\.0\.1:8000/v2/health/ready)", text, re.M
    )
    assert health is not None


def test_s3_overlay_args_serve_from_a_bucket() -> None:
    """The s3 overlay's own arguments, with its Secret's variables, serve the
    example repository from a bucket of that name; the S3 service is moto's on
    loopback, reached through AWS_ENDPOINT_URL_S3 (boto3's endpoint variable, as
    a MinIO deployment would set it)."""
    from objectstores import moto_s3

    container = _container(_render(DEPLOY / "kubernetes" / "overlays" / "s3"))
    location = next(
        a.split("=", 1)[1]
        for a in container["args"]
        if a.startswith("--model-repository=")
    )
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    with moto_s3() as s3:
        s3.client.create_bucket(Bucket=bucket)
        s3.bucket = bucket
        s3.upload_tree(prefix, ROOT / "model_repository")
        env = {**s3.env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{s3.port}"}
        with run_server([], *container["args"], env=env) as server:
            with urllib.request.urlopen(
                f"http://{server.http_url}/v2/health/ready"
            ) as r:
                assert r.status == 200
            _infer_simple_onnx(server.http_url)
