"""Turning the SOURCES of an ingest into one ordered list of files and their metadata.

A source is a folder (searched recursively for image suffixes), a glob, an explicit file, or a
CSV / Parquet manifest whose ``path`` column names files (relative to the manifest's folder)
and whose other columns become metadata coordinates (``plate``, ``well``, ``day``, ...).
Only file names and stats are read here: no pixels.

A manifest's paths may point anywhere the user can read; each is recorded resolved (absolute,
symlinks followed), and :func:`paths_outside_manifest` lists those that resolve outside the
manifest's folder, for ``pipeline validate`` to warn about (a manifest from elsewhere could
otherwise pull, say, ``~/.ssh/id_rsa`` into a store that is then shared).
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

from pipeline.errors import ImageDecodeError, InputError
from pipeline.io.imagefiles import IMAGE_SUFFIXES, check_regular_file

__all__ = ["RESERVED_COLUMNS", "SourceSet", "paths_outside_manifest", "resolve_sources"]

log = logging.getLogger(__name__)

_MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
_PATH_COLUMNS = ("path", "file", "filename")
#: Names a manifest column may not take: they are dimensions or variables of the store.
RESERVED_COLUMNS = frozenset({"image", "y", "x", "channel", "images", "valid", "source"})
# Internal column of a read manifest: each row's path as given, made absolute (the ``path``
# column holds it resolved). Dropped before the rest become metadata.
_GIVEN = "\0given"


@dataclass
class SourceSet:
    """The resolved inputs of an ingest.

    Attributes
    ----------
    files : list of str
        Absolute paths (or URLs), without duplicates, sorted (a manifest's files by the path
        the manifest gives, and recorded resolved: symlinks followed, no ``..``); files a
        manifest lists but that do not exist are in ``missing`` instead.
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


def _manifest_table(source: str) -> tuple[pd.DataFrame, str]:
    """The manifest's table and the name of its file column."""
    if "://" not in source:
        try:
            # pandas would block for ever on a FIFO named like a manifest.
            check_regular_file(source)
        except ImageDecodeError as exc:
            raise InputError(f"manifest {source}: {exc}") from exc
        except FileNotFoundError as exc:
            raise InputError(f"manifest {source} does not exist: check the path") from exc
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
    return df, path_col


def _manifest_folder(source: str) -> str:
    """The folder (or URL prefix) a manifest's relative paths are relative to."""
    return source.rsplit("/", 1)[0] if "://" in source else str(Path(source).resolve().parent)


def _absolute(path: object, folder: str) -> str:
    s = str(path)
    if "://" in s or Path(s).is_absolute():
        return s
    return folder + ("/" if "://" in folder else os.sep) + s


def _resolved(path: str) -> str:
    """A local path made absolute with symlinks and ``..`` resolved; URLs as they are."""
    return path if "://" in path else os.path.realpath(path)


def _read_manifest(source: str) -> pd.DataFrame:
    df, path_col = _manifest_table(source)
    bad = sorted(RESERVED_COLUMNS & set(map(str, df.columns)) - {path_col})
    if bad:
        raise InputError(
            f"manifest {source} uses reserved column name(s) {bad}: rename them "
            f"(reserved: {', '.join(sorted(RESERVED_COLUMNS))})"
        )
    folder = _manifest_folder(source)
    df = df.rename(columns={path_col: "path"})
    given = [_absolute(p, folder) for p in df["path"]]
    df["path"] = [_resolved(p) for p in given]
    df[_GIVEN] = given
    dup = df["path"].duplicated(keep=False)
    if dup.any():
        first = df.loc[dup, "path"].iloc[0]
        as_given = list(df.loc[df["path"] == first, _GIVEN])
        shown = f" (as {' and '.join(sorted(set(as_given)))})" if len(set(as_given)) > 1 else ""
        raise InputError(
            f"manifest {source} lists {int(dup.sum()) - df.loc[dup, 'path'].nunique()} "
            f"file(s) more than once, e.g. {first}{shown}: give each file one row"
        )
    return df


def paths_outside_manifest(manifest: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The rows of a manifest whose files resolve outside the manifest's folder.

    Reading such a file is the user's right (the ingest does it); this is for
    ``pipeline validate`` to warn about, since a manifest from someone else can name any file
    its user can read. Symlinks and ``..`` are resolved; nothing is opened but the manifest.

    Parameters
    ----------
    manifest : str or path-like
        A CSV or Parquet manifest (local path or URL), as given to ``input.sources``.

    Returns
    -------
    list of (str, str)
        ``(path as the row gives it, resolved absolute path)``, in row order. For a local
        manifest, URL rows are not listed (they name no local file). For a manifest at a URL,
        rows naming local files are listed (relative rows are URLs beside it).

    Raises
    ------
    InputError
        If the manifest does not exist, is not a regular file, cannot be read or has no
        file column.
    """
    source = os.fspath(manifest)
    remote = "://" in source
    if not remote:
        source = str(Path(source).expanduser())
    df, path_col = _manifest_table(source)
    folder = _manifest_folder(source)
    real_folder = "" if remote else os.path.realpath(folder)
    out: list[tuple[str, str]] = []
    for value in df[path_col]:
        given = str(value)
        absolute = _absolute(given, folder)
        if "://" in absolute:
            continue
        resolved = os.path.realpath(absolute)
        if remote or os.path.commonpath([resolved, real_folder]) != real_folder:
            out.append((given, resolved))
    return out


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
        # A folder source names files as found (symlinks unresolved); the manifest as given
        # and resolved: either covers the file.
        listed = set(table["path"]) | set(table[_GIVEN])
        stray = sorted(set(found) - listed)
        if stray:
            raise InputError(
                f"{len(stray)} file(s) from the other sources are not in the manifest, e.g. "
                f"{stray[0]}: add them to the manifest or leave those sources out"
            )
        gone: list[str] = []
        for p, given in zip(table["path"], table[_GIVEN], strict=True):
            if p not in found:
                fs, path, _ = _fs_for(p)
                if fs.exists(path):
                    info = fs.info(path)
                    found[p] = (int(info["size"]), _mtime(info))
                else:
                    gone.append(p)
                    missing.append(given)  # as the manifest names it: that is what to fix
        table = table[~table["path"].isin(gone)].sort_values(_GIVEN, kind="stable")
        files = list(table["path"])
        # Images are named after the paths the manifest gives, not where symlinks lead.
        named = list(table[_GIVEN])
        meta = table.drop(columns=["path", _GIVEN]).reset_index(drop=True)
    else:
        files = sorted(found)
        named = files
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
        ids = _image_ids(named)
    meta = _clean_metadata(meta, ", ".join(map(str, sources)))
    return SourceSet(
        files=files,
        sizes=[found[f][0] for f in files],
        mtimes=[found[f][1] for f in files],
        image_ids=ids,
        metadata=meta.reset_index(drop=True),
        missing=missing,
    )
