"""The ``supervised_baseline`` stage: a ResNet trained supervised from random initialisation.

The spheroid thesis (source document 001, section 6.2) sets the linear probe on learned
features against a ResNet-18 trained from scratch on the same labelled images with weak
augmentations (flips, crop-and-resize to 80-100 % of the area, blur), scored on the same test
wells. Per repeat and shots value this stage:

1. takes the probe's split (:func:`pipeline.features.probe.probe_splits` on the same rows,
   labels and groups): the same held-out test rows and the same k-shot training set;
2. builds the encoder (:func:`~pipeline.workflows.embed.models.build_encoder`, random
   initialisation) with a linear head to the classes, and trains it with cross-entropy,
   AdamW and a cosine learning rate on ``augment_batch(to_tensor(batch))`` views, then
   recomputes its batch-norm statistics for the final weights on the unaugmented training
   images (a k-shot set gives too few steps for the running averages to catch up);
3. classifies the test rows without augmentation (:func:`~pipeline.workflows.embed.inputs.
   prepare_batch`) and scores accuracy and macro-F1, as the probe does.

Every check (the array, the label and group columns, classes and shots against the data)
runs on the client before training. The training is one task, on a GPU worker when the
cluster has one, else on the worker of the host with the most threads (as ``train_encoder``);
it reads its pixels from the store itself. Initialisation, batch order and augmentations
are seeded from the repeat's seed and the shots value, so the same job gives the same table
on CPU.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from pipeline.compute.batches import ChunkSource, precise_batch_norm
from pipeline.compute.events import run_relayed, training_placement
from pipeline.compute.serving import amp_dtype, autocast, pick_device
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.features.matrix import row_labels, select_rows
from pipeline.features.probe import ProbeSplit, probe_splits
from pipeline.workflows.embed.augment import augment_batch
from pipeline.workflows.embed.data import image_array
from pipeline.workflows.embed.inputs import prepare_batch, to_tensor
from pipeline.workflows.embed.models import EncoderConfig, ResNetEncoder, build_encoder
from pipeline.workflows.embed.supervised_spec import SUPERVISED_TABLE, SupervisedParams
from pipeline.workflows.embed.tables import TABLES

__all__ = [
    "SUPERVISED_COLUMNS",
    "SupervisedParams",
    "SupervisedPlan",
    "plan_supervised",
    "run_supervised_baseline",
    "train_supervised",
]

log = logging.getLogger(__name__)

_STAGE = "supervised_baseline"

#: Columns of the ``supervised_baseline`` table, in order: the probe table's, then
#: ``epochs`` and ``device`` (documented in :mod:`pipeline.workflows.embed.tables`).
SUPERVISED_COLUMNS: tuple[str, ...] = tuple(
    next(t for t in TABLES if t.name == SUPERVISED_TABLE).columns
)

#: The stage that writes each image array a baseline is usually asked for.
_WRITERS = {
    "spheroid_crops": "spheroid_crops",
    "cutouts": "preprocess",
    "images": "ingest",
}


@dataclass(frozen=True)
class SupervisedPlan:
    """What the stage trains and scores, decided on the client before any training.

    Attributes
    ----------
    positions : ndarray of int64, shape (n_rows,)
        Image positions (along ``image``) of the selected rows, ascending; the splits index
        into them.
    y : ndarray of int64, shape (n_rows,)
        Each row's class, an index into ``classes`` (-1: no label, never used).
    classes : tuple of str
        The classes, sorted (as the probe compares them: as strings).
    splits : list of ProbeSplit
        The probe's split of every repeat (:func:`~pipeline.features.probe.probe_splits`).
    channels : int
        Channels of the images (1 or 3).
    """

    positions: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    splits: list[ProbeSplit]
    channels: int

    @property
    def used(self) -> np.ndarray:
        """Rows (into ``positions``) that some fit trains on or scores, ascending."""
        return _used(self.splits)

    @property
    def n_fits(self) -> int:
        """Networks trained: one per repeat and usable shots value."""
        return sum(len(s.train) for s in self.splits)


def _used(splits: list[ProbeSplit]) -> np.ndarray:
    parts = [np.concatenate([s.test, *s.train.values()]) for s in splits]
    return np.unique(np.concatenate(parts))


def plan_supervised(store: RunStore, params: SupervisedParams, seed: int) -> SupervisedPlan:
    """Check the stage's inputs and draw the probe's splits of them.

    Parameters
    ----------
    store : RunStore
    params : SupervisedParams
    seed : int
        The first repeat's seed (the job's, as the probe's).

    Returns
    -------
    SupervisedPlan

    Raises
    ------
    StoreError
        If ``params.input`` is not in the store (naming the stage that writes it) or is not
        shaped as images.
    ParameterError
        If the rows, the label or group column, or the labels do not fit (as for the probe:
        fewer than 2 classes, a class of one example, shots no class can fill, ...).
    """
    if not store.has_array(params.input):
        writer = _WRITERS.get(params.input)
        how = f"run the `{writer}` stage first" if writer else "run the stage that writes it"
        raise StoreError(
            f"{_STAGE}: array {params.input!r} is not in {store.zarr_url}; {how}, or set "
            "`input` to an image array of the store (e.g. spheroid_crops)"
        )
    channels, shape, _ = image_array(store, params.input, _STAGE)
    n_total = shape[0]
    positions = select_rows(store, params.rows, n_total)
    if len(positions) == 0:
        raise ParameterError(
            f"{_STAGE}: `rows` selects no image of {params.input!r}; loosen it or set `rows: all`"
        )
    labels = row_labels(store, params.label_column, positions, n_total)
    groups = (
        None
        if params.group_column is None
        else row_labels(store, params.group_column, positions, n_total)
    )
    try:
        splits = probe_splits(
            labels,
            groups=groups,
            shots=params.shots,
            repeats=params.repeats,
            test_fraction=params.test_fraction,
            seed=seed,
            stage=_STAGE,
        )
    except ParameterError as exc:
        raise ParameterError(f"{_STAGE}: {exc}") from None
    used = _used(splits)
    classes = np.unique(labels[used].astype(str))
    y = np.full(len(positions), -1, dtype=np.int64)
    y[used] = np.searchsorted(classes, labels[used].astype(str))
    return SupervisedPlan(
        positions.astype(np.int64), y, tuple(str(c) for c in classes), splits, channels
    )


class _Classifier(nn.Module):
    """An encoder and a linear head to the classes."""

    def __init__(self, encoder: ResNetEncoder, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _fit_seeds(seed: int, shots: int) -> tuple[int, int, int, int]:
    """Seeds of the encoder's and the head's initialisation, the batch order and the views."""
    state = np.random.SeedSequence([seed, shots]).generate_state(4)
    a, b, c, d = (int(v) for v in state)
    return a, b, c, d


def _build(config: EncoderConfig, n_classes: int, seed: int, shots: int) -> _Classifier:
    encoder_seed, head_seed, _, _ = _fit_seeds(seed, shots)
    encoder = build_encoder(config, seed=encoder_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(head_seed)
        return _Classifier(encoder, n_classes)


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each batch; a last batch of one image joins the one before (batch
    norm learns nothing from a batch of one)."""
    bounds = [(s, min(s + size, n)) for s in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _fit(
    images: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    n_classes: int,
    params: SupervisedParams,
    config: EncoderConfig,
    device: torch.device,
    seed: int,
    shots: int,
) -> _Classifier:
    """Train a fresh classifier on ``images[rows]`` (classes ``targets``)."""
    model = _build(config, n_classes, seed, shots).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    _, _, order_seed, view_seed = _fit_seeds(seed, shots)
    rng = np.random.default_rng(order_seed)
    gen = torch.Generator().manual_seed(view_seed)
    bounds = _batches(len(rows), params.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.epochs * len(bounds))
    use_amp = params.amp and amp_dtype(device) is not None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype(device) is torch.float16)
    y = torch.as_tensor(targets, dtype=torch.long)
    model.train()
    for epoch in range(1, params.epochs + 1):
        order = rng.permutation(len(rows))
        for a, b in bounds:
            pick = order[a:b]
            x = to_tensor(images[rows[pick]], config.in_channels).to(device, non_blocking=True)
            x = augment_batch(x, params.augment, config.input_size, gen)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, use_amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y[pick].to(device))
            if not torch.isfinite(loss):
                raise ParameterError(
                    f"{_STAGE}: the loss became {loss.item()} in epoch {epoch} (seed {seed}, "
                    f"shots {shots}); lower lr (now {params.lr})"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
    _precise_bn(model, images, rows, params, config, device)
    return model


def _plain_batches(
    images: np.ndarray,
    rows: np.ndarray,
    params: SupervisedParams,
    config: EncoderConfig,
    device: torch.device,
) -> Iterator[torch.Tensor]:
    """``images[rows]`` unaugmented, in batches on ``device`` (channels-last on CUDA)."""
    for a, b in _batches(len(rows), params.batch_size):
        x = prepare_batch(images[rows[a:b]], config).to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        yield x


def _precise_bn(
    model: _Classifier,
    images: np.ndarray,
    rows: np.ndarray,
    params: SupervisedParams,
    config: EncoderConfig,
    device: torch.device,
) -> None:
    """Recompute the batch norms' running statistics for the final weights.

    During training they are a moving average (momentum 0.1) over batches seen with earlier
    weights; a k-shot set gives few steps (10 per class, 3 classes: one step an epoch), so
    they lag the weights the test images meet. One pass over the unaugmented training images
    with a cumulative average gives the statistics of the final network ("precise BN", Wu &
    Johnson 2021, "Rethinking 'Batch' in BatchNorm").
    """
    with autocast(device, params.amp):
        precise_batch_norm(model, _plain_batches(images, rows, params, config, device))


def _predict(
    model: _Classifier,
    images: np.ndarray,
    rows: np.ndarray,
    params: SupervisedParams,
    config: EncoderConfig,
    device: torch.device,
) -> np.ndarray:
    """Class index of each of ``images[rows]``, unaugmented, in evaluation mode."""
    model.eval()
    out = []
    with torch.no_grad(), autocast(device, params.amp):
        for x in _plain_batches(images, rows, params, config, device):
            out.append(model(x).float().argmax(dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _read_rows(store: RunStore, name: str, positions: np.ndarray) -> np.ndarray:
    """The images at ``positions`` (ascending), read chunk by chunk; chunks without one are
    not read."""
    array = store.open_array(name, mode="r")
    _, shape, chunk_rows = image_array(store, name, _STAGE)
    keep = np.zeros(shape[0], dtype=bool)
    keep[positions] = True
    row_bytes = int(np.prod(shape[1:])) * array.dtype.itemsize
    source = ChunkSource(lambda a, b: np.asarray(array[a:b]), chunk_rows, keep, row_bytes, 0)
    return np.concatenate([source.chunk(i) for i in source.chunks])


def train_supervised(
    store_url: str,
    storage_options: Mapping[str, Any],
    params: SupervisedParams,
    plan: SupervisedPlan,
    *,
    threads: int | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train and score one network per repeat and shots value of ``plan`` (runs on a worker).

    Parameters
    ----------
    store_url, storage_options : str, mapping
        The run store, read for the images of ``params.input``.
    params : SupervisedParams
    plan : SupervisedPlan
        From :func:`plan_supervised`.
    threads : int, optional
        torch's CPU threads while training (restored after); None: leave them as they are.
    report : callable, optional
        Called after each fit with its table row plus ``done``, ``total`` (fits) and
        ``seconds`` (e.g. to publish progress to the client).

    Returns
    -------
    list of dict
        One row of the ``supervised_baseline`` table per fit, by seed, then shots as given.

    Notes
    -----
    The images every fit uses are read once and held in memory (``n_used x h x w x c`` as
    stored); each batch is standardised (:func:`~pipeline.workflows.embed.inputs.to_tensor`)
    when it is used.
    """
    store = RunStore(store_url, storage_options)
    device = pick_device(params.device)
    used = plan.used
    images = _read_rows(store, params.input, plan.positions[used])
    config = EncoderConfig(
        arch=params.arch, in_channels=plan.channels, input_size=params.input_size
    )
    features = f"supervised_{params.arch}"
    previous = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        for split in plan.splits:
            test = np.searchsorted(used, split.test)
            y_test = plan.y[split.test]
            for k, train in split.train.items():
                t0 = time.perf_counter()
                model = _fit(
                    images,
                    np.searchsorted(used, train),
                    plan.y[train],
                    len(plan.classes),
                    params,
                    config,
                    device,
                    split.seed,
                    k,
                )
                pred = _predict(model, images, test, params, config, device)
                del model
                row = {
                    "features": features,
                    "shots": int(k),
                    "seed": int(split.seed),
                    "n_train": len(train),
                    "n_test": len(test),
                    "accuracy": float(accuracy_score(y_test, pred)),
                    "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0.0)),
                    "epochs": params.epochs,
                    "device": str(device),
                }
                rows.append(row)
                if report is not None:
                    seconds = time.perf_counter() - t0
                    report({**row, "done": len(rows), "total": plan.n_fits, "seconds": seconds})
    finally:
        torch.set_num_threads(previous)
    return rows


def _log_fit(row: Mapping[str, Any]) -> None:
    log.info(
        "%s: %s %s seed %d: accuracy %.3f, macro-F1 %.3f (%d training, %d test images; "
        "%.1f s on %s)",
        _STAGE,
        row["features"],
        "all-shot" if row["shots"] == 0 else f"{row['shots']}-shot",
        row["seed"],
        row["accuracy"],
        row["macro_f1"],
        row["n_train"],
        row["n_test"],
        row["seconds"],
        row["device"],
    )


def run_supervised_baseline(ctx: RunContext, params: SupervisedParams) -> dict[str, int]:
    """The ``supervised_baseline`` stage: networks trained on the probe's splits, scored.

    Plans on the client (:func:`plan_supervised`), then trains (:func:`train_supervised`) as
    one task pinned to the cluster's GPU worker, or the worker of the host with the most
    threads (using them all); without a client, in this process. Writes
    ``tables/supervised_baseline.parquet`` once every fit is done.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.seed`` is the first repeat's seed (as the probe's); ``ctx.progress`` is called
        with ``(step, fits done, fits)``; ``ctx.client`` None trains in this process.
    params : SupervisedParams

    Returns
    -------
    dict
        ``images`` (trained on or scored), ``classes`` and ``fits`` (rows of the table).

    Raises
    ------
    StoreError, ParameterError
        As :func:`plan_supervised`, before any training and with the store untouched.
    """
    store, client, progress = ctx.store, ctx.client, ctx.progress
    label = ctx.step_name(_STAGE)
    plan = plan_supervised(store, params, ctx.seed)
    total = plan.n_fits
    log.info(
        "%s: %s from random initialisation on %d image(s) of %r, %d classes (%s), %d fit(s) "
        "of %d epoch(s)",
        _STAGE,
        params.arch,
        len(plan.used),
        params.input,
        len(plan.classes),
        ", ".join(plan.classes),
        total,
        params.epochs,
    )

    def on_fit(row: Mapping[str, Any]) -> None:
        _log_fit(row)
        progress(label, int(row["done"]), int(row["total"]))

    progress(label, 0, total)
    if client is None:
        rows = train_supervised(
            store.url,
            dict(store.storage_options),
            params,
            plan,
            threads=params.threads,
            report=on_fit,
        )
    else:
        placement = training_placement(client)
        log.info("%s: training on worker %s", _STAGE, placement.address)
        rows = run_relayed(
            client,
            train_supervised,
            store.url,
            dict(store.storage_options),
            params,
            plan,
            threads=params.threads or placement.threads,
            placement=placement,
            topic=f"pipeline-supervised-{uuid.uuid4().hex}",
            key=f"supervised-baseline-{uuid.uuid4().hex[:8]}",
            on_event=on_fit,
        )
    progress(label, len(rows), total)  # the last fit's event may arrive after the result
    table = pd.DataFrame(rows, columns=list(SUPERVISED_COLUMNS))
    table = table.astype(
        {
            "shots": "int64",
            "seed": "int64",
            "n_train": "int64",
            "n_test": "int64",
            "epochs": "int64",
        }
    )
    write_table(store, SUPERVISED_TABLE, table)
    return {"images": len(plan.used), "classes": len(plan.classes), "fits": len(table)}
