"""``match_sources``: the mosaic's catalog against a reference catalog (or the generator's truth).

One-to-one matching within a radius (:func:`pipeline.imaging.crossmatch.match_positions`), on
the sky when both catalogs have sky coordinates, else in pixels; completeness (reference
sources recovered) and purity (sources that are real) per magnitude bin into
``tables/source_matches.parquet``, the overall figures into ``tables/source_matches.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.context import RunContext
from pipeline.core.tables import read_table, write_table
from pipeline.errors import InputError, StoreError
from pipeline.io.mosaic import MOSAIC
from pipeline.workflows.mosaic.spec import MatchParams

__all__ = ["MATCH_SUMMARY", "match_sources", "truth_beside"]

log = logging.getLogger(__name__)

#: The overall figures of the last match.
MATCH_SUMMARY = "tables/source_matches.json"


def truth_beside(source: str) -> Path | None:
    """The truth table a generated mosaic ``source`` has beside it, if any."""
    if "://" in source and not source.startswith("file://"):
        return None
    path = Path(source.removeprefix("file://"))
    truth = path.with_name(f"{path.stem}_truth.csv")
    return truth if truth.is_file() else None


def _positions(table: Any, columns: tuple[str, str]) -> npt.NDArray[np.float64]:
    return np.column_stack([table[c].to_numpy(dtype=np.float64) for c in columns])


def match_sources(ctx: RunContext, params: MatchParams) -> dict[str, float]:
    """Cross-match ``tables/sources`` with a reference; write completeness and purity.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds the SEP catalog of ``detect_sources``.
    params : MatchParams

    Returns
    -------
    dict
        ``matched``, ``recall``, ``precision``, ``f1`` and ``median_distance`` (px, or arcsec
        on the sky).

    Raises
    ------
    InputError
        If there is no reference (none given and no truth beside the mosaic), it cannot be
        read, or it has only sky coordinates while the mosaic has no WCS.
    StoreError
        If ``detect_sources`` has not written a SEP catalog.
    """
    from pipeline.imaging.crossmatch import (
        completeness_purity,
        match_positions,
        overall_scores,
        sky_offsets_arcsec,
    )
    from pipeline.io.reference_catalog import read_reference_catalog

    store = ctx.store
    sources = read_table(store, "sources")
    if "mag_auto" not in sources.columns:
        raise StoreError(
            f"{store.url}: tables/sources.parquet holds blobs (method log/doh), which have no "
            "magnitudes; run detect_sources with method: sep before match_sources"
        )
    reference = params.reference
    if reference is None:
        source = str(store.open_array(MOSAIC, mode="r").attrs.get("source", ""))
        truth = truth_beside(source)
        if truth is None:
            raise InputError(
                f"match_sources: no `reference` given and no truth table beside the mosaic "
                f"{source!r}; give `reference:` a CSV or FITS catalog with ra/dec or x/y"
            )
        reference = str(truth)
    ref = read_reference_catalog(reference)
    has_sky = bool(np.isfinite(sources["ra"]).any()) if len(sources) else False
    frame = ref.frame
    if frame == "sky" and not has_sky:
        if {"x", "y"} <= set(ref.table.columns):
            frame = "pixel"
        else:
            raise InputError(
                f"match_sources: the reference {reference!r} has only ra/dec, but the mosaic "
                "has no WCS; give a reference with x/y (or X_IMAGE/Y_IMAGE) pixel columns"
            )
    if frame == "sky":
        meta = (
            store.read_json("tables/sources_meta.json")
            if store.exists("tables/sources_meta.json")
            else {}
        )
        scale = meta.get("pixel_scale_arcsec") or 1.0
        radius = params.radius_arcsec or params.radius * float(scale)
        ra0, dec0 = float(np.nanmedian(sources["ra"])), float(np.nanmedian(sources["dec"]))
        det = sky_offsets_arcsec(sources["ra"], sources["dec"], ra0, dec0)
        refxy = sky_offsets_arcsec(ref.table["ra"], ref.table["dec"], ra0, dec0)
        unit = "arcsec"
    else:
        radius = params.radius
        det = _positions(sources, ("x", "y"))
        refxy = _positions(ref.table, ("x", "y"))
        unit = "px"
    match = match_positions(det, refxy, radius)
    ref_mag = (
        ref.table["mag"].to_numpy(dtype=np.float64)
        if "mag" in ref.table.columns
        else np.full(len(ref.table), np.nan)
    )
    bins = completeness_purity(
        ref_mag,
        match.ref_matched,
        sources["mag_auto"].to_numpy(dtype=np.float64),
        match.det_matched,
        bins=params.bin_width,
    )
    write_table(store, "source_matches", bins)
    scores = overall_scores(match)
    summary = {
        **{k: (float(v) if v is not None else None) for k, v in scores.items()},
        "reference": reference,
        "frame": frame,
        "radius": float(radius),
        "radius_unit": unit,
        "reference_magnitude": ref.magnitude,
    }
    store.write_json(MATCH_SUMMARY, summary)
    log.info(
        "match_sources: %d of %d sources matched %d reference sources within %.3g %s: "
        "recall %.3f, precision %.3f",
        scores["n_matched"],
        len(sources),
        len(ref.table),
        radius,
        unit,
        scores["recall"],
        scores["precision"],
    )
    return {
        "matched": int(scores["n_matched"]),
        "recall": float(scores["recall"]),
        "precision": float(scores["precision"]),
        "f1": float(scores["f1"]),
        "median_distance": float(scores["median_distance"]),
    }
