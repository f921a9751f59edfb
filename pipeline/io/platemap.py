"""Plates from image files: an image index and a plate map, joined and checked.

The **image index** (CSV or Parquet) has one row per image file: ``file`` (relative to the
index's folder, or absolute), ``plate``, ``well``, ``field`` and ``day``. The **plate map**
has one row per well: ``plate``, ``well``, ``treatment``, ``concentration``, ``unit`` and
``group`` (empty cells where they do not apply: an untreated well has no concentration).
Further columns of either become metadata of the images.

:func:`load_plate` joins them into :class:`PlateImages`: one row per image with its absolute
``path`` and the metadata :data:`IMAGE_COLUMNS`, sorted by plate, well, day and field, and
named ``P01_A01_d07_f1``. Every problem is found before any work and raised together, each
with its file, row (1 = the first data row) and fix, as one
:class:`~pipeline.errors.PlateMapError`:

- missing columns, or columns whose names the store reserves;
- a file that does not exist, or is named by two rows;
- a well that is not a well name or does not fit the plate format;
- a field or day that is not a whole number, a concentration that is not a number;
- the same plate, well, field and day twice; the same well twice in the plate map;
- an image whose well is not in the plate map, a well of the plate map with no image;
- a group not among the allowed ones, a concentration without a unit, an untreated well with
  a concentration.

With ``exclude_edge`` the images of edge wells (:func:`~pipeline.io.plate_layout.is_edge`)
are left out, and edge wells need neither images nor plate-map rows; they stay in
:attr:`PlateImages.wells` with ``excluded`` true. Only file names and stats are read here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ImageDecodeError, PlateMapError
from pipeline.io.imagefiles import check_regular_file
from pipeline.io.inputs import (
    RESERVED_COLUMNS,
    SourceSet,
    _absolute,
    _fs_for,
    _manifest_folder,
    _mtime,
    _resolved,
)
from pipeline.io.plate_layout import PlateFormat, is_edge, parse_well, plate_format, well_problem
from pipeline.io.spec import PLATE_GROUPS

__all__ = [
    "CONTROL_GROUP",
    "IMAGE_COLUMNS",
    "INDEX_COLUMNS",
    "MAP_COLUMNS",
    "PLATE_GROUPS",
    "WELL_COLUMNS",
    "PlateImages",
    "image_id",
    "join_plate",
    "load_plate",
    "read_image_index",
    "read_plate_map",
]

log = logging.getLogger(__name__)

#: Columns an image index must have (``path`` or ``filename`` may stand for ``file``).
INDEX_COLUMNS = ("file", "plate", "well", "field", "day")
#: Columns a plate map must have.
MAP_COLUMNS = ("plate", "well", "treatment", "concentration", "unit", "group")
#: The metadata of every plate image, in this order (coordinates on ``image`` in the store).
IMAGE_COLUMNS = (
    "plate",
    "well",
    "row",
    "column",
    "field",
    "day",
    "treatment",
    "concentration",
    "unit",
    "group",
    "edge",
)
#: The columns of :attr:`PlateImages.wells`, one row per well.
WELL_COLUMNS = (
    "plate",
    "well",
    "row",
    "column",
    "treatment",
    "concentration",
    "unit",
    "group",
    "edge",
    "excluded",
    "n_images",
)
#: The group whose wells received no drug: they may have no concentration.
CONTROL_GROUP = "untreated"

_FILE_ALIASES = ("file", "path", "filename")
# Internal columns: where a row came from (for messages), and a file's stats when the caller
# already knows them (an OME-Zarr listing).
_WHERE, _ROW, _SIZE, _MTIME = "\0where", "\0row", "\0size", "\0mtime"
# The file as the index names it (``file`` is made absolute): what a message should show.
_GIVEN = "\0given"
#: Names neither table may use for a further column: the store's, and those derived here.
_RESERVED = RESERVED_COLUMNS | {"image_id", "edge", "excluded", "n_images", "path"}


def image_id(plate: str, well: str, day: int, field: int) -> str:
    """The identifier of a plate image: ``image_id("P01", "A01", 7, 1) == "P01_A01_d07_f1"``."""
    return f"{plate}_{well}_d{day:02d}_f{field}"


@dataclass(frozen=True)
class PlateImages:
    """The images of one or more plates, joined with their plate map and checked.

    Attributes
    ----------
    images : pandas.DataFrame
        One row per image to ingest, sorted by plate, well, day and field: ``image_id``,
        ``path`` (absolute path or URL), the :data:`IMAGE_COLUMNS` (``column``, ``field`` and
        ``day`` integers, ``concentration`` float with NaN where none, ``edge`` bool, the
        rest strings) and any further columns of the index and plate map; plus the files'
        ``size`` (bytes) and ``mtime`` (seconds since the epoch).
    wells : pandas.DataFrame
        One row per well of the plate map (or, without one, per well with images), sorted
        by plate and well: :data:`WELL_COLUMNS` and the plate map's further columns.
        ``n_images`` counts the well's images to ingest (0 for excluded edge wells).
    source : str
        The inputs, for messages.
    n_excluded : int
        Images left out because their well is on the edge (``exclude_edge``).
    """

    images: pd.DataFrame
    wells: pd.DataFrame
    source: str
    n_excluded: int = 0

    @property
    def metadata_columns(self) -> list[str]:
        """The columns of :attr:`images` that become coordinates on ``image``."""
        skip = {"image_id", "path", "size", "mtime"}
        return [c for c in self.images.columns if c not in skip]

    def source_set(self) -> SourceSet:
        """The images as the ingest's :class:`~pipeline.io.inputs.SourceSet`, in order."""
        df = self.images
        return SourceSet(
            files=list(df["path"]),
            sizes=[int(v) for v in df["size"]],
            mtimes=[float(v) for v in df["mtime"]],
            image_ids=list(df["image_id"]),
            metadata=df[self.metadata_columns].reset_index(drop=True),
        )


# -- reading the tables ------------------------------------------------------------------------


def _read(source: str, what: str, shown: str) -> pd.DataFrame:
    """A CSV or Parquet table with every cell as a stripped string ('' where empty); rows are
    located as ``"<shown> row <n>"``."""
    local = "://" not in source
    try:
        if local:
            check_regular_file(source)  # pandas would block for ever on a FIFO
        if source.lower().endswith(".csv"):
            df = pd.read_csv(source, dtype=str, keep_default_na=False)
        else:
            df = pd.read_parquet(source)
    except FileNotFoundError:
        raise PlateMapError([f"the {what} {shown} does not exist: check the path"], shown) from None
    except (OSError, ValueError, ImageDecodeError) as exc:
        raise PlateMapError(
            [f"cannot read the {what} {shown} ({exc}): give a CSV or Parquet file"], shown
        ) from exc
    out = pd.DataFrame(index=range(len(df)))
    for col in df.columns:
        values = df[col].to_numpy(dtype=object)
        out[str(col).strip()] = ["" if _missing(v) else _text(v) for v in values]
    out[_WHERE] = [f"{shown} row {i + 1}" for i in range(len(df))]
    out[_ROW] = range(1, len(df) + 1)
    return out


def _missing(v: object) -> bool:
    try:
        return bool(pd.isna(v))  # type: ignore[call-overload]
    except (TypeError, ValueError):  # a list or array in a Parquet cell
        return False


def _text(v: object) -> str:
    # Parquet integers arrive as numbers; 7.0 from a float column reads as 7.
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def read_image_index(source: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an image index; ``file`` is made absolute (relative to the index's folder).

    Returns
    -------
    pandas.DataFrame
        Its columns as strings ('' where empty), ``file`` absolute (as given: symlinks are
        resolved by :func:`join_plate`), plus internal columns locating each row.

    Raises
    ------
    PlateMapError
        If the file does not exist or cannot be read.
    """
    shown = os.fspath(source)
    src = shown if "://" in shown else str(Path(shown).expanduser().resolve())
    df = _read(src, "image index", shown)
    alias = next((c for c in _FILE_ALIASES if c in df.columns), None)
    if alias is not None:
        df = df.rename(columns={alias: "file"})
        df[_GIVEN] = df["file"]
        folder = _manifest_folder(src)
        df["file"] = [_absolute(f, folder) if f else "" for f in df["file"]]
    return df


def read_plate_map(source: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a plate map (every cell as a string, '' where empty).

    Raises
    ------
    PlateMapError
        If the file does not exist or cannot be read.
    """
    shown = os.fspath(source)
    src = shown if "://" in shown else str(Path(shown).expanduser().resolve())
    return _read(src, "plate map", shown)


# -- checking ---------------------------------------------------------------------------------


def _rows_text(wheres: Sequence[str]) -> str:
    """``"x.csv row 3"`` or ``"x.csv rows 3, 7-9"`` (the file once)."""
    if len(wheres) == 1:
        return wheres[0]
    stem = wheres[0].rsplit(" row ", 1)[0]
    numbers = [w.rsplit(" row ", 1)[1] for w in wheres if w.startswith(stem + " row ")]
    if len(numbers) != len(wheres) or not all(n.isdigit() for n in numbers):
        return "; ".join(wheres)
    nums = sorted(int(n) for n in numbers)
    spans: list[str] = []
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return f"{stem} rows {', '.join(spans)}"


def _whole(value: str) -> int | None:
    try:
        f = float(value)
    except ValueError:
        return None
    return int(f) if f.is_integer() and f >= 0 else None


def _columns(df: pd.DataFrame, needed: Sequence[str], what: str, source: str) -> list[str]:
    have = [c for c in df.columns if not c.startswith("\0")]
    missing = [c for c in needed if c not in have]
    if not missing:
        return []
    alias = " (or path / filename)" if what == "image index" else ""
    return [
        f"{source}: missing column(s) {', '.join(missing)}: the {what} needs columns "
        f"{', '.join(needed)}{alias} (found: {', '.join(have) or 'none'})"
    ]


def _wells(
    df: pd.DataFrame, fmt: PlateFormat, problems: list[str], kind: str
) -> tuple[pd.DataFrame, list[bool]]:
    """Normalise ``plate`` and ``well``; add ``row`` and ``column``. Returns the frame and
    which rows are usable (the others have a problem already listed)."""
    ok = []
    wells, rows, columns = [], [], []
    for where, plate, well in zip(df[_WHERE], df["plate"], df["well"], strict=True):
        good = True
        if not plate:
            problems.append(f"{where}: plate is empty: name the {kind}'s plate")
            good = False
        problem = (
            f"well is empty: name the {kind}'s well (e.g. B02)"
            if not well
            else well_problem(well, fmt)
        )
        if problem:
            problems.append(f"{where}: {problem}")
            good = False
            wells.append(well)
            rows.append("")
            columns.append(0)
        else:
            w = parse_well(well, fmt)
            wells.append(w.name)
            rows.append(w.row)
            columns.append(w.column)
        ok.append(good)
    df = df.assign(well=wells)
    for name, derived in (("row", rows), ("column", columns)):
        if name in df.columns:
            # A manifest may carry row and column: keep them only where they agree.
            for where, given, want, good in zip(df[_WHERE], df[name], derived, ok, strict=True):
                if good and given and given.upper().lstrip("0") != str(want).lstrip("0"):
                    problems.append(
                        f"{where}: {name} {given!r} disagrees with its well (in {name} "
                        f"{want}): fix it, or drop the {name} column (it is derived from well)"
                    )
    return df.assign(row=rows, column=columns), ok


def _extras(df: pd.DataFrame, known: Iterable[str], source: str, problems: list[str]) -> list[str]:
    extra = [c for c in df.columns if not c.startswith("\0") and c not in set(known)]
    bad = sorted(set(extra) & _RESERVED)
    if bad:
        problems.append(
            f"{source}: column(s) {', '.join(bad)} are reserved (the store names its own "
            "with them): rename or remove them"
        )
    return [c for c in extra if c not in _RESERVED]


def _typed(values: Sequence[str]) -> pd.Series:
    """A further column as numbers where every non-empty cell is one, else strings."""
    cells = list(values)
    filled = [v for v in cells if v != ""]
    try:
        numbers = np.array([np.nan if v == "" else float(v) for v in cells], dtype=np.float64)
    except ValueError:
        return pd.Series(cells, dtype=object)
    if not filled:
        return pd.Series(cells, dtype=object)
    if len(filled) == len(cells) and bool(np.all(np.mod(numbers, 1) == 0)):
        return pd.Series(numbers.astype(np.int64))
    return pd.Series(numbers)


def _keep(df: pd.DataFrame, ok: Sequence[bool]) -> pd.DataFrame:
    return df.loc[np.asarray(ok, dtype=bool)]


def _check_index(
    df: pd.DataFrame, fmt: PlateFormat, problems: list[str]
) -> tuple[pd.DataFrame, list[bool], list[bool]]:
    """The index with wells normalised and ``field``/``day`` as integers; which rows name a
    good well, and which rows are good altogether."""
    df, well_ok = _wells(df, fmt, problems, "image")
    ok = list(well_ok)
    fields, days = [], []
    for i, (where, field, day) in enumerate(zip(df[_WHERE], df["field"], df["day"], strict=True)):
        f, d = _whole(field), _whole(day)
        if f is None:
            problems.append(
                f"{where}: field {field!r} is not a whole number: give the field of view's "
                "number (1, 2, ...)"
            )
            ok[i] = False
        if d is None:
            problems.append(
                f"{where}: day {day!r} is not a whole number: give the imaging day (e.g. 7)"
            )
            ok[i] = False
        fields.append(f or 0)
        days.append(d or 0)
    for i, (where, file) in enumerate(zip(df[_WHERE], df["file"], strict=True)):
        if not file:
            problems.append(f"{where}: file is empty: name the image file")
            ok[i] = False
    return df.assign(field=fields, day=days), well_ok, ok


def _check_map(
    df: pd.DataFrame, fmt: PlateFormat, groups: Sequence[str], problems: list[str]
) -> tuple[pd.DataFrame, list[bool], list[bool]]:
    """As :func:`_check_index`, for the plate map (groups and concentrations checked)."""
    df, well_ok = _wells(df, fmt, problems, "plate map")
    ok = list(well_ok)
    allowed = {g.strip().lower(): g.strip() for g in groups}
    out_groups, concentrations = [], []
    columns = zip(df[_WHERE], df["group"], df["concentration"], df["unit"], df["well"], strict=True)
    for i, (where, group, conc, unit, well) in enumerate(columns):
        canonical = allowed.get(group.lower())
        if canonical is None:
            what = f"group {group!r} is not" if group else "group is empty; it must be"
            problems.append(
                f"{where}: {what} one of {', '.join(allowed.values())}: fix it, or add it to "
                "the stage's groups"
            )
            ok[i] = False
        out_groups.append(canonical or group)
        value = np.nan
        if conc:
            try:
                value = float(conc)
            except ValueError:
                problems.append(
                    f"{where}: concentration {conc!r} is not a number: give a number (its "
                    "unit in `unit`), or leave it empty"
                )
                ok[i] = False
            else:
                if not np.isfinite(value) or value < 0:
                    problems.append(
                        f"{where}: concentration {conc!r} is not a non-negative number: fix it"
                    )
                    ok[i] = False
                elif not unit and value != 0:
                    problems.append(
                        f"{where}: concentration {conc} has no unit: fill `unit` (e.g. uM, nM or %)"
                    )
                    ok[i] = False
                if canonical == CONTROL_GROUP and value != 0:
                    problems.append(
                        f"{where}: well {well} is {CONTROL_GROUP} but has concentration "
                        f"{conc} {unit}".rstrip()
                        + ": clear the concentration (empty or 0), or fix its group"
                    )
                    ok[i] = False
        concentrations.append(value)
    return df.assign(group=out_groups, concentration=concentrations), well_ok, ok


def _duplicates(
    df: pd.DataFrame, keys: list[str], describe: Callable[[tuple[object, ...]], str], fix: str
) -> list[str]:
    out = []
    dup = df[df.duplicated(keys, keep=False)]
    for key, rows in dup.groupby(keys, sort=True):
        key_t = key if isinstance(key, tuple) else (key,)
        out.append(f"{_rows_text(list(rows[_WHERE]))}: {describe(key_t)} more than once: {fix}")
    return out


def _stat(paths: Sequence[str]) -> tuple[list[str], list[int], list[float], list[bool]]:
    """Resolved paths, sizes, mtimes and whether each exists."""
    resolved, sizes, mtimes, exists = [], [], [], []
    for p in paths:
        real = _resolved(p)
        try:
            if "://" in real:
                fs, path, _ = _fs_for(real)
                info = fs.info(path)
                size, mtime = int(info["size"]), _mtime(info)
            else:
                st = os.stat(real)
                size, mtime = st.st_size, st.st_mtime
            found = True
        except (FileNotFoundError, NotADirectoryError):
            size, mtime, found = 0, 0.0, False
        resolved.append(real)
        sizes.append(size)
        mtimes.append(mtime)
        exists.append(found)
    return resolved, sizes, mtimes, exists


def _cross_check(
    images: pd.DataFrame, wells: pd.DataFrame, index_name: str, map_name: str, exclude_edge: bool
) -> list[str]:
    """Images whose well is not in the plate map, and wells of the map without images."""
    problems = []
    map_keys = set(zip(wells["plate"], wells["well"], strict=True))
    image_keys = set(zip(images["plate"], images["well"], strict=True))
    stray = images[[k not in map_keys for k in zip(images["plate"], images["well"], strict=True)]]
    mapped_plates = set(wells["plate"])
    for plate, rows in stray.groupby("plate", sort=True):
        if plate not in mapped_plates:
            problems.append(
                f"{_rows_text(list(rows[_WHERE]))}: plate {plate} is not in the plate map "
                f"{map_name}: add its wells to the plate map, or remove its images"
            )
            continue
        for well, wrows in rows.groupby("well", sort=True):
            problems.append(
                f"{_rows_text(list(wrows[_WHERE]))}: plate {plate} well {well} is not in the "
                f"plate map {map_name}: add the well to it, or remove the image(s)"
            )
    wanted = wells[~wells["edge"]] if exclude_edge else wells
    lonely = wanted[
        [k not in image_keys for k in zip(wanted["plate"], wanted["well"], strict=True)]
    ]
    imaged_plates = set(images["plate"])
    for plate, rows in lonely.groupby("plate", sort=True):
        if plate not in imaged_plates:
            problems.append(
                f"{_rows_text(list(rows[_WHERE]))}: plate {plate} has no images in "
                f"{index_name}: add them to the index, or remove the plate's rows"
            )
            continue
        for where, well in zip(rows[_WHERE], rows["well"], strict=True):
            problems.append(
                f"{where}: plate {plate} well {well} has no image in {index_name}: add its "
                "images to the index, or remove the well from the plate map"
            )
    return problems


def join_plate(
    index: pd.DataFrame,
    plate_map: pd.DataFrame | None,
    *,
    index_name: str,
    map_name: str | None = None,
    fmt: int | PlateFormat = 96,
    exclude_edge: bool = True,
    groups: Sequence[str] = PLATE_GROUPS,
) -> PlateImages:
    """Check an image index against its plate map and join them.

    Parameters
    ----------
    index : pandas.DataFrame
        As :func:`read_image_index` gives it (or an OME-Zarr listing: ``file`` holds image
        locations whose sizes and mtimes it gives itself).
    plate_map : pandas.DataFrame or None
        As :func:`read_plate_map` gives it; None: no treatments are known (``treatment``,
        ``unit`` and ``group`` are empty, ``concentration`` NaN).
    index_name, map_name : str
        The files, for messages.
    fmt : int or PlateFormat
        The plate format (96, 384, ...).
    exclude_edge : bool
        Leave the images of edge wells out.
    groups : sequence of str
        The groups the plate map may name.

    Returns
    -------
    PlateImages

    Raises
    ------
    PlateMapError
        Listing every problem found, each with its file, row and fix.
    """
    fmt = plate_format(fmt)
    problems: list[str] = []
    source = index_name + (f" + {map_name}" if map_name else "")
    problems += _columns(index, INDEX_COLUMNS, "image index", index_name)
    index_extras = _extras(index, (*INDEX_COLUMNS, "row", "column"), index_name, problems)
    map_extras: list[str] = []
    if plate_map is not None:
        problems += _columns(plate_map, MAP_COLUMNS, "plate map", map_name or "plate map")
        map_extras = _extras(plate_map, (*MAP_COLUMNS, "row", "column"), map_name or "", problems)
        both = sorted(set(index_extras) & set(map_extras))
        if both:
            problems.append(
                f"{index_name} and {map_name} both have column(s) {', '.join(both)}: keep "
                "each in one of them"
            )
    if problems:
        # Without the columns the rows cannot be checked: report the columns first.
        raise PlateMapError(problems, source)

    idx, idx_well_ok, idx_ok = _check_index(index, fmt, problems)
    if _SIZE in idx.columns:
        paths = list(idx["file"])
        sizes, mtimes, exists = list(idx[_SIZE]), list(idx[_MTIME]), [True] * len(idx)
    else:
        paths, sizes, mtimes, exists = _stat(list(idx["file"]))
    given_files = idx[_GIVEN] if _GIVEN in idx.columns else idx["file"]
    for i, (where, given, found) in enumerate(zip(idx[_WHERE], given_files, exists, strict=True)):
        if given and not found:
            problems.append(
                f"{where}: image file {given} does not exist: fix the path (relative to the "
                "index's folder) or remove the row"
            )
            idx_ok[i] = False
    idx = idx.assign(path=paths, size=sizes, mtime=mtimes)
    idx["edge"] = [
        bool(ok) and is_edge(w, fmt) for w, ok in zip(idx["well"], idx_well_ok, strict=True)
    ]
    good = _keep(idx, idx_ok)
    problems += _duplicates(good, ["path"], lambda k: f"file {k[0]}", "list each file once")
    problems += _duplicates(
        good,
        ["plate", "well", "field", "day"],
        lambda k: f"plate {k[0]} well {k[1]} field {k[2]} day {k[3]}",
        "give each image its own field or day, or remove the duplicate row",
    )

    # Images and wells are matched on every row that names a good well, even one with
    # another problem: a bad day is one problem, not also a well without images.
    named = _keep(idx, idx_well_ok)
    if exclude_edge:
        n_excluded = int(good["edge"].sum())
        named, good = named[~named["edge"]], good[~good["edge"]]
    else:
        n_excluded = 0
    if plate_map is not None:
        pm, map_well_ok, map_ok = _check_map(plate_map, fmt, groups, problems)
        pm = pm.assign(
            edge=[ok and is_edge(w, fmt) for w, ok in zip(pm["well"], map_well_ok, strict=True)]
        )
        problems += _duplicates(
            _keep(pm, map_ok),
            ["plate", "well"],
            lambda k: f"plate {k[0]} well {k[1]}",
            "give each well one row",
        )
        problems += _cross_check(
            named, _keep(pm, map_well_ok), index_name, map_name or "", exclude_edge
        )
        pm = _keep(pm, map_ok)
    else:
        pm = (
            _keep(idx, idx_well_ok)[["plate", "well", "row", "column", "edge", _WHERE]]
            .drop_duplicates(["plate", "well"])
            .assign(treatment="", concentration=np.nan, unit="", group="")
        )
    if not problems and good.empty:
        problems.append(
            f"{index_name}: no image is left to ingest"
            + (f" ({n_excluded} are on edge wells, and exclude_edge is true)" if n_excluded else "")
            + ": add images of inner wells, or set exclude_edge false"
        )
    if problems:
        raise PlateMapError(problems, source)
    use = good

    treatments = ["treatment", "concentration", "unit", "group", *map_extras]
    joined = use.merge(
        pm[["plate", "well", *treatments]], on=["plate", "well"], how="left", validate="m:1"
    )
    joined = joined.sort_values(["plate", "well", "day", "field"], kind="stable")
    joined["image_id"] = [
        image_id(p, w, int(d), int(f))
        for p, w, d, f in zip(
            joined["plate"], joined["well"], joined["day"], joined["field"], strict=True
        )
    ]
    images = pd.DataFrame(
        {
            "image_id": joined["image_id"].astype(object),
            "path": joined["path"].astype(object),
            "plate": joined["plate"].astype(object),
            "well": joined["well"].astype(object),
            "row": joined["row"].astype(object),
            "column": joined["column"].astype("int64"),
            "field": joined["field"].astype("int64"),
            "day": joined["day"].astype("int64"),
            "treatment": joined["treatment"].astype(object),
            "concentration": joined["concentration"].astype("float64"),
            "unit": joined["unit"].astype(object),
            "group": joined["group"].astype(object),
            "edge": joined["edge"].astype(bool),
        }
    ).reset_index(drop=True)
    for col in [*index_extras, *map_extras]:
        images[col] = _typed(list(joined[col])).to_numpy()
    images["size"] = joined["size"].astype("int64").to_numpy()
    images["mtime"] = joined["mtime"].astype("float64").to_numpy()

    counts = images.groupby(["plate", "well"]).size()
    pm = pm.sort_values(["plate", "well"], kind="stable").reset_index(drop=True)
    wells = pd.DataFrame(
        {
            "plate": pm["plate"].astype(object),
            "well": pm["well"].astype(object),
            "row": pm["row"].astype(object),
            "column": pm["column"].astype("int64"),
            "treatment": pm["treatment"].astype(object),
            "concentration": pm["concentration"].astype("float64"),
            "unit": pm["unit"].astype(object),
            "group": pm["group"].astype(object),
            "edge": pm["edge"].astype(bool),
            "excluded": (pm["edge"] & exclude_edge).astype(bool),
            "n_images": [
                int(counts.get((p, w), 0)) for p, w in zip(pm["plate"], pm["well"], strict=True)
            ],
        }
    )
    for col in map_extras:
        wells[col] = _typed(list(pm[col])).to_numpy()
    if n_excluded:
        log.info("%s: %d image(s) of edge wells left out (exclude_edge)", source, n_excluded)
    return PlateImages(images=images, wells=wells, source=source, n_excluded=n_excluded)


def load_plate(
    index: str | os.PathLike[str],
    plate_map: str | os.PathLike[str],
    *,
    fmt: int | PlateFormat = 96,
    exclude_edge: bool = True,
    groups: Sequence[str] = PLATE_GROUPS,
) -> PlateImages:
    """Read, check and join an image index and its plate map (see the module's docs).

    Parameters
    ----------
    index, plate_map : str or path-like
        CSV or Parquet files (local paths or URLs).
    fmt : int or PlateFormat
        Wells per plate (96 or 384; 6 to 48 also work).
    exclude_edge : bool
        Leave the images of edge wells out (the inner-60 rule on a 96-well plate).
    groups : sequence of str
        The groups the plate map may name (default :data:`PLATE_GROUPS`).

    Returns
    -------
    PlateImages

    Raises
    ------
    PlateMapError
        Every problem of both files, each with its file, row (1 = the first data row) and
        fix.
    """
    idx = read_image_index(index)
    pm = read_plate_map(plate_map)
    return join_plate(
        idx,
        pm,
        index_name=os.fspath(index),
        map_name=os.fspath(plate_map),
        fmt=fmt,
        exclude_edge=exclude_edge,
        groups=groups,
    )
