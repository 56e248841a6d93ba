"""Several processes training one run: torch.distributed as torchrun starts it.

torchrun (``ftui run NAME --nproc N`` starts it, or a person does) runs one ftui process per GPU
(or N gloo processes on a CPU) and tells each its place in RANK, LOCAL_RANK and WORLD_SIZE. This
module is everything that depends on those: the process group (NCCL on CUDA, gloo on the CPU,
always destroyed), the device of each process, DistributedDataParallel, each process's slice of
an epoch (DistributedSampler's), its share of the test set, and the decisions every process must
take together (stop, a non-finite loss, out of memory) so that none waits forever for the others.

A run of one process (no WORLD_SIZE, or 1) has no process group: every method of ``Group`` is
then a plain local computation with no collective, so a single-process run pays nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ..errors import FtuiError, RunError

# torch is imported where it is used: the CLI reads the world from the environment before it
# decides whether this process trains (and needs torch) or starts torchrun (and does not).
if TYPE_CHECKING:
    import torch
    from torch import nn


class PeerLost(RunError):
    """Another process of the run ended or stopped answering in the middle of a collective."""


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes, as torchrun's environment says it."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run folder and talks to the caller."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.size > 1


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The World torchrun set up for this process; a process not started by torchrun is alone."""
    env = os.environ if environ is None else environ
    try:
        world = World(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))
    except ValueError:
        raise FtuiError(
            f"RANK={env.get('RANK')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r}: "
            "these are set by torchrun and must be whole numbers; start the run with torchrun or ftui run --nproc."
        ) from None
    if not 0 <= world.rank < world.size:
        raise FtuiError(f"RANK={world.rank} is outside WORLD_SIZE={world.size}; start the run with torchrun.")
    return world


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return "TORCHELASTIC_RUN_ID" in env or "WORLD_SIZE" in env


def per_process_batch(batch_size: int, processes: int) -> int:
    """batch_size is the global batch: each process takes an equal part of it."""
    if batch_size % processes:
        lower, upper = batch_size // processes * processes, (batch_size // processes + 1) * processes
        options = " or ".join(str(b) for b in (lower, upper) if b > 0)
        raise FtuiError(
            f"batch_size = {batch_size} does not divide among {processes} processes: batch_size is the global "
            f"batch and each process takes batch_size / {processes} images. Use a multiple of {processes} "
            f"(such as {options}) or another number of processes."
        )
    return batch_size // processes


def check_same_processes(run_dir: object, trained_on: int, now: int) -> None:
    """A run resumes on as many processes as it was trained on: each one's random-number state is in its state."""
    if trained_on == now:
        return
    if trained_on == 1:
        how = f"ftui resume {run_dir} (without --nproc, and not under torchrun)"
    else:
        how = (
            f"ftui resume {run_dir} (it starts them itself), or "
            f"torchrun --nproc-per-node {trained_on} -m ftui resume {run_dir}"
        )
    raise RunError(
        f"{run_dir} was trained on {trained_on} process{'es' if trained_on > 1 else ''} and resumes only on "
        f"{trained_on}, not {now}: each process's random-number state is in its resume state. Continue it with: {how}"
    )


def training_device(name: str, world: World) -> torch.device:
    """The device of this process: the experiment's, or on CUDA with several processes, cuda:LOCAL_RANK."""
    import torch

    from .device import resolve_device

    device = resolve_device(name)
    if not world.several or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise FtuiError(f'device = "{name}" cannot train on several processes; use "cuda" (one GPU each) or "cpu".')
    if ":" in name:
        raise FtuiError(
            f'device = "{name}" names one GPU, but {world.size} processes each take the GPU of their LOCAL_RANK. '
            'Use device = "cuda" (choose the GPUs with CUDA_VISIBLE_DEVICES).'
        )
    if world.local_rank >= torch.cuda.device_count():
        raise FtuiError(
            f"Process {world.rank} (LOCAL_RANK {world.local_rank}) has no GPU: this machine has "
            f"{torch.cuda.device_count()}. Start at most that many processes per machine."
        )
    return torch.device("cuda", world.local_rank)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def check_sync_bn(sync_bn: bool, world: World, backend: str) -> None:
    if sync_bn and world.several and backend != "nccl":
        raise FtuiError(
            f"sync_bn = true synchronises BatchNorm statistics with NCCL on CUDA GPUs; this run's {world.size} "
            f"processes use {backend} on the CPU, where torch's SyncBatchNorm does not run. Set sync_bn = false."
        )


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[Group]:
    """The run's process group for the block (none for a single process), destroyed however the block ends."""
    if not world.several:
        yield Group(world, "")
        return
    import torch
    import torch.distributed as dist

    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the object collectives use the current device
    # torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) says where the others are.
    dist.init_process_group(
        backend, rank=world.rank, world_size=world.size, device_id=device if device.type == "cuda" else None
    )
    try:
        yield Group(world, backend)
    finally:
        dist.destroy_process_group()


@dataclass(frozen=True)
class Verdict:
    """What every process of a run decided together at a report."""

    losses: list[float]  # each step's training loss since the previous report, averaged over the processes
    stop: bool  # some process was asked to stop
    out_of_memory: bool  # some process ran out of memory in its step
    next_report_in: int  # steps until the next report (rank 0's measure)


# gloo and NCCL start a message with the C++ source line that raised it: "[.../pair.cc:561] Connection closed ..."
_SOURCE_LINE = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")


def _first_sentence(exc: BaseException, limit: int = 160) -> str:
    """What a collective's error says first, without the source location torch's C++ puts before it."""
    text = _SOURCE_LINE.sub("", str(exc).strip().split("\n")[0]) or type(exc).__name__
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_peer_failure(exc: BaseException) -> bool:
    """Whether an error raised inside a collective (DDP's gradient all-reduce included) means another process is gone.

    torch reports a lost peer as a DistError, or from gloo and NCCL as a RuntimeError whose text names
    the transport: there is no narrower type to catch.
    """
    import torch.distributed as dist

    if isinstance(exc, PeerLost | dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe")
    )


def peer_lost(exc: BaseException, world: World) -> PeerLost:
    return PeerLost(
        f"Another of this run's {world.size} processes ended or stopped answering "
        f"(process {world.rank} saw: {_first_sentence(exc)})."
    )


@contextlib.contextmanager
def _collective(world: World) -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:
        raise peer_lost(exc, world) from exc


class Group:
    """The run's processes, or one process alone: what they share, and the decisions they take together."""

    def __init__(self, world: World, backend: str):
        self.world = world
        self.backend = backend  # "" for a single process

    @property
    def several(self) -> bool:
        return self.world.several

    # -- starting -------------------------------------------------------------

    def agree(self, error: str | None) -> str | None:
        """Every process's set-up outcome, shared: the first error of any process (by rank), or None."""
        if not self.several:
            return error
        import torch.distributed as dist

        errors: list[str | None] = [None] * self.world.size
        with _collective(self.world):
            dist.all_gather_object(errors, error)
        return next((e for e in errors if e is not None), None)

    def share(self, value: object) -> object:
        """Rank 0's value, on every process (the run folder's name: rank 0 creates it)."""
        if not self.several:
            return value
        import torch.distributed as dist

        box = [value]
        with _collective(self.world):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def parallel(self, model: nn.Module, device: torch.device, compile: bool) -> nn.Module:
        """What training steps call: the model wrapped in DistributedDataParallel when there are several processes.

        DDP copies rank 0's weights to every process when it is built, and averages gradients
        over the processes in backward. torch.compile goes outside DDP, as torch advises.
        """
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if not self.several:
            return model
        with _collective(self.world):
            wrapped: nn.Module = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        # torch.compile of a Module returns an OptimizedModule, itself a Module; its annotation says "a callable".
        return cast("nn.Module", torch.compile(wrapped)) if compile else wrapped

    # -- an epoch -------------------------------------------------------------

    def epoch_order(self, n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
        """This process's training images of an epoch, in order: DistributedSampler's slice of the shared permutation.

        Every process draws the same permutation from seed + epoch and takes every size-th image from
        its rank on, dropping the tail so all take the same count and step in lockstep. Its b images of
        step k are images k*B .. (k+1)*B of the permutation at positions rank, rank + size, ...:
        together, the processes see exactly the global batch one process would see.
        """
        import torch
        from torch.utils.data import DistributedSampler

        sampler: DistributedSampler[int] = DistributedSampler(
            cast("torch.utils.data.Dataset", range(n)),
            num_replicas=self.world.size,
            rank=self.world.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long).to(device, non_blocking=True)

    def decide(self, losses: torch.Tensor, stop: bool, out_of_memory: bool, next_report_in: int) -> Verdict:
        """The report's decision, taken by every process at once (one all-reduce and the loop's only host sync).

        Each process brings its losses since the last report and its flags; all come back with the
        averaged losses (so a non-finite loss anywhere is seen everywhere), whether any process must
        stop or ran out of memory, and rank 0's count of steps to the next report.
        """
        if not self.several:
            return Verdict(losses.tolist(), stop, out_of_memory, next_report_in)
        import torch
        import torch.distributed as dist

        flags = torch.tensor(
            [float(stop), float(out_of_memory), float(next_report_in if self.world.main else 0)], device=losses.device
        )
        both = torch.cat([losses.float(), flags])
        with _collective(self.world):
            dist.all_reduce(both)
        values = both.tolist()
        mean = [v / self.world.size for v in values[:-3]]
        return Verdict(mean, values[-3] > 0, values[-2] > 0, max(1, int(values[-1])))

    # -- evaluation -----------------------------------------------------------

    def eval_share(self, n: int) -> slice:
        """This process's contiguous part of n test images: the parts cover them all, none twice."""
        return slice(n * self.world.rank // self.world.size, n * (self.world.rank + 1) // self.world.size)

    def total(self, sums: torch.Tensor) -> torch.Tensor:
        """Sums of every process (evaluation's loss, correct answers, images and stop flag)."""
        if not self.several:
            return sums
        import torch.distributed as dist

        with _collective(self.world):
            dist.all_reduce(sums)
        return sums

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every process, so each evaluates the model rank 0 saves.

        DDP sends rank 0's buffers at the start of each forward, but each process then updates them
        with its own batch.
        """
        if not self.several:
            return
        import torch.distributed as dist

        with _collective(self.world):
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    # -- resume state ---------------------------------------------------------

    def gather_rng(self, rng: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every process's RNG state, on rank 0, for the resume state: rank r's under "rank{r}." (rank 0's as is)."""
        if not self.several:
            return rng
        import torch.distributed as dist

        everyone: list[dict[str, torch.Tensor] | None] = [None] * self.world.size if self.world.main else []
        cpu = {k: v.cpu() for k, v in rng.items()}
        with _collective(self.world):
            dist.gather_object(cpu, everyone if self.world.main else None, dst=0)
        merged: dict[str, torch.Tensor] = {}
        for rank, states in enumerate(everyone):
            merged.update({rng_key(rank, k): v for k, v in (states or {}).items()})
        return merged

    def own_rng(self, merged: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This process's part of a resume state's RNG states."""
        prefix = rng_key(self.world.rank, "")
        mine = {k[len(prefix) :]: v for k, v in merged.items() if k.startswith(prefix) and "." not in k[len(prefix) :]}
        if not mine:
            raise RunError(
                f"The resume state holds no random-number state for process {self.world.rank}; it was saved by a "
                "run of fewer processes."
            )
        return mine


def rng_key(rank: int, name: str) -> str:
    # Rank 0's names are those a single-process run has always written, so its resume state reads as before.
    return name if rank == 0 else f"rank{rank}.{name}"
