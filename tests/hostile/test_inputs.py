"""Hostile input files: each is quarantined with its reason and the rest of the collection is
ingested; nothing is decoded that claims more than the pixel budget, and nothing blocks.

Every case builds a few good images plus one hostile file in ``tmp_path``, runs the public
ingest on the in-process test cluster and checks the store, the quarantine table and the
manifest. Reads that could block (FIFOs) run under a watchdog that releases a blocked reader
and fails the test, so a regression fails rather than hangs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from distributed import Client
from PIL import Image
from pydantic import ValidationError

from pipeline.core.context import RunContext
from pipeline.core.manifest import load_manifest
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import InputError
from pipeline.io import imagefiles
from pipeline.io import ingest as ingest_module
from pipeline.io.ingest import IngestParams, ingest_images
from pipeline.io.inputs import resolve_sources
from tests.conftest import fits_claiming, png_claiming, smooth_image, write_image

GOOD = ("good0.png", "good1.png", "good2.png")
SHAPE = (16, 16, 3)
BUDGET_REASON = "over the budget of 268,435,456 per image"

#: Files the ingest's write tasks decoded (see :func:`recording_read_image`).
DECODED: list[str] = []


def recording_read_image(path: str, *args: Any, **kwargs: Any) -> np.ndarray:
    """The ingest's reader, recording which files it decoded."""
    DECODED.append(Path(path).name)
    return imagefiles.read_image(path, *args, **kwargs)


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


# -- hostile files ------------------------------------------------------------------------------


def png_bomb(folder: Path) -> Path:
    """A 65-byte PNG whose IHDR claims 100000 x 100000 gray pixels (valid CRCs, IEND)."""
    return png_claiming(folder / "bomb.png", 100_000, 100_000)


def jpeg_bomb(folder: Path) -> Path:
    """A small valid JPEG whose frame header (SOF) is patched to claim 65000 x 65000."""
    path = write_image(folder / "bomb.jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(path.read_bytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", 65_000, 65_000)
    path.write_bytes(bytes(data))
    return path


def tiff_bomb(folder: Path) -> Path:
    """A 220-byte deflate TIFF whose tags claim 60000 x 60000 in one (tiny) strip."""
    path = folder / "bomb.tif"
    tifffile.imwrite(
        path, np.zeros((8, 8), np.uint8), compression="zlib", metadata=None, rowsperstrip=8
    )
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            tif.pages[0].tags[tag].overwrite(60_000)
    return path


def fits_bomb(folder: Path) -> Path:
    """A FITS header (one 2880-byte block) claiming a 100000 x 100000 8-bit image."""
    return fits_claiming(folder / "bomb.fits", 100_000, 100_000)


def fifo(folder: Path) -> Path:
    path = folder / "pipe.png"
    os.mkfifo(path)
    return path


def unix_socket(folder: Path) -> Path:
    path = folder / "sock.png"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    try:
        os.chdir(folder)  # a relative name: a pytest tmp_path can exceed the 108-byte limit
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
        sock.close()
    return path


def pages_differ_in_shape(folder: Path) -> Path:
    path = folder / "pages.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    tifffile.imwrite(path, np.zeros((8, 12), np.uint8), append=True)
    return path


def pages_differ_in_dtype(folder: Path) -> Path:
    path = folder / "pages.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    tifffile.imwrite(path, np.zeros((16, 16), np.uint16), append=True)
    return path


def truncated_png(folder: Path) -> Path:
    path = write_image(folder / "cut.png", np.zeros(SHAPE, np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    return path


def zero_bytes(folder: Path) -> Path:
    path = folder / "zero.png"
    path.write_bytes(b"")
    return path


def directory(folder: Path) -> Path:
    path = folder / "folder.png"
    path.mkdir()
    return path


@dataclass(frozen=True)
class Case:
    """One hostile file: how to make it, what its reason says, how the sources name it."""

    make: Callable[[Path], Path]
    reason: str
    via: str = "folder"  # "folder": the folder is the source; "manifest": a CSV lists it
    blocking: bool = False  # a read of it would block: run under the FIFO watchdog

    @property
    def marks(self) -> list[pytest.MarkDecorator]:
        return [needs_fifo] if self.make in (fifo, unix_socket) else []


CASES = {
    "bomb-png": Case(png_bomb, "PNG header claims 100000 x 100000 = 10,000,000,000"),
    "bomb-jpeg": Case(jpeg_bomb, "JPEG header claims 65000 x 65000 x 3"),
    "bomb-tiff": Case(tiff_bomb, "TIFF header claims 60000 x 60000 = 3,600,000,000"),
    "bomb-fits": Case(fits_bomb, "FITS header claims 100000 x 100000 = 10,000,000,000"),
    "fifo": Case(fifo, "not a regular file but a FIFO", blocking=True),
    "fifo-in-manifest": Case(fifo, "not a regular file but a FIFO", "manifest", blocking=True),
    "socket": Case(unix_socket, "not a regular file but a socket"),
    "directory-in-manifest": Case(directory, "not a regular file but a directory", "manifest"),
    "tiff-pages-differ-in-shape": Case(
        pages_differ_in_shape, "pages differ: page 1 is 16 x 16 uint8, page 2 is 8 x 12 uint8"
    ),
    "tiff-pages-differ-in-dtype": Case(
        pages_differ_in_dtype, "pages differ: page 1 is 16 x 16 uint8, page 2 is 16 x 16 uint16"
    ),
    "truncated": Case(truncated_png, "truncated PNG"),
    "zero-bytes": Case(zero_bytes, "empty file (0 bytes)"),
}


# -- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def fifo_watchdog(path: Path, seconds: float = 10.0) -> Iterator[list[bool]]:
    """Fail, rather than hang, if something blocks reading the FIFO ``path``.

    After ``seconds`` a thread opens the FIFO for writing (non-blocking: it succeeds only when
    a reader is waiting) and closes it, so a blocked reader sees end-of-file and returns. The
    yielded list holds True once that happened.
    """
    fired: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        if stop.wait(seconds):
            return
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
            else:
                os.close(fd)
                fired.append(True)
            stop.wait(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        stop.set()
        thread.join()


def good_images(folder: Path) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    arrays = [smooth_image(rng, SHAPE, np.uint8) for _ in GOOD]
    for name, a in zip(GOOD, arrays, strict=True):
        write_image(folder / name, a)
    return arrays


def sources_for(folder: Path, hostile: Path, via: str) -> list[str]:
    if via == "folder":
        return [str(folder)]
    manifest = folder.parent / "manifest.csv"
    rows = [f"{folder.name}/{name}" for name in (*GOOD, hostile.name)]
    pd.DataFrame({"path": rows, "well": [f"A{i}" for i in range(len(rows))]}).to_csv(
        manifest, index=False
    )
    return [str(manifest)]


def quarantine_reasons(store: RunStore) -> dict[str, str]:
    table = read_table(store, "quarantine")
    return {Path(p).name: r for p, r in zip(table["path"], table["reason"], strict=True)}


# -- the table-driven suite ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=name, marks=c.marks) for name, c in CASES.items()]
)
def test_hostile_file_is_quarantined_and_the_rest_ingested(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    arrays = good_images(folder)
    hostile = case.make(folder)
    decoded = DECODED
    decoded.clear()
    # The test cluster runs its tasks in this process. The reader travels to the write tasks
    # as an argument, so it is a module-level function (pickled by reference) writing to a
    # module-level list.
    monkeypatch.setattr(ingest_module, "read_image", recording_read_image)
    store = RunStore(str(tmp_path / "run"))
    params = IngestParams(sources=sources_for(folder, hostile, case.via))
    watchdog = fifo_watchdog(hostile) if case.blocking else contextlib.nullcontext([])
    with watchdog as fired:
        result = ingest_images(RunContext(store, client), params)
    assert not fired, "a read of the FIFO blocked (the watchdog had to release it)"

    assert result["images"] == len(GOOD)
    ds = store.open_dataset()
    assert [Path(str(s)).name for s in ds["source"].values] == list(GOOD)
    assert ds["valid"].values.all()
    np.testing.assert_array_equal(ds["images"].values, np.stack(arrays))
    reasons = quarantine_reasons(store)
    assert list(reasons) == [hostile.name]
    assert case.reason in reasons[hostile.name], reasons[hostile.name]
    assert [(Path(q.path).name, q.reason) for q in load_manifest(store).quarantine] == [
        (hostile.name, reasons[hostile.name])
    ]
    # Set aside from its header alone: the write tasks never decoded it.
    assert hostile.name not in decoded
    assert sorted(decoded) == sorted(GOOD)


@pytest.mark.parametrize(
    "make", [png_bomb, jpeg_bomb, tiff_bomb, fits_bomb], ids=["png", "jpeg", "tiff", "fits"]
)
def test_a_bomb_reason_names_the_claim_the_budget_and_the_fix(
    client: Client, tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good_images(folder)
    bomb = make(folder)
    store = RunStore(str(tmp_path / "run"))
    started = time.perf_counter()
    ingest_images(RunContext(store, client), IngestParams(sources=[str(folder)]))
    elapsed = time.perf_counter() - started
    reason = quarantine_reasons(store)[bomb.name]
    assert BUDGET_REASON in reason
    assert "nothing was decoded" in reason
    assert "raise input.max_pixels" in reason
    # Decoding 3.6e9 or more pixels would take minutes (and more memory than the test has).
    assert elapsed < 30


@needs_fifo
def test_a_fifo_manifest_is_refused_not_read(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    os.mkfifo(manifest)
    with fifo_watchdog(manifest) as fired, pytest.raises(InputError, match="FIFO"):
        resolve_sources([str(manifest)])
    assert not fired


# -- the budget and Pillow's own limit ----------------------------------------------------------


def test_the_budget_is_a_parameter_and_its_reason_says_how_to_raise_it(
    client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good_images(folder)
    write_image(folder / "large.png", np.zeros((40, 40, 3), np.uint8))
    store = RunStore(str(tmp_path / "run"))
    params = IngestParams(sources=[str(folder)], max_pixels=16 * 16 * 3)
    result = ingest_images(RunContext(store, client), params)
    assert result["images"] == len(GOOD)
    reason = quarantine_reasons(store)["large.png"]
    assert "claims 40 x 40 x 3 = 4,800 pixel values, over the budget of 768" in reason
    assert "input.max_pixels" in reason


@pytest.mark.parametrize("value", [0, -5, True, 2.5])
def test_max_pixels_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(ValidationError, match="max_pixels"):
        IngestParams(sources=["x"], max_pixels=value)  # type: ignore[arg-type]


def test_pillows_own_limit_neither_refuses_nor_warns_within_the_budget(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's global limit (here lowered below the images) is raised for each open only."""
    folder = tmp_path / "in"
    folder.mkdir()
    arrays = good_images(folder)
    write_image(folder / "good3.jpg", np.zeros(SHAPE, np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 16 x 16 = 256 is over it twice
    store = RunStore(str(tmp_path / "run"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        result = ingest_images(RunContext(store, client), IngestParams(sources=[str(folder)]))
    assert result == {**result, "images": len(GOOD) + 1, "quarantined": 0}
    np.testing.assert_array_equal(store.open_dataset()["images"].values[:3], np.stack(arrays))
    assert Image.MAX_IMAGE_PIXELS == 100  # restored after every open


def test_the_cli_budget_option_quarantines_a_large_image_before_decoding(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    rng = np.random.default_rng(0)
    for name in GOOD:
        write_image(tmp_path / "in" / name, smooth_image(rng, SHAPE, np.uint8))
    write_image(tmp_path / "in" / "large.png", smooth_image(rng, (64, 64, 3), np.uint8))
    argv = ["ingest", str(tmp_path / "in"), "--store", str(tmp_path / "run"), "-q"]
    argv += ["--max-pixels", "1000", "--scheduler", client.scheduler.address]
    assert main(argv) == 0, capsys.readouterr().err
    quarantine = read_table(RunStore(str(tmp_path / "run")), "quarantine")
    assert [Path(p).name for p in quarantine["path"]] == ["large.png"]
    reason = quarantine["reason"].iloc[0]
    assert "64 x 64 x 3" in reason.replace("×", "x") or "12,288" in reason, reason
    assert "max_pixels" in reason


def test_validate_warns_about_manifest_rows_outside_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    (tmp_path / "elsewhere").mkdir()
    secret = tmp_path / "elsewhere" / "secret.png"
    write_image(secret, np.zeros((4, 4), np.uint8))
    plate = tmp_path / "plate"
    write_image(plate / "a.png", np.zeros((4, 4), np.uint8))
    (plate / "m.csv").write_text("path,well\na.png,A01\n../elsewhere/secret.png,A02\n")
    spec = tmp_path / "j.yaml"
    spec.write_text(f"name: j\nstore: {tmp_path / 'run'}\ninput:\n  sources: [{plate / 'm.csv'}]\n")
    assert main(["validate", str(spec)]) == 0
    err = capsys.readouterr().err
    assert f"../elsewhere/secret.png -> {secret}" in err and "1 file(s) outside" in err
    assert "a.png" not in err
    # Inside the folder only: no warning.
    (plate / "m.csv").write_text("path,well\na.png,A01\n")
    assert main(["validate", str(spec)]) == 0
    assert "warning" not in capsys.readouterr().err
