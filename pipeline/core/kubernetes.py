"""``cluster: {kind: kubernetes}``: a Dask cluster made for the run by the Dask operator.

The run creates a ``DaskCluster`` (scheduler and a CPU worker group) and, when the spec asks for
GPU workers, a ``DaskWorkerGroup`` ``{name}-gpu`` whose workers have one GPU each and offer it
as the Dask resource ``GPU`` (which GPU tasks ask for, :mod:`pipeline.compute.dispatch`); both
are deleted when the run ends, however it ends. The resources are built here as plain
dictionaries (:func:`cluster_resource`, :func:`gpu_worker_group`), so they are tested against
the operator's CRD schemas without an API server; :func:`kubernetes_client` hands them to
``dask_kubernetes.operator.KubeCluster``, imported only then.

The images' entry point is ``pipeline`` (``deploy/docker``), so every container here names its
command (``dask scheduler``, ``dask worker``) instead of relying on the image's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.core.cluster_config import KubernetesClusterConfig, PodResources
from pipeline.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["API_VERSION", "cluster_resource", "gpu_worker_group", "kubernetes_client"]

log = logging.getLogger(__name__)

API_VERSION = "kubernetes.dask.org/v1"

# The same glibc thresholds as the local cluster's workers (see pipeline.core.runtime).
_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "134217728", "MALLOC_MMAP_THRESHOLD_": "134217728"}

_SCHEDULER_PORTS = [
    {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
    {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
]
_WORKER_PORTS = [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}]


def _env(config: KubernetesClusterConfig) -> list[dict[str, str]]:
    merged = {**_MALLOC_ENV, **config.env}
    return [{"name": k, "value": v} for k, v in merged.items()]


def _container(
    config: KubernetesClusterConfig,
    name: str,
    image: str,
    args: list[str],
    resources: PodResources,
    ports: list[dict[str, Any]],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": ["dask"],
        "args": args,
        "env": _env(config),
        "ports": [dict(p) for p in ports],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if resources.as_dict():
        container["resources"] = resources.as_dict()
    if config.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in config.env_from_secrets]
    if config.volumes:
        container["volumeMounts"] = [
            {"name": f"volume-{i}", "mountPath": v.mount_path, "readOnly": v.read_only}
            for i, v in enumerate(config.volumes)
        ]
    return container


def _pod(config: KubernetesClusterConfig, container: dict[str, Any]) -> dict[str, Any]:
    security: dict[str, Any] = {"runAsNonRoot": True}
    if config.fs_group is not None:
        security["fsGroup"] = config.fs_group
    # The pods need no Kubernetes API: no service-account token is mounted.
    pod: dict[str, Any] = {
        "containers": [container],
        "securityContext": security,
        "automountServiceAccountToken": False,
    }
    if config.volumes:
        pod["volumes"] = [
            {"name": f"volume-{i}", "persistentVolumeClaim": {"claimName": v.claim}}
            for i, v in enumerate(config.volumes)
        ]
    return pod


def _worker(
    config: KubernetesClusterConfig,
    replicas: int,
    image: str,
    resources: PodResources,
    extra_args: list[str],
) -> dict[str, Any]:
    # $(DASK_WORKER_NAME) is set by the operator in every worker pod.
    args = ["worker", "--name", "$(DASK_WORKER_NAME)", *extra_args]
    args += ["--dashboard", "--dashboard-address", "8788"]
    container = _container(config, "worker", image, args, resources, _WORKER_PORTS)
    return {"replicas": replicas, "spec": _pod(config, container)}


def _metadata(config: KubernetesClusterConfig, name: str) -> dict[str, Any]:
    return {"name": name, **({"namespace": config.namespace} if config.namespace else {})}


def cluster_resource(config: KubernetesClusterConfig) -> dict[str, Any]:
    """The ``DaskCluster`` resource of ``config``: its scheduler and CPU worker group.

    Returns
    -------
    dict
        A ``kubernetes.dask.org/v1`` ``DaskCluster``, as ``kubectl apply`` would take it.
    """
    probe = {"httpGet": {"port": "http-dashboard", "path": "/health"}}
    scheduler = _container(
        config,
        "scheduler",
        config.image,
        ["scheduler", "--host", "0.0.0.0"],
        config.scheduler_resources,
        _SCHEDULER_PORTS,
    )
    scheduler["readinessProbe"] = {**probe, "periodSeconds": 2, "timeoutSeconds": 300}
    scheduler["livenessProbe"] = {**probe, "initialDelaySeconds": 15, "periodSeconds": 20}
    selector = {"dask.org/cluster-name": config.name, "dask.org/component": "scheduler"}
    service = {
        "type": config.service_type,
        "selector": selector,
        "ports": [
            {
                "name": p["name"],
                "protocol": "TCP",
                "port": p["containerPort"],
                "targetPort": p["name"],
            }
            for p in _SCHEDULER_PORTS
        ],
    }
    worker = _worker(
        config,
        config.workers,
        config.image,
        config.worker_resources,
        ["--nthreads", str(config.worker_threads)],
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskCluster",
        "metadata": _metadata(config, config.name),
        "spec": {
            "idleTimeout": config.idle_timeout,
            "scheduler": {"spec": _pod(config, scheduler), "service": service},
            "worker": worker,
        },
    }


def gpu_worker_spec(config: KubernetesClusterConfig) -> dict[str, Any]:
    """The worker spec of the GPU group: ``gpu_workers`` workers of one thread, each with one
    GPU offered to the scheduler as the resource ``GPU=1``, on the nodes the spec allows."""
    spec = _worker(
        config,
        config.gpu_workers,
        config.gpu_image or config.image,
        config.gpu_resources,
        ["--nthreads", "1", "--resources", "GPU=1"],
    )
    if config.gpu_node_selector:
        spec["spec"]["nodeSelector"] = dict(config.gpu_node_selector)
    if config.gpu_tolerations:
        spec["spec"]["tolerations"] = [dict(t) for t in config.gpu_tolerations]
    return spec


def gpu_worker_group(config: KubernetesClusterConfig) -> dict[str, Any]:
    """The ``DaskWorkerGroup`` resource ``{name}-gpu`` of ``config``'s GPU workers (as
    ``KubeCluster.add_worker_group`` creates it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskWorkerGroup",
        "metadata": _metadata(config, f"{config.name}-gpu"),
        "spec": {"cluster": config.name, "worker": gpu_worker_spec(config)},
    }


@contextlib.contextmanager
def kubernetes_client(config: KubernetesClusterConfig) -> Iterator[Client]:
    """Create the cluster, yield a Client of it once a worker is up, delete it on exit.

    Raises
    ------
    ClusterError
        If dask-kubernetes is not installed, the Kubernetes API cannot be reached, or no
        worker starts within ``worker_timeout``.
    """
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError:
        raise ClusterError(
            "cluster kind 'kubernetes' needs dask-kubernetes: pip install 'pipeline[kubernetes]'"
        ) from None
    from distributed import Client

    log.info(
        "creating DaskCluster %s (%d CPU, %d GPU workers)",
        config.name,
        config.workers,
        config.gpu_workers,
    )
    try:
        cluster = KubeCluster(
            custom_cluster_spec=cluster_resource(config),
            namespace=config.namespace,
            shutdown_on_close=True,
            resource_timeout=config.resource_timeout,
            quiet=True,
        )
    except Exception as exc:  # kr8s and the API server raise many kinds
        raise ClusterError(
            f"cannot create DaskCluster {config.name!r} ({type(exc).__name__}: {exc}); check "
            "that the Dask operator is installed, that this pod's service account may create "
            "daskclusters (deploy/kubernetes/base/rbac.yaml), and cluster.namespace"
        ) from None
    with contextlib.ExitStack() as stack:
        stack.callback(_close, cluster, config.name)
        if config.gpu_workers:
            cluster.add_worker_group("gpu", custom_spec=gpu_worker_spec(config))
        client = stack.enter_context(Client(cluster))
        try:
            client.wait_for_workers(1, timeout=config.worker_timeout)
        except (OSError, TimeoutError):
            raise ClusterError(
                f"DaskCluster {config.name!r} has no worker after {config.worker_timeout:g} s; "
                f"see kubectl describe daskcluster {config.name} and its pods' events (image "
                "pulls, unschedulable resources), or raise cluster.worker_timeout"
            ) from None
        yield client


def _close(cluster: Any, name: str) -> None:
    log.info("deleting DaskCluster %s", name)
    try:
        cluster.close()
    except Exception as exc:  # the run's own error, if any, matters more
        log.warning(
            "could not delete DaskCluster %s (%s); delete it with kubectl delete daskcluster %s "
            "(its idle_timeout also deletes it)",
            name,
            exc,
            name,
        )
