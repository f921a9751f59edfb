"""Whether two run stores (or two folders of run stores) hold the same results.

Used to check that a change of the code leaves a job's outputs as they were: run the job with
the old code and with the new one, then ::

    python benchmarks/compare_stores.py OLD_RUNS NEW_RUNS     # e.g. runs/ of `make demo`

Compared, per store: every table (``tables/*.parquet``: the same tables, columns and values),
every array of ``store.zarr`` (shape, dtype, values) and every fitted model
(``models/*.npz``). Wall-time columns (``seconds``) are left out. Floats are compared exactly
unless ``--rtol`` is given, also inside JSON text (a table's ``params`` record, a model's
metadata). Exit status 0 when everything is equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

#: Columns (and arrays) left out: wall times differ between any two runs; ``--ignore`` adds.
TIMING_COLUMNS = {"seconds"}


def _stores(root: Path) -> dict[str, Path]:
    if (root / "manifest.json").exists():
        return {root.name: root}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "manifest.json").exists()}


def _equal(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        if rtol:
            return bool(np.allclose(a, b, rtol=rtol, atol=0, equal_nan=True))
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _same_json(x: object, y: object, rtol: float) -> bool:
    """Parsed JSON values equal, numbers within ``rtol`` (e.g. an inertia in a params record)."""
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same_json(x[k], y[k], rtol) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same_json(u, v, rtol) for u, v in zip(x, y, strict=True))
    numbers = (int, float)
    if isinstance(x, numbers) and isinstance(y, numbers) and not isinstance(x, bool):
        return bool(np.isclose(x, y, rtol=rtol, atol=0, equal_nan=True)) if rtol else x == y
    return x == y


def _same_text(x: str, y: str, rtol: float) -> bool:
    if x == y:
        return True
    try:
        return _same_json(json.loads(x), json.loads(y), rtol)
    except ValueError:
        return False


def _tables(a: Path, b: Path, rtol: float) -> list[str]:
    diffs = []
    names_a = {p.stem for p in (a / "tables").glob("*.parquet")}
    names_b = {p.stem for p in (b / "tables").glob("*.parquet")}
    diffs += [f"table {n}: only in the first" for n in sorted(names_a - names_b)]
    diffs += [f"table {n}: only in the second" for n in sorted(names_b - names_a)]
    for name in sorted(names_a & names_b):
        ta = pd.read_parquet(a / "tables" / f"{name}.parquet")
        tb = pd.read_parquet(b / "tables" / f"{name}.parquet")
        if list(ta.columns) != list(tb.columns):
            diffs.append(f"table {name}: columns {list(ta.columns)} != {list(tb.columns)}")
            continue
        if len(ta) != len(tb):
            diffs.append(f"table {name}: {len(ta)} rows != {len(tb)}")
            continue
        for col in ta.columns:
            if col in TIMING_COLUMNS:
                continue
            va, vb = ta[col].to_numpy(), tb[col].to_numpy()
            if va.dtype.kind in "fc" and vb.dtype.kind in "fc":
                same = _equal(va.astype(float), vb.astype(float), rtol)
            else:
                same = all(_same_text(str(x), str(y), rtol) for x, y in zip(va, vb, strict=True))
            if not same:
                diffs.append(f"table {name}: column {col} differs")
    return diffs


def _arrays(a: Path, b: Path, rtol: float) -> list[str]:
    if not (a / "store.zarr").exists() and not (b / "store.zarr").exists():
        return []
    ga, gb = (
        zarr.open_group(a / "store.zarr", mode="r"),
        zarr.open_group(b / "store.zarr", mode="r"),
    )
    names_a, names_b = set(ga.array_keys()), set(gb.array_keys())
    diffs = [f"array {n}: only in the first" for n in sorted(names_a - names_b)]
    diffs += [f"array {n}: only in the second" for n in sorted(names_b - names_a)]
    for name in sorted((names_a & names_b) - TIMING_COLUMNS):
        xa, xb = ga[name], gb[name]
        if xa.shape != xb.shape or xa.dtype != xb.dtype:
            diffs.append(f"array {name}: {xa.shape} {xa.dtype} != {xb.shape} {xb.dtype}")
        elif not _equal(np.asarray(xa[...]), np.asarray(xb[...]), rtol):
            diffs.append(f"array {name}: values differ")
    return diffs


def _models(a: Path, b: Path, rtol: float) -> list[str]:
    diffs = []
    for pa in sorted((a / "models").glob("*.npz")):
        pb = b / "models" / pa.name
        if not pb.exists():
            diffs.append(f"model {pa.name}: only in the first")
            continue
        with np.load(io.BytesIO(pa.read_bytes())) as da, np.load(io.BytesIO(pb.read_bytes())) as db:
            for key in sorted(set(da.files) | set(db.files)):
                if key not in da.files or key not in db.files:
                    diffs.append(f"model {pa.name}: {key} only in one")
                elif da[key].dtype.kind == "U" and db[key].dtype.kind == "U":
                    if not _same_text(str(da[key]), str(db[key]), rtol):
                        diffs.append(f"model {pa.name}: {key} differs")
                elif not _equal(da[key], db[key], rtol):
                    diffs.append(f"model {pa.name}: {key} differs")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="a run store, or a folder of run stores")
    parser.add_argument("second", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance of floats")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out this table column or array (e.g. `source`: the input files' absolute "
        "paths, which differ between two checkouts); repeatable",
    )
    args = parser.parse_args(argv)
    TIMING_COLUMNS.update(args.ignore)
    first, second = _stores(args.first), _stores(args.second)
    different = False
    for name in sorted(set(first) | set(second)):
        if name not in first or name not in second:
            print(f"{name}: only in {'the first' if name in first else 'the second'}")
            different = True
            continue
        a, b = first[name], second[name]
        diffs = _tables(a, b, args.rtol) + _arrays(a, b, args.rtol) + _models(a, b, args.rtol)
        n_tables = len(list((a / "tables").glob("*.parquet")))
        n_arrays = len(list(zarr.open_group(a / "store.zarr", mode="r").array_keys())) if (
            a / "store.zarr"
        ).exists() else 0  # fmt: skip
        n_models = len(list((a / "models").glob("*.npz")))
        verdict = "equal" if not diffs else f"{len(diffs)} difference(s)"
        print(f"{name}: {n_tables} tables, {n_arrays} arrays, {n_models} models: {verdict}")
        for d in diffs:
            print(f"  {d}")
        different |= bool(diffs)
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
