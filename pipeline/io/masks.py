"""Ground-truth masks beside the images: ``masks (image, y, x)`` uint32 instance labels.

Segmentation training and evaluation need each image's truth. Users bring it the way their
data comes: the Data Science Bowl's flat ``images/`` + ``masks/`` pairs matched by name, its
original per-image folders of one binary PNG per nucleus, or a manifest's ``mask_path``
column (:class:`~pipeline.io.spec.MaskIngestParams` says which is looked for where). A mask
is a *label image* (0 background, one value per object: kept as it is), a *binary image*
(one foreground value: its connected components become the objects), or a folder of binary
*instance* files (file ``k`` in name order is object ``k``; a pixel two files claim stays with
the first).

Everything is matched and every mask's header is checked on the client before anything is
written, so an image without a mask, or a mask whose size differs from its image, stops the
stage with the list of them and the store keeps what it held. Then one task per chunk of
``images`` decodes its masks and writes its region of ``masks`` (the resumable chunk loop:
pixels never pass through the client). Masks of images that the ingest resized or padded get
the same transform (nearest-neighbour for a resize, so labels stay labels).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
from skimage.measure import label as connected_components
from skimage.transform import resize

from pipeline.core.chunks import chunk_bounds, collect_rows, prepare_array, run_chunks, write_block
from pipeline.core.context import RunContext
from pipeline.core.manifest import load_manifest
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import ImageDecodeError, InputError, StoreError
from pipeline.io.conform import fit_shape
from pipeline.io.imagefiles import IMAGE_SUFFIXES, read_header, read_image
from pipeline.io.spec import MaskIngestParams

__all__ = [
    "MASKS",
    "MASKS_TABLE",
    "MaskSource",
    "ingest_masks",
    "mask_chunk",
    "mask_labels",
    "match_masks",
]

log = logging.getLogger(__name__)

#: The array of instance labels, ``(image, y, x)`` uint32, beside ``images``.
MASKS = "masks"
#: One row per image: where its mask came from and how many objects it holds.
MASKS_TABLE = "masks"
_TASK = "ingest_masks"
_MANIFEST_SUFFIXES = (".csv", ".parquet")
_SHOWN = 5

MaskKind = Literal["file", "instances"]


@dataclass(frozen=True)
class MaskSource:
    """Where one image's mask is: one ``file``, or a folder's ``instances`` (one per object)."""

    kind: MaskKind
    paths: tuple[str, ...]

    @property
    def shown(self) -> str:
        """The file, or the folder of the instance files."""
        return self.paths[0] if self.kind == "file" else _parent(self.paths[0])


# -- matching (on the client: listings and headers only) -------------------------------------


def _is_image_name(name: str) -> bool:
    base = PurePosixPath(name).name
    return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")


def _stem(path: str) -> str:
    return PurePosixPath(path.replace(os.sep, "/")).stem


def _parent(path: str) -> str:
    return path.replace(os.sep, "/").rsplit("/", 1)[0]


def _join(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


class _Folder:
    """One listing of a masks folder: image files by stem, sub-folders by name."""

    def __init__(self, folder: str):
        fs, root = fsspec.core.url_to_fs(folder)
        self.protocol = "" if "://" not in folder else folder.split("://", 1)[0] + "://"
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}
        self.exists = bool(fs.isdir(root))
        if not self.exists:
            return
        for entry in fs.ls(root, detail=True):
            name = str(entry["name"])
            full = self.protocol + name if self.protocol else name
            base = PurePosixPath(name).name
            if entry["type"] == "directory":
                self.folders[base] = full
            elif _is_image_name(base):
                self.files.setdefault(_stem(base), full)
        self._fs = fs

    def instances(self, folder: str) -> tuple[str, ...]:
        root = folder.split("://", 1)[-1] if self.protocol else folder
        names = sorted(
            str(e["name"])
            for e in self._fs.ls(root, detail=True)
            if e["type"] != "directory" and _is_image_name(str(e["name"]))
        )
        return tuple(self.protocol + n if self.protocol else n for n in names)

    def match(self, stem: str) -> MaskSource | None:
        if stem in self.files:
            return MaskSource("file", (self.files[stem],))
        if stem in self.folders:
            files = self.instances(self.folders[stem])
            return MaskSource("instances", files) if files else None
        return None


def _from_manifest(
    images: pd.DataFrame, manifest: str, column: str = "mask_path"
) -> list[MaskSource | None]:
    try:
        df = (
            pd.read_csv(manifest)
            if manifest.lower().endswith(".csv")
            else pd.read_parquet(manifest)
        )
    except Exception as exc:
        raise InputError(f"ingest_masks: cannot read the masks manifest {manifest}: {exc}") from exc
    key = next((c for c in ("path", "file", "filename", "image_id") if c in df.columns), None)
    if column not in df.columns or key is None:
        raise InputError(
            f"ingest_masks: manifest {manifest} needs a {column!r} column and a 'path' (or "
            f"'image_id') column naming the image; found {', '.join(map(str, df.columns))}"
        )
    folder = _parent(manifest) if "://" in manifest else os.path.dirname(os.path.abspath(manifest))
    masks = {}
    for k, m in zip(df[key], df[column], strict=True):
        if isinstance(m, str) and m:
            masks[_resolve(str(k), folder) if key != "image_id" else str(k)] = _resolve(m, folder)
    by = images["source"] if key != "image_id" else images["image_id"]
    return [MaskSource("file", (masks[k],)) if k in masks else None for k in map(str, by)]


def _resolve(path: str, folder: str) -> str:
    if "://" in path or os.path.isabs(path):
        return path if "://" in path else os.path.realpath(path)
    if "://" in folder:
        return _join(folder, path)
    return os.path.realpath(os.path.join(folder, path))


def _ingest_manifest_folder(store: RunStore) -> str | None:
    """The folder of the ingest's manifest, when it read exactly one (relative mask paths)."""
    for rec in load_manifest(store).stages.values():
        sources = rec.params.get("sources") if rec.status == "done" else None
        if isinstance(sources, list) and len(sources) == 1:
            src = str(sources[0])
            if src.lower().endswith(_MANIFEST_SUFFIXES):
                return _parent(src) if "://" in src else os.path.dirname(os.path.abspath(src))
    return None


def _beside(images: pd.DataFrame) -> list[MaskSource | None]:
    folders: dict[str, _Folder] = {}
    out: list[MaskSource | None] = []
    for source in images["source"].astype(str):
        image_folder = _parent(source)
        masks_folder = _join(_parent(image_folder), "masks")
        if masks_folder not in folders:
            folders[masks_folder] = _Folder(masks_folder)
        listing = folders[masks_folder]
        stem = _stem(source)
        found = listing.match(stem) if listing.exists else None
        # The Data Science Bowl's own layout: <id>/images/<id>.png, <id>/masks/*.png.
        dsb = PurePosixPath(image_folder).name == "images" and (
            PurePosixPath(_parent(image_folder)).name == stem
        )
        if found is None and dsb and listing.files:
            found = MaskSource("instances", tuple(sorted(listing.files.values())))
        out.append(found)
    return out


def match_masks(
    images: pd.DataFrame, params: MaskIngestParams, manifest_folder: str | None = None
) -> list[MaskSource]:
    """Each image's mask, found as ``params`` says (see :class:`MaskIngestParams`).

    Parameters
    ----------
    images : pandas.DataFrame
        The ``images`` table (``image_id``, ``source``, and a manifest's ``mask_path`` when
        the ingest read one), in ``image`` order.
    params : MaskIngestParams
    manifest_folder : str, optional
        What relative ``mask_path`` values of the images table are relative to (the ingest
        manifest's folder).

    Returns
    -------
    list of MaskSource
        One per image, in ``image`` order.

    Raises
    ------
    InputError
        If an image has no mask (the first few are named, with where a mask was looked for).
    """
    where: str
    if params.source is not None and params.source.lower().endswith(_MANIFEST_SUFFIXES):
        found = _from_manifest(images, params.source)
        where = f"a 'mask_path' row in {params.source}"
    elif params.source is not None:
        listing = _Folder(params.source)
        if not listing.exists:
            raise InputError(
                f"ingest_masks: source {params.source} is not a folder or a CSV/Parquet "
                "manifest: give the folder of masks (matched by file name) or a manifest with "
                "a mask_path column"
            )
        found = [listing.match(_stem(s)) for s in images["source"].astype(str)]
        where = f"a file (any image suffix) or a folder named as the image in {params.source}"
    elif "mask_path" in images.columns:
        folder = manifest_folder or os.getcwd()
        found = [
            MaskSource("file", (_resolve(str(m), folder),)) if isinstance(m, str) and m else None
            for m in images["mask_path"]
        ]
        where = "a value in the manifest's mask_path column"
    else:
        found = _beside(images)
        where = "a file of the same name in the 'masks' folder beside the image's folder"
    missing = [str(i) for i, f in zip(images["image_id"], found, strict=True) if f is None]
    if missing:
        raise InputError(
            f"ingest_masks: {len(missing)} of {len(images)} image(s) have no mask, e.g. "
            f"{', '.join(missing[:_SHOWN])}; looked for {where}. Add their masks, leave the "
            "images out of the ingest, or set ingest_masks.source"
        )
    return [f for f in found if f is not None]


def _check_shapes(images: pd.DataFrame, sources: Sequence[MaskSource]) -> None:
    """Every mask file's header against its image's size, all reported together."""
    bad: list[str] = []
    for image_id, h, w, src in zip(
        images["image_id"], images["height"], images["width"], sources, strict=True
    ):
        for path in src.paths:
            info = read_header(path)
            if not info.ok:
                bad.append(f"{image_id}: {path} cannot be read ({info.reason})")
            elif tuple(info.shape[:2]) != (int(h), int(w)):
                bad.append(
                    f"{image_id}: mask {path} is {info.shape[0]} x {info.shape[1]} px, its "
                    f"image {int(h)} x {int(w)}"
                )
            if len(bad) > _SHOWN:
                break
    if bad:
        raise InputError(
            "ingest_masks: masks that do not fit their images: "
            + "; ".join(bad[:_SHOWN])
            + (" ..." if len(bad) > _SHOWN else "")
            + ". A mask must have its image's height and width: match the pairs by name, or "
            "save the masks at the images' size"
        )


# -- per chunk (module level, pure: they run on workers) -------------------------------------


def _plane(array: np.ndarray, path: str) -> np.ndarray:
    """One plane of a decoded mask: channels that agree are one; others are refused."""
    if array.ndim == 3:
        # RGB(A) PNGs written from grey masks repeat the value; alpha is dropped.
        grey = array[..., :3] if array.shape[2] == 4 else array
        if not all(np.array_equal(grey[..., 0], grey[..., c]) for c in range(grey.shape[2])):
            raise ImageDecodeError(
                f"mask {path} has {array.shape[2]} channels that differ; save masks as "
                "single-channel label or binary images"
            )
        array = grey[..., 0]
    integral = np.all(np.isfinite(array)) and np.all(array == np.rint(array)) and array.min() >= 0
    if np.issubdtype(array.dtype, np.floating) and not integral:
        raise ImageDecodeError(
            f"mask {path} holds values that are not non-negative integers; a mask is a "
            "label image (0 background) or a binary image"
        )
    return array


def mask_labels(
    planes: Sequence[np.ndarray], kind: MaskKind, connectivity: int = 1
) -> tuple[np.ndarray, str]:
    """Instance labels from decoded mask planes.

    Parameters
    ----------
    planes : sequence of numpy.ndarray
        ``(y, x)`` each: the one mask file (``kind="file"``) or the instance files in name
        order (``kind="instances"``).
    kind : {"file", "instances"}
    connectivity : {1, 2}
        For a binary mask: 4- (1) or 8-connected (2) components.

    Returns
    -------
    labels : numpy.ndarray
        ``(y, x)`` uint32, 0 background.
    format : str
        ``label`` (kept as given), ``binary`` (labelled by connected components) or
        ``instances``.
    """
    if kind == "instances":
        labels = np.zeros(planes[0].shape, dtype=np.uint32)
        for k, plane in enumerate(planes, start=1):
            labels[(plane > 0) & (labels == 0)] = k
        return labels, "instances"
    plane = planes[0]
    values = np.unique(plane)
    if np.count_nonzero(values) <= 1:
        out = connected_components(plane > 0, connectivity=connectivity)
        return out.astype(np.uint32), "binary"
    return plane.astype(np.uint32), "label"


def _fit(labels: np.ndarray, height: int, width: int, policy: str) -> np.ndarray:
    if labels.shape == (height, width):
        return labels
    if policy == "pad":
        return fit_shape(labels, height, width, "pad")
    # Nearest neighbour, no smoothing: a resized label image keeps its labels.
    out = resize(labels, (height, width), order=0, preserve_range=True, anti_aliasing=False)
    return np.asarray(out).astype(np.uint32)


def mask_chunk(
    store: RunStore,
    index: int,
    start: int,
    sources: Sequence[tuple[MaskKind, tuple[str, ...]]],
    shape: tuple[int, int],
    policy: str,
    connectivity: int,
) -> dict[str, list[dict[str, Any]]]:
    """Decode the masks of images ``[start, start + len(sources))`` and write their region.

    Returns the chunk's table rows (format, objects, foreground fraction).
    """
    height, width = shape
    block = np.zeros((len(sources), height, width), dtype=np.uint32)
    rows = []
    for i, (kind, paths) in enumerate(sources):
        planes = [_plane(read_image(p, read_header(p).format), p) for p in paths]
        labels, fmt = mask_labels(planes, kind, connectivity)
        block[i] = _fit(labels, height, width, policy)
        rows.append(
            {
                "format": fmt,
                "objects": int(np.unique(block[i]).size - (1 if (block[i] == 0).any() else 0)),
                "foreground_fraction": float(np.count_nonzero(block[i]) / block[i].size),
            }
        )
    write_block(store, MASKS, start, block)
    return {"rows": rows}


# -- the stage -------------------------------------------------------------------------------


def _shape_policy(store: RunStore) -> str:
    for rec in load_manifest(store).stages.values():
        if rec.status == "done" and "shape_policy" in rec.params:
            return str(rec.params["shape_policy"])
    return "error"


def ingest_masks(ctx: RunContext, params: MaskIngestParams) -> dict[str, int]:
    """Read every image's ground-truth mask into ``masks (image, y, x)``.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds the ingested ``images``; it receives ``masks`` (uint32 instance
        labels, 0 background, chunked as ``images``) and ``tables/masks.parquet``.
    params : MaskIngestParams

    Returns
    -------
    dict
        ``images``, ``objects`` (all masks together), and how many masks were ``label``,
        ``binary`` and ``instances``.

    Raises
    ------
    StoreError
        If the store has no image collection.
    InputError
        If an image has no mask or a mask's size differs from its image's (nothing is
        written then).
    """
    store = ctx.store
    if not store.has_array("images"):
        raise StoreError(
            f"{store.url} has no image collection; ingest the images first (the job's `input` "
            "section), then ingest_masks"
        )
    images = read_table(store, "images")
    sources = match_masks(images, params, _ingest_manifest_folder(store))
    _check_shapes(images, sources)
    array = store.open_array("images", mode="r")
    n, height, width = int(array.shape[0]), int(array.shape[1]), int(array.shape[2])
    per_chunk = int(array.chunks[0])
    digest = hashlib.sha256("\n".join("\0".join(s.paths) for s in sources).encode()).hexdigest()
    policy = _shape_policy(store)
    prepare_array(
        store,
        task=_TASK,
        name=MASKS,
        dims=("image", "y", "x"),
        shape=(n, height, width),
        chunks=(per_chunk, height, width),
        dtype=np.uint32,
        config={**params.model_dump(mode="json"), "masks": digest, "policy": policy},
        attrs={"description": "ground-truth instance labels: 0 background, 1.. objects"},
        redo=ctx.forced,
    )
    bounds = chunk_bounds(n, per_chunk)
    args = {
        i: (
            s,
            [(m.kind, m.paths) for m in sources[s:e]],
            (height, width),
            policy,
            params.connectivity,
        )
        for i, (s, e) in enumerate(bounds)
    }
    run_chunks(store, ctx.client, _TASK, mask_chunk, args, label="masks", progress=ctx.progress)
    rows = pd.DataFrame(collect_rows(store, _TASK, len(bounds)))
    table = pd.DataFrame(
        {
            "image": np.arange(n),
            "image_id": images["image_id"].astype(str).values,
            "mask": [s.shown for s in sources],
        }
    )
    table = pd.concat([table, rows], axis=1)
    write_table(store, MASKS_TABLE, table)
    counts = {"images": n, "objects": int(table["objects"].sum())}
    counts.update({f: int((table["format"] == f).sum()) for f in ("label", "binary", "instances")})
    log.info("ingest_masks: %d mask(s), %d object(s)", n, counts["objects"])
    return counts
