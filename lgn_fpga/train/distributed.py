"""Training on N processes: torch.distributed DistributedDataParallel, gloo on CPUs, NCCL on GPUs.

``lgn-fpga train ... --nproc N`` starts N processes on this machine (:func:`spawn`), each joins one process
group (through a rendezvous file, so no port is needed), and :class:`~lgn_fpga.train.loop.Trainer` sees
the group: every process takes its own 1/N slice of each global batch (``--batch-size`` stays the global
batch, so a run on N processes is the run on one process with the gradient summed in another order), DDP
averages the gradients, every process draws the same Gumbel noise (the same seeded generator: the noise
is per neuron, so all replicas must sample the same gates), and only rank 0 evaluates, logs and writes
checkpoints.  On GPUs rank r uses ``cuda:r``.  ``torchrun`` works too: a Trainer created inside an
initialized process group uses it the same way.
"""
from __future__ import annotations

import os
import sys
import tempfile

import torch

from ..errors import ConfigError, TrainingError

__all__ = ["spawn", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the current process group, ``(0, 1)`` without one."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _worker(rank: int, world: int, init_file: str, backend: str, fn, args):
    import torch.distributed as dist
    from ..errors import LgnError
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        fn(*args)
        # Both processes finished before either tears its connections down: a rank that destroyed its group
        # while the other still held gloo work aborted now and then at exit ("terminate called without an
        # active exception", exit code -6).
        dist.barrier()
    except LgnError as e:
        print(f"error (process {rank}): {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        dist.destroy_process_group()


def spawn(nproc: int, device: str, fn, *args) -> None:
    """Run ``fn(*args)`` in ``nproc`` processes of one process group (gloo on CPUs, NCCL on CUDA).

    ``fn`` must be picklable (a module-level function).  Raises TrainingError when a process fails (its own
    error line is printed above) and KeyboardInterrupt when they were interrupted.
    """
    import torch.multiprocessing as mp
    import torch.distributed as dist
    if not dist.is_available():
        raise ConfigError("--nproc needs torch.distributed, which this torch build lacks")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc {nproc} on CUDA needs {nproc} GPUs; this machine has {torch.cuda.device_count()}")
    backend = "nccl" if cuda else "gloo"
    fd, init_file = tempfile.mkstemp(prefix="lgn-fpga-dist-")
    os.close(fd)
    os.unlink(init_file)   # the rendezvous file must not exist yet
    try:
        mp.spawn(_worker, args=(nproc, init_file, backend, fn, args), nprocs=nproc, join=True)
    except mp.ProcessExitedException as e:
        if e.exit_code == 130:
            raise KeyboardInterrupt from None
        raise TrainingError(f"training process {e.error_index} of {nproc} exited with code {e.exit_code}"
                            f" (its error is printed above)") from None
    except mp.ProcessRaisedException as e:
        last = [l for l in str(e).strip().splitlines() if l.strip()]
        raise TrainingError(f"a training process failed: {last[-1] if last else e}") from None
    finally:
        if os.path.exists(init_file):
            os.unlink(init_file)
