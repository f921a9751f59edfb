"""Where a run computes, as a job spec's ``cluster`` section says: one model per kind.

``kind: local`` starts an embedded ``LocalCluster``; ``kind: address`` connects to a running
scheduler (``tcp://`` or ``tls://``; without an address, the one in ``DASK_SCHEDULER_ADDRESS``,
which the Dask operator sets in a ``DaskJob``'s runner pod); ``kind: kubernetes`` creates a
``DaskCluster`` through the Dask operator for the run and deletes it afterwards
(:mod:`pipeline.core.kubernetes`). The kinds are a discriminated union on ``kind``. Parsing
checks only the spec itself: files and variables it relies on (TLS certificates, the
scheduler's address in a pod) are checked when connecting (:mod:`pipeline.core.runtime`), so
a job written for a pod validates on a laptop. Only pydantic is imported here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

#: Where the Dask operator puts the scheduler's address in a ``DaskJob``'s runner pod.
SCHEDULER_ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"

__all__ = [
    "KINDS",
    "SCHEDULER_ADDRESS_ENV",
    "AddressClusterConfig",
    "ClusterConfig",
    "KubernetesClusterConfig",
    "LocalClusterConfig",
    "PodResources",
    "VolumeMount",
    "check_address",
    "parse_cluster_config",
    "with_default_kind",
]


class LocalClusterConfig(BaseModel):
    """An embedded local cluster of worker processes on this machine.

    Attributes
    ----------
    kind : "local"
    workers, threads_per_worker : int, optional
        Cluster size; default: Dask's choice for this machine's cores.
    memory_limit : str, optional
        Per-worker memory limit, e.g. ``"4GB"`` (default: Dask's share).
    processes : bool
        Workers as processes (default) or threads in this process.
    dashboard_address : str
        Where the dashboard listens (``":0"`` picks a free port).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local"] = "local"
    workers: int | None = Field(None, ge=1)
    threads_per_worker: int | None = Field(None, ge=1)
    memory_limit: str | None = None
    processes: bool = True
    dashboard_address: str = ":8787"


class AddressClusterConfig(BaseModel):
    """A running scheduler, reached at ``address``.

    Attributes
    ----------
    kind : "address"
    address : str, optional
        ``tcp://host:port`` or ``tls://host:port``. Left out, the run connects to the address
        in the environment variable ``DASK_SCHEDULER_ADDRESS``, which the Dask operator sets
        in a ``DaskJob``'s runner pod.
    tls_ca_file, tls_cert, tls_key : str, optional
        Certificates for a ``tls://`` scheduler (CA, client certificate, client key); their
        existence is checked when connecting.
    connect_timeout : float
        Seconds to reach the scheduler before giving up.
    worker_timeout : float
        Seconds to wait for the scheduler's first worker (a cluster still scaling up, or
        one whose workers were lost) before giving up.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["address"] = "address"
    address: str | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout: float = Field(30.0, gt=0)
    worker_timeout: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> AddressClusterConfig:
        if self.address:
            check_address(self.address, "address")
        tls = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if self.address and any(tls) and not self.address.startswith("tls://"):
            raise ValueError("TLS certificates are given but the address is not tls://")
        if self.address and self.address.startswith("tls://") and not all(tls):
            raise ValueError("a tls:// address needs tls_ca_file, tls_cert and tls_key")
        return self

    @property
    def tls_files(self) -> dict[str, str]:
        """The TLS files given, by option name."""
        names = ("tls_ca_file", "tls_cert", "tls_key")
        return {n: v for n in names if (v := getattr(self, n))}


def check_address(address: str, source: str) -> str:
    """``address`` when it is a scheduler address ``source`` may give, else ValueError."""
    if not address.startswith(("tcp://", "tls://", "inproc://")):
        raise ValueError(
            f"{source} {address!r} must start with tcp:// or tls:// (e.g. tcp://10.0.0.5:8786)"
        )
    return address


# Kubernetes object names: RFC 1123 labels. The operator appends "-scheduler" and worker
# group suffixes ("-default", "-gpu") to the cluster's name, so it keeps room for them.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_MAX = 63 - len("-scheduler")


class PodResources(BaseModel):
    """A container's resource requests and limits, as Kubernetes quantities (``"2"``,
    ``"8Gi"``, ``nvidia.com/gpu: "1"``); numbers are taken as their text."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, str]]:
        """The ``resources`` field of a container (empty parts left out)."""
        return {k: dict(v) for k, v in (("requests", self.requests), ("limits", self.limits)) if v}


class VolumeMount(BaseModel):
    """A PersistentVolumeClaim mounted in the scheduler and every worker (the run store and
    the inputs must be at the same path there as in the runner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str
    mount_path: str = Field(pattern=r"^/")
    read_only: bool = False


class KubernetesClusterConfig(BaseModel):
    """A ``DaskCluster`` created through the Dask Kubernetes operator for the run, with a
    CPU worker group and an optional GPU worker group, and deleted when the run ends.

    Attributes
    ----------
    kind : "kubernetes"
    name : str
        The ``DaskCluster``'s name (a DNS label); its GPU group is ``{name}-gpu``.
    namespace : str, optional
        Default: the namespace of the runner's pod (or of the kubeconfig's context).
    image : str
        The image of the scheduler and CPU workers (``deploy/docker/Dockerfile``).
    workers : int
        CPU workers (the default group).
    worker_threads : int
        Threads per CPU worker.
    worker_resources, scheduler_resources : PodResources
        Requests and limits of the worker and scheduler containers.
    env : dict of str to str
        Extra environment of the scheduler and workers.
    env_from_secrets : list of str
        Secrets whose keys become environment variables of the scheduler and workers
        (object-store credentials).
    volumes : list of VolumeMount
        PersistentVolumeClaims mounted in the scheduler and workers.
    gpu_workers : int
        Workers of the GPU group, one GPU each (``--resources GPU=1 --nthreads 1``); 0: none.
    gpu_image : str, optional
        Default: ``image``.
    gpu_resources : PodResources
        Default: a limit of ``nvidia.com/gpu: "1"``.
    gpu_node_selector, gpu_tolerations
        Where GPU workers may run.
    fs_group : int, optional
        The pods' ``fsGroup``: the group that owns the mounted volumes, so that the image's
        user (10001 in ``deploy/docker``) can write the store there; None: the volumes' own.
    service_type : str
        The scheduler's Service type.
    idle_timeout : int
        Seconds after which the operator deletes an idle cluster (0: never); a safety net
        should the runner die without deleting it.
    resource_timeout : int
        Seconds for the operator to create the cluster's resources.
    worker_timeout : float
        Seconds to wait for the first worker (image pulls, node scale-up).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["kubernetes"] = "kubernetes"
    name: str = "pipeline"
    namespace: str | None = None
    image: str = Field(min_length=1)
    workers: int = Field(2, ge=0)
    worker_threads: int = Field(1, ge=1)
    worker_resources: PodResources = Field(default_factory=PodResources)
    scheduler_resources: PodResources = Field(default_factory=PodResources)
    env: dict[str, str] = Field(default_factory=dict)
    env_from_secrets: list[str] = Field(default_factory=list)
    volumes: list[VolumeMount] = Field(default_factory=list)
    gpu_workers: int = Field(0, ge=0)
    gpu_image: str | None = None
    gpu_resources: PodResources = Field(
        default_factory=lambda: PodResources(limits={"nvidia.com/gpu": "1"})
    )
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    gpu_tolerations: list[dict[str, Any]] = Field(default_factory=list)
    fs_group: int | None = Field(10001, ge=0)
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    idle_timeout: int = Field(0, ge=0)
    resource_timeout: int = Field(300, ge=1)
    worker_timeout: float = Field(600.0, gt=0)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _NAME.match(value) or len(value) > _NAME_MAX:
            raise ValueError(
                f"cluster name {value!r} must be a DNS label of at most {_NAME_MAX} characters "
                "(lower-case letters, digits and '-', starting and ending alphanumeric), e.g. "
                "'pipeline-nightly'"
            )
        return value

    @model_validator(mode="after")
    def _has_workers(self) -> KubernetesClusterConfig:
        if self.workers == 0 and self.gpu_workers == 0:
            raise ValueError("workers and gpu_workers are both 0: give at least one worker")
        if self.gpu_workers and "nvidia.com/gpu" not in self.gpu_resources.limits:
            raise ValueError(
                "gpu_resources.limits has no nvidia.com/gpu: a GPU worker must ask for one "
                '(nvidia.com/gpu: "1")'
            )
        return self


def with_default_kind(data: Any) -> Any:
    """A ``cluster`` mapping with its ``kind`` filled in when left out."""
    # Specs written before `kind` was required name a scheduler by `address` alone.
    if isinstance(data, dict) and "kind" not in data:
        return {**data, "kind": "address" if data.get("address") else "local"}
    return data


#: A job's ``cluster`` section: one of the kinds, chosen by ``kind`` (default ``local``).
ClusterConfig = Annotated[
    LocalClusterConfig | AddressClusterConfig | KubernetesClusterConfig,
    Field(discriminator="kind"),
]

#: The cluster kinds, by their ``kind`` tag.
KINDS: dict[str, type[BaseModel]] = {
    "local": LocalClusterConfig,
    "address": AddressClusterConfig,
    "kubernetes": KubernetesClusterConfig,
}

_ANY = LocalClusterConfig | AddressClusterConfig | KubernetesClusterConfig
_ADAPTER: TypeAdapter[_ANY] = TypeAdapter(ClusterConfig)


def parse_cluster_config(data: Any) -> _ANY:
    """Validate a ``cluster`` section (a mapping, or a config already built).

    Raises
    ------
    pydantic.ValidationError
        Naming the field and what is wrong.
    """
    if isinstance(data, LocalClusterConfig | AddressClusterConfig | KubernetesClusterConfig):
        return data
    return _ADAPTER.validate_python(with_default_kind(data))
