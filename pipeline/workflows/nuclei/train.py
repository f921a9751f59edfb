"""The ``train_segmenter`` stage: the seed's Multi-ResUNet recipe, on a GPU worker if any.

Training is one task, pinned as ``train_encoder``'s is (:func:`~pipeline.compute.dispatch.
training_worker`): it streams image/mask pairs from the store's Zarr chunks (shuffled per
epoch, a window of chunks at a time), takes one random ``input_size`` patch of each, flips,
rotates and changes the intensity of the batch, and minimises binary cross-entropy (plus an
optional soft Dice term) with Adam. After every epoch it recomputes the batch norms'
statistics over the training images (precise BN: Keras' momentum lags the weights in a short
run), scores the whole validation images (loss, Dice, IoU, recall, precision at probability
0.5), lowers the learning rate on a plateau, keeps the best weights (lowest validation loss,
as the seed's ModelCheckpoint) and a resume checkpoint, appends the epoch to the CSV log and
the table, and stops early after ``early_stop_patience`` epochs without a better validation
loss.

Every epoch draws its order, patches and augmentations from ``(seed, epoch)``, and the resume
checkpoint holds the optimizer, the scheduler and the early-stopping state, so a run stopped
part-way resumes to the weights an uninterrupted one reaches (bit for bit on CPU).
"""

from __future__ import annotations

import io
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pipeline.compute.batches import ChunkSource, epoch_batches, precise_batch_norm, window_rows_for
from pipeline.compute.checkpoints import CheckpointRef
from pipeline.compute.events import run_relayed, training_placement
from pipeline.compute.serving import amp_dtype, pick_device
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore, config_key
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.workflows.nuclei.checkpoint import last_pointer, load_segmenter, save_segmenter
from pipeline.workflows.nuclei.data import (
    SPLITS,
    augment_pairs,
    batches,
    pad_to_grid,
    random_patches,
    split_rows,
    to_channels,
    unit_scale,
)
from pipeline.workflows.nuclei.model import SegmenterConfig, build_segmenter
from pipeline.workflows.nuclei.spec import TrainOutputs, TrainSegmenterParams, train_outputs

__all__ = ["pair_arrays", "run_train_segmenter", "segmentation_loss", "train_segmenter"]

log = logging.getLogger(__name__)

_COLUMNS = [
    "epoch",
    "loss",
    "val_loss",
    "val_dice",
    "val_iou",
    "val_recall",
    "val_precision",
    "lr",
    "seconds",
    "device",
    "best",
    "checkpoint",
]


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float
) -> torch.Tensor:
    """Binary cross-entropy on logits (the seed's loss), plus ``dice_weight`` x soft Dice loss.

    Parameters
    ----------
    logits, target : Tensor, shape (n, 1, y, x)
        Network output and the 0/1 mask.
    dice_weight : float

    Returns
    -------
    Tensor
        Scalar, float32.
    """
    logits = logits.float()
    loss = F.binary_cross_entropy_with_logits(logits, target)
    if dice_weight > 0:
        p = torch.sigmoid(logits)
        inter = (p * target).sum(dim=(1, 2, 3))
        dice = (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
        loss = loss + dice_weight * (1 - dice.mean())
    return loss


def pair_arrays(
    store: RunStore, images: str, masks: str, stage: str
) -> tuple[int, tuple[int, ...], list[int]]:
    """Check that ``images`` and ``masks`` are an image array and its masks, and describe them.

    Returns
    -------
    channels : int
    shape : tuple of int
        The images' shape.
    chunk_rows : list of int
        Rows per chunk along ``image`` (the images').

    Raises
    ------
    StoreError
        If either is missing or their shapes do not match.
    """
    for name, writer in ((images, "ingest"), (masks, "ingest_masks")):
        if not store.has_array(name):
            raise StoreError(
                f"{stage}: array {name!r} is not in {store.zarr_url}; run `{writer}` first"
            )
    img = store.open_array(images, mode="r")
    msk = store.open_array(masks, mode="r")
    if img.ndim not in (3, 4) or msk.ndim != 3 or tuple(img.shape[:3]) != tuple(msk.shape):
        raise StoreError(
            f"{stage}: {images!r} {tuple(img.shape)} and {masks!r} {tuple(msk.shape)} are not "
            "images (image, y, x[, channel]) with their masks (image, y, x) of the same size; "
            "run `ingest_masks` on this store's images"
        )
    channels = int(img.shape[3]) if img.ndim == 4 else 1
    if channels not in (1, 3):
        raise ParameterError(
            f"{stage}: {images!r} has {channels} channels; the segmenter takes 1 or 3 (ingest "
            "with mode gray or rgb)"
        )
    n, per = int(img.shape[0]), int(img.chunks[0])
    return channels, tuple(int(v) for v in img.shape), [min(per, n - s) for s in range(0, n, per)]


def _pair_reader(
    store: RunStore, images: str, masks: str, in_channels: int
) -> Callable[[int, int], np.ndarray]:
    img = store.open_array(images, mode="r")
    msk = store.open_array(masks, mode="r")
    scale = unit_scale(img.dtype)

    def read(a: int, b: int) -> np.ndarray:
        x = to_channels(np.asarray(img[a:b]), in_channels, scale)
        y = (np.asarray(msk[a:b]) > 0).astype(np.float32)[:, None]
        return np.concatenate([x, y], axis=1)

    return read


def _images(source: ChunkSource, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """The source's whole images (no mask, not augmented), padded to the 16 grid, in batches."""
    for i in source.chunks:
        rows = source.chunk(i)
        for a, b in batches(len(rows), batch_size):
            yield torch.from_numpy(pad_to_grid(rows[a:b, :-1])).to(device)


def _validate(
    model: torch.nn.Module,
    source: ChunkSource,
    device: torch.device,
    batch_size: int,
    dice_weight: float,
    dtype: torch.dtype | None,
) -> dict[str, float]:
    """Loss and pixel scores of the validation images (whole, padded to the pooling grid)."""
    model.eval()
    loss_sum, pixels = 0.0, 0
    tp = fp = fn = 0
    with torch.inference_mode():
        for i in source.chunks:
            rows = source.chunk(i)
            h, w = rows.shape[-2:]
            for a, b in batches(len(rows), batch_size):
                t = torch.from_numpy(pad_to_grid(rows[a:b])).to(device)
                with torch.autocast(
                    device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
                ):
                    logits = model(t[:, :-1])
                logits = logits[..., :h, :w].float()
                target = t[:, -1:, :h, :w]
                n_px = int(target.numel())
                loss_sum += float(segmentation_loss(logits, target, dice_weight)) * n_px
                pixels += n_px
                pred = logits > 0
                truth = target > 0.5
                tp += int((pred & truth).sum())
                fp += int((pred & ~truth).sum())
                fn += int((~pred & truth).sum())
    model.train()
    return {
        "val_loss": loss_sum / max(pixels, 1),
        "val_dice": 2 * tp / max(2 * tp + fp + fn, 1),
        "val_iou": tp / max(tp + fp + fn, 1),
        "val_recall": tp / max(tp + fn, 1),
        "val_precision": tp / max(tp + fp, 1),
    }


def _old_rows(store: RunStore, out: TrainOutputs, upto: int) -> list[dict[str, Any]]:
    if not store.exists(out.csv):
        return []
    # round_trip: the rows of a resumed run must equal an uninterrupted one's.
    old = pd.read_csv(
        io.BytesIO(store.read_bytes(out.csv)), keep_default_na=False, float_precision="round_trip"
    )
    return [{str(k): v for k, v in r.items()} for r in old.to_dict("records") if r["epoch"] <= upto]


def _write_rows(store: RunStore, out: TrainOutputs, rows: list[dict[str, Any]]) -> None:
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df["best"] = df["best"].astype(bool)
    store.write_bytes(out.csv, df.to_csv(index=False).encode())
    write_table(store, out.table, df, schema="segmenter_training")


def train_segmenter(
    store_url: str,
    storage_options: Mapping[str, Any],
    params: TrainSegmenterParams,
    config: SegmenterConfig,
    split: np.ndarray,
    *,
    seed: int,
    train_key: str,
    threads: int,
    resume: bool,
    out: TrainOutputs,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a Multi-ResUNet on the training rows of ``split`` (runs on a worker).

    Parameters
    ----------
    store_url, storage_options : str, mapping
        The run store: read for batches, written with checkpoints and the log.
    params : TrainSegmenterParams
    config : SegmenterConfig
    split : ndarray of int8, shape (n_images,)
        0 train, 1 validation, 2 test (:func:`~pipeline.workflows.nuclei.data.split_rows`).
    seed : int
        Initialisation, batch order, patches and augmentations derive from it.
    train_key : str
        This configuration's key: only a resume checkpoint with the same key is resumed.
    threads : int
        torch's CPU threads.
    resume : bool
        Continue from the resume checkpoint when it matches.
    out : TrainOutputs
    report : callable, optional
        Called with each epoch's row.

    Returns
    -------
    dict
        ``epochs`` trained now, ``start_epoch``, ``last_epoch``, ``best_epoch``,
        ``best_val_loss``, ``stopped_early``, ``checkpoint`` (the best), ``device``.
    """
    store = RunStore(store_url, storage_options)
    device = pick_device(params.device)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    model = build_segmenter(config, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=params.plateau_factor, patience=params.plateau_patience
    )
    start, best, best_epoch, stale = 0, math.inf, 0, 0
    lpointer = last_pointer(out)
    if resume and store.exists(lpointer):
        pointer = store.read_json(lpointer)
        if (
            pointer.get("train_key") == train_key
            and int(pointer.get("epoch", 0)) <= params.epochs
            and store.exists(f"models/{pointer['checkpoint']}")
        ):
            ref = CheckpointRef(
                store.path("models", pointer["checkpoint"]), pointer["digest"], storage_options
            )
            ckpt = load_segmenter(ref)
            model.load_state_dict(ckpt.state_dict)
            opt.load_state_dict(ckpt.state["optimizer"])
            sched.load_state_dict(ckpt.state["scheduler"])
            start = ckpt.epoch
            best = float(ckpt.state["best"])
            best_epoch = int(ckpt.state["best_epoch"])
            stale = int(ckpt.state["stale"])
            log.info("train_segmenter: resuming after epoch %d", start)
    model = model.to(device)
    # Adam's moments were loaded on the CPU: move them with the parameters.
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(device)
    rows = _old_rows(store, out, start) if start else []
    dtype = amp_dtype(device) if params.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)

    read = _pair_reader(store, params.images, params.masks, config.in_channels)
    img = store.open_array(params.images, mode="r")
    n, per = int(img.shape[0]), int(img.chunks[0])
    chunk_rows = [min(per, n - s) for s in range(0, n, per)]
    row_bytes = (config.in_channels + 1) * 4 * int(img.shape[1]) * int(img.shape[2])
    train = ChunkSource(read, chunk_rows, split == 0, row_bytes)
    val = ChunkSource(read, chunk_rows, split == 1, row_bytes)
    batch = min(params.batch_size, train.n_rows)
    window = window_rows_for(batch, row_bytes)
    stopped = start > 0 and stale >= params.early_stop_patience
    epoch = start
    model.train()
    while not stopped and epoch < params.epochs:
        epoch += 1
        t0 = time.perf_counter()
        rng = np.random.default_rng(_epoch_seed(seed, epoch, 0))
        gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch, 1))
        losses: list[float] = []
        lr = float(opt.param_groups[0]["lr"])
        for pairs in epoch_batches(train, batch, rng, window_rows=window):
            t = augment_pairs(
                torch.from_numpy(random_patches(pairs, params.input_size, rng)),
                params.augment,
                gen,
            ).to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
            ):
                logits = model(t[:, :-1])
            loss = segmentation_loss(logits, t[:, -1:], params.dice_weight)
            if not torch.isfinite(loss):
                raise ParameterError(
                    f"train_segmenter: the loss became {loss.item()} at epoch {epoch}; lower "
                    f"lr (now {params.lr})"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
        # Keras' batch-norm momentum keeps 99 % of the old statistics a step: over a short
        # run they lag the weights, and the validation (eval mode) would see another network.
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            precise_batch_norm(model, _images(train, params.batch_size, device))
        scores = _validate(model, val, device, params.batch_size, params.dice_weight, dtype)
        sched.step(scores["val_loss"])
        improved = scores["val_loss"] < best
        if improved:
            best, best_epoch, stale = scores["val_loss"], epoch, 0
            save_segmenter(
                store,
                model,
                config,
                out=out,
                epoch=epoch,
                train_key=train_key,
                val_loss=best,
                images=params.images,
                masks=params.masks,
            )
        else:
            stale += 1
        stopped = stale >= params.early_stop_patience
        save_segmenter(
            store,
            model,
            config,
            out=out,
            epoch=epoch,
            train_key=train_key,
            state={
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "best": best,
                "best_epoch": best_epoch,
                "stale": stale,
            },
        )
        row = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            **scores,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
            "device": str(device),
            "best": improved,
            "checkpoint": str(store.read_json(out.pointer)["checkpoint"]),
        }
        rows.append(row)
        _write_rows(store, out, rows)
        log.info(
            "train_segmenter: epoch %d/%d loss %.4f val_loss %.4f dice %.3f (%.1f s)%s",
            epoch,
            params.epochs,
            row["loss"],
            row["val_loss"],
            row["val_dice"],
            row["seconds"],
            " best" if improved else "",
        )
        if report is not None:
            report({**row, "epochs": params.epochs})
        if stopped:
            log.info(
                "train_segmenter: no better validation loss for %d epochs; stopped after "
                "epoch %d (best %d)",
                stale,
                epoch,
                best_epoch,
            )
    return {
        "epochs": epoch - start,
        "start_epoch": start,
        "last_epoch": epoch,
        "best_epoch": best_epoch,
        "best_val_loss": best,
        "stopped_early": bool(stopped and epoch < params.epochs),
        "checkpoint": str(store.read_json(out.pointer)["checkpoint"]),
        "device": str(device),
    }


def run_train_segmenter(ctx: RunContext, params: TrainSegmenterParams) -> dict[str, int | float]:
    """Split the images, then train the segmenter on a worker, reporting each epoch.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.client``: a distributed client; ``ctx.step`` names the outputs
        (:func:`~pipeline.workflows.nuclei.spec.train_outputs`); ``ctx.forced`` starts over;
        ``ctx.progress`` gets ``("train_segmenter", epoch, epochs)``.
    params : TrainSegmenterParams

    Returns
    -------
    dict
        ``train``, ``validation``, ``test`` images, ``epochs`` run now, ``best_epoch``,
        ``best_val_loss``.
    """
    store, seed, progress = ctx.store, ctx.seed, ctx.progress
    client = ctx.require_client("train_segmenter")
    step = ctx.step_name("train_segmenter")
    out = train_outputs(step)
    channels, shape, _ = pair_arrays(store, params.images, params.masks, "train_segmenter")
    split = split_rows(shape[0], params.split, seed)
    ds = store.open_dataset()
    ids = (
        [str(v) for v in ds["image_id"].values]
        if "image_id" in ds.variables
        else [str(i) for i in range(shape[0])]
    )
    write_table(
        store,
        out.split,
        pd.DataFrame(
            {"row": np.arange(shape[0]), "image_id": ids, "split": np.asarray(SPLITS)[split]}
        ),
        schema="segmentation_split",
    )
    config = SegmenterConfig(in_channels=channels, widths=params.widths, bridge=params.bridge)
    # Epochs are left out: a later epoch does not depend on the total, so a run given more
    # epochs continues the one before (a resume checkpoint past the total is not resumed).
    tuning = {"device", "amp", "resume", "threads", "epochs"}
    train_key = config_key(
        {
            "params": params.model_dump(mode="json", exclude=tuning),
            "seed": seed,
            "shape": list(shape),
            # Other images under the same names must not resume weights trained on the old.
            "upstream": ctx.upstream,
        }
    )
    placement = training_placement(client)
    threads = params.threads or placement.threads
    counts = {name: int((split == i).sum()) for i, name in enumerate(SPLITS)}
    log.info(
        "train_segmenter: %d train / %d validation / %d test image(s) of %r, %d epoch(s) on "
        "worker %s (%d thread(s))",
        counts["train"],
        counts["validation"],
        counts["test"],
        params.images,
        params.epochs,
        placement.address,
        threads,
    )
    progress("train_segmenter", 0, params.epochs)

    def on_event(row: dict[str, Any]) -> None:
        progress("train_segmenter", int(row["epoch"]), int(row["epochs"]))

    result = run_relayed(
        client,
        train_segmenter,
        store.url,
        dict(store.storage_options),
        params,
        config,
        split,
        seed=seed,
        train_key=train_key,
        threads=threads,
        resume=params.resume and not ctx.forced,
        out=out,
        placement=placement,
        topic=f"pipeline-segmenter-{train_key}",
        key=f"train-segmenter-{train_key}-{uuid.uuid4().hex[:8]}",
        on_event=on_event,
    )
    progress("train_segmenter", params.epochs, params.epochs)
    log.info(
        "train_segmenter: %d epoch(s) on %s; best epoch %d (val_loss %.4f), checkpoint %s",
        result["epochs"],
        result["device"],
        result["best_epoch"],
        result["best_val_loss"],
        result["checkpoint"],
    )
    return {
        **counts,
        "epochs": int(result["epochs"]),
        "best_epoch": int(result["best_epoch"]),
        "best_val_loss": float(result["best_val_loss"]),
    }
