"""Fitted models kept in the run store (``models/<name>.npz``) for reuse on new data.

A model is a few named arrays plus JSON metadata; ``.npz`` holds them without pickle, so
loading one never runs code.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.core.store import RunStore
from pipeline.errors import StoreError

__all__ = ["load_arrays", "save_arrays"]

_META = "__meta__"


def save_arrays(store: RunStore, name: str, arrays: Mapping[str, np.ndarray], **meta: Any) -> None:
    """Write ``models/<name>.npz`` atomically: ``arrays`` and JSON-serialisable ``meta``."""
    buf = io.BytesIO()
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[_META] = np.asarray(json.dumps(meta, sort_keys=True))
    np.savez(buf, **payload)  # type: ignore[arg-type]
    store.write_bytes(f"models/{name}.npz", buf.getvalue())


def load_arrays(store: RunStore, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``models/<name>.npz``: the arrays and the metadata.

    Raises
    ------
    StoreError
        If the model is missing or unreadable, naming the file and the stage that writes it.
    """
    rel = f"models/{name}.npz"
    if not store.exists(rel):
        raise StoreError(
            f"{store.path(rel)} does not exist; run the stage that fits the {name} model first"
        )
    try:
        with np.load(io.BytesIO(store.read_bytes(rel)), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != _META}
            meta = json.loads(str(data[_META])) if _META in data.files else {}
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"{store.path(rel)} is not a readable model file: {exc}") from exc
    return arrays, meta
