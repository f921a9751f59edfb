"""``cluster: {kind: kubernetes}``: the resources it asks the Dask operator for, and its
lifecycle (created, GPU group added, deleted however the run ends) with a stand-in for
``KubeCluster``: there is no API server here."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from distributed import LocalCluster
from pydantic import ValidationError

from pipeline.core.cluster_config import KubernetesClusterConfig, parse_cluster_config
from pipeline.core.kubernetes import cluster_resource, gpu_worker_group
from pipeline.core.runtime import cluster_client
from pipeline.errors import ClusterError

SPEC: dict[str, Any] = {
    "kind": "kubernetes",
    "name": "pipeline-nightly",
    "namespace": "surveys",
    "image": "ghcr.io/pipeline-project/pipeline:0.1.0",
    "workers": 3,
    "worker_resources": {"requests": {"cpu": 2, "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
    "env_from_secrets": ["pipeline-object-store"],
    "volumes": [{"claim": "pipeline-data", "mount_path": "/data"}],
    "gpu_workers": 2,
    "gpu_image": "ghcr.io/pipeline-project/pipeline-gpu:0.1.0",
    "gpu_node_selector": {"nvidia.com/gpu.present": "true"},
    "gpu_tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


def _config(**changes: Any) -> KubernetesClusterConfig:
    cfg = parse_cluster_config({**SPEC, **changes})
    assert isinstance(cfg, KubernetesClusterConfig)
    return cfg


def _containers(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return container


def test_the_cluster_has_a_scheduler_and_cpu_workers_with_the_store_mounted() -> None:
    res = cluster_resource(_config())
    assert res["apiVersion"] == "kubernetes.dask.org/v1" and res["kind"] == "DaskCluster"
    assert res["metadata"] == {"name": "pipeline-nightly", "namespace": "surveys"}
    sched_pod = res["spec"]["scheduler"]["spec"]
    sched = _containers(sched_pod)
    # The image's entry point is `pipeline`: the container names its own command.
    assert sched["command"] == ["dask"] and sched["args"][:1] == ["scheduler"]
    assert {p["containerPort"] for p in sched["ports"]} == {8786, 8787}
    service = res["spec"]["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == "pipeline-nightly"
    worker = res["spec"]["worker"]
    assert worker["replicas"] == 3
    wc = _containers(worker["spec"])
    assert wc["command"] == ["dask"] and wc["args"][0] == "worker"
    assert wc["args"][wc["args"].index("--nthreads") + 1] == "1"
    # Numbers in the spec become Kubernetes quantity strings (the CRD takes only strings).
    requests, limits = {"cpu": "2", "memory": "8Gi"}, {"memory": "8Gi"}
    assert wc["resources"] == {"requests": requests, "limits": limits}
    assert wc["envFrom"] == [{"secretRef": {"name": "pipeline-object-store"}}]
    env = {e["name"]: e["value"] for e in wc["env"]}
    assert env["MALLOC_TRIM_THRESHOLD_"] == "134217728"
    for pod, container in ((sched_pod, sched), (worker["spec"], wc)):
        # The image's non-root user can write the store on the volume.
        assert pod["securityContext"] == {"runAsNonRoot": True, "fsGroup": 10001}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["volumes"] == [
            {"name": "volume-0", "persistentVolumeClaim": {"claimName": "pipeline-data"}}
        ]
        assert container["volumeMounts"][0]["mountPath"] == "/data"


def test_gpu_workers_ask_for_one_gpu_each_and_offer_it_as_a_dask_resource() -> None:
    group = gpu_worker_group(_config())
    assert group["kind"] == "DaskWorkerGroup"
    assert group["metadata"]["name"] == "pipeline-nightly-gpu"
    assert group["spec"]["cluster"] == "pipeline-nightly"
    worker = group["spec"]["worker"]
    assert worker["replicas"] == 2
    pod = worker["spec"]
    container = _containers(pod)
    assert container["image"] == "ghcr.io/pipeline-project/pipeline-gpu:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    args = container["args"]
    assert args[args.index("--resources") + 1] == "GPU=1"
    assert args[args.index("--nthreads") + 1] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"name": "Pipeline_Nightly"}, "must be a DNS label"),
        ({"workers": 0, "gpu_workers": 0}, "give at least one worker"),
        ({"gpu_resources": {"limits": {"cpu": "4"}}}, "no nvidia.com/gpu"),
        ({"volumes": [{"claim": "data", "mount_path": "data"}]}, "should match pattern"),
        ({"image": ""}, "at least 1 character"),
    ],
)
def test_bad_kubernetes_specs_say_what_to_fix(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        _config(**changes)


class _FakeKubeCluster:
    """Stands in for ``KubeCluster``: records what the run asks of it, and is a real local
    cluster underneath so that a Client can connect."""

    made: ClassVar[list[_FakeKubeCluster]] = []
    workers: ClassVar[int] = 1  # 0: pods that never start (unschedulable, images not pulled)

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.groups: list[tuple[str, dict[str, Any]]] = []
        self.closed = False
        self._local = LocalCluster(n_workers=self.workers, processes=False, dashboard_address=":0")
        _FakeKubeCluster.made.append(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)  # what a Client reads of its cluster

    def add_worker_group(self, name: str, *, custom_spec: dict[str, Any]) -> None:
        self.groups.append((name, custom_spec))

    def close(self) -> None:
        self.closed = True
        self._local.close()


@pytest.fixture
def fake_kube(monkeypatch: pytest.MonkeyPatch) -> type[_FakeKubeCluster]:
    import dask_kubernetes.operator

    _FakeKubeCluster.made = []
    monkeypatch.setattr(dask_kubernetes.operator, "KubeCluster", _FakeKubeCluster)
    return _FakeKubeCluster


def test_a_run_creates_the_cluster_with_its_gpu_group_and_deletes_it_after(
    fake_kube: type[_FakeKubeCluster],
) -> None:
    config = _config()
    with cluster_client(config) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        (cluster,) = fake_kube.made
        assert not cluster.closed
    assert cluster.closed
    assert cluster.kwargs["custom_cluster_spec"] == cluster_resource(config)
    assert cluster.kwargs["namespace"] == "surveys"
    assert cluster.kwargs["shutdown_on_close"] is True
    assert cluster.groups == [("gpu", gpu_worker_group(config)["spec"]["worker"])]


def test_the_cluster_is_deleted_when_the_run_fails(fake_kube: type[_FakeKubeCluster]) -> None:
    with pytest.raises(RuntimeError, match="stage failed"), cluster_client(_config(gpu_workers=0)):
        raise RuntimeError("stage failed")
    (cluster,) = fake_kube.made
    assert cluster.closed and cluster.groups == []


def test_no_worker_in_time_is_a_cluster_error_and_the_cluster_is_deleted(
    fake_kube: type[_FakeKubeCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_kube, "workers", 0)
    with (
        pytest.raises(ClusterError, match=r"no worker after 1 s; see kubectl describe daskcluster"),
        cluster_client(_config(gpu_workers=0, worker_timeout=1)),
    ):
        pass
    (cluster,) = fake_kube.made
    assert cluster.closed


def test_an_unreachable_api_server_is_a_cluster_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import dask_kubernetes.operator

    def refuse(**kwargs: Any) -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(dask_kubernetes.operator, "KubeCluster", refuse)
    with pytest.raises(ClusterError, match=r"cannot create DaskCluster 'pipeline-nightly'.*rbac"):
        cluster_client(_config()).__enter__()


def test_the_resources_are_valid_for_the_operator() -> None:
    from tests.deploy import k8s_schemas

    config = _config()
    for resource in (cluster_resource(config), gpu_worker_group(config)):
        assert k8s_schemas.errors(resource) == []
    # The CRD takes quantities only as strings: the spec's numbers were made strings.
    bad = gpu_worker_group(config)
    bad["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 1
    assert k8s_schemas.errors(bad)
