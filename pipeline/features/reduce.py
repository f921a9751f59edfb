"""The ``reduce`` stage: PCA of a store array, streamed from its Zarr chunks.

Fits :func:`~pipeline.features.pca.fit_pca` on the selected rows (the kept cutouts by default),
writes
``reduced (image, component)`` (NaN rows for images that were not selected, so the array
shares the collection's ``image`` dimension), ``tables/explained_variance.parquet``, and the
basis as ``models/pca.npz`` so that new data can be projected with :func:`load_pca`.
"""

from __future__ import annotations

import logging
from typing import Literal

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client
from pydantic import BaseModel, ConfigDict, Field
from zarr.codecs import ZstdCodec

from pipeline.core.artifacts import load_arrays, save_arrays
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError
from pipeline.features.matrix import RowSelection, open_matrix
from pipeline.features.pca import PCABasis, fit_pca

__all__ = ["REDUCED", "ReduceParams", "load_pca", "run_reduce"]

log = logging.getLogger(__name__)

#: Name of the array the stage writes.
REDUCED = "reduced"


class ReduceParams(BaseModel):
    """Parameters of the ``reduce`` stage.

    Attributes
    ----------
    input : str
        Store array to reduce, ``image`` first, the rest flattened (``cutouts``: 128 x 128
        cutouts become 16,384 features).
    rows : {"kept", "all"}
        Rows the PCA is fitted on and ``reduced`` holds: ``kept`` = the catalog's kept images.
    n_components : int
        The galaxy notebook uses 25 (200 before its agglomerative clustering).
    method : {"randomized", "exact"}
        Randomised SVD (``dask.array.linalg.svd_compressed``) or exact tall-and-skinny SVD.
    n_power_iter, oversample : int
        Accuracy knobs of the randomised SVD.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = "cutouts"
    rows: RowSelection = "kept"
    n_components: int = Field(25, ge=1)
    method: Literal["randomized", "exact"] = "randomized"
    n_power_iter: int = Field(4, ge=0)
    oversample: int = Field(10, ge=0)


def _blank_rows(block: np.ndarray, keep: np.ndarray) -> np.ndarray:
    out = block.copy()
    out[~keep.reshape(-1)] = np.nan  # keep: (rows, 1) mask chunk
    return out


def run_reduce(
    store: RunStore, params: ReduceParams, client: Client | None, *, seed: int = 0
) -> dict[str, int]:
    """Fit the PCA and write ``reduced``, the explained variance and the basis.

    Returns
    -------
    dict
        ``rows`` fitted, ``features`` in, ``components`` out.

    Raises
    ------
    ParameterError
        If ``n_components`` exceeds the rows or features available.
    """
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
    store.reset_task("reduce", [REDUCED, "component"])
    template = xr.Dataset(
        {
            REDUCED: (
                ("image", "component"),
                da.zeros((m.n_total, k), chunks=(rows_per_chunk, k), dtype=np.float32),
            )
        },
        coords={"component": np.arange(k)},
    )
    template[REDUCED].attrs["description"] = (
        f"PCA components of {params.input!r} (float32); NaN for images not selected"
    )
    encoding = {REDUCED: {"chunks": (rows_per_chunk, k), "compressors": [ZstdCodec(level=1)]}}
    store.write_template(template, encoding, mode="a")
    target = store.open_array(REDUCED)
    task = da.store(projected, target, lock=False, compute=False)  # type: ignore[arg-type]
    if client is not None:
        client.compute(task).result()
    else:
        task.compute()
    save_arrays(
        store,
        "pca",
        basis.to_arrays(),
        n_samples=basis.n_samples,
        method=basis.method,
        input=params.input,
        rows=params.rows,
    )
    ratio = basis.explained_variance_ratio
    write_table(
        store,
        "explained_variance",
        pd.DataFrame(
            {
                "component": np.arange(k),
                "explained_variance": basis.explained_variance,
                "explained_variance_ratio": ratio,
                "cumulative_ratio": np.cumsum(ratio),
            }
        ),
    )
    log.info(
        "reduce: %d x %d -> %d components explaining %.1f%% of the variance",
        m.n_rows,
        n_features,
        k,
        100 * ratio.sum(),
    )
    return {"rows": m.n_rows, "features": n_features, "components": k}


def load_pca(store: RunStore) -> PCABasis:
    """The PCA basis the ``reduce`` stage fitted in ``store``, to project new data with
    :meth:`PCABasis.transform`.

    Raises
    ------
    StoreError
        If the store has no fitted PCA.
    """
    arrays, meta = load_arrays(store, "pca")
    return PCABasis.from_arrays(arrays, n_samples=int(meta["n_samples"]), method=meta["method"])
