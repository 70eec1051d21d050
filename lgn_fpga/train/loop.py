"""The training loop: data order, Gumbel noise, evaluation, checkpoints, exact resume.

Determinism: the batch order is a pure function of (seed, step) (one seeded
permutation per epoch), the Gumbel noise comes from a generator whose state is
checkpointed, and evaluation draws from its own generators, so a run resumed
from ``checkpoint.pt`` follows exactly the path of an uninterrupted one.

Interrupts: SIGINT (Ctrl-C) or SIGTERM during training lets the current step
finish (with its evaluation and checkpoint when one is due), then saves the
state after it and stops; a second signal stops at once, keeping the last
checkpoint on disk.  Either way ``--resume`` continues bit for bit.
"""
from __future__ import annotations

import functools
import json
import math
import platform
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from ..data.datasets import DataBundle, load
from ..data.augment import augment, augment_generator
from ..data.encoding import ThermometerEncoding
from ..errors import CheckpointError, ConfigError, TrainingError
from ..kernels import resolve_backend
from ..fileio import remove_stale_temporaries
from ..version import code_version
from .checkpoint import RUN_FILES, atomic_write_text, load_checkpoint, load_resume_state, save_checkpoint
from .config import TrainConfig, lr_at, noise_at
from .distributed import rank_and_world
from .metrics import append_metric, read_metrics, records_of, time_to_target, truncate_metrics
from .model import LogicNet, Relaxation, build_model, model_from_state

__all__ = ["Trainer", "evaluate", "batch_mean_accuracy", "code_version", "batch_indices"]


SMALL_WORK = 1 << 20  # neurons x batch of the widest layer below which one thread is fastest


def batch_indices(seed: int, step: int, n: int, batch: int) -> torch.Tensor:
    """Indices of the training batch of ``step``: epoch-wise seeded permutations, last partial batch dropped."""
    per_epoch = max(n // batch, 1)
    epoch, i = divmod(step, per_epoch)
    return _epoch_permutation(int(seed), epoch, n)[i * batch:(i + 1) * batch]


@functools.lru_cache(maxsize=2)
def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def make_optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel over all parameters) where torch has it: on a CPU 2.4 ms instead of 10.6 ms
    per step for the 1.9M logits of a 24,000 x 3 + 6,000 net with 4 candidates (bench/kernels.py note)."""
    params = list(params)
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu`` or ``cuda[:N]`` as a device this machine has; one line otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if not torch.backends.cuda.is_built() else "no GPU is visible"
            raise ConfigError(f"device {name!r}: {why}; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


class _Interrupts:
    """SIGINT/SIGTERM while training: the first asks the loop to stop after the current step, a second stops now."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum, self._prev = None, {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        for s in self.SIGNALS:
            if signal.getsignal(s) is signal.SIG_IGN:
                continue        # ignored when we started (nohup, a background job): it stays ignored
            try:
                self._prev[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: a KeyboardInterrupt there still ends the loop cleanly
                pass
        return self

    def __exit__(self, *exc):
        for s, h in self._prev.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)  # None: a handler installed outside Python
        return False


@torch.no_grad()
def evaluate(model: LogicNet, images: torch.Tensor, labels: torch.Tensor, enc: ThermometerEncoding,
             relax: Relaxation, backend: str, batch: int = 4096) -> tuple[float, torch.Tensor]:
    """Accuracy (and predictions) of ``model`` under ``relax`` on uint8 images."""
    preds = []
    for s in range(0, len(images), batch):
        x = enc.encode_torch(images[s:s + batch])
        preds.append(model(x, relax, backend).argmax(1))
    p = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    return (p == labels).float().mean().item() if len(labels) else float("nan"), p


def batch_mean_accuracy(pred: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    """Mean over consecutive batches of ``batch`` images of each batch's accuracy (the last may be smaller).

    How the authors' evaluation averages (a mean of per-batch means, not of images); ``nan`` without images.
    """
    if not len(labels):
        return float("nan")
    hits = (pred == labels).float()
    return float(torch.stack([hits[s:s + batch].mean() for s in range(0, len(hits), batch)]).mean())


class Trainer:
    """Owns a run directory and trains (or resumes) one model.

    Parameters
    ----------
    cfg : TrainConfig
        Resolved configuration (ignored on resume: the run's own config is used,
        except for ``steps``, which may be raised to train longer; 0 keeps the run's).
    run_dir : path
    resume : bool
        Continue from ``run_dir/checkpoint.pt``.
    """

    def __init__(self, cfg: TrainConfig, run_dir, resume: bool = False, progress: bool = True, log=print):
        self.run_dir = Path(run_dir)
        # In a process group (lgn-fpga train --nproc, torchrun): a slice of every batch here, rank 0 writes.
        self.rank, self.world = rank_and_world()
        self.progress, self.log = progress and self.rank == 0, log
        self.state = self._setup_run(cfg, resume)
        self._setup_model(self.state)

    # -- setup -------------------------------------------------------------------
    def _setup_run(self, cfg: TrainConfig, resume: bool) -> dict | None:
        """The config (the run's own on resume), threads, device, kernel and data; returns the resumed state."""
        state = None
        self.steps_before = None         # on resume: the run's step count before --steps raised it
        if resume:
            state = load_resume_state(self.run_dir)
            cfg = self._resumed_config(state, cfg.steps)
            if self.rank == 0:
                remove_stale_temporaries(self.run_dir, RUN_FILES)
                truncate_metrics(self.run_dir, state["step"])
        elif (self.run_dir / "checkpoint.pt").exists():
            raise CheckpointError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose "
                                  f"another --run-dir")
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        elif max(cfg.widths_list()) * cfg.batch_size < SMALL_WORK:
            # Small layers: thread start-up and OpenMP barriers cost more than they save (measured 2 s vs
            # 36 s for 300 digits-tiny steps on a loaded 2-core machine), so stay on one thread.
            torch.set_num_threads(1)
        elif self.world > 1:   # N processes share the machine's cores
            torch.set_num_threads(max(1, torch.get_num_threads() // self.world))
        self.device = resolve_device(cfg.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device(f"cuda:{self.rank}")
        if cfg.batch_size % self.world:
            raise ConfigError(f"the batch size ({cfg.batch_size}) must be a multiple of the {self.world} processes")
        try:
            self.backend = resolve_backend(cfg.kernel, self.device)
        except ValueError as e:
            raise ConfigError(str(e)) from None

        self.data: DataBundle = load(cfg.dataset, cfg.data_dir, cfg.val_size)
        try:
            self.enc = ThermometerEncoding.make(self.data.shape, cfg.thresholds)
        except ValueError as e:
            raise ConfigError(f"thresholds: {e}") from None
        if cfg.shift >= min(self.data.shape[1:]):
            raise ConfigError(f"shift {cfg.shift} must be below the image size {self.data.shape[1]} x "
                              f"{self.data.shape[2]} of {cfg.dataset} (a few pixels: 2 to 4 for CIFAR-10)")
        as_t = lambda s: (torch.from_numpy(s.images).to(self.device), torch.from_numpy(s.labels).to(self.device))
        self.train_x, self.train_y = as_t(self.data.train)
        self.val_x, self.val_y = as_t(self.data.val)
        self.test_x, self.test_y = as_t(self.data.test)
        if cfg.epochs is not None and state is None:  # a resumed run keeps the steps it was given (or raised)
            cfg.steps = max(1, math.ceil(cfg.epochs * len(self.train_y) / cfg.batch_size))
        return state

    def _resumed_config(self, state: dict, steps: int | None) -> TrainConfig:
        """The run's saved config, with ``steps`` raised to ``steps`` when that asks for more."""
        cfg = TrainConfig(**state["config"])
        if steps and steps < cfg.steps:
            raise ConfigError(f"--steps {steps} is below this run's {cfg.steps} steps (it is at step "
                              f"{state['step']}); --resume can only lengthen a run: omit --steps to finish its "
                              f"{cfg.steps} steps, or give more than {cfg.steps}")
        if steps and steps > cfg.steps:
            self.steps_before, cfg.steps = cfg.steps, steps
            cfg.epochs = None             # the run now ends at a step count, not an epoch count
        return cfg

    def _setup_model(self, state: dict | None) -> None:
        """Model, optimizer, generators and counters: fresh (writing the run's files) or from ``state``."""
        cfg = self.cfg
        self.model = build_model(cfg, self.enc, len(self.data.classes)).to(self.device)
        self.opt = make_optimizer(self.model.parameters(), cfg, self.device)
        # The module that trains: DDP averages the gradients of the replicas (the wiring buffers are equal by
        # seed and never change, so they are not broadcast).
        self.train_model = self.model
        if self.world > 1:
            import inspect

            from torch.nn.parallel import DistributedDataParallel as DDP
            sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                    else {"broadcast_buffers": False})   # the newer torch's name for it
            self.train_model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                   **sync)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.step, self.best, self.elapsed = 0, -1.0, 0.0
        self.loss_ema = self.acc_ema = None
        self.saved_step = None           # the step of the checkpoint on disk
        self._target_hit = None          # time_to_target of the records so far (a resumed run reads them once)
        self._updating = False           # inside an optimizer update (an interrupt there cannot be undone)
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.noise_gen.set_state(state["noise_rng"].to("cpu") if self.device.type == "cpu" else state["noise_rng"])
            if state.get("torch_rng") is not None:
                torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self.step, self.best, self.elapsed = state["step"], state["best"], state["elapsed"]
            self.loss_ema, self.acc_ema = state.get("loss_ema"), state.get("acc_ema")
            self.saved_step = self.step
            if cfg.target_acc is not None:
                self._target_hit = time_to_target(read_metrics(self.run_dir, required=False), cfg.target_acc)
            return
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.run_dir, RUN_FILES)
        atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        meta = {"code": code_version(), "command": sys.argv, "host": platform.node(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kernel": self.backend,
                "device": str(self.device), "threads": torch.get_num_threads(), "processes": self.world,
                "encoding": self.enc.to_dict(), "dataset_sizes": {
                    "train": len(self.data.train), "val": len(self.data.val), "test": len(self.data.test)}}
        atomic_write_text(self.run_dir / "meta.json", json.dumps(meta, indent=2))

    # -- pieces ------------------------------------------------------------------
    def relaxation(self, step: int, generator=None) -> Relaxation:
        c = self.cfg
        if c.mode == "softmax":
            return Relaxation("soft")
        return Relaxation("sample", noise=noise_at(c, step, c.steps), tau=c.gumbel_tau, input_grad=c.input_grad,
                          generator=generator or self.noise_gen)

    def _ckpt_state(self) -> dict:
        return {"config": self.cfg.to_dict(), "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "noise_rng": self.noise_gen.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "step": self.step, "best": self.best, "elapsed": self.elapsed, "loss_ema": self.loss_ema,
                "acc_ema": self.acc_ema, "encoding": self.enc.to_dict(), "classes": list(self.data.classes),
                "dataset": self.cfg.dataset, "code": code_version()}

    def save(self, best: bool = False) -> None:
        if self.rank != 0:
            return
        st = self._ckpt_state()
        save_checkpoint(self.run_dir / "checkpoint.pt", st)
        if best:
            st = {k: v for k, v in st.items() if k not in ("optimizer",)}
            save_checkpoint(self.run_dir / "best.pt", st)
        self.saved_step = self.step

    def _evaluate(self, model: LogicNet, x: torch.Tensor, y: torch.Tensor, step: int, seed: int) -> dict:
        """Train-mode and discretized accuracy, both gaps and both gate-usage measures (docs/method.md, "Metrics").

        ``acc_train_mode``: one relaxation draw per ``eval_batch`` chunk (noise from a generator seeded with
        ``seed``).  ``acc_train_mode_paper`` and ``acc_discrete_paper``: as the authors' code computes them, a
        fresh draw per batch of the training batch size and the mean of the per-batch accuracies.
        """
        from ..netlist.analysis import analyze, unread_summary
        from .export import from_model
        c = self.cfg
        gen = torch.Generator(device=self.device).manual_seed(seed)
        relax = self.relaxation(step, gen)
        acc_train, p_train = evaluate(model, x, y, self.enc, relax, self.backend, c.eval_batch)
        acc_disc, p_disc = evaluate(model, x, y, self.enc, Relaxation("hard"), self.backend, c.eval_batch)
        if relax.kind == "sample" and relax.noise > 0:
            _, p_train = evaluate(model, x, y, self.enc, relax, self.backend, c.batch_size)
        # Without noise the predictions do not depend on how the images are batched: reuse them.  Both sides
        # of the paper-style gap average per batch, as the authors' one evaluation function does.
        acc_paper = batch_mean_accuracy(p_train, y, c.batch_size)
        disc_paper = batch_mean_accuracy(p_disc, y, c.batch_size)
        net = from_model(model, self.enc, self.data.classes)
        usage = analyze(net).summary()
        return {"acc_train_mode": acc_train, "acc_discrete": acc_disc, "gap": acc_train - acc_disc,
                "acc_train_mode_paper": acc_paper, "acc_discrete_paper": disc_paper,
                "gap_paper": acc_paper - disc_paper,
                **{k: usage[k] for k in ("unused_frac", "const_frac", "gates")},
                "unread_frac": unread_summary(net)["unread_frac"]}

    def validate(self) -> dict:
        """Validation metrics: accuracies, gaps, gate usage and, with ``target_acc``, the time to reach it."""
        self.model.eval()
        r = self._evaluate(self.model, self.val_x, self.val_y, self.step, self.cfg.seed * 7919 + self.step)
        self.model.train()
        rec = {"step": self.step, "val_acc_train_mode": r["acc_train_mode"], "val_acc_discrete": r["acc_discrete"],
               "gap": r["gap"], "val_acc_train_mode_paper": r["acc_train_mode_paper"],
               "val_acc_discrete_paper": r["acc_discrete_paper"], "gap_paper": r["gap_paper"],
               "unused_frac": r["unused_frac"], "const_frac": r["const_frac"], "unread_frac": r["unread_frac"],
               "gates": r["gates"], "wall_s": round(self.elapsed, 2),
               "noise": noise_at(self.cfg, self.step, self.cfg.steps) if self.cfg.mode != "softmax" else None,
               "lr": lr_at(self.cfg, self.step, self.cfg.steps)}
        if self.cfg.target_acc is not None:
            # The first record to reach it (one definition, time_to_target): once found, it stays.
            if self._target_hit is None:
                self._target_hit = time_to_target([rec], self.cfg.target_acc)
            hit = self._target_hit
            rec.update(target_acc=self.cfg.target_acc, target_step=hit and hit["step"],
                       target_wall_s=hit and hit["wall_s"])
        return rec

    # -- the loop ----------------------------------------------------------------
    def _one_step(self) -> None:
        """One optimizer step; on return the state is that after ``self.step`` whole steps."""
        cfg = self.cfg
        t0 = time.perf_counter()
        idx = batch_indices(cfg.seed, self.step, len(self.train_y), cfg.batch_size).to(self.device)
        # Augmented as one global batch (draws from (seed, step) alone), then this process's slice.
        images = augment(self.train_x[idx], cfg.flip, cfg.shift, augment_generator(cfg.seed, self.step))
        mine = torch.arange(len(idx), device=self.device).chunk(self.world)[self.rank]
        x = self.enc.encode_torch(images[mine])
        y = self.train_y[idx[mine]]
        out = self.train_model(x, self.relaxation(self.step), self.backend)
        loss = F.cross_entropy(out, y)
        if not torch.isfinite(loss):
            ck = self.run_dir / "checkpoint.pt"
            where = (f"the last good checkpoint is {ck}" if ck.exists() else "no checkpoint was written yet")
            raise TrainingError(f"loss became {loss.item()} at step {self.step}; {where} "
                                f"(lower --lr, or raise group_tau)")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self._updating = True           # from here until the step is counted, the state is half old, half new
        for group in self.opt.param_groups:
            group["lr"] = lr_at(cfg, self.step, cfg.steps)
        self.opt.step()
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        lv, av = loss.item(), (out.argmax(1) == y).float().mean().item()
        self.loss_ema = lv if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * lv
        self.acc_ema = av if self.acc_ema is None else 0.95 * self.acc_ema + 0.05 * av
        self._updating = False

    def train(self) -> dict:
        cfg = self.cfg
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, unit="step", dynamic_ncols=True,
                   desc=f"{cfg.dataset} {cfg.mode}", file=sys.stderr)
        last: dict = {}
        consistent = True               # the state in memory is that after self.step steps, fully recorded
        with _Interrupts() as stop:
            try:
                self.model.train()
                while self.step < cfg.steps and stop.signum is None:
                    noise_before = self.noise_gen.get_state()
                    self._updating = False
                    try:
                        self._one_step()
                    except KeyboardInterrupt:
                        # Raised before the update: undo the noise drawn so far and the state is the old one.
                        consistent = not self._updating
                        if consistent:
                            self.noise_gen.set_state(noise_before)
                        raise
                    bar.update(1)
                    if (self.step % cfg.eval_every == 0 or self.step == cfg.steps) and self.rank == 0:
                        consistent = False      # until this step's record and checkpoint are written
                        last = self.validate()
                        last.update(loss=round(self.loss_ema, 5), train_acc=round(self.acc_ema, 5))
                        improved = last["val_acc_discrete"] > self.best
                        if improved:
                            self.best = last["val_acc_discrete"]
                        append_metric(self.run_dir, last)
                        self.save(best=improved)
                        consistent = True
                        bar.set_postfix(loss=f"{self.loss_ema:.3f}", val=f"{100 * last['val_acc_discrete']:.1f}%",
                                        gap=f"{100 * last['gap']:+.2f}pp", unused=f"{100 * last['unused_frac']:.1f}%")
                    elif self.step % 10 == 0:
                        bar.set_postfix(loss=f"{self.loss_ema:.3f}", acc=f"{100 * self.acc_ema:.1f}%")
                interrupted = stop.signum is not None
            except KeyboardInterrupt:
                interrupted = True
            finally:
                bar.close()
            if interrupted:
                # Save the state after the last whole step, so --resume continues exactly.  A second signal
                # stops at once; then only a consistent state is saved, else the last checkpoint stays.
                if consistent and self.saved_step != self.step:
                    self.save(best=not (self.run_dir / "best.pt").exists())
                raise KeyboardInterrupt
        return last

    def _recorded_test(self, step: int) -> dict | None:
        """The test record already in metrics.jsonl for the best checkpoint at ``step``, if any."""
        found = [rec for rec in records_of(read_metrics(self.run_dir, required=False), "test") if rec["step"] == step]
        return found[-1] if found else None

    def test(self) -> dict:
        """Evaluate the best checkpoint once on the test split and record it."""
        best = load_checkpoint(self.run_dir, "best.pt")
        done = self._recorded_test(best["step"])
        if done is not None:
            return done              # a resumed run that found no better checkpoint: the test split stays tested once
        model, _ = model_from_state(best)
        model.to(self.device).eval()
        r = self._evaluate(model, self.test_x, self.test_y, best["step"], 12345)
        rec = {"split": "test", "step": best["step"], "test_acc_discrete": r["acc_discrete"],
               "test_acc_train_mode": r["acc_train_mode"], "gap": r["gap"],
               "test_acc_train_mode_paper": r["acc_train_mode_paper"],
               "test_acc_discrete_paper": r["acc_discrete_paper"], "gap_paper": r["gap_paper"],
               **{k: r[k] for k in ("gates", "unused_frac", "const_frac", "unread_frac")},
               "wall_s": round(self.elapsed, 2)}
        append_metric(self.run_dir, rec)
        return rec
