"""Reading reference catalogs (CSV, FITS tables, synthetic truth tables) for cross-matching."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import InputError
from pipeline.io.reference_catalog import read_reference_catalog


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_ra_dec_is_sky(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "ref.csv", "ID,RA,Dec,MAG_AUTO\n001,150.1,2.2,21.5\n002,150.2,2.3,99.0\n"
    )
    cat = read_reference_catalog(path)
    assert cat.frame == "sky"
    assert cat.magnitude == "mag_auto"
    assert list(cat.table.columns) == ["id", "ra", "dec", "mag_auto", "mag"]
    assert cat.table["ra"].tolist() == [150.1, 150.2]
    assert cat.table["dec"].dtype == np.float64
    # Source Extractor's 99.0 means "not measured".
    assert cat.table["mag"].iloc[0] == 21.5 and math.isnan(cat.table["mag"].iloc[1])
    assert cat.table["id"].tolist() == ["001", "002"]  # zero-padded ids survive


def test_csv_with_x_image_is_converted_to_0_based(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "sex.csv", "NUMBER,X_IMAGE,Y_IMAGE,FLUX_AUTO\n1,1.0,1.0,100\n2,10.5,3.0,-4\n"
    )
    cat = read_reference_catalog(path)
    assert cat.frame == "pixel"
    assert cat.table["x"].tolist() == [0.0, 9.5]
    assert cat.table["y"].tolist() == [0.0, 2.0]
    assert cat.table["x_image"].tolist() == [1.0, 10.5]  # the original stays as it was
    assert cat.magnitude == "flux_auto"
    assert cat.table["mag"].iloc[0] == pytest.approx(-5.0)
    assert math.isnan(cat.table["mag"].iloc[1])  # non-positive flux has no magnitude


def test_0_based_x_y_win_over_x_image(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "both.csv", "x,y,x_image,y_image\n3,4,4,5\n")
    cat = read_reference_catalog(path)
    assert cat.frame == "pixel"
    assert (cat.table["x"].iloc[0], cat.table["y"].iloc[0]) == (3.0, 4.0)
    assert cat.magnitude is None and "mag" not in cat.table.columns


def test_sky_wins_over_pixel_and_pixel_is_still_normalized(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "both.csv", "ALPHA_J2000,DELTA_J2000,X_IMAGE,Y_IMAGE,MAG\n10,-20,5,6,19\n"
    )
    cat = read_reference_catalog(path)
    assert cat.frame == "sky"
    assert (cat.table["ra"].iloc[0], cat.table["dec"].iloc[0]) == (10.0, -20.0)
    assert (cat.table["x"].iloc[0], cat.table["y"].iloc[0]) == (4.0, 5.0)
    assert cat.magnitude == "mag"


def test_magnitude_preference_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", "x,y,flux,magnitude,mag_auto\n0,0,100,18,19\n")
    cat = read_reference_catalog(path)
    assert cat.magnitude == "mag_auto"
    assert cat.table["mag"].tolist() == [19.0]


def test_fits_table(tmp_path: Path) -> None:
    from astropy.io import fits
    from astropy.table import Table

    table = Table(
        {
            "ALPHA_J2000": [150.0, 150.1, np.nan],
            "DELTA_J2000": [2.0, 2.1, 2.2],
            "FLUX_AUTO": np.array([10.0, 1000.0, 5.0], dtype=">f4"),
            "NAME": np.array([b"a", b"bb", b"c"]),
            "FLUX_APER": np.ones((3, 4)),
        }
    )
    table["FLUX_AUTO"].unit = "count"
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)])
    path = tmp_path / "cat.FITS"
    hdul.writeto(path)
    cat = read_reference_catalog(path)
    assert cat.frame == "sky"
    assert len(cat.table) == 2  # the row without RA is dropped
    assert cat.table["ra"].tolist() == [150.0, 150.1]
    assert cat.table["name"].tolist() == ["a", "bb"]  # bytes decoded
    assert "flux_aper" not in cat.table.columns  # vector columns left out
    assert cat.magnitude == "flux_auto"
    np.testing.assert_allclose(cat.table["mag"], [-2.5, -7.5], rtol=1e-6)


def test_fits_ldac_reads_the_objects_table(tmp_path: Path) -> None:
    from astropy.io import fits

    imhead = fits.BinTableHDU.from_columns(
        [fits.Column(name="Field Header Card", format="80A", array=np.array([b"SIMPLE"]))],
        name="LDAC_IMHEAD",
    )
    objects = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="X_IMAGE", format="E", array=np.array([2.0])),
            fits.Column(name="Y_IMAGE", format="E", array=np.array([3.0])),
        ],
        name="LDAC_OBJECTS",
    )
    path = tmp_path / "ldac.fits"
    fits.HDUList([fits.PrimaryHDU(), imhead, objects]).writeto(path)
    cat = read_reference_catalog(path)
    assert (cat.table["x"].iloc[0], cat.table["y"].iloc[0]) == (1.0, 2.0)


def test_synth_truth_table_gives_peak_magnitudes(tmp_path: Path) -> None:
    from pipeline.synth.mosaic import MOSAIC_TRUTH_COLUMNS, generate_mosaic, load_mosaic_truth

    mosaic = tmp_path / "field.fits"
    generate_mosaic(mosaic, height=128, width=128, seed=0, density=1000.0)
    truth_path = tmp_path / "field_truth.csv"
    truth = load_mosaic_truth(truth_path)
    assert len(truth) > 3
    cat = read_reference_catalog(truth_path)
    assert cat.frame == "pixel"
    assert cat.magnitude == "peak"
    assert set(MOSAIC_TRUTH_COLUMNS) <= set(cat.table.columns)
    assert cat.table["source_id"].tolist() == truth["source_id"].tolist()
    np.testing.assert_array_equal(cat.table["x"], truth["x"])
    np.testing.assert_allclose(cat.table["mag"], -2.5 * np.log10(truth["peak"]))


def test_nan_coordinates_are_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_csv(tmp_path / "r.csv", "x,y\n1,2\n,3\n4,inf\n5,6\n")
    with caplog.at_level(logging.WARNING, logger="pipeline.io.reference_catalog"):
        cat = read_reference_catalog(path)
    assert cat.table["x"].tolist() == [1.0, 5.0]
    assert cat.table.index.tolist() == [0, 1]
    assert "dropping 2 of 4 rows" in caplog.text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv' does not exist; give the path"):
        read_reference_catalog(tmp_path / "nope.csv")


def test_folder(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InputError, match="is not a regular file"):
        read_reference_catalog(tmp_path / "d.csv")


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ref.txt", "x,y\n1,2\n")
    with pytest.raises(InputError, match=r"suffix '\.txt'; expected one of \.csv, \.fits"):
        read_reference_catalog(path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is empty"):
        read_reference_catalog(write_csv(tmp_path / "e.csv", ""))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"x,y\n\xff\xfe,1\n")
    with pytest.raises(InputError, match="cannot be read as CSV"):
        read_reference_catalog(bad)
    with pytest.raises(InputError, match="cannot be read as FITS"):
        read_reference_catalog(write_csv(tmp_path / "t.fits", "not a fits file"))


def test_fits_without_a_table(tmp_path: Path) -> None:
    from astropy.io import fits

    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(path)
    with pytest.raises(InputError, match=r"holds no table HDU .*0:PrimaryHDU"):
        read_reference_catalog(path)


def test_empty_table(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no rows"):
        read_reference_catalog(write_csv(tmp_path / "h.csv", "ra,dec\n"))


def test_no_coordinate_columns_lists_found_and_accepted(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "n.csv", "Name,Mag\na,1\n")
    with pytest.raises(InputError) as info:
        read_reference_catalog(path)
    message = str(info.value)
    assert "its columns: name, mag" in message
    assert "ra/dec" in message and "x_image/y_image" in message and "x/y" in message


def test_non_numeric_coordinates(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", "ra,dec\n150.1,2\n10:00:00,2\n")
    with pytest.raises(InputError, match=r"column 'ra' holds '10:00:00' in data row 2"):
        read_reference_catalog(path)


def test_all_nan_coordinates(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "x,y,flux\n,,1\n,,2\n")
    with pytest.raises(InputError, match="no row has finite x/y coordinates"):
        read_reference_catalog(path)


def test_declination_out_of_range(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rad.csv", "ra,dec\n1,2\n2,95\n")
    with pytest.raises(InputError, match=r"dec is 95\.0 .* expected -90 <= dec <= 90"):
        read_reference_catalog(path)


def test_columns_differing_only_in_case(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", "x,X,y\n1,2,3\n")
    with pytest.raises(InputError, match="differ only in case"):
        read_reference_catalog(path)


def test_non_numeric_magnitude(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", "x,y,mag\n1,2,bright\n")
    with pytest.raises(InputError, match="column 'mag' holds 'bright'"):
        read_reference_catalog(path)


def test_table_is_a_dataframe_with_a_range_index(tmp_path: Path) -> None:
    cat = read_reference_catalog(write_csv(tmp_path / "r.csv", "x,y\n1,2\n3,4\n"))
    assert isinstance(cat.table, pd.DataFrame)
    assert isinstance(cat.table.index, pd.RangeIndex)
    with pytest.raises(AttributeError):
        cat.frame = "sky"  # type: ignore[misc]
