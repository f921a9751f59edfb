"""Exceptions raised by pipeline.

Every class also subclasses the builtin that describes the failure (as zarr-python does), so
callers can catch either. Messages name the bad value, what was expected and what to do.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ClusterError",
    "CohortError",
    "CollectionMismatchError",
    "ImageDecodeError",
    "IngestError",
    "InputError",
    "JobSpecError",
    "ParameterError",
    "PipelineError",
    "PlateMapError",
    "RegistryError",
    "StageError",
    "StoreError",
    "StoreLockedError",
]


class PipelineError(Exception):
    """Base class of every error pipeline raises on purpose."""


class InputError(PipelineError, ValueError):
    """The inputs of an ingest (files, folders, globs, manifests, a mosaic file) are missing,
    empty or malformed (bad spec: exit 2)."""


class IngestError(PipelineError, ValueError):
    """The collection cannot be ingested as asked, e.g. mixed shapes under policy ``error``."""


class ImageDecodeError(PipelineError, ValueError):
    """One input file cannot be read as an image; the file is quarantined, the run goes on."""


class StoreError(PipelineError, OSError):
    """A run store is missing, unreadable, or not a pipeline run store."""


class StoreLockedError(StoreError):
    """Another run holds the store's lock (exit 2): two runs on one store would corrupt it.

    Parameters
    ----------
    store : str
        The store's location.
    holder : str, optional
        Who holds the lock (user, host, process, since when, doing what).
    """

    def __init__(self, store: str, holder: str | None) -> None:
        self.store = store
        self.holder = holder
        super().__init__(
            f"store {store} is in use by {holder or 'another run'}; wait for that run to end "
            "(or pass --wait SECONDS to wait for it), or use another --store"
        )


class ClusterError(PipelineError, OSError):
    """The configured cluster cannot be reached or started (e.g. a TLS file is missing)."""


class CollectionMismatchError(StoreError):
    """The output store already holds a different collection."""


class JobSpecError(PipelineError, ValueError):
    """A job spec (or a ``--set`` override) does not validate.

    Parameters
    ----------
    problems : list of str
        One line per problem, each naming the field, its place in the file and the fix.
    source : str
        The file (or ``<--set>``) the spec came from.
    """

    def __init__(self, problems: list[str], source: str = "<job spec>") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid job spec {source}:\n{lines}")


class ParameterError(PipelineError, ValueError):
    """A parameter is out of its allowed range, or does not fit the data it is applied to."""


class CheckpointError(PipelineError, ValueError):
    """A model checkpoint is missing, unreadable (truncated, not weights-only) or does not fit
    the model or the data it is used with."""


class CohortError(PipelineError, ValueError):
    """A clinical table cannot be analysed as given: every problem found, each with the column,
    the offending data rows (1 = the first row after the header) and the fix.

    Parameters
    ----------
    problems : list of str
        One line per problem.
    source : str
        The table (path, URL or ``lifelines:<name>``) the problems were found in.
    """

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"clinical table {source} cannot be analysed:\n{lines}")


class PlateMapError(PipelineError, ValueError):
    """A plate's image index or plate map (or an OME-Zarr HCS plate) does not describe a
    screen that can be analysed: every problem found, each with its file, row and the fix
    (bad input: exit 2).

    Parameters
    ----------
    problems : list of str
        One line per problem.
    source : str
        The file(s) the problems were found in.
    """

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"plate input {source} cannot be used:\n{lines}")


class RegistryError(PipelineError, ImportError):
    """A workflow, stage, table or report section is declared wrongly or cannot be loaded."""


class StageError(PipelineError, RuntimeError):
    """A stage failed while running; the runner records it in the manifest (exit 1)."""
