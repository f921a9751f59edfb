"""The ``train_encoder`` stage: SimCLR (NT-Xent on two augmented views) on a store array.

Training is one task, pinned to a GPU worker when the cluster has one (else to the worker on
the host with the most threads, using all of that host's threads): it streams batches from
the store's Zarr chunks, augments them with batched torch ops on the device, saves a
checkpoint (weights-only, named by its hash) after every ``checkpoint_every`` epochs and
appends the epoch's loss to ``models/training_loss.csv`` and ``tables/training_loss``. A run
that stops part-way resumes from its last checkpoint: every epoch draws its order and its
augmentations from ``(seed, epoch)``, so a resumed run gives the weights an uninterrupted one
would (on CPU, bit for bit).
"""

from __future__ import annotations

import io
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.compute.events import run_relayed, training_placement
from pipeline.compute.serving import amp_dtype, pick_device
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore, config_key
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError
from pipeline.features.matrix import open_matrix
from pipeline.workflows.embed.augment import augment_batch
from pipeline.workflows.embed.checkpoint import CheckpointRef, load_checkpoint, save_checkpoint
from pipeline.workflows.embed.data import (
    ChunkSource,
    epoch_batches,
    image_array,
    steps_per_epoch,
    window_rows_for,
)
from pipeline.workflows.embed.inputs import to_tensor
from pipeline.workflows.embed.loss import nt_xent
from pipeline.workflows.embed.models import EncoderConfig, build_simclr
from pipeline.workflows.embed.spec import EncoderOutputs, TrainEncoderParams, encoder_outputs

__all__ = ["LOSS_CSV", "TrainEncoderParams", "run_train_encoder", "train_simclr"]

log = logging.getLogger(__name__)

#: Per-epoch loss of the step ``train_encoder``, appended as training goes (the
#: ``training_loss`` table holds the same; other steps: ``encoder_outputs(step).loss_csv``).
LOSS_CSV = encoder_outputs("train_encoder").loss_csv
_LOSS_COLUMNS = ["epoch", "loss", "lr", "images", "seconds", "device", "checkpoint"]


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _loss_rows(store: RunStore, out: EncoderOutputs, upto: int) -> list[dict[str, Any]]:
    if not store.exists(out.loss_csv):
        return []
    # round_trip: pandas' default float parser can be 1 ulp off what to_csv wrote, and the
    # losses of a resumed run must equal those of an uninterrupted one.
    old = pd.read_csv(
        io.BytesIO(store.read_bytes(out.loss_csv)),
        keep_default_na=False,
        float_precision="round_trip",
    )
    return [{str(k): v for k, v in r.items()} for r in old.to_dict("records") if r["epoch"] <= upto]


def _write_loss(store: RunStore, out: EncoderOutputs, rows: list[dict[str, Any]]) -> None:
    df = pd.DataFrame(rows, columns=_LOSS_COLUMNS)
    store.write_bytes(out.loss_csv, df.to_csv(index=False).encode())
    write_table(store, out.table, df, schema="training_loss")


def train_simclr(
    store_url: str,
    storage_options: Mapping[str, Any],
    params: TrainEncoderParams,
    config: EncoderConfig,
    keep: np.ndarray,
    *,
    seed: int,
    train_key: str,
    threads: int,
    resume: bool,
    report: Callable[[dict[str, Any]], None] | None = None,
    outputs: EncoderOutputs | None = None,
) -> dict[str, Any]:
    """Train a SimCLR model on the kept rows of ``params.input`` (runs on a worker).

    Parameters
    ----------
    store_url, storage_options : str, mapping
        The run store: read for batches, written with checkpoints and the loss.
    params : TrainEncoderParams
    config : EncoderConfig
        The model (``in_channels`` from the array).
    keep : ndarray of bool, shape (n_images,)
        Rows to train on.
    seed : int
        Model initialisation, batch order and augmentations derive from it.
    train_key : str
        This configuration's key: only a checkpoint with the same key is resumed.
    threads : int
        torch's CPU threads.
    resume : bool
        Continue from the latest matching checkpoint when there is one.
    report : callable, optional
        Called with each epoch's row (e.g. to publish progress to the client).
    outputs : EncoderOutputs, optional
        Where the step writes (default: the step ``train_encoder``'s names).

    Returns
    -------
    dict
        ``epochs`` trained in this call, ``start_epoch``, ``final_loss``, ``checkpoint``
        (file name under ``models/``), ``device``.
    """
    store = RunStore(store_url, storage_options)
    out = outputs or encoder_outputs("train_encoder")
    device = pick_device(params.device)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    model = build_simclr(config, seed=seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    start = 0
    if resume and store.exists(out.pointer):
        pointer = store.read_json(out.pointer)
        if pointer.get("train_key") == train_key and store.exists(
            f"models/{pointer['checkpoint']}"
        ):
            ref = CheckpointRef(
                store.path("models", pointer["checkpoint"]),
                pointer["digest"],
                dict(storage_options),
            )
            ckpt = load_checkpoint(ref)
            model.load_state_dict(ckpt.state_dict)
            if ckpt.optimizer:
                opt.load_state_dict(ckpt.optimizer)
            start = ckpt.epoch
            log.info("train_encoder: resuming after epoch %d from %s", start, pointer["checkpoint"])
    rows = _loss_rows(store, out, start) if start else []
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    dtype = amp_dtype(device) if params.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)

    array = store.open_array(params.input, mode="r")
    row_bytes = int(np.prod(array.shape[1:])) * array.dtype.itemsize
    _, _, chunk_rows = image_array(store, params.input, "train_encoder")
    source = ChunkSource(lambda a, b: np.asarray(array[a:b]), chunk_rows, keep, row_bytes)
    batch = min(params.batch_size, source.n_rows)
    if batch < 2:
        raise ParameterError(
            f"train_encoder: {source.n_rows} image(s) to train on; SimCLR needs at least 2 "
            "(a view's negatives are the other images of its batch)"
        )
    per_epoch = steps_per_epoch(source.n_rows, batch)
    total_steps = per_epoch * params.epochs
    window = window_rows_for(batch, row_bytes)
    name = ""
    model.train()
    for epoch in range(start + 1, params.epochs + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng(_epoch_seed(seed, epoch))
        gen = torch.Generator().manual_seed(_epoch_seed(seed + 1, epoch))
        losses: list[float] = []
        seen = 0
        for step, images in enumerate(epoch_batches(source, batch, rng, window_rows=window)):
            lr = _cosine_lr(params.lr, (epoch - 1) * per_epoch + step, total_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            x = to_tensor(images, config.in_channels).to(device, non_blocking=True)
            views = torch.cat(
                [
                    augment_batch(x, params.augment, config.input_size, gen),
                    augment_batch(x, params.augment, config.input_size, gen),
                ]
            )
            if device.type == "cuda":
                views = views.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
            ):
                # Both views in one pass: batch norm sees them together, as in SimCLR.
                _, z = model(views)
            z1, z2 = z.float().chunk(2)
            loss = nt_xent(z1, z2, params.temperature)
            if not torch.isfinite(loss):
                raise ParameterError(
                    f"train_encoder: the loss became {loss.item()} at epoch {epoch}, step "
                    f"{step}; lower lr (now {params.lr}) or raise temperature"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            seen += len(images)
        name = ""
        if epoch % params.checkpoint_every == 0 or epoch == params.epochs:
            name = save_checkpoint(
                store,
                model,
                config,
                epoch=epoch,
                epochs=params.epochs,
                train_key=train_key,
                optimizer=opt.state_dict(),
                outputs=out,
            )
        row = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "lr": float(opt.param_groups[0]["lr"]),
            "images": seen,
            "seconds": time.perf_counter() - t0,
            "device": str(device),
            "checkpoint": name,
        }
        rows.append(row)
        _write_loss(store, out, rows)
        log.info(
            "train_encoder: epoch %d/%d loss %.4f (%.1f s)",
            epoch,
            params.epochs,
            row["loss"],
            row["seconds"],
        )
        if report is not None:
            report({**row, "epochs": params.epochs})
    pointer = store.read_json(out.pointer)
    return {
        "epochs": params.epochs - start,
        "start_epoch": start,
        "final_loss": rows[-1]["loss"] if rows else math.nan,
        "checkpoint": pointer["checkpoint"],
        "device": str(device),
    }


def run_train_encoder(ctx: RunContext, params: TrainEncoderParams) -> dict[str, int | float]:
    """Train the encoder on a worker, reporting each epoch as it ends.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.client`` must be a distributed client (training is one task on a worker);
        ``ctx.step`` names the outputs (:func:`~pipeline.workflows.embed.spec.
        encoder_outputs`); ``ctx.forced`` starts over rather than resume; ``ctx.progress``
        is called with ``("train_encoder", epoch, epochs)``.
    params : TrainEncoderParams

    Returns
    -------
    dict
        ``images`` trained on, ``epochs`` run now, ``start_epoch`` (resumed after), and
        ``final_loss`` (NaN when no epoch's loss is on record, e.g. a finished run resumed
        with its CSV deleted).
    """
    store, seed, progress, redo = ctx.store, ctx.seed, ctx.progress, ctx.forced
    client = ctx.require_client("train_encoder")
    out = encoder_outputs(ctx.step_name("train_encoder"))
    channels, _, _ = image_array(store, params.input, "train_encoder")
    m = open_matrix(store, params.input, params.rows)
    n_total = m.n_total
    keep = np.zeros(n_total, dtype=bool)
    keep[m.positions] = True
    if keep.sum() < 2:
        raise ParameterError(
            f"train_encoder: {int(keep.sum())} image(s) selected from {params.input!r}; SimCLR "
            "needs at least 2"
        )
    config = EncoderConfig(
        arch=params.arch,
        in_channels=channels,
        input_size=params.input_size,
        projection_dim=params.projection_dim,
    )
    tuning = {"device", "amp", "resume", "threads", "checkpoint_every"}
    train_key = config_key(
        {
            "params": params.model_dump(mode="json", exclude=tuning),
            "seed": seed,
            "rows": [int(n_total), int(keep.sum())],
            # The steps that made the input: re-cut crops are other images, so the old
            # weights must not be resumed on them.
            "upstream": ctx.upstream,
        }
    )
    placement = training_placement(client)
    threads = params.threads or placement.threads
    log.info(
        "train_encoder: %d image(s) of %r, %s, %d epoch(s) on worker %s (%d thread(s))",
        int(keep.sum()),
        params.input,
        params.arch,
        params.epochs,
        placement.address,
        threads,
    )
    progress("train_encoder", 0, params.epochs)

    def on_event(row: dict[str, Any]) -> None:
        progress("train_encoder", int(row["epoch"]), int(row["epochs"]))

    result = run_relayed(
        client,
        train_simclr,
        store.url,
        dict(store.storage_options),
        params,
        config,
        keep,
        seed=seed,
        train_key=train_key,
        threads=threads,
        resume=params.resume and not redo,
        outputs=out,
        placement=placement,
        topic=f"pipeline-train-{train_key}",
        key=f"train-encoder-{train_key}-{uuid.uuid4().hex[:8]}",
        on_event=on_event,
    )
    log.info(
        "train_encoder: %d epoch(s) on %s, final loss %.4f, checkpoint %s",
        result["epochs"],
        result["device"],
        result["final_loss"],
        result["checkpoint"],
    )
    return {
        "images": int(keep.sum()),
        "epochs": int(result["epochs"]),
        "start_epoch": int(result["start_epoch"]),
        "final_loss": float(result["final_loss"]),
    }
