"""Catalogs out as FITS binary tables (astropy), the format TOPCAT, DS9 and astropy read."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.store import RunStore

__all__ = ["catalog_fits_bytes", "write_catalog_fits"]

log = logging.getLogger(__name__)

# FITS keywords are 8 characters; longer names go in as HIERARCH cards, which astropy warns
# about, so the metadata we add uses short ones.
_META_KEYS = {
    "mag_zeropoint": ("MAGZERO", "magnitude zero point"),
    "saturation": ("SATURATE", "saturation level (image units)"),
    "pixel_scale_arcsec": ("PIXSCALE", "pixel scale (arcsec/pix)"),
    "global_back": ("SKYBACK", "median background (image units)"),
    "global_rms": ("SKYRMS", "median background RMS (image units)"),
    "largest_halo": ("MAXHALO", "largest tile halo used (pix)"),
}


def catalog_fits_bytes(
    table: pd.DataFrame,
    units: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """``table`` as a FITS file: an empty primary HDU and one binary table ``SOURCES``.

    Parameters
    ----------
    table : pandas.DataFrame
        Numeric and string columns (strings become fixed-width FITS strings).
    units : mapping of str to str, optional
        FITS units per column (``TUNITn``), e.g. ``{"ra": "deg", "x": "pix"}``.
    meta : mapping, optional
        Run facts written as header cards where known (zero point, saturation, pixel
        scale, sky level); None values are left out.

    Returns
    -------
    bytes
    """
    from astropy.io import fits
    from astropy.table import Table

    t = Table.from_pandas(table.reset_index(drop=True))
    for name in t.colnames:
        if t[name].dtype.kind == "O":
            t[name] = np.asarray(t[name], dtype=str)
        unit = (units or {}).get(name)
        if unit:
            t[name].unit = unit
    hdu = fits.table_to_hdu(t)
    hdu.name = "SOURCES"
    for key, value in (meta or {}).items():
        if key in _META_KEYS and value is not None:
            card, comment = _META_KEYS[key]
            hdu.header[card] = (float(value), comment)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


def write_catalog_fits(
    store: RunStore,
    rel: str,
    table: pd.DataFrame,
    meta: Mapping[str, Any] | None = None,
    units: Mapping[str, str] | None = None,
) -> None:
    """Write :func:`catalog_fits_bytes` of ``table`` to ``rel`` in ``store`` (atomically)."""
    import warnings

    from astropy.units import UnitsWarning

    with warnings.catch_warnings():
        # "adu", "pix2": astropy knows them, but warns on some spellings; units are advisory.
        warnings.simplefilter("ignore", UnitsWarning)
        data = catalog_fits_bytes(table, units, meta)
    store.write_bytes(rel, data)
    log.info("wrote %s (%d rows)", store.path(rel), len(table))
