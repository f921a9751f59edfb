"""Where a run computes, as a job spec's ``cluster`` section says: one model per kind.

``kind: local`` starts an embedded ``LocalCluster``; ``kind: address`` connects to a running
scheduler (``tcp://`` or ``tls://``). The kinds are a discriminated union on ``kind``, so a
new kind (``kubernetes``) is one more model. Parsing checks only the spec itself: files it
names (TLS certificates) are checked when connecting (:mod:`pipeline.core.runtime`), so a job
written for a pod validates on a laptop. Only pydantic is imported here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

__all__ = [
    "KINDS",
    "AddressClusterConfig",
    "ClusterConfig",
    "LocalClusterConfig",
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
    address : str
        ``tcp://host:port`` or ``tls://host:port``.
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

    @model_validator(mode="before")
    @classmethod
    def _has_address(cls, data: Any) -> Any:
        # Checked first: without an address, the other fields' errors would hide the point.
        if isinstance(data, dict) and not data.get("address"):
            raise ValueError("kind 'address' needs address: tcp://host:port or tls://host:port")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> AddressClusterConfig:
        if not self.address:
            raise ValueError("kind 'address' needs address: tcp://host:port or tls://host:port")
        if not self.address.startswith(("tcp://", "tls://", "inproc://")):
            raise ValueError(
                f"address {self.address!r} must start with tcp:// or tls:// (e.g. "
                "tcp://10.0.0.5:8786)"
            )
        tls = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if any(tls) and not self.address.startswith("tls://"):
            raise ValueError("TLS certificates are given but the address is not tls://")
        if self.address.startswith("tls://") and not all(tls):
            raise ValueError("a tls:// address needs tls_ca_file, tls_cert and tls_key")
        return self

    @property
    def tls_files(self) -> dict[str, str]:
        """The TLS files given, by option name."""
        names = ("tls_ca_file", "tls_cert", "tls_key")
        return {n: v for n in names if (v := getattr(self, n))}


def with_default_kind(data: Any) -> Any:
    """A ``cluster`` mapping with its ``kind`` filled in when left out."""
    # Specs written before `kind` was required name a scheduler by `address` alone.
    if isinstance(data, dict) and "kind" not in data:
        return {**data, "kind": "address" if data.get("address") else "local"}
    return data


#: A job's ``cluster`` section: one of the kinds, chosen by ``kind`` (default ``local``).
ClusterConfig = Annotated[
    LocalClusterConfig | AddressClusterConfig,
    Field(discriminator="kind"),
]

#: The cluster kinds, by their ``kind`` tag.
KINDS: dict[str, type[BaseModel]] = {"local": LocalClusterConfig, "address": AddressClusterConfig}

_ADAPTER: TypeAdapter[LocalClusterConfig | AddressClusterConfig] = TypeAdapter(ClusterConfig)


def parse_cluster_config(data: Any) -> LocalClusterConfig | AddressClusterConfig:
    """Validate a ``cluster`` section (a mapping, or a config already built).

    Raises
    ------
    pydantic.ValidationError
        Naming the field and what is wrong.
    """
    if isinstance(data, LocalClusterConfig | AddressClusterConfig):
        return data
    return _ADAPTER.validate_python(with_default_kind(data))
