"""The ``reduce`` stage: PCA of a store array, streamed from its Zarr chunks.

Fits :func:`~pipeline.features.pca.fit_pca` on the selected rows (the kept cutouts by
default) and writes, under names taken from the step (:func:`~pipeline.features.spec.
reduce_outputs`; for the step ``reduce``: ``reduced``, ``explained_variance``, ``pca``):

* the array ``(image, component)``, with NaN rows for images that were not selected so that
  it shares the collection's ``image`` dimension;
* the explained-variance table;
* the basis, ``models/<name>.npz``, so that new data can be projected (:func:`load_pca`).
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from zarr.codecs import ZstdCodec

from pipeline.core.artifacts import load_arrays, save_arrays
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError
from pipeline.features.matrix import open_matrix
from pipeline.features.pca import PCABasis, fit_pca
from pipeline.features.spec import ReduceParams, reduce_outputs

__all__ = ["ReduceParams", "load_pca", "run_reduce"]

log = logging.getLogger(__name__)


def _blank_rows(block: np.ndarray, keep: np.ndarray) -> np.ndarray:
    out = block.copy()
    out[~keep.reshape(-1)] = np.nan  # keep: (rows, 1) mask chunk
    return out


def run_reduce(ctx: RunContext, params: ReduceParams) -> dict[str, int]:
    """Fit the PCA and write the components, the explained variance and the basis.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.step`` names the outputs; ``ctx.seed`` seeds the randomised SVD.
    params : ReduceParams

    Returns
    -------
    dict
        ``rows`` fitted, ``features`` in, ``components`` out.

    Raises
    ------
    ParameterError
        If ``n_components`` exceeds the rows or features available.
    """
    store, client, seed = ctx.store, ctx.client, ctx.seed
    out = reduce_outputs(ctx.step_name("reduce"))
    m = open_matrix(store, params.input, params.rows)
    n_features = int(m.data.shape[1])
    if params.n_components > min(m.n_rows, n_features):
        raise ParameterError(
            f"reduce: n_components = {params.n_components}, but {params.input!r} has "
            f"{m.n_rows} selected row(s) of {n_features} feature(s); choose n_components <= "
            f"{min(m.n_rows, n_features)}"
        )
    basis = fit_pca(
        m.data,
        params.n_components,
        method=params.method,
        n_power_iter=params.n_power_iter,
        oversample=params.oversample,
        seed=seed,
        client=client,
    )
    full = open_matrix(store, params.input, "all").data
    keep = np.zeros(m.n_total, dtype=bool)
    keep[m.positions] = True
    projected = da.asarray(basis.transform(full)).astype(np.float32)
    projected = da.map_blocks(
        _blank_rows, projected, da.from_array(keep, chunks=(projected.chunks[0],))[:, None],
        dtype=np.float32,
    )  # fmt: skip
    rows_per_chunk = projected.chunks[0][0]
    projected = projected.rechunk((rows_per_chunk, -1))
    k = params.n_components
    name, dim = out.array, out.dim
    store.reset_task(ctx.step_name("reduce"), [name, dim])
    template = xr.Dataset(
        {
            name: (
                ("image", dim),
                da.zeros((m.n_total, k), chunks=(rows_per_chunk, k), dtype=np.float32),
            )
        },
        coords={dim: np.arange(k)},
    )
    template[name].attrs["description"] = (
        f"PCA components of {params.input!r} (float32); NaN for images not selected"
    )
    encoding = {name: {"chunks": (rows_per_chunk, k), "compressors": [ZstdCodec(level=1)]}}
    store.write_template(template, encoding, mode="a")
    target = store.open_array(name)
    task = da.store(projected, target, lock=False, compute=False)  # type: ignore[arg-type]
    if client is not None:
        client.compute(task).result()
    else:
        task.compute()
    save_arrays(
        store,
        out.model,
        basis.to_arrays(),
        n_samples=basis.n_samples,
        method=basis.method,
        input=params.input,
        rows=params.rows,
    )
    ratio = basis.explained_variance_ratio
    write_table(
        store,
        out.table,
        pd.DataFrame(
            {
                "component": np.arange(k),
                "explained_variance": basis.explained_variance,
                "explained_variance_ratio": ratio,
                "cumulative_ratio": np.cumsum(ratio),
            }
        ),
        schema="explained_variance",
    )
    log.info(
        "reduce: %d x %d -> %d components explaining %.1f%% of the variance",
        m.n_rows,
        n_features,
        k,
        100 * ratio.sum(),
    )
    return {"rows": m.n_rows, "features": n_features, "components": k}


def load_pca(store: RunStore, step: str = "reduce") -> PCABasis:
    """The PCA basis ``reduce`` step ``step`` fitted in ``store``, to project new data with
    :meth:`PCABasis.transform`.

    Raises
    ------
    StoreError
        If the store has no fitted PCA.
    """
    arrays, meta = load_arrays(store, reduce_outputs(step).model)
    return PCABasis.from_arrays(arrays, n_samples=int(meta["n_samples"]), method=meta["method"])
