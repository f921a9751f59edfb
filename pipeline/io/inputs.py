"""Turning the SOURCES of an ingest into one ordered list of files and their metadata.

A source is a folder (searched recursively for image suffixes), a glob, an explicit file, or a
CSV / Parquet manifest whose ``path`` column names files (relative to the manifest's folder)
and whose other columns become metadata coordinates (``plate``, ``well``, ``day``, ...).
Only file names and stats are read here: no pixels.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import fsspec
import pandas as pd

from pipeline.errors import InputError
from pipeline.io.imagefiles import IMAGE_SUFFIXES

__all__ = ["RESERVED_COLUMNS", "SourceSet", "resolve_sources"]

log = logging.getLogger(__name__)

_MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
_PATH_COLUMNS = ("path", "file", "filename")
#: Names a manifest column may not take: they are dimensions or variables of the store.
RESERVED_COLUMNS = frozenset({"image", "y", "x", "channel", "images", "valid", "source"})


@dataclass
class SourceSet:
    """The resolved inputs of an ingest.

    Attributes
    ----------
    files : list of str
        Absolute paths (or URLs), sorted, without duplicates; files a manifest lists but that
        do not exist are in ``missing`` instead.
    sizes : list of int
        Size of each file in bytes.
    mtimes : list of float
        Modification time of each file (seconds since the epoch; 0 where unknown).
    image_ids : list of str
        Identifier of each file (see :data:`pipeline.core.tables.TABLES` ``images``).
    metadata : pandas.DataFrame
        One row per file (same order), one column per manifest metadata column.
    missing : list of str
        Files a manifest lists that do not exist.
    """

    files: list[str]
    sizes: list[int]
    mtimes: list[float]
    image_ids: list[str]
    metadata: pd.DataFrame
    missing: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """A hash of the files (path, size, mtime) and the metadata: same inputs, same hash."""
        h = hashlib.sha256()
        for f, s, m, i in zip(self.files, self.sizes, self.mtimes, self.image_ids, strict=True):
            h.update(f"{f}\0{s}\0{m:.6f}\0{i}\n".encode())
        h.update(self.metadata.to_json(orient="split", index=False).encode())
        return h.hexdigest()


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not PurePosixPath(name).name.startswith(".")


def _fs_for(source: str) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """Filesystem, path on it, and the prefix that turns such a path back into a URL."""
    if "://" in source:
        fs, path = fsspec.core.url_to_fs(source)
        protocol = source.split("://", 1)[0]
        return fs, path, f"{protocol}://"
    fs = fsspec.filesystem("file")
    return fs, str(Path(source).expanduser().resolve()) if not _is_glob(source) else source, ""


def _read_manifest(source: str) -> pd.DataFrame:
    try:
        csv = source.lower().endswith(".csv")
        df = pd.read_csv(source) if csv else pd.read_parquet(source)
    except Exception as exc:
        raise InputError(f"cannot read manifest {source}: {exc}") from exc
    path_col = next((c for c in _PATH_COLUMNS if c in df.columns), None)
    if path_col is None:
        raise InputError(
            f"manifest {source} has no file column: name one of its columns "
            f"{' or '.join(_PATH_COLUMNS)} (found: {', '.join(map(str, df.columns))})"
        )
    bad = sorted(RESERVED_COLUMNS & set(map(str, df.columns)) - {path_col})
    if bad:
        raise InputError(
            f"manifest {source} uses reserved column name(s) {bad}: rename them "
            f"(reserved: {', '.join(sorted(RESERVED_COLUMNS))})"
        )
    base = source.rsplit("/", 1)[0] if "://" in source else str(Path(source).resolve().parent)
    sep = "/" if "://" in source else os.sep

    def absolute(p: object) -> str:
        s = str(p)
        if "://" in s or Path(s).is_absolute():
            return s
        return base + sep + s

    df = df.rename(columns={path_col: "path"})
    df["path"] = [absolute(p) for p in df["path"]]
    dup = df["path"][df["path"].duplicated()]
    if len(dup):
        raise InputError(
            f"manifest {source} lists {len(dup)} file(s) more than once, e.g. {dup.iloc[0]}: "
            "give each file one row"
        )
    return df


def _expand(source: str) -> list[tuple[str, int, float]]:
    fs, path, prefix = _fs_for(source)
    if _is_glob(source):
        matches = sorted(fs.glob(path))
        out: list[tuple[str, int, float]] = []
        for m in matches:
            if fs.isdir(m):
                out.extend(_expand(prefix + m if prefix else m))
            else:
                info = fs.info(m)
                out.append((prefix + m if prefix else m, int(info["size"]), _mtime(info)))
        return out
    if not fs.exists(path):
        raise InputError(f"source {source} does not exist: check the path")
    if fs.isdir(path):
        found = fs.find(path, detail=True)
        return [
            (prefix + p if prefix else p, int(info["size"]), _mtime(info))
            for p, info in sorted(found.items())
            if _is_image_name(p)
            and not any(part.startswith(".") for part in PurePosixPath(p[len(path) :]).parts)
        ]
    info = fs.info(path)
    return [(prefix + path if prefix else path, int(info["size"]), _mtime(info))]


def _mtime(info: dict[str, object]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if value is not None:
            return pd.Timestamp(str(value)).timestamp()
    return 0.0


def _image_ids(files: Sequence[str]) -> list[str]:
    stems = [PurePosixPath(f.replace(os.sep, "/")).stem for f in files]
    if len(set(stems)) == len(stems):
        return stems
    # Stems collide (e.g. plate1/A01.tif and plate2/A01.tif): use the path below the common
    # folder, without the suffix, which is unique because the paths are.
    common = os.path.commonpath([f.split("://", 1)[-1] for f in files]) if len(files) > 1 else ""
    out = []
    for f in files:
        rel = f.split("://", 1)[-1][len(common) :].lstrip("/\\")
        out.append(str(PurePosixPath(rel.replace(os.sep, "/")).with_suffix("")))
    return out


def _clean_metadata(df: pd.DataFrame, source: str) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            out[str(col)] = s
        else:
            if s.isna().any():
                log.warning(
                    "manifest %s: column %r has %d empty value(s); stored as ''",
                    source,
                    col,
                    int(s.isna().sum()),
                )
            out[str(col)] = s.fillna("").astype(str).astype(object)
    return out


def resolve_sources(sources: Sequence[str]) -> SourceSet:
    """Resolve folders, globs, files and manifests into a :class:`SourceSet`.

    Parameters
    ----------
    sources : sequence of str
        Folders, globs, image files, and ``.csv`` / ``.parquet`` manifests (local or URLs).

    Returns
    -------
    SourceSet

    Raises
    ------
    InputError
        If a source does not exist, a manifest is malformed, files are not covered by a given
        manifest, identifiers repeat, or no image file is found at all.
    """
    if not sources:
        raise InputError("no sources given: name folders, globs, files or a CSV/Parquet manifest")
    manifests: list[pd.DataFrame] = []
    found: dict[str, tuple[int, float]] = {}
    for src in sources:
        src = os.fspath(src)
        if src.lower().endswith(_MANIFEST_SUFFIXES) and not _is_glob(src):
            fs, path, _ = _fs_for(src)
            if not fs.exists(path):
                raise InputError(f"manifest {src} does not exist: check the path")
            manifests.append(_read_manifest(src if "://" in src else path))
            continue
        for p, size, mtime in _expand(src):
            found[p] = (size, mtime)

    missing: list[str] = []
    if manifests:
        table = pd.concat(manifests, ignore_index=True)
        dup = table["path"][table["path"].duplicated()]
        if len(dup):
            raise InputError(f"{dup.iloc[0]} is listed by more than one manifest: list it once")
        listed = set(table["path"])
        stray = sorted(set(found) - listed)
        if stray:
            raise InputError(
                f"{len(stray)} file(s) from the other sources are not in the manifest, e.g. "
                f"{stray[0]}: add them to the manifest or leave those sources out"
            )
        for p in table["path"]:
            if p not in found:
                fs, path, _ = _fs_for(p)
                if fs.exists(path):
                    info = fs.info(path)
                    found[p] = (int(info["size"]), _mtime(info))
                else:
                    missing.append(p)
        table = table[~table["path"].isin(missing)].sort_values("path", kind="stable")
        files = list(table["path"])
        meta = table.drop(columns=["path"]).reset_index(drop=True)
    else:
        files = sorted(found)
        meta = pd.DataFrame(index=range(len(files)))

    if not files:
        looked = ", ".join(IMAGE_SUFFIXES)
        raise InputError(
            f"no image files found in {', '.join(map(str, sources))} (looked for {looked}); "
            "check the paths or name the files explicitly"
        )
    if "image_id" in meta.columns:
        ids = [str(v) for v in meta.pop("image_id")]
        dup_ids = pd.Series(ids)[pd.Series(ids).duplicated()]
        if len(dup_ids):
            raise InputError(
                f"the manifest's image_id column repeats {dup_ids.iloc[0]!r}: make ids unique"
            )
    else:
        ids = _image_ids(files)
    meta = _clean_metadata(meta, ", ".join(map(str, sources)))
    return SourceSet(
        files=files,
        sizes=[found[f][0] for f in files],
        mtimes=[found[f][1] for f in files],
        image_ids=ids,
        metadata=meta.reset_index(drop=True),
        missing=missing,
    )
