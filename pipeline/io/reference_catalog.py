"""Reference catalogs in: a user's CSV or FITS table, or a synthetic mosaic's truth table.

A reference catalog is what detections are cross-matched against. :func:`read_reference_catalog`
reads it, normalizes its column names to lower case, finds its coordinates (sky ``ra`` /
``dec`` in degrees, or 0-based pixel ``x`` / ``y``) and its magnitude, and stores them under
fixed names so the caller needs to know nothing of where the table came from.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.errors import InputError

__all__ = [
    "CSV_SUFFIXES",
    "FITS_SUFFIXES",
    "ReferenceCatalog",
    "read_reference_catalog",
]

log = logging.getLogger(__name__)

#: Suffixes read as comma-separated text (case-insensitive).
CSV_SUFFIXES = (".csv",)
#: Suffixes read as FITS tables (case-insensitive).
FITS_SUFFIXES = (".fits", ".fit", ".fts")

#: Sky coordinate pairs, in order of preference: (RA, Dec) in degrees.
_SKY = (("ra", "dec"), ("alpha_j2000", "delta_j2000"))
#: Magnitude columns, in order of preference.
_MAGNITUDES = ("mag", "mag_auto", "magnitude")
#: Flux columns, in order of preference, turned into ``-2.5 log10(flux)``.
_FLUXES = ("flux", "flux_auto")
#: Source Extractor writes this magnitude where it measured none (e.g. negative flux).
_MAG_SENTINEL = 99.0
#: Identifier columns read from CSV as text, so zero-padded ids (``"0007"``) survive.
_ID_COLUMNS = ("source_id", "id", "object_id", "name")


@dataclass(frozen=True)
class ReferenceCatalog:
    """A reference catalog, with its coordinates and magnitude under fixed column names.

    Attributes
    ----------
    table : pandas.DataFrame, n rows
        The rows with finite coordinates, in file order, index ``0 .. n-1``. Every column of
        the file, names in lower case, plus the normalized columns: ``ra``, ``dec``
        (float64, degrees) when ``frame == "sky"``; ``x``, ``y`` (float64, 0-based pixels,
        numpy convention: ``x`` the column, ``y`` the row) when the file has pixel
        coordinates (always when ``frame == "pixel"``); ``mag`` (float64, NaN where unknown)
        when ``magnitude`` is not None.
    frame : {"sky", "pixel"}
        Which coordinates to match on: ``ra`` / ``dec`` (``"sky"``) or ``x`` / ``y``
        (``"pixel"``).
    magnitude : str or None
        The (lower-case) column ``mag`` was derived from: ``"mag"``, ``"mag_auto"``,
        ``"magnitude"``, ``"flux"``, ``"flux_auto"`` or ``"peak"`` (a peak magnitude); None
        when the table has none of them (and no ``mag`` column is added).
    """

    table: pd.DataFrame
    frame: Literal["sky", "pixel"]
    magnitude: str | None


def read_reference_catalog(path: str | os.PathLike[str]) -> ReferenceCatalog:
    """Read a reference catalog from a CSV file or a FITS table.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` file (header row first), or a FITS file (``.fits``, ``.fit``, ``.fts``)
        whose first table HDU is read (``LDAC_OBJECTS`` instead, when the file is a Source
        Extractor FITS_LDAC catalog). Byte-string columns are decoded to ``str``; FITS
        columns holding a vector per row (e.g. ``FLUX_APER`` of several apertures) are left
        out. ``pipeline synth mosaic``'s ``<stem>_truth.csv`` is a valid reference catalog.

    Returns
    -------
    ReferenceCatalog
        Column names are matched case-insensitively and lower-cased. Coordinates:

        - ``ra`` / ``dec`` (degrees), or Source Extractor's ``alpha_j2000`` /
          ``delta_j2000`` (copied to ``ra`` / ``dec``): ``frame = "sky"``. Sky coordinates
          win when a table has both sky and pixel columns, since they do not depend on
          which image the detections came from; the pixel columns are still normalized.
        - else ``x`` / ``y``, 0-based pixels: ``frame = "pixel"``.
        - else ``x_image`` / ``y_image``, Source Extractor's 1-based FITS convention:
          ``x = x_image - 1``, ``y = y_image - 1`` are added, ``frame = "pixel"``.

        Magnitude, stored as ``mag``: the first of ``mag``, ``mag_auto``, ``magnitude``
        (Source Extractor's 99.0, "not measured", becomes NaN); else ``-2.5 log10`` of the
        first of ``flux``, ``flux_auto`` (NaN where the flux is not positive); else
        ``-2.5 log10(peak)``, a *peak* magnitude (the truth table's ``peak`` is the
        profile's central value, not its total flux, so it ranks sources by brightness but
        is offset from a total magnitude by an amount that depends on each source's size).

        Rows whose coordinates are NaN or infinite are dropped, with a logged warning giving
        their count.

    Raises
    ------
    InputError
        The file is missing or not a regular file; its suffix is not one of the accepted
        ones; it cannot be parsed (or a FITS file holds no table); it has no rows; two
        columns differ only in case; it has no coordinate columns (the message lists the
        columns found and the accepted names); a coordinate or magnitude column is not
        numeric; no row has finite coordinates; a declination is outside [-90, 90] degrees.
    """
    source = Path(path)
    if not source.exists():
        raise InputError(
            f"reference catalog {str(source)!r} does not exist; give the path of a CSV file "
            f"or FITS table ({', '.join(CSV_SUFFIXES + FITS_SUFFIXES)})"
        )
    if not source.is_file():
        raise InputError(
            f"reference catalog {str(source)!r} is not a regular file; give the path of a "
            "CSV file or FITS table, not a folder"
        )
    suffix = source.suffix.lower()
    if suffix in CSV_SUFFIXES:
        table = _read_csv(source)
    elif suffix in FITS_SUFFIXES:
        table = _read_fits(source)
    else:
        raise InputError(
            f"reference catalog {str(source)!r} has suffix {source.suffix!r}; expected one of "
            f"{', '.join(CSV_SUFFIXES + FITS_SUFFIXES)}; convert the table to CSV or FITS "
            "or rename it if it already is one"
        )
    if len(table) == 0:
        raise InputError(
            f"reference catalog {str(source)!r} has no rows; give a catalog with at least "
            "one source"
        )
    table = _lower_columns(table, source)
    frame = _normalize_coordinates(table, source)
    table = _drop_bad_positions(table, frame, source)
    magnitude = _normalize_magnitude(table, source)
    return ReferenceCatalog(table=table, frame=frame, magnitude=magnitude)


def _read_csv(source: Path) -> pd.DataFrame:
    """The rows of a CSV file, identifier columns as text."""
    try:
        header = pd.read_csv(source, nrows=0)
        ids = {c: str for c in header.columns if str(c).strip().lower() in _ID_COLUMNS}
        return pd.read_csv(source, dtype=ids)
    except pd.errors.EmptyDataError as exc:
        raise InputError(
            f"reference catalog {str(source)!r} is empty; give a CSV file with a header row "
            "and one row per source"
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"reference catalog {str(source)!r} cannot be read as CSV ({exc}); give a "
            "comma-separated text file with a header row"
        ) from exc


def _read_fits(source: Path) -> pd.DataFrame:
    """The rows of the first table HDU (or ``LDAC_OBJECTS``) of a FITS file."""
    from astropy.io import fits
    from astropy.table import Table
    from astropy.units import UnitsWarning

    try:
        with fits.open(source, memmap=False) as hdul:
            tables = [
                i for i, hdu in enumerate(hdul) if isinstance(hdu, fits.BinTableHDU | fits.TableHDU)
            ]
            ldac = [i for i in tables if str(hdul[i].name).upper() == "LDAC_OBJECTS"]
            names = [f"{i}:{type(hdu).__name__}" for i, hdu in enumerate(hdul)]
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InputError(
            f"reference catalog {str(source)!r} cannot be read as FITS ({exc}); give a FITS "
            "file holding a binary table, or a CSV file"
        ) from exc
    if not tables:
        raise InputError(
            f"reference catalog {str(source)!r} holds no table HDU (its HDUs: "
            f"{', '.join(names)}); give a FITS file with a BINTABLE extension"
        )
    index = (ldac or tables)[0]
    try:
        with warnings.catch_warnings():
            # Units are dropped on the way to pandas; a non-standard unit string (common in
            # survey catalogs) should not fail or clutter the read.
            warnings.simplefilter("ignore", UnitsWarning)
            table = Table.read(source, hdu=index, format="fits")
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(
            f"reference catalog {str(source)!r}: table HDU {index} cannot be read ({exc}); "
            "give a FITS file with a valid binary table"
        ) from exc
    vectors = [name for name in table.colnames if len(table[name].shape) > 1]
    if vectors:
        log.info(
            "reference catalog %s: leaving out %d column(s) holding a vector per row: %s",
            source,
            len(vectors),
            ", ".join(vectors),
        )
        table.remove_columns(vectors)
    table.convert_bytestring_to_unicode()
    frame = table.to_pandas()
    for name in frame.columns:
        # Object columns can still hold bytes (e.g. variable-length arrays decoded by hand).
        if frame[name].dtype == object:
            frame[name] = [v.decode() if isinstance(v, bytes) else v for v in frame[name]]
    return frame


def _lower_columns(table: pd.DataFrame, source: Path) -> pd.DataFrame:
    """``table`` with its column names stripped and lower-cased; clashes are an error."""
    lowered = [str(c).strip().lower() for c in table.columns]
    seen: dict[str, str] = {}
    for original, low in zip(table.columns, lowered, strict=True):
        if low in seen:
            raise InputError(
                f"reference catalog {str(source)!r} has columns {seen[low]!r} and "
                f"{str(original)!r}, which differ only in case; column names are matched "
                "case-insensitively, so rename or drop one of them"
            )
        seen[low] = str(original)
    out = table.copy()
    out.columns = pd.Index(lowered)
    return out


def _normalize_coordinates(table: pd.DataFrame, source: Path) -> Literal["sky", "pixel"]:
    """Add the float ``ra``/``dec`` and/or ``x``/``y`` columns (in place); the frame."""
    columns = set(table.columns)
    sky = next((pair for pair in _SKY if set(pair) <= columns), None)
    if sky is not None:
        ra = _numeric(table, sky[0], source, "degrees")
        dec = _numeric(table, sky[1], source, "degrees")
        table["ra"], table["dec"] = ra, dec
    has_xy = {"x", "y"} <= columns
    has_image = {"x_image", "y_image"} <= columns
    if sky is None and not has_xy and not has_image:
        found = ", ".join(str(c) for c in table.columns)
        raise InputError(
            f"reference catalog {str(source)!r} has no coordinate columns (its columns: "
            f"{found}); expected ra/dec or alpha_j2000/delta_j2000 (degrees), x/y (0-based "
            "pixels) or x_image/y_image (1-based pixels), in any case; rename the columns"
        )
    if has_xy and (sky is None or _all_numeric(table, ("x", "y"))):
        table["x"] = _numeric(table, "x", source, "pixels")
        table["y"] = _numeric(table, "y", source, "pixels")
    elif has_image and (sky is None or _all_numeric(table, ("x_image", "y_image"))):
        table["x"] = _numeric(table, "x_image", source, "pixels") - 1.0
        table["y"] = _numeric(table, "y_image", source, "pixels") - 1.0
    return "sky" if sky is not None else "pixel"


def _drop_bad_positions(
    table: pd.DataFrame, frame: Literal["sky", "pixel"], source: Path
) -> pd.DataFrame:
    """``table`` without rows whose coordinates are not finite (index reset)."""
    cols = ("ra", "dec") if frame == "sky" else ("x", "y")
    good = np.isfinite(table[cols[0]].to_numpy()) & np.isfinite(table[cols[1]].to_numpy())
    if not good.any():
        raise InputError(
            f"reference catalog {str(source)!r}: no row has finite {cols[0]}/{cols[1]} "
            f"coordinates (all {len(table)} are empty, NaN or infinite); fill in the "
            "coordinates"
        )
    if not good.all():
        log.warning(
            "reference catalog %s: dropping %d of %d rows whose %s/%s are NaN or infinite",
            source,
            int((~good).sum()),
            len(table),
            cols[0],
            cols[1],
        )
        table = table.loc[good].reset_index(drop=True)
    if frame == "sky":
        dec = table["dec"].to_numpy()
        out = np.flatnonzero(np.abs(dec) > 90.0)
        if out.size:
            raise InputError(
                f"reference catalog {str(source)!r}: dec is {float(dec[out[0]])!r} (degrees) in "
                f"{out.size} row(s); expected -90 <= dec <= 90; give the coordinates in "
                "degrees (not radians or sexagesimal hours)"
            )
    return table


def _normalize_magnitude(table: pd.DataFrame, source: Path) -> str | None:
    """Add the float ``mag`` column (in place); the column it came from, or None."""
    columns = set(table.columns)
    name = next((c for c in _MAGNITUDES if c in columns), None)
    if name is not None:
        mag = _numeric(table, name, source, "magnitudes")
        sentinel = mag >= _MAG_SENTINEL
        if sentinel.any():
            log.info(
                "reference catalog %s: %d %s value(s) of %g or more (not measured) set to NaN",
                source,
                int(sentinel.sum()),
                name,
                _MAG_SENTINEL,
            )
            mag[sentinel] = np.nan
        table["mag"] = mag
        return name
    name = next((c for c in (*_FLUXES, "peak") if c in columns), None)
    if name is None:
        return None
    flux = _numeric(table, name, source, "counts")
    positive = flux > 0
    mag = np.full(flux.shape, np.nan)
    mag[positive] = -2.5 * np.log10(flux[positive])
    table["mag"] = mag
    return name


def _all_numeric(table: pd.DataFrame, columns: tuple[str, ...]) -> bool:
    """Whether every column of ``columns`` has a numeric (not boolean) dtype."""
    return all(
        pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
        for c in columns
    )


def _numeric(table: pd.DataFrame, column: str, source: Path, unit: str) -> npt.NDArray[Any]:
    """``table[column]`` as float64 (missing -> NaN); text that is not a number is an error."""
    values = table[column]
    if pd.api.types.is_bool_dtype(values):
        raise InputError(
            f"reference catalog {str(source)!r}: column {column!r} holds booleans; expected "
            f"numbers ({unit}); give the right column"
        )
    if pd.api.types.is_numeric_dtype(values):
        return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
    converted = pd.to_numeric(values, errors="coerce")
    text = values.astype(str).str.strip()
    bad = np.flatnonzero(converted.isna().to_numpy() & values.notna().to_numpy() & (text != ""))
    if bad.size:
        raise InputError(
            f"reference catalog {str(source)!r}: column {column!r} holds "
            f"{values.iloc[bad[0]]!r} in data row {bad[0] + 1} (1 = the first row) and "
            f"{bad.size - 1} other non-numeric value(s); expected numbers ({unit}); convert "
            "the column to plain numbers"
        )
    return np.asarray(converted.to_numpy(dtype=np.float64, na_value=np.nan))
