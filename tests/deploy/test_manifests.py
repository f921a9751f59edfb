"""deploy/kubernetes: every kustomization renders, and what it renders is valid, offline.

Each of the base and the overlays is rendered once with ``kubectl kustomize`` (the kubectl on
PATH; CI installs Debian's ``kubernetes-client``, kustomize v2.0.3, and the manifests are
written to render the same with kustomize v5). Then:

- built-in kinds are validated against the strict Kubernetes JSON schemas bundled in
  ``kubernetes_validate``, and the Dask operator's kinds against its CRDs from the installed
  ``dask_kubernetes`` wheel (:mod:`tests.deploy.k8s_schemas`); the Prometheus Operator's
  PodMonitor has no bundled schema, so its few required fields are checked by hand;
- schema violations of the kinds users get wrong are shown to fail (wrong types, missing
  required fields, an unquoted GPU quantity);
- the properties users rely on hold (the CronJob never overlaps, the runner command, the GPU
  workers' resources, every pod mounts the store, the job specs in the ConfigMaps validate with
  the pipeline's own loader, the nightly cluster the run would create is a valid DaskCluster).

With several different kubectl executables on PATH (say Debian's kubectl 1.20 first, then a
newer one), the renders of all of them must parse to the same objects.
"""

from __future__ import annotations

import copy
import functools
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core.jobs import Job, parse_job

from . import k8s_schemas

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
#: Every kustomization to render: the base and the overlays.
TARGETS = ("base", "overlays/cpu", "overlays/gpu", "overlays/object-store")
#: The Prometheus scrape targets, a kustomization of their own (they need the Prometheus
#: Operator's CRDs, which a cluster may not have).
MONITORING = "monitoring"
#: The overlays whose store is on the PVC pipeline-data.
PVC_STORE = ("base", "overlays/cpu", "overlays/gpu")
OVERLAYS = tuple(t for t in TARGETS if t.startswith("overlays/"))

DASK = "kubernetes.dask.org/v1"
CLAIM = "pipeline-data"
SECRET = "pipeline-object-store"
LABELS = {"app.kubernetes.io/name": "pipeline", "app.kubernetes.io/part-of": "pipeline"}
#: The image names the base uses, which the overlays' ``images:`` replace.
PLACEHOLDER_IMAGES = {"pipeline", "pipeline-gpu"}
#: The kustomization fields that kustomize v2.0.3 and v5 both read the same way.
PORTABLE_FIELDS = {
    "namespace",
    "commonLabels",
    "resources",
    "bases",
    "images",
    "patchesStrategicMerge",
    "patchesJson6902",
    "configMapGenerator",
    "generatorOptions",
}
RENDER_TIMEOUT_S = 60


# -- rendering --------------------------------------------------------------------------------


def _kubectls() -> list[str]:
    """Every distinct kubectl on PATH, the one ``shutil.which`` finds first."""
    found: list[str] = []
    seen: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        exe = shutil.which("kubectl", path=folder) if folder else None
        if exe and os.path.realpath(exe) not in seen:
            seen.add(os.path.realpath(exe))
            found.append(exe)
    return found


def _kubectl() -> str:
    found = _kubectls()
    if not found:
        pytest.skip(
            "kubectl is not on PATH: install Debian's kubernetes-client "
            "(apt-get install kubernetes-client) to render deploy/kubernetes"
        )
    return found[0]


@functools.cache
def _render_with(kubectl: str, target: str) -> tuple[dict[str, Any], ...]:
    try:
        done = subprocess.run(
            [kubectl, "kustomize", str(ROOT / target)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kubectl} kustomize {target} took over {RENDER_TIMEOUT_S} s")
    if done.returncode != 0:
        pytest.fail(f"{kubectl} kustomize {target} failed ({done.returncode}):\n{done.stderr}")
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d is not None)


def render(target: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` makes of ``target`` (a fresh copy to modify)."""
    return copy.deepcopy(list(_render_with(_kubectl(), target)))


def _key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of ``kind`` (and ``name``) among ``objs``."""
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod the objects make (the DaskJob's runner, scheduler and
    workers, the CronJob's runner, worker groups)."""
    for o in objs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "DaskJob":
            yield f"{name} runner", o["spec"]["job"]["spec"]
            cluster = o["spec"]["cluster"]["spec"]
            yield f"{name} scheduler", cluster["scheduler"]["spec"]
            yield f"{name} workers", cluster["worker"]["spec"]
        elif o["kind"] == "DaskWorkerGroup":
            yield f"{name} workers", o["spec"]["worker"]["spec"]
        elif o["kind"] == "CronJob":
            yield f"{name} runner", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def job_specs(objs: list[dict[str, Any]], target: str) -> dict[str, Job]:
    """The job specs of the ConfigMaps, validated by the pipeline's own loader (what
    ``pipeline validate`` runs), by ConfigMap name."""
    out = {}
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        ((key, text),) = cm["data"].items()
        out[cm["metadata"]["name"]] = parse_job(text, f"{target}: {cm['metadata']['name']}/{key}")
    return out


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def has_pair(args: list[str], flag: str, value: str) -> bool:
    """Whether ``args`` has ``flag value`` (two arguments) or ``flag=value``."""
    return (flag, value) in itertools.pairwise(args) or f"{flag}={value}" in args


# -- the kustomizations themselves -------------------------------------------------------------


def _kustomizations() -> list[Path]:
    return sorted(ROOT.rglob("kustomization.yaml"))


def test_every_kustomization_is_rendered() -> None:
    found = {str(p.parent.relative_to(ROOT)) for p in _kustomizations()}
    assert found == {*TARGETS, MONITORING}


@pytest.mark.parametrize("path", _kustomizations(), ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_kustomization_uses_portable_fields(path: Path) -> None:
    # kustomize v2.0.3 (Debian's kubectl 1.20) knows neither `labels`, `patches` nor
    # `components`, and reads a directory only under `bases`.
    k = yaml.safe_load(path.read_text())
    assert set(k) <= PORTABLE_FIELDS, f"not read by kustomize v2.0.3: {set(k) - PORTABLE_FIELDS}"
    for entry in k.get("resources", []):
        assert (path.parent / entry).is_file(), f"resources: {entry} (a directory goes in bases:)"
    for entry in k.get("bases", []):
        assert (path.parent / entry / "kustomization.yaml").is_file()
    # Generated ConfigMaps keep their names: a hash suffix would not reach the DaskJob's
    # reference (a custom resource), nor the CronJob's with kustomize v2.
    if "configMapGenerator" in k:
        assert k["generatorOptions"]["disableNameSuffixHash"] is True


@pytest.mark.parametrize("target", TARGETS)
def test_renders(target: str) -> None:
    objs = render(target)
    keys = [_key(o) for o in objs]
    assert len(set(keys)) == len(keys), "an object appears twice"
    kinds = {o["kind"] for o in objs}
    assert {
        "DaskJob",
        "CronJob",
        "ConfigMap",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    } <= kinds
    assert "PodMonitor" not in kinds  # deploy/kubernetes/monitoring, applied on its own
    assert ("DaskWorkerGroup" in kinds) == (target == "overlays/gpu")
    for o in objs:
        assert o["metadata"].get("namespace") == "pipeline", _key(o)
        assert LABELS.items() <= o["metadata"].get("labels", {}).items(), _key(o)


@pytest.mark.parametrize("target", [*TARGETS, MONITORING])
def test_same_objects_with_every_kubectl_on_path(target: str) -> None:
    found = _kubectls()
    if len(found) < 2:
        pytest.skip(
            "one kubectl on PATH; put another first (e.g. Debian's kubectl 1.20, kustomize "
            "v2.0.3, beside kubectl >= 1.27, kustomize v5) to compare their renders"
        )
    first, *others = found
    expected = sorted(_render_with(first, target), key=_key)
    for other in others:
        got = sorted(_render_with(other, target), key=_key)
        assert [_key(o) for o in got] == [_key(o) for o in expected], (first, other)
        for a, b in zip(expected, got, strict=True):
            assert a == b, f"{_key(a)} differs between {first} and {other}"


# -- schemas ----------------------------------------------------------------------------------


def test_crd_schemas_are_resolved() -> None:
    # The chart's CRDs are shipped with their Kubernetes references resolved (k8s_schemas
    # would point a python://k8s_crd_resolver/...#/definitions/X reference at the bundled
    # definitions, but none is expected).
    schemas = k8s_schemas.raw_crd_schemas()
    assert {kind for _, kind in schemas} >= {"DaskJob", "DaskCluster", "DaskWorkerGroup"}

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for (api_version, kind), schema in schemas.items():
        assert schema["type"] == "object", kind
        assert not list(refs(schema)), f"{kind} {api_version} has $ref"


@pytest.mark.parametrize("target", TARGETS)
def test_objects_match_their_schemas(target: str) -> None:
    unchecked = set()
    for o in render(target):
        try:
            problems = k8s_schemas.errors(o)
        except k8s_schemas.SchemaNotFound:
            unchecked.add((o["apiVersion"], o["kind"]))
            continue
        assert not problems, f"{target}: {_key(o)}:\n" + "\n".join(problems)
    # Only the Prometheus Operator's kind has no bundled schema, and it is not in the
    # overlays (test_podmonitors checks it).
    assert unchecked == set()


def test_monitoring_holds_only_podmonitors() -> None:
    objs = render(MONITORING)
    assert {o["kind"] for o in objs} == {"PodMonitor"} and len(objs) == 2
    for o in objs:
        assert o["metadata"]["namespace"] == "pipeline"
        assert LABELS.items() <= o["metadata"]["labels"].items()


def podmonitor_problems(pm: dict[str, Any], ports: dict[str, dict[str, int]]) -> list[str]:
    """What is wrong with a PodMonitor, by hand: no schema for monitoring.coreos.com is
    bundled, so the fields Prometheus needs (selector, podMetricsEndpoints with a named port
    and a path), and that the port is the selected Dask container's. ``ports``: the named
    container ports of each ``dask.org/component``."""
    problems = []
    if pm.get("apiVersion") != "monitoring.coreos.com/v1" or pm.get("kind") != "PodMonitor":
        problems.append("not a monitoring.coreos.com/v1 PodMonitor")
    spec = pm.get("spec")
    if not isinstance(spec, dict):
        return [*problems, "no spec"]
    labels = spec.get("selector", {}).get("matchLabels", {})
    component = labels.get("dask.org/component")
    if component not in ports:
        problems.append(f"spec.selector.matchLabels selects no Dask component: {labels}")
    endpoints = spec.get("podMetricsEndpoints")
    if not isinstance(endpoints, list) or not endpoints:
        return [*problems, "spec.podMetricsEndpoints: none"]
    for i, ep in enumerate(endpoints):
        if ep.get("path") != "/metrics":
            problems.append(f"spec.podMetricsEndpoints[{i}].path: {ep.get('path')!r}")
        port = ep.get("port")
        if not isinstance(port, str):
            problems.append(f"spec.podMetricsEndpoints[{i}].port: not a port name: {port!r}")
        elif port not in ports.get(component, {}):
            problems.append(f"spec.podMetricsEndpoints[{i}].port: no port {port} on {component}")
    return problems


def _dask_ports(objs: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    cluster = one(objs, "DaskJob")["spec"]["cluster"]["spec"]
    return {
        component: {p["name"]: p["containerPort"] for p in part["spec"]["containers"][0]["ports"]}
        for component, part in (("scheduler", cluster["scheduler"]), ("worker", cluster["worker"]))
    }


@pytest.mark.parametrize("target", TARGETS)
def test_podmonitors(target: str) -> None:
    objs = render(target) + render(MONITORING)
    ports = _dask_ports(objs)
    scraped = {}
    for pm in (o for o in objs if o["kind"] == "PodMonitor"):
        assert not podmonitor_problems(pm, ports), podmonitor_problems(pm, ports)
        component = pm["spec"]["selector"]["matchLabels"]["dask.org/component"]
        endpoints = pm["spec"]["podMetricsEndpoints"]
        scraped[component] = {ports[component][ep["port"]] for ep in endpoints}
    # The scheduler's dashboard (Dask's and the pipeline's stage metrics), each worker's.
    assert scraped == {"scheduler": {8787}, "worker": {8788}}


@pytest.mark.parametrize(
    "change", ["no-path", "port-number", "no-selector", "no-endpoints", "unknown-port"]
)
def test_podmonitor_check_refuses(change: str) -> None:
    objs = render("base") + render(MONITORING)
    pm = one(objs, "PodMonitor", "pipeline-dask-scheduler")
    spec = pm["spec"]
    if change == "no-path":
        del spec["podMetricsEndpoints"][0]["path"]
    elif change == "port-number":
        spec["podMetricsEndpoints"][0]["port"] = 8787
    elif change == "no-selector":
        del spec["selector"]
    elif change == "no-endpoints":
        del spec["podMetricsEndpoints"]
    else:
        spec["podMetricsEndpoints"][0]["port"] = "tcp-dashboard"
    assert podmonitor_problems(pm, _dask_ports(objs))


def _gpu_group() -> dict[str, Any]:
    return one(render("overlays/gpu"), "DaskWorkerGroup", "pipeline-gpu")


def _cronjob() -> dict[str, Any]:
    return one(render("overlays/cpu"), "CronJob", "pipeline-nightly")


def _set_gpu_limit_int(wg: dict[str, Any]) -> None:
    wg["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 1


def _set(path: list[Any], value: Any) -> Any:
    def change(obj: dict[str, Any]) -> None:
        node = obj
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    return change


def _delete(path: list[Any]) -> Any:
    def change(obj: dict[str, Any]) -> None:
        node = obj
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]

    return change


_WG_CONTAINER = ["spec", "worker", "spec", "containers", 0]
_CJ_CONTAINER = ["spec", "jobTemplate", "spec", "template", "spec", "containers", 0]

NEGATIVE = {
    "workergroup-replicas-string": (_gpu_group, _set(["spec", "worker", "replicas"], "two")),
    "workergroup-without-cluster": (_gpu_group, _delete(["spec", "cluster"])),
    "workergroup-gpu-quantity-unquoted": (_gpu_group, _set_gpu_limit_int),
    "workergroup-cpu-quantity-unquoted": (
        _gpu_group,
        _set([*_WG_CONTAINER, "resources", "requests", "cpu"], 4),
    ),
    "workergroup-arg-not-string": (_gpu_group, _set([*_WG_CONTAINER, "args", 4], 1)),
    "workergroup-unknown-field": (_gpu_group, _set([*_WG_CONTAINER, "imagePullPolicyy"], "x")),
    "workergroup-metadata-typo": (_gpu_group, _set(["metadata", "label"], {})),
    "daskjob-without-job": (lambda: one(render("base"), "DaskJob"), _delete(["spec", "job"])),
    "cronjob-concurrency-number": (_cronjob, _set(["spec", "concurrencyPolicy"], 5)),
    "cronjob-without-schedule": (_cronjob, _delete(["spec", "schedule"])),
    "cronjob-unknown-field": (_cronjob, _set(["spec", "concurrency"], "Forbid")),
    "cronjob-env-value-number": (
        _cronjob,
        _set([*_CJ_CONTAINER, "env"], [{"name": "N", "value": 1}]),
    ),
    "pvc-access-mode-string": (
        lambda: one(render("base"), "PersistentVolumeClaim"),
        _set(["spec", "accessModes"], "ReadWriteMany"),
    ),
    "role-without-verbs": (lambda: one(render("base"), "Role"), _delete(["rules", 0, "verbs"])),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_schema_refuses(case: str) -> None:
    make, change = NEGATIVE[case]
    obj = make()
    assert not k8s_schemas.errors(obj), "the unchanged object must be valid"
    change(obj)
    assert k8s_schemas.errors(obj), f"{case}: accepted"


def test_schema_names_the_bad_field() -> None:
    wg = _gpu_group()
    _set_gpu_limit_int(wg)
    (problem,) = k8s_schemas.errors(wg)
    assert "nvidia.com/gpu" in problem
    assert "not of type 'string'" in problem


# -- what users rely on -----------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_cronjob(target: str) -> None:
    cj = one(render(target), "CronJob", "pipeline-nightly")
    spec = cj["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert isinstance(spec["startingDeadlineSeconds"], int)
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "pipeline-runner"
    (runner,) = pod["containers"]
    assert "command" not in runner  # the image's entry point: pipeline
    assert runner["args"] == ["run", "/etc/pipeline/nightly.yaml"]
    _assert_spec_mounted(pod, runner, "pipeline-nightly")


def _assert_spec_mounted(pod: dict[str, Any], container: dict[str, Any], configmap: str) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/etc/pipeline"]]["configMap"]["name"] == configmap


@pytest.mark.parametrize("target", TARGETS)
def test_daskjob(target: str) -> None:
    job = one(render(target), "DaskJob", "pipeline")
    pod = job["spec"]["job"]["spec"]
    (runner,) = pod["containers"]
    assert "command" not in runner
    assert runner["args"] == ["run", "/etc/pipeline/job.yaml"]  # pipeline run ...
    assert pod["restartPolicy"] == "Never"
    _assert_spec_mounted(pod, runner, "pipeline-job")
    # The runner finds its scheduler in DASK_SCHEDULER_ADDRESS, which the operator sets.
    assert "DASK_SCHEDULER_ADDRESS" not in {e["name"] for e in runner.get("env", [])}

    cluster = job["spec"]["cluster"]["spec"]
    (scheduler,) = cluster["scheduler"]["spec"]["containers"]
    assert scheduler["command"] == ["dask"]
    assert scheduler["args"] == ["scheduler", "--host", "0.0.0.0"]
    assert {(p["name"], p["containerPort"]) for p in scheduler["ports"]} == {
        ("tcp-comm", 8786),
        ("http-dashboard", 8787),
    }
    assert scheduler["readinessProbe"]["httpGet"] == {"port": "http-dashboard", "path": "/health"}
    service = cluster["scheduler"]["service"]
    assert service["selector"] == {
        "dask.org/cluster-name": job["metadata"]["name"],
        "dask.org/component": "scheduler",
    }
    assert {p["targetPort"] for p in service["ports"]} == {"tcp-comm", "http-dashboard"}

    (worker,) = cluster["worker"]["spec"]["containers"]
    _assert_dask_worker(worker)
    assert not has_pair(worker["args"], "--resources", "GPU=1")
    assert cluster["worker"]["replicas"] >= 1


def _assert_dask_worker(worker: dict[str, Any]) -> None:
    assert worker["command"] == ["dask"]
    args = worker["args"]
    assert args[0] == "worker"
    assert has_pair(args, "--name", "$(DASK_WORKER_NAME)")
    assert has_pair(args, "--nthreads", "1")
    assert "--dashboard" in args
    assert has_pair(args, "--dashboard-address", "8788")
    assert {(p["name"], p["containerPort"]) for p in worker["ports"]} == {("http-dashboard", 8788)}
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["MALLOC_TRIM_THRESHOLD_"] == env["MALLOC_MMAP_THRESHOLD_"] == "134217728"
    resources = worker["resources"]
    assert resources["requests"]
    assert resources["limits"]


def test_gpu_worker_group() -> None:
    objs = render("overlays/gpu")
    wg = one(objs, "DaskWorkerGroup", "pipeline-gpu")
    # The DaskJob's cluster: the operator names it after the DaskJob.
    assert wg["spec"]["cluster"] == one(objs, "DaskJob")["metadata"]["name"]
    pod = wg["spec"]["worker"]["spec"]
    (worker,) = pod["containers"]
    _assert_dask_worker(worker)
    assert has_pair(worker["args"], "--resources", "GPU=1")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    cpu_image = one(objs, "DaskJob")["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"][0]
    assert worker["image"] != cpu_image["image"]

    # The nightly runs' GPU workers: as many as asked, on the same nodes, the same image.
    nightly = job_specs(objs, "overlays/gpu")["pipeline-nightly"].spec.cluster
    assert nightly.kind == "kubernetes"
    assert nightly.gpu_workers >= 1
    assert nightly.gpu_resources.limits["nvidia.com/gpu"] == "1"
    assert nightly.gpu_node_selector == pod["nodeSelector"]
    assert nightly.gpu_tolerations == pod["tolerations"]
    assert nightly.gpu_image == worker["image"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_mounts_the_store(target: str) -> None:
    objs = render(target)
    pods = list(pod_specs(objs))
    assert len(pods) == (5 if target == "overlays/gpu" else 4)
    for where, pod in pods:
        claims = {
            v["name"]
            for v in pod.get("volumes", [])
            if v.get("persistentVolumeClaim", {}).get("claimName") == CLAIM
        }
        assert claims, f"{where}: no volume of the PVC {CLAIM}"
        for c in containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/data") in claims, f"{where}: {c['name']} has no {CLAIM} at /data"
            if target == "overlays/object-store":
                refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
                assert SECRET in refs, f"{where}: {c['name']} has no envFrom {SECRET}"
    pvc = one(objs, "PersistentVolumeClaim", CLAIM)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"]


@pytest.mark.parametrize("target", TARGETS)
def test_job_specs(target: str) -> None:
    objs = render(target)
    specs = job_specs(objs, target)
    assert set(specs) == {"pipeline-job", "pipeline-nightly"}
    job, nightly = specs["pipeline-job"].spec, specs["pipeline-nightly"].spec
    # The nightly run: a survey folder that grows (ingest only the new files, and so on).
    assert [s.name for s in specs["pipeline-nightly"].steps] == [
        "ingest",
        "preprocess",
        "reduce",
        "kmeans",
        "report",
    ]
    # The DaskJob's runner connects to the operator's DASK_SCHEDULER_ADDRESS.
    assert job.cluster.kind == "address"
    assert job.cluster.address is None
    cluster = nightly.cluster
    assert cluster.kind == "kubernetes"
    assert cluster.namespace is None  # the runner pod's
    assert cluster.name != one(objs, "DaskJob")["metadata"]["name"]
    assert {(v.claim, v.mount_path) for v in cluster.volumes} == {(CLAIM, "/data")}
    assert job.store != nightly.store
    if target in PVC_STORE:
        for spec in (job, nightly):
            assert spec.store.startswith("/data/runs/")
        assert cluster.env_from_secrets == []
    else:
        for spec in (job, nightly):
            assert spec.store.startswith("s3://")
        assert cluster.env_from_secrets == [SECRET]
    # Inputs are read where every pod sees them.
    sources = [job.stages[0].params["source"], *nightly.input["sources"]]
    for source in sources:
        assert source.startswith(("/data/inputs/", "s3://")), source


@pytest.mark.parametrize("target", TARGETS)
def test_nightly_cluster_is_valid_for_the_operator(target: str) -> None:
    # What the nightly run will create, built by the pipeline from the spec in the ConfigMap,
    # against the operator's CRDs.
    from pipeline.core.kubernetes import cluster_resource, gpu_worker_group

    config = job_specs(render(target), target)["pipeline-nightly"].spec.cluster
    made = [cluster_resource(config)]
    if config.gpu_workers:
        made.append(gpu_worker_group(config))
    for obj in made:
        assert not k8s_schemas.errors(obj), k8s_schemas.errors(obj)


@pytest.mark.parametrize("target", OVERLAYS)
def test_images(target: str) -> None:
    objs = render(target)
    images = {c["image"] for _, pod in pod_specs(objs) for c in containers(pod)}
    assert not images & PLACEHOLDER_IMAGES, "an image the overlay's images: should set"
    for image in images:
        assert "/" in image.split(":")[0], image  # a registry's
        assert ":" in image.rsplit("/", 1)[-1], f"{image}: no tag"
    # kustomize does not read the job spec: its cluster image is set by hand, to the same.
    runner = one(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    nightly = job_specs(objs, target)["pipeline-nightly"].spec.cluster
    assert nightly.image == runner["containers"][0]["image"]


def test_base_images_are_placeholders() -> None:
    images = {c["image"] for _, pod in pod_specs(render("base")) for c in containers(pod)}
    assert images == {"pipeline"}


@pytest.mark.parametrize("target", TARGETS)
def test_rbac(target: str) -> None:
    objs = render(target)
    sa = one(objs, "ServiceAccount", "pipeline-runner")
    role = one(objs, "Role", "pipeline-runner")
    binding = one(objs, "RoleBinding", "pipeline-runner")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "pipeline-runner",
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"],
        }
    ]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"]
        assert "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in (group, resource)
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    # What KubeCluster(custom_cluster_spec=...), add_worker_group and close() call.
    needed = {
        ("kubernetes.dask.org", "daskclusters"): {"get", "list", "create", "delete"},
        ("kubernetes.dask.org", "daskworkergroups"): {"get", "list", "create"},
        ("", "pods"): {"get", "list"},
        ("", "pods/log"): {"get"},
        ("", "services"): {"get", "list"},
    }
    assert granted == needed  # no more: least privilege
    # Only the nightly runner uses it; the DaskJob's pods mount no API token.
    for where, pod in pod_specs(objs):
        if where.startswith("CronJob/"):
            assert pod["serviceAccountName"] == "pipeline-runner"
        else:
            assert pod.get("automountServiceAccountToken") is False, where


@pytest.mark.parametrize("target", TARGETS)
def test_no_credentials_in_manifests(target: str) -> None:
    # The object store's Secret is created by the user (kubectl create secret), never rendered.
    objs = render(target)
    assert not [o for o in objs if o["kind"] == "Secret"]
    for _, pod in pod_specs(objs):
        for c in containers(pod):
            for e in c.get("env", []):
                assert not e["name"].startswith("AWS_"), e
