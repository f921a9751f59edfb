"""Where a run computes: an embedded local cluster, an existing Dask scheduler, or a Dask
cluster the Dask operator makes for the run on Kubernetes (:mod:`pipeline.core.kubernetes`).

:func:`cluster_client` is the one way the CLI and the runner get a ``distributed.Client``;
the choice lives in the job spec's ``cluster`` section (:mod:`pipeline.core.cluster_config`)
or the CLI's cluster options.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import dask
from distributed import Client, LocalCluster, performance_report
from distributed.security import Security

from pipeline.core.cluster_config import (
    SCHEDULER_ADDRESS_ENV,
    AddressClusterConfig,
    ClusterConfig,
    KubernetesClusterConfig,
    LocalClusterConfig,
    check_address,
)
from pipeline.errors import ClusterError

__all__ = ["ClusterConfig", "LocalClusterConfig", "cluster_client", "scheduler_address", "security"]

log = logging.getLogger(__name__)


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


def scheduler_address(
    config: AddressClusterConfig, environ: Mapping[str, str] | None = None
) -> str:
    """The address to connect to: ``config.address``, else ``DASK_SCHEDULER_ADDRESS`` (which
    the Dask operator sets in a ``DaskJob``'s runner pod).

    Raises
    ------
    ClusterError
        If neither gives one, or the variable's value is not a scheduler address.
    """
    if config.address:
        return config.address
    env = os.environ if environ is None else environ
    value = env.get(SCHEDULER_ADDRESS_ENV, "").strip()
    if not value:
        raise ClusterError(
            f"cluster kind 'address' has no address and {SCHEDULER_ADDRESS_ENV} is not set: give "
            "cluster.address (or --scheduler tcp://host:8786), or run inside a DaskJob, whose "
            f"runner pod has {SCHEDULER_ADDRESS_ENV}"
        )
    try:
        return check_address(value, SCHEDULER_ADDRESS_ENV)
    except ValueError as exc:
        raise ClusterError(f"{exc}; fix the variable or give cluster.address") from None


def security(config: AddressClusterConfig) -> Security | None:
    """The TLS security object for a ``tls://`` scheduler, else None.

    Raises
    ------
    ClusterError
        If a TLS file the config names does not exist here.
    """
    files = config.tls_files
    if files and not scheduler_address(config).startswith("tls://"):
        raise ClusterError(
            f"TLS certificates are given but the scheduler address {scheduler_address(config)} "
            "is not tls://"
        )
    for option, path in files.items():
        if not Path(path).is_file():
            raise ClusterError(
                f"cluster.{option}: TLS file {path} does not exist on this machine; give the "
                "path of the file (or run where it is mounted)"
            )
    if not files:
        return None
    return Security(
        tls_ca_file=config.tls_ca_file,
        tls_client_cert=config.tls_cert,
        tls_client_key=config.tls_key,
        require_encryption=True,
    )


def _connect(config: AddressClusterConfig) -> Client:
    """A client of the scheduler at ``config.address`` that has at least one worker.

    Raises
    ------
    ClusterError
        If the scheduler cannot be reached within ``connect_timeout``, or has no worker
        within ``worker_timeout``.
    """
    address = scheduler_address(config)
    sec = security(config)
    try:
        client = Client(address, security=sec, timeout=config.connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within "
            f"{config.connect_timeout:g} s ({type(exc).__name__}); check that it runs and the "
            "address (cluster.address or --scheduler), or raise cluster.connect_timeout"
        ) from None
    if not client.scheduler_info().get("workers"):
        log.warning(
            "the scheduler at %s has no workers; waiting up to %g s for one",
            address,
            config.worker_timeout,
        )
        try:
            client.wait_for_workers(1, timeout=config.worker_timeout)
        except (OSError, TimeoutError):
            client.close()
            raise ClusterError(
                f"the Dask scheduler at {address} has no workers after "
                f"{config.worker_timeout:g} s; start workers (dask worker {address}) or "
                "raise cluster.worker_timeout"
            ) from None
    return client


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
        if isinstance(config, AddressClusterConfig):
            client = stack.enter_context(_connect(config))
        elif isinstance(config, KubernetesClusterConfig):
            from pipeline.core.kubernetes import kubernetes_client

            client = stack.enter_context(kubernetes_client(config))
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
