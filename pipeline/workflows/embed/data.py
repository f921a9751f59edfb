"""Which store arrays the encoder can train on (:func:`image_array`); the batches themselves
come from :mod:`pipeline.compute.batches`."""

from __future__ import annotations

from pipeline.compute.batches import ChunkSource, epoch_batches, steps_per_epoch, window_rows_for
from pipeline.core.store import RunStore
from pipeline.errors import ParameterError, StoreError

__all__ = [
    "ChunkSource",
    "epoch_batches",
    "image_array",
    "steps_per_epoch",
    "window_rows_for",
]


def image_array(store: RunStore, name: str, stage: str) -> tuple[int, tuple[int, ...], list[int]]:
    """Check that ``name`` is an image array the encoder can take, and describe it.

    Parameters
    ----------
    store : RunStore
    name : str
        A store array ``(image, y, x)`` or ``(image, y, x, channel)`` with 1 or 3 channels.
    stage : str
        The stage asking, for messages.

    Returns
    -------
    channels : int
    shape : tuple of int
    chunk_rows : list of int
        Rows per chunk along ``image``.

    Raises
    ------
    StoreError
        If the array is missing or not shaped as images.
    ParameterError
        If it has a channel count other than 1 or 3.
    """
    if not store.has_array(name):
        raise StoreError(
            f"array {name!r} is not in {store.zarr_url}; run the stage that writes it first "
            "(`preprocess` writes cutouts, ingest writes images)"
        )
    array = store.open_array(name, mode="r")
    dims = store.open_dataset()[name].dims
    if dims[0] != "image" or array.ndim not in (3, 4):
        raise StoreError(
            f"array {name!r} has dimensions {dims}; {stage} needs (image, y, x) or "
            "(image, y, x, channel)"
        )
    channels = int(array.shape[3]) if array.ndim == 4 else 1
    if channels not in (1, 3):
        raise ParameterError(
            f"{stage}: {name!r} has {channels} channels; the encoder takes 1 or 3 (ingest with "
            "--mode gray or --mode rgb)"
        )
    n, per_chunk = int(array.shape[0]), int(array.chunks[0])
    chunk_rows = [min(per_chunk, n - s) for s in range(0, n, per_chunk)]
    return channels, tuple(int(v) for v in array.shape), chunk_rows
