"""Sources detected in a survey mosaic, and their cross-match with a reference."""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["SEP_COLUMNS", "SEP_UNITS", "TABLES"]

_SEP: dict[str, tuple[str, str]] = {
    "image_id": ("source identifier, also the cutouts' `image_id`", ""),
    "tile": ("the mosaic tile (chunk) whose core holds the centroid, `r{row}c{col}`", ""),
    "x": ("centroid column, 0-based (numpy; SEP's `x`) [X_IMAGE - 1]", "pix"),
    "y": ("centroid row, 0-based (numpy; SEP's `y`) [Y_IMAGE - 1]", "pix"),
    "x_image": ("centroid column in FITS' 1-based pixels [X_IMAGE]", "pix"),
    "y_image": ("centroid row in FITS' 1-based pixels [Y_IMAGE]", "pix"),
    "ra": ("right ascension of the centroid (ICRS, from the FITS WCS; NaN without)", "deg"),
    "dec": ("declination of the centroid (ICRS, from the FITS WCS; NaN without)", "deg"),
    "xmin": ("first column of the footprint, 0-based [XMIN_IMAGE - 1]", "pix"),
    "xmax": ("last column of the footprint, 0-based [XMAX_IMAGE - 1]", "pix"),
    "ymin": ("first row of the footprint, 0-based [YMIN_IMAGE - 1]", "pix"),
    "ymax": ("last row of the footprint, 0-based [YMAX_IMAGE - 1]", "pix"),
    "npix": ("pixels of the isophotal footprint [ISOAREA_IMAGE]", "pix2"),
    "a": ("semi-major axis, RMS of the light along it [A_IMAGE]", "pix"),
    "b": ("semi-minor axis [B_IMAGE]", "pix"),
    "theta": ("position angle, counter-clockwise from +x towards +y (SEP's)", "rad"),
    "theta_image": ("position angle in degrees [THETA_IMAGE]", "deg"),
    "angle_deg": (
        "major axis as the cutouts are turned (degrees, y up as shown with row 0 "
        "on top: 180 - theta_image)",
        "deg",
    ),
    "elongation": ("a / b [ELONGATION]", ""),
    "ellipticity": ("1 - b / a [ELLIPTICITY]", ""),
    "flux": ("isophotal flux above the background [FLUX_ISO]", "adu"),
    "flux_auto": ("flux in the Kron ellipse [FLUX_AUTO]", "adu"),
    "fluxerr_auto": ("its error from the background RMS (and the gain) [FLUXERR_AUTO]", "adu"),
    "mag_auto": ("mag_zeropoint - 2.5 log10(flux_auto) [MAG_AUTO]", "mag"),
    "magerr_auto": ("its error [MAGERR_AUTO]", "mag"),
    "kron_radius": (
        "the Kron aperture in units of a and b: kron_fact x the first-moment "
        "radius, at least min_radius; flux_auto sums that ellipse [KRON_RADIUS]",
        "",
    ),
    "flux_radius": ("half-light radius of flux_auto [FLUX_RADIUS]", "pix"),
    "peak": ("brightest pixel above the background [FLUX_MAX]", "adu"),
    "thresh": ("detection threshold at the object (image units)", "adu"),
    "background": ("background at the centroid [BACKGROUND]", "adu"),
    "background_rms": ("background RMS at the centroid", "adu"),
    "flags": (
        "Source Extractor's FLAGS: 1 masked/blank pixels in the Kron aperture, "
        "2 deblended, 4 saturated, 8 touches the image edge, 16 aperture off the "
        "image, 32 footprint beyond the largest halo, 64 deblending overflow",
        "",
    ),
    "sep_flags": ("SEP's own object flags (sep.OBJ_MERGED, OBJ_TRUNC, ...)", ""),
}

#: The SEP catalog's columns, in order (fixed-aperture columns follow them).
SEP_COLUMNS: tuple[str, ...] = tuple(_SEP)
#: FITS units of its columns (TUNITn); fixed apertures as flux_auto's.
SEP_UNITS: dict[str, str] = {k: u for k, (_, u) in _SEP.items() if u}

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name="sources",
        description="One row per source SEP extracted from the mosaic (stage "
        "`detect_sources`, method `sep`), in the order of the cutouts' `image` dimension; "
        "Source Extractor's names in brackets. The same table is written as FITS, "
        "`tables/sources.fits`.",
        columns={k: d for k, (d, _) in _SEP.items()},
        # flux_aper_<d>, fluxerr_aper_<d>, mag_aper_<d>: one triple per fixed aperture
        # diameter <d> px ([FLUX_APER], [FLUXERR_APER], [MAG_APER]).
        open_columns=True,
    ),
    TableSchema(
        name="blob_sources",
        description="One row per blob detected in the mosaic (stage `detect_sources`, "
        "methods `log` and `doh`), written as `tables/sources.parquet`, in the order of the "
        "cutouts' `image` dimension.",
        columns={
            "image_id": "source identifier, also the cutouts' `image_id`",
            "y": "row of the blob centre in the mosaic (px)",
            "x": "column of the blob centre in the mosaic (px)",
            "sigma": "blob scale (px)",
            "tile": "the mosaic tile (chunk) whose core holds the centre, `r{row}c{col}`",
            "angle_deg": "major axis of the source's cutout (degrees, as in `catalog`)",
        },
    ),
    TableSchema(
        name="source_matches",
        description="The sources cross-matched with a reference catalog (stage "
        "`match_sources`): completeness and purity per magnitude bin. The bins span both "
        "catalogs' magnitudes: completeness counts reference sources by their magnitude, "
        "purity counts sources by mag_auto (a truth table's magnitude is -2.5 log10 peak).",
        columns={
            "mag_lo": "bin's lower edge (mag)",
            "mag_hi": "bin's upper edge (mag)",
            "n_reference": "reference sources in the bin (by reference magnitude)",
            "n_recovered": "of which matched by a source",
            "completeness": "n_recovered / n_reference (NaN if empty)",
            "n_detected": "sources in the bin (by mag_auto)",
            "n_true": "of which matched to a reference source",
            "purity": "n_true / n_detected (NaN if empty)",
        },
    ),
)
