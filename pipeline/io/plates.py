"""The ``ingest_plates`` stage: multi-well plates into the ``images`` collection.

Two ways in, one store out. Image files come with an image index and a plate map
(:func:`pipeline.io.platemap.load_plate`); OME-Zarr HCS plates come as they are, with an
optional plate map for their treatments (:func:`pipeline.io.hcs.load_hcs`). Either is checked
completely before any work (:func:`check_plates`, the stage's preflight: one
:class:`~pipeline.errors.PlateMapError` listing every problem), then becomes a
:class:`~pipeline.io.inputs.SourceSet` in plate, well, day, field order that the ingest's own
machinery writes (:func:`pipeline.io.ingest.ingest_sources`): the same plan, quarantine,
chunking, resumable chunk tasks and tables as ``ingest``. OME-Zarr fields are read by
:func:`~pipeline.io.hcs.read_field_header` and :func:`~pipeline.io.hcs.read_field` in place
of the file readers, so a plate ingested from files and the same plate ingested from
OME-Zarr give the same ``images``, coordinates and tables (but for ``source`` and
``format``).

The store then has ``images (image, y, x[, channel])`` with the coordinates ``plate``,
``well``, ``row``, ``column``, ``field``, ``day``, ``treatment``, ``concentration``,
``unit``, ``group`` and ``edge`` (and any further columns of the index and plate map) on
``image``, ``tables/images.parquet`` and ``tables/quarantine.parquet`` as ``ingest`` writes
them, and ``tables/plate_wells.parquet``: one row per well of the plate map, with how many of
its images were ingested and how many are valid. An image that cannot be decoded is
quarantined as by ``ingest``: its row stays, with ``valid`` false, and its well shows it in
``plate_wells`` (a file the header step already refuses has no row in ``images``; its well
shows it too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError
from pipeline.io.imagefiles import read_header, read_image
from pipeline.io.ingest import HeaderFn, ReadFn, check_sources, ingest_sources
from pipeline.io.ingest_plan import collection_fingerprint
from pipeline.io.platemap import WELL_COLUMNS, PlateImages, load_plate
from pipeline.io.spec import IngestParams, PlateIngestParams

__all__ = [
    "TASK",
    "PlateInputs",
    "check_plates",
    "ingest_plates",
    "plate_inputs",
    "plates_fingerprint",
    "well_table",
]

log = logging.getLogger(__name__)

#: The stage's name.
TASK = "ingest_plates"


@dataclass(frozen=True)
class PlateInputs:
    """What ``ingest_plates`` ingests, and how.

    Attributes
    ----------
    plates : PlateImages
        The images (in order) and wells, checked.
    ingest : IngestParams
        The ingest's options; ``sources`` names the inputs (for the manifest only).
    header, read : callables
        How the ingest reads each image (image files, or OME-Zarr fields).
    """

    plates: PlateImages
    ingest: IngestParams
    header: HeaderFn
    read: ReadFn


def plate_inputs(params: PlateIngestParams) -> PlateInputs:
    """Read and check the stage's inputs (file names, stats and metadata only).

    Raises
    ------
    PlateMapError
        Every problem of the index, the plate map or the OME-Zarr plates.
    """
    header: HeaderFn = read_header
    read: ReadFn = read_image
    if params.index is not None:
        if params.plate_map is None:  # PlateIngestParams refuses this; a clear error anyway
            raise ParameterError("ingest_plates: index needs a plate_map")
        plates = load_plate(
            params.index,
            params.plate_map,
            fmt=params.plate_format,
            exclude_edge=params.exclude_edge,
            groups=params.groups,
        )
        sources = [params.index, params.plate_map]
    else:
        from pipeline.io.hcs import load_hcs, read_field, read_field_header

        hcs = list(params.hcs or [])
        plates = load_hcs(
            hcs,
            params.plate_map,
            fmt=params.plate_format,
            exclude_edge=params.exclude_edge,
            groups=params.groups,
        )
        sources = [*hcs, *([params.plate_map] if params.plate_map else [])]
        header, read = read_field_header, read_field
    ingest = IngestParams.model_validate({"sources": sources, **params.ingest_options()})
    return PlateInputs(plates, ingest, header, read)


def check_plates(store: RunStore, params: PlateIngestParams) -> None:
    """Preflight: the index and plate map (or the plates) are sound and the store can take them.

    Raises
    ------
    PlateMapError
        Listing every problem found, each with its file, row and fix (exit 2).
    CollectionMismatchError
        The store holds another collection and ``overwrite`` is false.
    """
    inputs = plate_inputs(params)
    check_sources(store, inputs.ingest, inputs.plates.source_set())


def plates_fingerprint(params: PlateIngestParams) -> str:
    """The fingerprint of the plates' images, index and plate map now (the stage's
    ``inputs``): a plate added to the index (or a new OME-Zarr plate) makes the job run the
    stage again, which grows the collection by the new plate's images only.

    Raises
    ------
    PlateMapError
        The inputs have problems (the preflight then lists them).
    """
    inputs = plate_inputs(params)
    return collection_fingerprint(inputs.plates.source_set(), inputs.ingest)


def well_table(store: RunStore, plates: PlateImages) -> pd.DataFrame:
    """The plate map's wells with what the ingest made of their images.

    Returns
    -------
    pandas.DataFrame
        :attr:`PlateImages.wells` plus ``n_ingested`` (rows in ``images``) and ``n_valid``
        (of those, decoded); ``n_images - n_valid`` images of the well were quarantined.
    """
    ds = store.open_dataset()
    got = pd.DataFrame(
        {
            "plate": [str(v) for v in ds["plate"].values],
            "well": [str(v) for v in ds["well"].values],
            "valid": np.asarray(ds["valid"].values, dtype=bool),
        }
    )
    per_well = got.groupby(["plate", "well"])["valid"].agg(["size", "sum"])
    wells = plates.wells.copy()
    keys = list(zip(wells["plate"].astype(str), wells["well"].astype(str), strict=True))
    wells["n_ingested"] = [int(per_well["size"].get(k, 0)) for k in keys]
    wells["n_valid"] = [int(per_well["sum"].get(k, 0)) for k in keys]
    first = [*WELL_COLUMNS, "n_ingested", "n_valid"]
    return wells[[*first, *(c for c in wells.columns if c not in first)]]


def ingest_plates(ctx: RunContext, params: PlateIngestParams) -> dict[str, int]:
    """Ingest plates (image files + index + plate map, or OME-Zarr HCS) into ``ctx.store``.

    Parameters
    ----------
    ctx : RunContext
        As for :func:`pipeline.io.ingest.ingest_images` (``ctx.forced`` redoes everything).
    params : PlateIngestParams

    Returns
    -------
    dict
        The ingest's counts (``images``, ``quarantined``, ``chunks``, ``chunks_written``)
        and ``plates``, ``wells`` (of the plate map) and ``excluded`` (images of edge wells
        left out).

    Raises
    ------
    PlateMapError
        The inputs have problems (all listed; before any work).
    CollectionMismatchError, IngestError
        As :func:`pipeline.io.ingest.ingest_images`.
    """
    inputs = plate_inputs(params)
    plates = inputs.plates
    counts = ingest_sources(
        ctx, inputs.ingest, plates.source_set(), header=inputs.header, read=inputs.read
    )
    write_table(ctx.store, "plate_wells", well_table(ctx.store, plates))
    n_plates = plates.wells["plate"].nunique()
    log.info(
        "ingest_plates: %d plate(s), %d well(s), %d image(s) (%d of edge wells left out)",
        n_plates,
        len(plates.wells),
        counts["images"],
        plates.n_excluded,
    )
    return {
        **counts,
        "plates": int(n_plates),
        "wells": len(plates.wells),
        "excluded": plates.n_excluded,
    }
