"""Sky coordinates of survey images: a FITS header's celestial WCS, read leniently.

A survey mosaic's FITS header (stored as text beside the ``mosaic`` array by
:func:`pipeline.io.mosaic.ingest_mosaic`) usually carries a world coordinate system. These
helpers parse it with :mod:`astropy.wcs` and convert between 0-based pixel coordinates (the
numpy convention of the whole project: ``x`` the column, ``y`` the row, pixel centres at
integers) and ICRS right ascension and declination in degrees.

A header without a WCS, or with one astropy cannot use, is not an error: the catalog then
has pixel coordinates only, and :func:`read_wcs` says why in one sentence for the report.
astropy is imported inside the functions (it is slow to import).
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["NO_WCS", "pixel_scale_arcsec", "pixel_to_sky", "read_wcs", "sky_to_pixel"]

log = logging.getLogger(__name__)

#: The reason :func:`read_wcs` gives for a header without a celestial WCS.
NO_WCS = "no WCS in the FITS header: pixel coordinates only"

# The "ERROR n in f() at line L of file F:" lines wcslib puts before each real message.
_WCSLIB_LOCATION = re.compile(r"^ERROR \d+ in .*:$")

# A pixel-to-sky matrix this ill-conditioned maps the image onto a line: no usable WCS.
_MAX_CONDITION = 1e10

# Celestial frames named by the longitude axis's CTYPE where RADESYS does not apply.
_FRAMES = {"GLON": "galactic", "ELON": "ecliptic", "SLON": "supergalactic", "HLON": "helioecliptic"}


def _one_line(exc: BaseException) -> str:
    """astropy's (often multi-line, wcslib-located) message as one sentence."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    kept = [ln for ln in lines if not _WCSLIB_LOCATION.match(ln)] or lines
    return " ".join(kept).rstrip(".") or type(exc).__name__


def _one_line_text(message: Warning | str) -> str:
    return " ".join(str(message).split())


def _is_icrs_like(wcs: WCS) -> bool:
    """Whether the WCS's longitude/latitude are ICRS RA/Dec to well under a pixel.

    FK5 J2000 differs from ICRS by ~20 mas, far below survey pixels; anything else (FK4,
    galactic, ecliptic, another equinox) goes through astropy.coordinates.
    """
    ctype = str(wcs.wcs.ctype[wcs.wcs.lng]).upper()
    if not ctype.startswith("RA"):
        return False
    radesys = str(wcs.wcs.radesys).strip().upper()
    if radesys == "ICRS":
        return True
    equinox = float(wcs.wcs.equinox)
    return radesys == "FK5" and (math.isnan(equinox) or equinox == 2000.0)


def read_wcs(header_text: str | None, *, source: str = "mosaic") -> tuple[WCS | None, str]:
    """The celestial WCS of a FITS header given as text, or why there is none.

    Parameters
    ----------
    header_text : str or None
        The header as :meth:`astropy.io.fits.Header.tostring` gives it (80-character cards,
        with or without newlines between them). None or empty: no header, hence no WCS.
    source : str
        What the header belongs to (a file name), named in the logged warning.

    Returns
    -------
    wcs : astropy.wcs.WCS or None
        The header's celestial part (``WCS.celestial``, two axes), checked to give a finite
        sky position at its reference pixel; None when there is none that can be used.
    description : str
        One line for the report: the projection, frame and pixel scale of the WCS (e.g.
        ``"celestial WCS RA---TAN / DEC--TAN (ICRS), 0.2 arcsec/px"``), or why there is
        none: :data:`NO_WCS`, a non-celestial WCS, or ``"the FITS header's WCS cannot be
        parsed (<astropy's message>): pixel coordinates only"``.

    Notes
    -----
    Never raises for a bad header. An unusable WCS is logged as a WARNING naming ``source``;
    the warnings astropy issues while parsing (``FITSFixedWarning`` for the fixes it makes,
    ``VerifyWarning`` for malformed cards) are caught and logged at INFO instead of escaping.
    """
    if header_text is None or not header_text.strip():
        return None, NO_WCS
    from astropy.io import fits
    from astropy.wcs import WCS

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sep = "\n" if "\n" in header_text else ""
            header = fits.Header.fromstring(header_text, sep=sep)
            full = WCS(header)
            if not full.has_celestial:
                ctypes = [str(c) for c in full.wcs.ctype if str(c).strip()]
                if not ctypes:
                    return None, NO_WCS
                return None, (
                    f"the FITS header's WCS is not celestial (CTYPE {', '.join(ctypes)}): "
                    "pixel coordinates only"
                )
            wcs = full.celestial
            wcs.wcs.set()
            # A WCS can parse and still be unusable: a singular CD matrix passes set() and
            # even pixel-to-sky, and fails only in sky-to-pixel; a garbage projection
            # parameter shows only when a position is computed.
            matrix = np.asarray(wcs.pixel_scale_matrix, np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                condition = np.linalg.cond(matrix) if np.isfinite(matrix).all() else np.inf
            if not condition <= _MAX_CONDITION:
                raise ValueError(
                    f"its pixel-to-sky matrix (CD, or PC times CDELT) {matrix.tolist()} is singular"
                )
            crpix = wcs.wcs.crpix - 1.0
            lon, lat = wcs.pixel_to_world_values(crpix[0], crpix[1])
            if not (np.isfinite(lon) and np.isfinite(lat)):
                raise ValueError("it gives no finite sky position at the reference pixel")
            scale = pixel_scale_arcsec(wcs)
        except (ValueError, TypeError, KeyError, IndexError, MemoryError, fits.VerifyError) as exc:
            message = _one_line(exc)
            log.warning("%s: the FITS header's WCS cannot be parsed: %s", source, message)
            return None, (
                f"the FITS header's WCS cannot be parsed ({message}): pixel coordinates only"
            )
        finally:
            for text in dict.fromkeys(_one_line_text(w.message) for w in caught):
                log.info("%s: astropy on the FITS header: %s", source, text)
    ctype = " / ".join(str(c) for c in wcs.wcs.ctype)
    lng = str(wcs.wcs.ctype[wcs.wcs.lng]).upper()[:4]
    frame = str(wcs.wcs.radesys).strip() or _FRAMES.get(lng, "native frame")
    return wcs, f"celestial WCS {ctype} ({frame}), {scale:.4g} arcsec/px"


def pixel_to_sky(
    wcs: WCS, x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sky positions of 0-based pixel positions.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A celestial WCS, as :func:`read_wcs` returns (distortions such as SIP included).
    x, y : array_like of float
        Column and row in pixels, 0-based with pixel centres at integers (``image[y, x]``);
        broadcast together.

    Returns
    -------
    ra, dec : numpy.ndarray of float64
        ICRS right ascension in ``[0, 360)`` and declination in degrees, of the broadcast
        shape; NaN where the projection has no sky position.
    """
    x_, y_ = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    if _is_icrs_like(wcs):
        world = wcs.pixel_to_world_values(x_, y_)
        ra = np.asarray(world[wcs.wcs.lng], np.float64)
        dec = np.asarray(world[wcs.wcs.lat], np.float64)
    else:
        icrs: Any = wcs.pixel_to_world(x_, y_).icrs
        ra = np.asarray(icrs.ra.deg, np.float64)
        dec = np.asarray(icrs.dec.deg, np.float64)
    return np.mod(ra, 360.0), dec


def sky_to_pixel(
    wcs: WCS, ra: npt.ArrayLike, dec: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """0-based pixel positions of sky positions: the inverse of :func:`pixel_to_sky`.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A celestial WCS, as :func:`read_wcs` returns.
    ra, dec : array_like of float
        ICRS right ascension and declination in degrees; broadcast together.

    Returns
    -------
    x, y : numpy.ndarray of float64
        Column and row in pixels, 0-based (``image[y, x]``), of the broadcast shape.
    """
    ra_, dec_ = np.broadcast_arrays(np.asarray(ra, np.float64), np.asarray(dec, np.float64))
    if _is_icrs_like(wcs):
        world = [ra_, dec_] if wcs.wcs.lng == 0 else [dec_, ra_]
        x, y = wcs.world_to_pixel_values(*world)
    else:
        from astropy.coordinates import SkyCoord

        x, y = wcs.world_to_pixel(SkyCoord(ra_, dec_, unit="deg", frame="icrs"))
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel scale of a celestial WCS at its reference pixel.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A celestial WCS in degrees (FITS's default ``CUNIT``).

    Returns
    -------
    float
        The mean of :func:`astropy.wcs.utils.proj_plane_pixel_scales` along the two axes,
        in arcsec per pixel.
    """
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
