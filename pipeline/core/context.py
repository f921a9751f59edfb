"""What a stage receives besides its parameters: :class:`RunContext`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.core.progress import ProgressFn, no_progress
from pipeline.errors import ParameterError

if TYPE_CHECKING:
    from distributed import Client

    from pipeline.core.store import RunStore

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """The run a stage is part of.

    Every stage is ``run(ctx, params) -> counts``: it reads and writes the run store through
    ``ctx.store``, computes on ``ctx.client``, logs through ``ctx.log`` and reports long work
    through ``ctx.progress``. The counts are what the manifest records (``{"images": 1200}``).

    Attributes
    ----------
    store : RunStore
    client : distributed.Client or None
        None runs in this process (small work in tests and notebooks).
    step : str
        Name of the job step being run; outputs named after their step use it. Empty: the
        stage's own name.
    upstream : str
        Config hash of the job's steps before this one, which made its inputs: state a stage
        keeps across runs (a training checkpoint to resume) is reused only under the same
        one. Empty outside a job.
    seed : int
        The job's seed; stages derive their random generators from it.
    forced : bool
        The step runs because of ``--force``: redo it completely rather than resume.
    progress : ProgressFn
    log : logging.Logger
    """

    store: RunStore
    client: Client | None = None
    step: str = ""
    upstream: str = ""
    seed: int = 0
    forced: bool = False
    progress: ProgressFn = no_progress
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("pipeline.stage"))

    def require_client(self, stage: str) -> Client:
        """The run's distributed client, for a stage that dispatches work to chosen workers.

        Raises
        ------
        ParameterError
            If the context has none.
        """
        if self.client is None:
            raise ParameterError(
                f"{stage} runs on the workers of a Dask cluster; run it in a job (`pipeline "
                "run`) or give the RunContext a distributed.Client"
            )
        return self.client

    def step_name(self, default: str) -> str:
        """The step's name, or ``default`` (the stage's name) when none was given."""
        return self.step or default
