"""Tables of a run store: Parquet files whose columns are documented by the workflow that
writes them.

Tables live at ``<store>/tables/<name>.parquet`` and are plain Parquet that pandas (or any
Arrow reader) opens. Each workflow declares a :class:`TableSchema` per table it writes (in its
``tables`` module, listed by its :class:`~pipeline.core.registry.Workflow`); :func:`write_table`
refuses a frame that lacks a documented column, so the documentation cannot drift from what
is written. A table named after its step (``pca200_explained_variance``) names its schema
(``schema="explained_variance"``).

This module imports pandas only when a table is read or written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import StoreError

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.core.store import RunStore

__all__ = ["TableSchema", "documented_tables", "read_table", "table_schema", "write_table"]


@dataclass(frozen=True)
class TableSchema:
    """A documented table.

    Parameters
    ----------
    name : str
        File stem under ``tables/`` (or, for a table named after its step, the schema name).
    description : str
        What one row is.
    columns : mapping of str to str
        Required columns and their meaning (units where they have one).
    open_columns : bool
        Whether further columns may follow (e.g. user metadata columns).
    """

    name: str
    description: str
    columns: Mapping[str, str]
    open_columns: bool = False


def documented_tables() -> Mapping[str, TableSchema]:
    """Every table the installed workflows document, by name."""
    from pipeline.core.registry import default_registry

    return default_registry().tables


def table_schema(name: str) -> TableSchema:
    """The schema of table ``name``.

    Raises
    ------
    StoreError
        If no installed workflow documents it.
    """
    from pipeline.core.registry import default_registry
    from pipeline.errors import RegistryError

    try:
        return default_registry().table(name)
    except RegistryError as exc:
        raise StoreError(str(exc)) from None


def write_table(store: RunStore, name: str, df: pd.DataFrame, *, schema: str | None = None) -> None:
    """Write ``df`` as ``tables/<name>.parquet``, atomically.

    Parameters
    ----------
    store : RunStore
    name : str
        The file stem.
    df : pandas.DataFrame
    schema : str, optional
        The documented table it is an instance of (default: ``name``).

    Raises
    ------
    StoreError
        If the schema is not documented, or ``df`` lacks a documented column, or has
        undocumented ones where the table allows none.
    """
    spec = table_schema(schema or name)
    missing = [c for c in spec.columns if c not in df.columns]
    extra = [c for c in df.columns if c not in spec.columns]
    if missing or (extra and not spec.open_columns):
        raise StoreError(
            f"table {name!r}: missing columns {missing}, undocumented columns {extra}; "
            f"document them in the schema {spec.name!r} of the workflow that writes it"
        )
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    store.write_bytes(f"tables/{name}.parquet", buf.getvalue())


def read_table(store: RunStore, name: str, *, schema: str | None = None) -> pd.DataFrame:
    """Read ``tables/<name>.parquet`` from ``store``.

    Raises
    ------
    StoreError
        If the table is not documented or has not been written.
    """
    import pandas as pd

    table_schema(schema or name)
    rel = f"tables/{name}.parquet"
    if not store.exists(rel):
        raise StoreError(f"{store.path(rel)} does not exist; run the stage that writes it first")
    return pd.read_parquet(io.BytesIO(store.read_bytes(rel)))
