"""Where a run computes: an embedded local cluster, or an existing Dask scheduler.

:func:`cluster_client` is the one way the CLI and the runner get a ``distributed.Client``;
the choice lives in the job spec's ``cluster`` section (or the CLI's cluster options).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import dask
from distributed import Client, LocalCluster, performance_report
from distributed.security import Security
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ClusterConfig", "cluster_client"]

log = logging.getLogger(__name__)


class ClusterConfig(BaseModel):
    """How to reach (or start) the Dask cluster.

    Attributes
    ----------
    kind : {"local", "address"}
        ``local`` starts a LocalCluster of worker processes on this machine (sized to it unless
        ``workers``/``threads_per_worker`` say otherwise); ``address`` connects to a running
        scheduler at ``address``.
    workers, threads_per_worker : int, optional
        Local cluster size; default: Dask's choice for this machine's cores.
    memory_limit : str, optional
        Per-worker memory limit for a local cluster, e.g. ``"4GB"`` (default: Dask's share).
    processes : bool
        Local workers as processes (default) or threads in this process.
    dashboard_address : str
        Where a local cluster serves its dashboard (``":0"`` picks a free port).
    address : str, optional
        ``tcp://host:port`` or ``tls://host:port`` of an existing scheduler.
    tls_ca_file, tls_cert, tls_key : str, optional
        Certificates for a ``tls://`` scheduler (CA, client certificate, client key).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "address"] = "local"
    workers: int | None = Field(None, ge=1)
    threads_per_worker: int | None = Field(None, ge=1)
    memory_limit: str | None = None
    processes: bool = True
    dashboard_address: str = ":8787"
    address: str | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        if self.kind == "address" and not self.address:
            raise ValueError("kind 'address' needs address: tcp://host:port or tls://host:port")
        if self.address and not self.address.startswith(("tcp://", "tls://", "inproc://")):
            raise ValueError(
                f"address {self.address!r} must start with tcp:// or tls:// (e.g. "
                "tcp://10.0.0.5:8786)"
            )
        tls = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if any(tls) and not (self.address or "").startswith("tls://"):
            raise ValueError("TLS certificates are given but the address is not tls://")
        if (self.address or "").startswith("tls://") and not all(tls):
            raise ValueError("a tls:// address needs tls_ca_file, tls_cert and tls_key")
        for f in tls:
            if f and not Path(f).is_file():
                raise ValueError(f"TLS file {f} does not exist")
        return self

    def security(self) -> Security | None:
        """The TLS security object for a ``tls://`` scheduler, else None."""
        if not self.tls_ca_file:
            return None
        return Security(
            tls_ca_file=self.tls_ca_file,
            tls_client_cert=self.tls_cert,
            tls_client_key=self.tls_key,
            require_encryption=True,
        )


# glibc thresholds for local worker processes. distributed sets MALLOC_TRIM_THRESHOLD_ to 64 KiB,
# which also freezes glibc's adaptive mmap threshold: every chunk-sized buffer (a 32 MB block,
# zarr's copies, the compressed output) is then a fresh mmap whose pages the kernel faults in and
# zeroes. Keeping up to 128 MiB per worker made ingest ~20% faster (measured with
# benchmarks/ingest.py), for that much more resident memory per worker.
_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": 2**27, "MALLOC_MMAP_THRESHOLD_": 2**27}


def _worker_environ() -> dict[str, object]:
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.update(_MALLOC_ENV)
    return {"distributed.nanny.pre-spawn-environ": environ}


@contextlib.contextmanager
def cluster_client(
    config: ClusterConfig, *, performance_report_path: str | None = None
) -> Iterator[Client]:
    """Yield a Client on the configured cluster; close what was started on exit.

    Parameters
    ----------
    config : ClusterConfig
    performance_report_path : str, optional
        Save Dask's HTML performance report of everything run inside the block here.

    Yields
    ------
    distributed.Client
        ``client.dashboard_link`` is the dashboard to watch.
    """
    with contextlib.ExitStack() as stack:
        if config.address:
            client = stack.enter_context(Client(config.address, security=config.security()))
        else:
            kwargs: dict[str, object] = {
                "processes": config.processes,
                "dashboard_address": config.dashboard_address,
            }
            if config.workers is not None:
                kwargs["n_workers"] = config.workers
            if config.threads_per_worker is not None:
                kwargs["threads_per_worker"] = config.threads_per_worker
            if config.memory_limit is not None:
                kwargs["memory_limit"] = config.memory_limit
            with dask.config.set(_worker_environ()):
                cluster = stack.enter_context(LocalCluster(**kwargs))
            client = stack.enter_context(Client(cluster))
        log.info("Dask dashboard: %s", client.dashboard_link)
        if performance_report_path:
            Path(performance_report_path).parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(performance_report(filename=performance_report_path))
        yield client
