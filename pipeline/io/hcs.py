"""OME-Zarr high-content-screening (HCS) plates in and out.

In: :func:`load_hcs` lists the fields of NGFF plates (0.5 on Zarr v3, or 0.4 on Zarr v2),
as other tools write them: plate / row / column / field groups whose ``plate`` and ``well``
metadata are read and validated by ome-zarr-models. Each field's full-resolution level is
one image, named as an image file of the same plate would be:

- ``plate`` is the plate metadata's ``name``, else the group's name less ``.ome.zarr``;
- ``well`` comes from the row and column names (``A`` / ``3`` or ``03`` is ``A03``);
- ``day`` is the number in the field's acquisition's name when that names a day (``day 7``,
  ``Day07``, ``d7``), else the acquisition's id; 0 without acquisitions;
- ``field`` numbers the well's images of one acquisition in the order the well lists them
  (1, 2, ...).

NGFF metadata holds no treatments, so a plate map may be given alongside (the same CSV or
Parquet table as for image files); without one, ``treatment``, ``unit`` and ``group`` are
empty and ``concentration`` NaN. The fields are then ingested by the ingest's own machinery
(:func:`pipeline.io.ingest.ingest_sources`), with :func:`read_field_header` and
:func:`read_field` in place of the file readers.

Out: :func:`export_ome_zarr` writes a run store's plate images as one HCS plate per plate,
through ome-zarr-py: acquisitions are days, each well lists its fields per day, and each field
is a multiscale image whose first level is the stored image (plus a small 2x pyramid). A
``plate_map.csv`` beside the plates holds the treatments, so that :func:`load_hcs` of what
was exported gives back the same images and coordinates.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.core.progress import ProgressFn, no_progress
from pipeline.core.store import RunStore
from pipeline.errors import ImageDecodeError, InputError, PlateMapError, StoreError
from pipeline.io.imagefiles import ImageInfo, stored_dtype
from pipeline.io.plate_layout import PLATE_FORMATS, PlateFormat, plate_format, well_problem
from pipeline.io.platemap import (
    _MTIME,
    _SIZE,
    _WHERE,
    MAP_COLUMNS,
    PlateImages,
    join_plate,
    read_plate_map,
)
from pipeline.io.spec import DEFAULT_MAX_PIXELS, PLATE_GROUPS

if TYPE_CHECKING:
    import zarr
    from distributed import Client

__all__ = [
    "HCS_FORMAT",
    "HcsExport",
    "export_ome_zarr",
    "find_plates",
    "list_hcs",
    "load_hcs",
    "read_field",
    "read_field_header",
]

log = logging.getLogger(__name__)

#: The ``format`` the images table records for an image read from an OME-Zarr field.
HCS_FORMAT = "ome-zarr"

_DAY_NAME = re.compile(r"^\s*(?:day|d)\s*[-_ ]?\s*0*(\d+)\s*$", re.IGNORECASE)
# The smallest side a pyramid level of an export may have (px), and the most levels below
# the full resolution.
_MIN_LEVEL_SIDE, _MAX_LEVELS = 16, 4


# -- reading ----------------------------------------------------------------------------------


def _open_group(url: str) -> zarr.Group:
    import zarr

    return zarr.open_group(url, mode="r")


def _hcs_model(group: zarr.Group) -> Any:
    """The plate as ome-zarr-models validates it (0.5 on Zarr v3, 0.4 on Zarr v2)."""
    if group.metadata.zarr_format == 3:
        from ome_zarr_models.v05.hcs import HCS as HCSv05

        return HCSv05.from_zarr(group)
    from ome_zarr_models.v04.hcs import HCS as HCSv04

    return HCSv04.from_zarr(group)


def _is_plate(group: zarr.Group) -> bool:
    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    return "plate" in attrs or (isinstance(ome, Mapping) and "plate" in ome)


def find_plates(source: str | os.PathLike[str]) -> list[str]:
    """The OME-Zarr plates at ``source``: itself if it is a plate group, else the plate
    groups directly inside it (a folder or group holding several plates), sorted.

    Raises
    ------
    PlateMapError
        If ``source`` does not exist or holds no plate.
    """
    import fsspec

    url = os.fspath(source)
    if "://" not in url:
        url = str(Path(url).expanduser().resolve())
    try:
        if _is_plate(_open_group(url)):
            return [url]
    except Exception:  # not a Zarr group (e.g. a plain folder of plates): look inside
        log.debug("%s is not a Zarr group; looking for plates inside it", url)
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        raise PlateMapError(
            [f"{url} does not exist: give an OME-Zarr plate or a folder of them"], url
        )
    prefix = url.split("://", 1)[0] + "://" if "://" in url else ""
    plates = []
    for child in sorted(fs.ls(path, detail=False)):
        name = str(child).rstrip("/")
        if not fs.isdir(name) or name.rsplit("/", 1)[-1].startswith("."):
            continue
        try:
            if _is_plate(_open_group(prefix + name if prefix else name)):
                plates.append(prefix + name if prefix else name)
        except Exception:
            continue
    if not plates:
        raise PlateMapError(
            [
                f"{url} is not an OME-Zarr plate and holds none: give a plate group (with `plate` "
                "metadata) or a folder of them"
            ],
            url,
        )
    return plates


def _day(acquisition: Any) -> int:
    if acquisition is None:
        return 0
    m = _DAY_NAME.match(acquisition.name or "")
    return int(m.group(1)) if m else int(acquisition.id)


def _plate_name(url: str, plate: Any) -> str:
    if plate.name:
        return str(plate.name)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _stamp(url: str, zarr_format: int) -> float:
    """Modification time of the plate's metadata (rewritten when the plate is)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    name = "zarr.json" if zarr_format == 3 else ".zattrs"
    try:
        info = fs.info(f"{path.rstrip('/')}/{name}")
    except FileNotFoundError:
        return 0.0
    from pipeline.io.inputs import _mtime

    return _mtime(info)


def list_hcs(sources: Sequence[str]) -> pd.DataFrame:
    """The fields of OME-Zarr plates, as an image index (one row per field).

    Parameters
    ----------
    sources : sequence of str
        Plate groups, or folders of them (see :func:`find_plates`), local or URLs.

    Returns
    -------
    pandas.DataFrame
        Columns ``file`` (the field's image group), ``plate``, ``well`` (as the row and
        column names give it, e.g. ``A1``), ``field`` and ``day`` as strings, for
        :func:`~pipeline.io.platemap.join_plate`.

    Raises
    ------
    PlateMapError
        Every plate that cannot be opened or is not valid NGFF, and every well listed
        without its group.
    """
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    urls = []
    for src in sources:
        try:
            urls += find_plates(src)
        except PlateMapError as exc:
            problems += exc.problems
    for url in urls:
        try:
            group = _open_group(url)
            model = _hcs_model(group)
        except Exception as exc:  # zarr or pydantic: say which plate and why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(
                f"{url} is not a valid OME-Zarr plate ({first}): check it with "
                "ome-zarr-models (`ome-zarr-models validate`)"
            )
            continue
        plate = model.ome_attributes.plate
        name = _plate_name(url, plate)
        if name in seen:
            problems.append(
                f"{url} and {seen[name]} are both plate {name!r}: give the plates different names"
            )
            continue
        seen[name] = url
        stamp = _stamp(url, group.metadata.zarr_format)
        acquisitions = {a.id: a for a in (plate.acquisitions or [])}
        only = next(iter(acquisitions.values())) if len(acquisitions) == 1 else None
        for i, well in enumerate(plate.wells):
            row = plate.rows[well.rowIndex].name
            column = plate.columns[well.columnIndex].name
            try:
                well_group = model.get_well_group(i)
            except Exception:
                problems.append(
                    f"{url}: well {well.path} is in the plate metadata but has no group: "
                    "remove it from the plate's `wells`, or add its group"
                )
                continue
            per_day: dict[int, int] = {}
            for image in well_group.ome_attributes.well.images:
                acquisition = (
                    acquisitions.get(image.acquisition) if image.acquisition is not None else only
                )
                day = _day(acquisition)
                per_day[day] = per_day.get(day, 0) + 1
                member = (well_group.members or {}).get(image.path)
                nbytes = _nbytes(member)
                rows.append(
                    {
                        "file": f"{url}/{well.path}/{image.path}",
                        "plate": name,
                        "well": f"{row}{column}",
                        "field": str(per_day[day]),
                        "day": str(day),
                        _WHERE: f"{url} field {well.path}/{image.path}",
                        _SIZE: nbytes,
                        _MTIME: stamp,
                    }
                )
    if problems:
        raise PlateMapError(problems, ", ".join(map(str, sources)))
    columns = ["file", "plate", "well", "field", "day", _WHERE, _SIZE, _MTIME]
    return pd.DataFrame(rows, columns=columns)


def _nbytes(member: Any) -> int:
    """Uncompressed bytes of an image group's first array (0 when unknown)."""
    for spec in dict(getattr(member, "members", None) or {}).values():
        shape = getattr(spec, "shape", None)
        dtype = getattr(spec, "data_type", None) or getattr(spec, "dtype", None)
        if shape is not None and dtype is not None:
            try:
                return int(math.prod(shape)) * np.dtype(str(dtype)).itemsize
            except TypeError:
                return 0
    return 0


def load_hcs(
    sources: Sequence[str],
    plate_map: str | os.PathLike[str] | None = None,
    *,
    fmt: int | PlateFormat = 96,
    exclude_edge: bool = True,
    groups: Sequence[str] = PLATE_GROUPS,
) -> PlateImages:
    """List OME-Zarr plates and join them with a plate map, checked as image files are.

    Parameters
    ----------
    sources : sequence of str
        Plate groups or folders of them.
    plate_map : str or path-like, optional
        Treatments per well (see :mod:`pipeline.io.platemap`).
    fmt, exclude_edge, groups
        As :func:`pipeline.io.platemap.load_plate`.

    Returns
    -------
    PlateImages
        ``path`` is each field's image group.

    Raises
    ------
    PlateMapError
        Every problem of the plates and the plate map.
    """
    listing = list_hcs(sources)
    pm = read_plate_map(plate_map) if plate_map is not None else None
    return join_plate(
        listing,
        pm,
        index_name=", ".join(map(str, sources)),
        map_name=os.fspath(plate_map) if plate_map is not None else None,
        fmt=fmt,
        exclude_edge=exclude_edge,
        groups=groups,
    )


def _field(path: str) -> tuple[Any, list[str]]:
    """A field's full-resolution array and its axis names."""
    group = _open_group(path)
    attrs = dict(group.attrs)
    multiscale: Any
    if group.metadata.zarr_format == 3:
        from ome_zarr_models.v05.image import ImageAttrs as ImageAttrsV05

        multiscale = ImageAttrsV05.model_validate(attrs.get("ome", {})).multiscales[0]
    else:
        from ome_zarr_models.v04.image import ImageAttrs as ImageAttrsV04

        multiscale = ImageAttrsV04.model_validate(attrs).multiscales[0]
    array = group[multiscale.datasets[0].path]
    return array, [str(a.name) for a in multiscale.axes]


def _layout(shape: Sequence[int], axes: Sequence[str]) -> tuple[tuple[int, ...], str]:
    """The stored ``(height, width[, channels])`` of a field, or why it cannot be stored."""
    sizes = dict(zip(axes, shape, strict=True))
    deep = [f"{sizes[a]} {a}" for a in axes if a not in ("c", "y", "x") and sizes[a] > 1]
    if deep:
        return (), (
            f"the field has {' and '.join(deep)} planes; pipeline ingests 2-D fields: "
            "project or select a plane first"
        )
    if "y" not in sizes or "x" not in sizes:
        return (), f"the field's axes {list(axes)} have no y and x"
    c = sizes.get("c", 1)
    return ((sizes["y"], sizes["x"], c) if c > 1 else (sizes["y"], sizes["x"])), ""


def read_field_header(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """What an OME-Zarr field holds, from its metadata only (the ingest's header step).

    Parameters
    ----------
    path : str
        The field's image group (a multiscale image), local or URL.
    max_pixels : int
        Pixel budget: a field claiming more values is given a reason (and quarantined).

    Returns
    -------
    ImageInfo
        ``format`` is :data:`HCS_FORMAT`; ``reason`` says why a field cannot be used (not a
        multiscale image, z or t planes, over the budget).
    """
    try:
        array, axes = _field(path)
    except Exception as exc:  # zarr or pydantic, on another tool's data: quarantine it
        return ImageInfo(path, reason=f"not a readable OME-Zarr image: {exc}".splitlines()[0])
    shape, reason = _layout(array.shape, axes)
    if reason:
        return ImageInfo(path, reason=reason)
    if math.prod(array.shape) > max_pixels:
        return ImageInfo(
            path,
            reason=f"its array claims {' x '.join(map(str, array.shape))} values, over the "
            f"pixel budget max_pixels={max_pixels:,}",
        )
    return ImageInfo(path, HCS_FORMAT, shape, str(stored_dtype(np.dtype(array.dtype))))


def read_field(
    path: str, fmt: str = HCS_FORMAT, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read an OME-Zarr field's full-resolution level as ``(height, width[, channels])``.

    Raises
    ------
    ImageDecodeError
        If it cannot be read (missing or corrupt chunks, z or t planes, over the budget).
    """
    try:
        array, axes = _field(path)
        shape, reason = _layout(array.shape, axes)
        if reason:
            raise ImageDecodeError(reason)
        if math.prod(array.shape) > max_pixels:
            raise ImageDecodeError(f"its array is over the pixel budget max_pixels={max_pixels:,}")
        data = np.asarray(array[...])
    except ImageDecodeError:
        raise
    except Exception as exc:  # a corrupt chunk raises whatever its codec raises
        raise ImageDecodeError(f"cannot read OME-Zarr field {path}: {exc}") from exc
    keep = [i for i, a in enumerate(axes) if a in ("y", "x", "c")]
    squeeze = tuple(i for i, a in enumerate(axes) if a not in ("y", "x", "c"))
    data = data.reshape([n for i, n in enumerate(data.shape) if i not in squeeze])
    names = [axes[i] for i in keep]
    order = [names.index(a) for a in ("y", "x", "c") if a in names]
    data = np.transpose(data, order).reshape(shape)
    return data.astype(stored_dtype(data.dtype), copy=False)


# -- writing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HcsExport:
    """What :func:`export_ome_zarr` wrote.

    Attributes
    ----------
    plates : list of str
        The plate groups written, one per plate.
    plate_map : str or None
        The plate map CSV beside them (None when the store has no treatments).
    images : int
        Fields written.
    skipped : int
        Images left out because they are not valid (quarantined at ingest).
    """

    plates: list[str]
    plate_map: str | None
    images: int
    skipped: int


def _coords(store: RunStore) -> tuple[pd.DataFrame, Any]:
    ds = store.open_dataset()
    if "images" not in ds:
        raise StoreError(f"{store.url} holds no `images`: ingest plates first (ingest_plates)")
    missing = [c for c in ("plate", "well", "day", "field") if c not in ds.coords]
    if missing:
        raise StoreError(
            f"the images of {store.url} have no {', '.join(missing)} coordinate(s), so they "
            "are not plate images: ingest them with ingest_plates (or a manifest with plate, "
            "well, day and field columns)"
        )
    names = [str(k) for k, v in ds.coords.items() if v.dims == ("image",)]
    table = pd.DataFrame({n: ds[n].values for n in names})
    return table, ds


def _levels(height: int, width: int) -> list[int]:
    """Downsampling factors of the pyramid below the full resolution."""
    out: list[int] = []
    factor = 2
    while len(out) < _MAX_LEVELS and min(height, width) // factor >= _MIN_LEVEL_SIDE:
        out.append(factor)
        factor *= 2
    return out


def _read_block(store: RunStore, start: int, stop: int) -> np.ndarray:
    """Images ``[start, stop)`` of the store (one task per stored chunk)."""
    return np.asarray(store.open_array("images", mode="r")[start:stop])


def _fits(wells: Sequence[str]) -> PlateFormat:
    for n in sorted(PLATE_FORMATS):
        if n >= 96 and all(well_problem(w, n) is None for w in wells):
            return plate_format(n)
    raise InputError(f"wells {sorted(wells)[:3]}... fit no plate format: check the store")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "plate"


def export_ome_zarr(
    store: RunStore | str,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    client: Client | None = None,
    progress: ProgressFn = no_progress,
) -> HcsExport:
    """Write the plate images of a run store as OME-Zarr HCS plates (NGFF 0.5, Zarr v3).

    Parameters
    ----------
    store : RunStore or str
        A run store whose ``images`` have ``plate``, ``well``, ``day`` and ``field``
        coordinates (as ``ingest_plates`` writes them).
    out : str or path-like
        A local folder: each plate is written to ``out/<plate>.ome.zarr`` (acquisitions =
        days, each well's fields listed per day, each field a multiscale image whose level
        ``s0`` is the stored image, ``s1``... halving it while its sides stay >= 16 px), and
        the treatments to ``out/plate_map.csv``. A plate is written under a temporary name
        and renamed when complete, so an interrupted export leaves no half plate.
    overwrite : bool
        Replace plates (and the plate map) already in ``out``; otherwise they are an error.
    client : distributed.Client, optional
        Where to compute (default: Dask's current scheduler). Each task reads one stored
        chunk of images from the store; no pixels pass through the client.
    progress : ProgressFn

    Returns
    -------
    HcsExport

    Raises
    ------
    StoreError
        If the store holds no plate images.
    InputError
        If a plate already exists in ``out`` and ``overwrite`` is false.
    """
    import dask
    import dask.array as da
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    run = store if isinstance(store, RunStore) else RunStore(os.fspath(store))
    table, ds = _coords(run)
    valid = table["valid"].to_numpy(bool) if "valid" in table else np.ones(len(table), bool)
    skipped = int((~valid).sum())
    images = ds["images"]
    has_channel = images.ndim == 4
    height, width = int(images.shape[1]), int(images.shape[2])
    axes = ["c", "y", "x"] if has_channel else ["y", "x"]
    per_chunk = int(run.open_array("images", mode="r").chunks[0])
    levels = _levels(height, width)

    folder = Path(os.fspath(out)).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    names = {p: _safe(str(p)) for p in sorted(set(table.loc[valid, "plate"].astype(str)))}
    if len(set(names.values())) != len(names):
        raise InputError(f"plate names {sorted(names)} map to the same folder names: rename them")
    targets = [folder / f"{n}.ome.zarr" for n in names.values()]
    map_path = folder / "plate_map.csv"
    existing = [str(t) for t in [*targets, map_path] if t.exists()]
    if existing and not overwrite:
        raise InputError(
            f"{', '.join(existing)} already exist(s): choose another folder, or pass overwrite "
            "(--overwrite) to replace them"
        )

    blocks: dict[int, Any] = {}

    def image_of(i: int) -> Any:
        k = i // per_chunk
        if k not in blocks:
            start = k * per_chunk
            blocks[k] = dask.delayed(_read_block, pure=True)(
                run, start, min(start + per_chunk, len(table))
            )
        one = dask.delayed(operator.getitem, pure=True)(blocks[k], i - k * per_chunk)
        arr = da.from_delayed(one, shape=tuple(images.shape[1:]), dtype=images.dtype)
        return da.moveaxis(arr, -1, 0) if has_channel else arr

    fmt = FormatV05()
    jobs: list[Any] = []
    written: list[str] = []
    partials: list[tuple[Path, Path]] = []
    n_images = 0
    for plate, safe in names.items():
        rows = table[valid & (table["plate"].astype(str) == plate)]
        rows = rows.sort_values(["well", "day", "field"], kind="stable")
        layout = _fits(list(rows["well"].astype(str)))
        target = folder / f"{safe}.ome.zarr"
        partial = folder / f".{safe}.ome.zarr.partial"
        shutil.rmtree(partial, ignore_errors=True)
        root = zarr.open_group(str(partial), mode="w", zarr_format=3)
        days = sorted({int(d) for d in rows["day"]})
        per_well_day = rows.groupby(["well", "day"]).size()
        max_fields = {d: int(per_well_day.xs(d, level="day").max()) for d in days}
        wells = sorted(set(rows["well"].astype(str)))
        well_paths = [f"{w[0]}/{int(w[1:])}" for w in wells]
        write_plate_metadata(
            root,
            list(layout.rows),
            [str(c) for c in layout.columns],
            well_paths,
            fmt=fmt,
            acquisitions=[
                {"id": d, "name": f"day {d}", "maximumfieldcount": max_fields[d]} for d in days
            ],
            field_count=max(max_fields.values()),
            name=plate,
        )
        for well, path in zip(wells, well_paths, strict=True):
            row_name, col_name = path.split("/")
            well_group = root.require_group(row_name).require_group(col_name)
            fields = rows[rows["well"].astype(str) == well]
            write_well_metadata(
                well_group,
                [{"path": str(k), "acquisition": int(d)} for k, d in enumerate(fields["day"])],
                fmt=fmt,
            )
            for k, i in enumerate(fields.index):
                jobs += write_image(
                    image_of(int(i)),
                    well_group.require_group(str(k)),
                    scale_factors=levels,
                    axes=axes,
                    fmt=fmt,
                    name=str(fields.at[i, "image_id"]) if "image_id" in fields else str(k),
                    compute=False,
                )
                n_images += 1
        written.append(str(target))
        partials.append((partial, target))

    log.info("export_ome_zarr: %d fields of %d plate(s) to %s", n_images, len(names), folder)
    if client is not None:
        from pipeline.core.progress import gather_with_progress

        gather_with_progress(client, client.compute(jobs), "export", progress)
    elif jobs:
        dask.compute(*jobs)
    for partial, target in partials:
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)

    map_file: str | None = None
    plate_map = _plate_map(run, table[valid])
    if plate_map is not None:
        tmp = folder / ".plate_map.csv.partial"
        plate_map.to_csv(tmp, index=False)
        tmp.replace(map_path)
        map_file = str(map_path)
    return HcsExport(plates=written, plate_map=map_file, images=n_images, skipped=skipped)


#: Coordinates that belong to one image, or are derived from the well: not in a plate map.
_NOT_IN_MAP = {
    "image_id",
    "source",
    "valid",
    "field",
    "day",
    "row",
    "column",
    "edge",
    "excluded",
    "n_images",
    "n_ingested",
    "n_valid",
}


def _plate_map(store: RunStore, table: pd.DataFrame) -> pd.DataFrame | None:
    """One row per well: the plate map's columns and further ones constant in each well.

    The ingest's ``plate_wells`` table is the plate map as given (with the wells that have no
    images, e.g. excluded edge wells); without it the map is rebuilt from the coordinates.
    None when the store has no treatments.
    """
    from pipeline.core.tables import read_table

    if store.exists("tables/plate_wells.parquet"):
        wells = read_table(store, "plate_wells")
        plates = set(table["plate"].astype(str))
        wells = wells[wells["plate"].astype(str).isin(plates)]
    elif all(c in table for c in MAP_COLUMNS):
        wells = table
    else:
        return None
    keyed = wells.sort_values(["plate", "well"], kind="stable")
    by_well = keyed.groupby(["plate", "well"])
    extras = [
        c
        for c in keyed.columns
        if c not in _NOT_IN_MAP
        and c not in MAP_COLUMNS
        and int(by_well[c].nunique(dropna=False).max()) <= 1
    ]
    return keyed[[*MAP_COLUMNS, *extras]].drop_duplicates(["plate", "well"]).reset_index(drop=True)
