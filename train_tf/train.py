"""Train the SampleCNN on simulated windows: checkpoints, resume, early stopping, cosine LR, CSV log.

Runs unchanged on Keras' TensorFlow backend (CPU) and JAX backend (``KERAS_BACKEND=jax``, GPU).
Two data sources:

* ``--data DIR``: window shards written by ``train_tf.simulate windows`` (labels re-encoded with
  the region layout chosen here, so one dataset serves any number of regions);
* ``--rir-bank DIR --bank BANK.npz``: an RIR bank from ``train_tf.simulate rir-bank``, mixed with
  dry signals on the fly inside the compiled graph (``train_tf.mixer``); new shards written by a
  simulator running beside the trainer are picked up at each epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msl.features import normalize_window, scaling_text
from edge_msl.regions import RegionLayout, encode_batch
from edge_msl.settings_check import Settings, SettingError, boolean, integer, number, optional, setting
from train_tf.simulate import load_shards, shard_files

log = logging.getLogger("train_tf.train")

PARAMS_FILE = "params.json"
LAST_WEIGHTS = "last.weights.h5"
BEST_WEIGHTS = "best.weights.h5"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Optimisation settings (params.json's ``train``, JSON data: :meth:`to_dict`; values kept as given)."""

    batch_size: int = setting(256, integer(1))
    """Windows per step."""
    epochs: int = setting(40, integer(0))
    """Upper bound on passes over the training windows."""
    learning_rate: float = setting(2e-3, number(0.0, math.inf, lo_open=True, as_given=True))
    """Peak learning rate of the cosine schedule."""
    warmup_epochs: float = setting(1.0, number(0.0, math.inf, as_given=True))
    """Linear warm-up length."""
    weight_decay: float = setting(1e-4, number(0.0, math.inf, as_given=True))
    """AdamW weight decay."""
    patience: int = setting(6, integer(0))
    """Early stopping: epochs without a better validation loss."""
    val_fraction: float = setting(0.1, number(0.0, 1.0, as_given=True))
    """Share of windows held out for validation (whole shards, so rooms do not leak)."""
    seed: int = setting(0, integer(0))
    """Shuffling and initialization seed."""
    steps_per_epoch: int = setting(500, integer(1))
    """Steps per epoch when mixing on the fly (shard datasets: one pass over the windows)."""
    val_windows: int = setting(4096, integer(1))
    """Fixed validation windows rendered once when mixing on the fly."""
    max_minutes: float | None = setting(None, optional(number(0.0, math.inf, as_given=True)))
    """Wall-clock budget: no epoch starts that would end past it (judged by the last epoch's length);
    the run stops resumably."""
    equalize_mics: bool = setting(False, boolean)
    """Input scaling with each microphone brought to the window's mean level
    (``edge_msl.features.normalize_window(equalize=True)``): robust to the mics' gain errors."""

    KEY = "train.{}"
    TABLE = "train"
    PLAIN_DATA = True


class WindowBatches:
    """Batches of (normalized audio, region targets) from in-memory window arrays."""

    def __init__(self, data: dict[str, np.ndarray], layout: RegionLayout, batch_size: int, shuffle: bool, seed: int,
                 equalize: bool = False):
        self.audio = data["audio"]
        self.targets = encode_batch(layout, data["azimuth_deg"], data["distance_m"],
                                    np.where(np.isfinite(data["level_db"]), data["level_db"], 0.0))
        self.batch_size = batch_size
        self.equalize = equalize
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(self.audio))

    def __len__(self) -> int:
        return max(1, math.ceil(len(self.audio) / self.batch_size))

    def epoch(self):
        """Yield the batches of one epoch (reshuffled when training)."""
        if self.shuffle:
            self.rng.shuffle(self.order)
        for i in range(len(self)):
            idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
            yield normalize_window(self.audio[idx], equalize=self.equalize), self.targets[idx]


def split_shards(directory: Path, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Training and validation shard files; the last shards validate (at least one when possible)."""
    try:
        shards = shard_files(directory)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    n_val = min(len(shards) - 1, max(1 if len(shards) > 1 else 0, round(len(shards) * val_fraction)))
    return shards[:len(shards) - n_val] or shards, shards[len(shards) - n_val:] or shards


class ShardSource:
    """Training and validation batches from window shards."""

    def __init__(self, data_dir: Path, layout: RegionLayout, settings: TrainSettings) -> None:
        self.meta = json.loads((data_dir / "meta.json").read_text())
        train_files, val_files = split_shards(data_dir, settings.val_fraction)
        keys = ("audio", "azimuth_deg", "distance_m", "level_db", "n_sources", "rt60_s")
        train_data, val_data = load_shards(train_files, keys), load_shards(val_files, keys)
        self.shape = tuple(train_data["audio"].shape[1:])
        self.train_b = WindowBatches(train_data, layout, settings.batch_size, True, settings.seed, settings.equalize_mics)
        self.val_b = WindowBatches(val_data, layout, settings.batch_size, False, settings.seed, settings.equalize_mics)
        self.steps_per_epoch = len(self.train_b)
        self.summary = {"source": "windows", "dir": str(data_dir), "train_windows": int(len(train_data["audio"])),
                        "val_windows": int(len(val_data["audio"])), "seed": self.meta["seed"],
                        "bank_hash": self.meta.get("bank_hash"), "simulation": self.meta["settings"]}

    def train_batches(self):
        yield from self.train_b.epoch()

    def val_batches(self):
        yield from self.val_b.epoch()


class MixSource:
    """Training batches mixed on the fly from an RIR bank; a fixed validation set from its
    validation rooms. Plans are drawn by a background thread while the device renders and trains."""

    def __init__(self, rir_dir: Path, bank_path: Path, layout: RegionLayout, settings: TrainSettings,
                 mix_overrides: dict[str, Any] | None = None, n_sources_p: Sequence[float] | None = None) -> None:
        from train_tf.mixer import DEFAULT_N_SOURCES_P, Mixer
        from train_tf.signals import DryBank
        from train_tf.simulate import SimSettings, _read_meta

        bank = DryBank.load(bank_path)
        self.settings = settings
        sim = None
        if mix_overrides:
            # the bank's rooms are fixed; what is mixed into them (levels, SNRs, signal kinds) may change
            cfg = _read_meta(Path(rir_dir))["settings"]
            cfg.update(mix_overrides)
            sim = SimSettings.from_dict(cfg)
        self.train_mix = Mixer(rir_dir, bank, layout, "train", settings=sim, seed=settings.seed,
                               equalize=settings.equalize_mics,
                               n_sources_p=DEFAULT_N_SOURCES_P if n_sources_p is None else n_sources_p)
        self.val_mix = self.train_mix.sibling("val")
        self.meta = self.train_mix.meta
        sim = self.train_mix.settings
        self.shape = (sim.window_samples, self.train_mix.n_mics)
        self.val_set = self.val_mix.fixed_set(settings.val_windows, settings.batch_size)
        self.steps_per_epoch = settings.steps_per_epoch
        self.summary = {"source": "rir-bank", "dir": str(rir_dir), "rir_bank_seed": self.meta["seed"],
                        "val_windows": settings.val_windows, "bank": str(bank_path), "bank_hash": bank.content_hash,
                        "bank_summary": bank.summary(), "n_sources_p": list(self.train_mix.n_sources_p),
                        # the bank's own region layout is left out: the mixer labels with the model's (``layout``)
                        "simulation": {k: v for k, v in self.train_mix.settings.to_dict().items() if k != "regions"},
                        "mix_overrides": mix_overrides or {}}

    def train_batches(self):
        import queue
        import threading

        self.train_mix.refresh()
        self.summary["train_rooms"] = self.train_mix.n_rooms
        self.summary["val_rooms"] = self.val_mix.n_rooms
        plans: queue.Queue = queue.Queue(maxsize=6)
        stop = threading.Event()

        def produce():
            for _ in range(self.steps_per_epoch):
                if stop.is_set():
                    return
                plans.put(self.train_mix.plan(self.settings.batch_size))

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            for _ in range(self.steps_per_epoch):
                plan = plans.get()
                yield self.train_mix.render(plan), plan["targets"]
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    plans.get_nowait()
                except queue.Empty:
                    worker.join(0.05)

    def val_batches(self):
        yield from self.val_set


def _transfer_init(model, model_cfg, weights: Path) -> bool:
    """Start ``model`` from weights of a network with shorter first-convolution frames or fewer
    ``head_frames`` (``train_tf.model.transfer_weights``); needs that network's params file beside the weights.
    False when they cannot be transferred."""
    from train_tf.model import ModelConfig, build_model, transfer_weights

    params_path = weights.parent / PARAMS_FILE
    if not params_path.exists():
        return False
    src_cfg = ModelConfig.from_dict(json.loads(params_path.read_text())["model"])
    try:
        src = build_model(src_cfg)
        src.load_weights(weights)
        r = transfer_weights(src, src_cfg, model, model_cfg)
    except (ValueError, OSError) as exc:
        log.warning("cannot transfer %s: %s", weights, exc)
        return False
    log.warning("%s transferred: first convolution stretched %dx (each tap repeated, weight 1/%d), "
                "dense inputs %d -> %d frames", weights, r, r, src_cfg.head_frames, model_cfg.head_frames)
    return True


def train(data_dir: str | Path | None, out_dir: str | Path, model_cfg, layout: RegionLayout, settings: TrainSettings,
          verbose: int = 1, rir_bank: str | Path | None = None, bank: str | Path | None = None,
          init_weights: str | Path | None = None, mix_overrides: dict[str, Any] | None = None,
          loss_weights=None, n_sources_p: Sequence[float] | None = None) -> dict[str, Any]:
    """Train (or resume) a model in ``out_dir`` from window shards (``data_dir``) or from an RIR
    bank mixed on the fly (``rir_bank`` + dry-signal ``bank``); returns a summary of the run.
    ``init_weights`` starts a new run from trained weights of the same shape (fine-tuning);
    ``mix_overrides`` changes simulation settings of the on-the-fly mixer (not the rooms),
    ``n_sources_p`` its probabilities of 0..4 talkers; ``loss_weights`` (``LossWeights``) the loss."""
    import keras

    from train_tf.model import LossWeights, build_model, count_macs, region_loss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    if rir_bank is not None:
        if bank is None:
            raise SystemExit("--rir-bank needs --bank (the dry-signal bank to mix)")
        try:
            source: ShardSource | MixSource = MixSource(Path(rir_bank), Path(bank), layout, settings, mix_overrides,
                                                        n_sources_p)
        except (ValueError, FileNotFoundError) as exc:
            raise SystemExit(str(exc)) from None
    else:
        if mix_overrides or n_sources_p is not None:
            raise SystemExit("--mix-set and --n-sources-p apply to --rir-bank training only")
        source = ShardSource(Path(data_dir), layout, settings)
    loss_weights = LossWeights() if loss_weights is None else loss_weights
    meta = source.meta
    window, n_mics = source.shape
    if (window, n_mics) != (model_cfg.window_samples, model_cfg.n_mics) or model_cfg.n_regions != layout.n_regions:
        raise SystemExit(f"data windows are {window} samples x {n_mics} mics but the model expects "
                         f"{model_cfg.window_samples} x {model_cfg.n_mics} (regions {model_cfg.n_regions} vs layout "
                         f"{layout.n_regions}); pass matching --window-samples/--regions")
    params = {
        "format": "edge-msl-keras-params", "version": 1, "backend": keras.backend.backend(),
        "model": model_cfg.to_dict(), "regions": layout.to_dict(), "train": settings.to_dict(),
        "loss_weights": loss_weights.to_dict(), "macs_per_window": count_macs(model_cfg),
        "sample_rate_hz": meta["settings"]["sample_rate_hz"], "array": meta["array"],
        "input_scaling": scaling_text(8.0, settings.equalize_mics),
        "data": source.summary, "init_weights": str(init_weights) if init_weights else None,
    }
    (out / PARAMS_FILE).write_text(json.dumps(params, indent=2))
    model = build_model(model_cfg)
    steps_per_epoch = source.steps_per_epoch
    total = steps_per_epoch * settings.epochs
    warmup = int(steps_per_epoch * settings.warmup_epochs)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else settings.learning_rate, max(1, total - warmup), alpha=0.01,
        warmup_target=settings.learning_rate if warmup else None, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay), loss=region_loss(loss_weights),
                  jit_compile="auto")
    state = {"epoch": 0, "best_val": None, "stale": 0}
    if (out / STATE_FILE).exists() and (out / LAST_WEIGHTS).exists():
        state = json.loads((out / STATE_FILE).read_text())
        model.optimizer.build(model.trainable_variables)  # so its moments are restored too
        model.load_weights(out / LAST_WEIGHTS)
        model.optimizer.iterations.assign(state["epoch"] * steps_per_epoch)
        log.warning("resuming %s at epoch %d (best validation loss %s)", out, state["epoch"], state["best_val"])
    elif init_weights is not None:
        try:
            model.load_weights(init_weights)
        except (ValueError, OSError) as exc:
            if not _transfer_init(model, model_cfg, Path(init_weights)):
                raise SystemExit(f"--init-weights {init_weights}: cannot load into this model shape ({exc}); "
                                 f"pass weights trained with the same --regions/--block-filters/--first-filters "
                                 f"(or a first kernel/stride an integer multiple of theirs, with their "
                                 f"{PARAMS_FILE} beside them)") from None
        log.warning("starting %s from the weights in %s", out, init_weights)
    csv_path = out / "log.csv"
    if state["epoch"] == 0 or not csv_path.exists():
        csv_path.write_text("epoch,train_loss,val_loss,learning_rate,seconds,windows_per_s\n")
    t_start = time.perf_counter()
    stopped = None
    last_epoch_s = 0.0
    for epoch in range(state["epoch"], settings.epochs):
        if state["stale"] >= settings.patience:
            stopped = "early stopping"
            break
        if settings.max_minutes is not None and \
                time.perf_counter() - t_start + last_epoch_s > settings.max_minutes * 60.0:
            stopped = "time budget (resume with the same command)"
            break
        t0 = time.perf_counter()
        bar = keras.utils.Progbar(steps_per_epoch, verbose=verbose, stateful_metrics=["loss"])
        losses = []
        n_windows = 0
        for step, (x, y) in enumerate(source.train_batches()):
            logs = model.train_on_batch(x, y, return_dict=True)
            n_windows += len(y)
            losses.append(float(logs["loss"]))
            bar.update(step + 1, [("loss", float(np.mean(losses)))])
        train_s = time.perf_counter() - t0
        val = float(np.mean([float(model.test_on_batch(x, y)) for x, y in source.val_batches()]))
        lr = float(keras.ops.convert_to_numpy(schedule(model.optimizer.iterations)))
        improved = state["best_val"] is None or val < state["best_val"]
        if improved:
            state["best_val"], state["stale"] = val, 0
            model.save_weights(out / BEST_WEIGHTS)
        else:
            state["stale"] += 1
        state["epoch"] = epoch + 1
        model.save_weights(out / LAST_WEIGHTS)
        (out / STATE_FILE).write_text(json.dumps(state))
        with csv_path.open("a") as f:
            f.write(f"{epoch + 1},{np.mean(losses):.5f},{val:.5f},{lr:.6g},{time.perf_counter() - t0:.1f},"
                    f"{n_windows / train_s:.0f}\n")
        print(f"epoch {epoch + 1}/{settings.epochs}: train {np.mean(losses):.4f} val {val:.4f} "
              f"lr {lr:.2e} {n_windows / train_s:.0f} windows/s{' *' if improved else ''}", file=sys.stderr)
        params["data"] = source.summary
        (out / PARAMS_FILE).write_text(json.dumps(params, indent=2))
        last_epoch_s = time.perf_counter() - t0
    if stopped is None:
        stopped = "early stopping" if state["stale"] >= settings.patience else "all epochs done"
    return {"out": str(out), "epochs_done": state["epoch"], "best_val_loss": state["best_val"],
            "stopped": stopped, "seconds": round(time.perf_counter() - t_start, 1),
            "macs_per_window": params["macs_per_window"]}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m train_tf.train`` (also used to check GPU plans' run arguments)."""
    parser = argparse.ArgumentParser(prog="python -m train_tf.train", description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="window dataset from train_tf.simulate windows")
    src.add_argument("--rir-bank", help="RIR bank from train_tf.simulate rir-bank (mixed on the fly; needs --bank)")
    parser.add_argument("--bank", help="dry-signal bank mixed with --rir-bank")
    parser.add_argument("--steps-per-epoch", type=int, default=TrainSettings.steps_per_epoch,
                        help="steps per epoch with --rir-bank")
    parser.add_argument("--val-windows", type=int, default=TrainSettings.val_windows,
                        help="validation windows with --rir-bank")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop (resumably) after the epoch that ends past this many minutes")
    parser.add_argument("--out", required=True, help="run directory (params.json, weights, log.csv); resumes")
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--min-separation-deg", type=float, default=10.0)
    parser.add_argument("--block-filters", default="32,48,96,128,256,256,256")
    parser.add_argument("--first-filters", type=int, default=32)
    parser.add_argument("--first-kernel", type=int, default=3,
                        help="kernel of the first convolution (samples)")
    parser.add_argument("--first-stride", type=int, default=0,
                        help="stride of the first convolution (0 = the kernel)")
    parser.add_argument("--dense-units", type=int, default=256)
    parser.add_argument("--head-frames", type=int, default=0,
                        help="also feed the last block's newest N frames, side by side, to the dense layer "
                             "(0 = the plain SampleCNN; see train_tf.model.ModelConfig.head_frames)")
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--lr", type=float, default=TrainSettings.learning_rate)
    parser.add_argument("--patience", type=int, default=TrainSettings.patience)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--init-weights", help="start from these weights (same model shape): fine-tuning")
    parser.add_argument("--n-sources-p", metavar="P0,P1,P2,P3,P4",
                        help="probabilities of 0..4 talkers in a mixed training window (--rir-bank; "
                             "normalized; default 0.08,0.23,0.23,0.23,0.23)")
    parser.add_argument("--positive-weight", type=float, default=1.0,
                        help="weight of the active regions' cross-entropy term (default 1: plain BCE)")
    parser.add_argument("--equalize-mics", action="store_true",
                        help="scale each window's mics to their mean level before the network "
                             "(normalize_window(equalize=True)): robust to mic gain errors")
    parser.add_argument("--mix-set", action="append", metavar="KEY=VALUE", default=[],
                        help="override a simulation setting of the on-the-fly mixer, VALUE as JSON "
                             "(repeatable), e.g. --mix-set 'source_level_db=[-12,6]'")
    return parser


def parse_mix_set(items: Sequence[str]) -> dict[str, Any]:
    """``--mix-set KEY=JSON`` items as a dict (SystemExit naming a malformed one)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            overrides[key] = json.loads(value) if sep else None
        except json.JSONDecodeError:
            raise SystemExit(f"--mix-set {item}: VALUE must be JSON, e.g. --mix-set 'source_level_db=[-12,6]'") from None
        if not sep:
            raise SystemExit(f"--mix-set {item}: expected KEY=VALUE")
    return overrides


TRAIN_OPTIONS = {"batch_size": "batch_size", "epochs": "epochs", "learning_rate": "lr", "patience": "patience",
                 "seed": "seed", "steps_per_epoch": "steps_per_epoch", "val_windows": "val_windows",
                 "max_minutes": "max_minutes", "equalize_mics": "equalize_mics"}
"""The :class:`TrainSettings` the command line sets: field -> argparse destination (the option is its dashed
form); the other fields keep their defaults."""


def model_config(args: argparse.Namespace, window_samples: int, n_mics: int):
    """The network shape the command line asks for (``train_tf.model.ModelConfig``)."""
    from train_tf.model import ModelConfig

    return ModelConfig(window_samples=window_samples, n_mics=n_mics, n_regions=args.regions,
                       first_filters=args.first_filters, first_kernel=args.first_kernel,
                       first_stride=args.first_stride,
                       block_filters=tuple(int(v) for v in args.block_filters.split(",")),
                       dense_units=args.dense_units, head_frames=args.head_frames)


def main(argv: list[str] | None = None) -> int:
    """``python -m train_tf.train --data DIR --out DIR [options]``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

    meta_path = Path(args.data or args.rir_bank) / "meta.json"
    if not meta_path.exists():
        raise SystemExit(f"{meta_path} not found: --data/--rir-bank must be a directory written by train_tf.simulate")
    meta = json.loads(meta_path.read_text())
    sim = meta["settings"]
    overrides = parse_mix_set(args.mix_set)
    # a window length override (--mix-set window_s=1.0) sizes the model too
    window = int(round(float(overrides.get("window_s", sim["window_s"])) * sim["sample_rate_hz"]))
    try:
        model_cfg = model_config(args, window, len(meta["array"]["positions_m"]))
    except SettingError as exc:
        raise SystemExit(f"bad model option: {exc}") from None
    try:
        layout = RegionLayout(n_regions=args.regions, min_separation_deg=args.min_separation_deg)
    except ValueError as exc:
        raise SystemExit(f"region layout: {exc}") from None
    try:
        settings = TrainSettings(**{name: getattr(args, dest) for name, dest in TRAIN_OPTIONS.items()})
    except SettingError as exc:
        raise SystemExit(f"--{TRAIN_OPTIONS[exc.key.split('.', 1)[1]].replace('_', '-')}: {exc}") from None
    from train_tf.model import LossWeights

    try:
        loss_weights = LossWeights(positive=args.positive_weight)
    except SettingError as exc:
        raise SystemExit(f"--positive-weight: {exc} (1 = plain cross-entropy)") from None
    n_sources_p = None
    if args.n_sources_p is not None:
        try:
            n_sources_p = [float(v) for v in args.n_sources_p.split(",")]
        except ValueError:
            raise SystemExit(f"--n-sources-p {args.n_sources_p}: expected five numbers, e.g. 0.08,0.23,0.23,0.23,0.23") from None
    summary = train(args.data, args.out, model_cfg, layout, settings, verbose=0 if args.quiet else 1,
                    rir_bank=args.rir_bank, bank=args.bank, init_weights=args.init_weights,
                    mix_overrides=overrides or None, loss_weights=loss_weights,
                    n_sources_p=n_sources_p)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main())
