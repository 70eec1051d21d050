"""The training loop: data order, Gumbel noise, evaluation, checkpoints, exact resume.

Determinism: the batch order is a pure function of (seed, step) (one seeded
permutation per epoch), the Gumbel noise comes from a generator whose state is
checkpointed, and evaluation draws from its own generators, so a run resumed
from ``checkpoint.pt`` follows exactly the path of an uninterrupted one.
"""
from __future__ import annotations

import functools
import json
import math
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from .. import __version__
from ..data.datasets import DataBundle, load
from ..data.encoding import ThermometerEncoding
from ..errors import CheckpointError, ConfigError, TrainingError
from ..kernels import resolve_backend
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from .config import TrainConfig, noise_at
from .distributed import rank_and_world
from .model import LogicNet, Relaxation

__all__ = ["Trainer", "build_model", "model_from_state", "evaluate", "code_version", "batch_indices"]


SMALL_WORK = 1 << 20  # neurons x batch of the widest layer below which one thread is fastest


def code_version() -> dict:
    """Package version and, when run from a git checkout, the commit (+dirty flag)."""
    out = {"lgn_fpga": __version__, "python": platform.python_version(), "torch": torch.__version__}
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        if commit:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            out["git_commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def build_model(cfg: TrainConfig, enc: ThermometerEncoding, n_classes: int) -> LogicNet:
    widths = cfg.widths_list()
    if widths[-1] % n_classes:
        raise ConfigError(f"the last layer's width ({widths[-1]}) must be a multiple of the {n_classes} classes")
    try:
        return LogicNet(enc.n_bits, widths, n_classes, tau=cfg.group_tau, connections=cfg.connections, init=cfg.init,
                        residual_logit=cfg.residual_logit, seed=cfg.seed, grid=enc.shape[1:], window=cfg.window)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def model_from_state(state: dict):
    """Rebuild the model and encoding stored in a checkpoint dict."""
    try:
        cfg = TrainConfig(**state["config"])
        enc = ThermometerEncoding.from_dict(state["encoding"])
        model = build_model(cfg, enc, len(state["classes"]))
        model.load_state_dict(state["model"])
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{state.get('path', 'checkpoint')} does not match its own config "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return model, enc


def batch_indices(seed: int, step: int, n: int, batch: int) -> torch.Tensor:
    """Indices of the training batch of ``step``: epoch-wise seeded permutations, last partial batch dropped."""
    per_epoch = max(n // batch, 1)
    epoch, i = divmod(step, per_epoch)
    return _epoch_permutation(int(seed), epoch, n)[i * batch:(i + 1) * batch]


@functools.lru_cache(maxsize=2)
def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


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


class Trainer:
    """Owns a run directory and trains (or resumes) one model.

    Parameters
    ----------
    cfg : TrainConfig
        Resolved configuration (ignored on resume: the run's own config is used,
        except for ``steps``, which may be raised to train longer).
    run_dir : path
    resume : bool
        Continue from ``run_dir/checkpoint.pt``.
    """

    def __init__(self, cfg: TrainConfig, run_dir, resume: bool = False, progress: bool = True, log=print):
        self.run_dir = Path(run_dir)
        # In a process group (lgn-fpga train --nproc, torchrun): a slice of every batch here, rank 0 writes.
        self.rank, self.world = rank_and_world()
        self.progress, self.log = progress and self.rank == 0, log
        self.state = None
        if resume:
            self.state = load_checkpoint(self.run_dir, "checkpoint.pt")
            steps = cfg.steps
            cfg = TrainConfig(**self.state["config"])
            cfg.steps = max(cfg.steps, steps) if steps else cfg.steps
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
        dev = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if self.world > 1 and dev == "cuda":
            dev = f"cuda:{self.rank}"
        self.device = torch.device(dev)
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
        n_classes = len(self.data.classes)
        as_t = lambda s: (torch.from_numpy(s.images).to(self.device), torch.from_numpy(s.labels).to(self.device))
        self.train_x, self.train_y = as_t(self.data.train)
        self.val_x, self.val_y = as_t(self.data.val)
        if cfg.epochs is not None:
            cfg.steps = max(1, math.ceil(cfg.epochs * len(self.train_y) / cfg.batch_size))

        self.model = build_model(cfg, self.enc, n_classes).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
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
        if self.state is not None:
            self.model.load_state_dict(self.state["model"])
            self.opt.load_state_dict(self.state["optimizer"])
            self.noise_gen.set_state(self.state["noise_rng"].to("cpu") if self.device.type == "cpu"
                                     else self.state["noise_rng"])
            self.step, self.best, self.elapsed = self.state["step"], self.state["best"], self.state["elapsed"]
        elif self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
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
                "noise_rng": self.noise_gen.get_state(), "step": self.step, "best": self.best,
                "elapsed": self.elapsed, "encoding": self.enc.to_dict(), "classes": list(self.data.classes),
                "dataset": self.cfg.dataset, "code": code_version()}

    def save(self, best: bool = False) -> None:
        if self.rank != 0:
            return
        st = self._ckpt_state()
        save_checkpoint(self.run_dir / "checkpoint.pt", st)
        if best:
            st = {k: v for k, v in st.items() if k not in ("optimizer",)}
            save_checkpoint(self.run_dir / "best.pt", st)

    def _metrics_line(self, rec: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    def validate(self) -> dict:
        """Validation metrics: train-mode and discretized accuracy, gap, unused and constant gates."""
        from ..netlist.analysis import analyze
        from .export import from_model
        self.model.eval()
        eval_gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 7919 + self.step)
        acc_train, _ = evaluate(self.model, self.val_x, self.val_y, self.enc, self.relaxation(self.step, eval_gen),
                                self.backend, self.cfg.eval_batch)
        acc_disc, _ = evaluate(self.model, self.val_x, self.val_y, self.enc, Relaxation("hard"), self.backend,
                               self.cfg.eval_batch)
        usage = analyze(from_model(self.model, self.enc, self.data.classes)).summary()
        self.model.train()
        return {"step": self.step, "val_acc_train_mode": acc_train, "val_acc_discrete": acc_disc,
                "gap": acc_train - acc_disc, "unused_frac": usage["unused_frac"],
                "const_frac": usage["const_frac"], "gates": usage["gates"], "wall_s": round(self.elapsed, 2),
                "noise": noise_at(self.cfg, self.step, self.cfg.steps) if self.cfg.mode != "softmax" else None}

    # -- the loop ----------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, unit="step", dynamic_ncols=True,
                   desc=f"{cfg.dataset} {cfg.mode}", file=sys.stderr)
        last: dict = {}
        loss_ema, acc_ema = None, None
        interrupted = False
        prev_handler = signal.getsignal(signal.SIGTERM)

        def _term(signum, frame):  # a kill from a scheduler behaves like Ctrl-C: checkpoint, then exit
            raise KeyboardInterrupt
        try:
            signal.signal(signal.SIGTERM, _term)
        except ValueError:  # not the main thread
            pass
        try:
            self.model.train()
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                idx = batch_indices(cfg.seed, self.step, len(self.train_y), cfg.batch_size)
                idx = idx.chunk(self.world)[self.rank].to(self.device)
                x = self.enc.encode_torch(self.train_x[idx])
                y = self.train_y[idx]
                out = self.train_model(x, self.relaxation(self.step), self.backend)
                loss = F.cross_entropy(out, y)
                if not torch.isfinite(loss):
                    ck = self.run_dir / "checkpoint.pt"
                    where = (f"the last good checkpoint is {ck}" if ck.exists() else "no checkpoint was written yet")
                    raise TrainingError(f"loss became {loss.item()} at step {self.step}; {where} "
                                        f"(lower --lr, or raise group_tau)")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.step += 1
                self.elapsed += time.perf_counter() - t0
                lv, av = loss.item(), (out.argmax(1) == y).float().mean().item()
                loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
                acc_ema = av if acc_ema is None else 0.95 * acc_ema + 0.05 * av
                bar.update(1)
                if (self.step % cfg.eval_every == 0 or self.step == cfg.steps) and self.rank == 0:
                    last = self.validate()
                    last.update(loss=round(loss_ema, 5), train_acc=round(acc_ema, 5))
                    improved = last["val_acc_discrete"] > self.best
                    if improved:
                        self.best = last["val_acc_discrete"]
                    self._metrics_line(last)
                    self.save(best=improved)
                    bar.set_postfix(loss=f"{loss_ema:.3f}", val=f"{100 * last['val_acc_discrete']:.1f}%",
                                    gap=f"{100 * last['gap']:+.2f}pp", unused=f"{100 * last['unused_frac']:.1f}%")
                elif self.step % 10 == 0:
                    bar.set_postfix(loss=f"{loss_ema:.3f}", acc=f"{100 * acc_ema:.1f}%")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            try:
                signal.signal(signal.SIGTERM, prev_handler)
            except ValueError:
                pass
        if interrupted:
            # The state after the last completed step is consistent: save it so --resume continues exactly.
            self.save(best=not (self.run_dir / "best.pt").exists())
            raise KeyboardInterrupt
        return last

    def _recorded_test(self, step: int) -> dict | None:
        """The test record already in metrics.jsonl for the best checkpoint at ``step``, if any."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return None
        found = None
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("split") == "test" and rec.get("step") == step:
                found = rec
        return found

    def test(self) -> dict:
        """Evaluate the best checkpoint once on the test split and record it."""
        best = load_checkpoint(self.run_dir, "best.pt")
        done = self._recorded_test(best["step"])
        if done is not None:
            return done              # a resumed run that found no better checkpoint: the test split stays tested once
        model, _ = model_from_state(best)
        model.to(self.device).eval()
        tx, ty = torch.from_numpy(self.data.test.images).to(self.device), torch.from_numpy(self.data.test.labels).to(self.device)
        acc_disc, _ = evaluate(model, tx, ty, self.enc, Relaxation("hard"), self.backend, self.cfg.eval_batch)
        gen = torch.Generator(device=self.device).manual_seed(12345)
        if self.cfg.mode == "softmax":
            r = Relaxation("soft")
        else:
            r = self.relaxation(best["step"], gen)
        acc_train, _ = evaluate(model, tx, ty, self.enc, r, self.backend, self.cfg.eval_batch)
        from ..netlist.analysis import analyze
        from .export import from_model
        usage = analyze(from_model(model, self.enc, self.data.classes)).summary()
        rec = {"split": "test", "step": best["step"], "test_acc_discrete": acc_disc, "test_acc_train_mode": acc_train,
               "gap": acc_train - acc_disc, **{k: usage[k] for k in ("gates", "unused_frac", "const_frac")},
               "wall_s": round(self.elapsed, 2)}
        self._metrics_line(rec)
        return rec
