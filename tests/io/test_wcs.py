"""FITS header WCS: sky coordinates of pixels and back, and headers without a usable WCS."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from pipeline.io.wcs import NO_WCS, pixel_scale_arcsec, pixel_to_sky, read_wcs, sky_to_pixel

SCALE_DEG = 0.2 / 3600.0


def _header(**cards: Any) -> fits.Header:
    """A 200 x 160 image's header with a TAN WCS of 0.2"/px near (150.1, 2.2); ``None`` drops."""
    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"] = 200
    header["NAXIS2"] = 160
    wcs: dict[str, Any] = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": 150.1,
        "CRVAL2": 2.2,
        "CRPIX1": 100.5,
        "CRPIX2": 80.5,
        "CD1_1": -SCALE_DEG,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": SCALE_DEG,
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
    }
    for key, value in {**wcs, **cards}.items():
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    return header


def test_tan_wcs_round_trips_pixels_through_the_sky() -> None:
    wcs, description = read_wcs(_header().tostring())
    assert wcs is not None
    assert "RA---TAN" in description and "ICRS" in description and "0.2 arcsec/px" in description
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-10, 210, 500), rng.uniform(-10, 170, 500)
    ra, dec = pixel_to_sky(wcs, x, y)
    assert ra.dtype == np.float64 and dec.dtype == np.float64
    back_x, back_y = sky_to_pixel(wcs, ra, dec)
    np.testing.assert_allclose(back_x, x, atol=1e-8, rtol=0)
    np.testing.assert_allclose(back_y, y, atol=1e-8, rtol=0)


def test_pixel_coordinates_are_zero_based_and_ra_grows_to_the_left() -> None:
    wcs, _ = read_wcs(_header().tostring())
    assert wcs is not None
    # FITS pixel CRPIX (1-based) is numpy pixel CRPIX - 1.
    ra, dec = pixel_to_sky(wcs, 99.5, 79.5)
    assert ra == pytest.approx(150.1, abs=1e-12) and dec == pytest.approx(2.2, abs=1e-12)
    ra_right, _ = pixel_to_sky(wcs, 109.5, 79.5)
    _, dec_down = pixel_to_sky(wcs, 99.5, 89.5)
    assert ra_right < ra  # CD1_1 < 0: east is to the left
    assert dec_down > dec  # CD2_2 > 0: north grows with the row index


def test_pixel_scale_of_a_known_cdelt() -> None:
    header = _header(CD1_1=None, CD1_2=None, CD2_1=None, CD2_2=None)
    header["CDELT1"], header["CDELT2"] = -0.5 / 3600, 0.5 / 3600
    wcs, _ = read_wcs(header.tostring())
    assert wcs is not None
    assert pixel_scale_arcsec(wcs) == pytest.approx(0.5, rel=1e-12)


def test_a_galactic_wcs_gives_icrs_coordinates() -> None:
    header = _header(CTYPE1="GLON-TAN", CTYPE2="GLAT-TAN", CRVAL1=0.0, CRVAL2=0.0)
    header.remove("RADESYS")
    header.remove("EQUINOX")
    wcs, description = read_wcs(header.tostring(sep="\n"))
    assert wcs is not None and "galactic" in description
    ra, dec = pixel_to_sky(wcs, 99.5, 79.5)
    # The Galactic centre in ICRS.
    assert ra == pytest.approx(266.405, abs=1e-3) and dec == pytest.approx(-28.936, abs=1e-3)
    x, y = sky_to_pixel(wcs, ra, dec)
    assert x == pytest.approx(99.5, abs=1e-6) and y == pytest.approx(79.5, abs=1e-6)


@pytest.mark.parametrize(
    "text", [None, "", fits.Header().tostring(), "SIMPLE  =                    T"]
)
def test_a_header_without_wcs_gives_none_and_says_so(text: str | None) -> None:
    assert read_wcs(text) == (None, NO_WCS)


def test_a_linear_wcs_is_not_celestial() -> None:
    wcs, reason = read_wcs(_header(CTYPE1="LINEAR", CTYPE2="LINEAR").tostring())
    assert wcs is None
    assert "not celestial" in reason and "LINEAR" in reason and "pixel coordinates only" in reason


@pytest.mark.parametrize(
    ("cards", "message"),
    [
        ({"CTYPE1": "RA---XXX"}, "Unrecognized projection code (XXX in CTYPE1)"),
        ({"CTYPE2": None}, "Unmatched celestial axes"),
        (
            {"CD1_1": SCALE_DEG, "CD1_2": SCALE_DEG, "CD2_1": SCALE_DEG, "CD2_2": SCALE_DEG},
            "singular",
        ),
        ({"CTYPE1": "RA---ZPN", "CTYPE2": "DEC--ZPN", "PV2_1": -5.0, "PV2_3": 1e9}, "parameter"),
    ],
    ids=["unknown-projection", "one-celestial-axis", "singular-cd", "garbage-pv"],
)
def test_a_broken_wcs_gives_none_a_reason_and_a_warning(
    caplog: pytest.LogCaptureFixture, cards: dict[str, Any], message: str
) -> None:
    # The tests run with -W error: an astropy warning escaping would fail here.
    with caplog.at_level(logging.INFO, logger="pipeline.io.wcs"):
        wcs, reason = read_wcs(_header(**cards).tostring(), source="field.fits")
    assert wcs is None
    assert reason.startswith("the FITS header's WCS cannot be parsed (")
    assert reason.endswith("): pixel coordinates only")
    assert "\n" not in reason
    assert message in reason
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "field.fits" in warned[0].getMessage()
    assert warned[0].getMessage().count("cannot be parsed") == 1
