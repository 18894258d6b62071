"""Cases and worker functions for tests/core/test_sync_batchnorm.py (imported by the spawned ranks too).

A case is a global batch per step, dealt to the ranks by ``splits``. The workers run
``bncourse.torch.SyncBatchNorm`` on their share and return what they saw; the test process compares
it with one ``torch.nn.BatchNorm*d`` on the whole batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

LR = 0.1


@dataclass(frozen=True)
class Case:
    name: str
    splits: tuple[int, ...]          # samples per rank
    spatial: tuple[int, ...] = ()    # () -> (N, C) input
    dtype: torch.dtype = torch.float64
    channels: int = 3
    affine: bool = True
    bias: bool = True
    track_running_stats: bool = True
    momentum: float | None = 0.1
    channels_last: bool = False
    offset: float = 3.0              # data = offset + scale * normal
    scale: float = 2.0
    steps: int = 3

    @property
    def batch(self) -> int:
        return sum(self.splits)

    def global_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, dy)`` of the whole batch at ``step``: ``(N, C, *spatial)`` each, in float64."""
        gen = torch.Generator().manual_seed(1000 * step + sum(map(ord, self.name)))
        shape = (self.batch, self.channels, *self.spatial)
        x = self.offset + self.scale * torch.randn(shape, generator=gen, dtype=torch.float64)
        dy = torch.randn(shape, generator=gen, dtype=torch.float64)
        return x, dy

    def layout(self, t: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return t.contiguous(memory_format=torch.channels_last if t.dim() == 4
                                else torch.channels_last_3d)
        return t

    def share(self, t: torch.Tensor, rank: int) -> torch.Tensor:
        start = sum(self.splits[:rank])
        return t[start:start + self.splits[rank]]


def torch_module(case: Case) -> nn.Module:
    """The single-process reference layer of torch.nn."""
    cls = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[len(case.spatial)]
    return cls(case.channels, momentum=case.momentum, affine=case.affine,
               track_running_stats=case.track_running_stats, bias=case.bias, dtype=case.dtype)


def run_steps(case: Case, bn: nn.Module, rank: int | None,
              group=None) -> list[dict[str, torch.Tensor]]:
    """Train ``bn`` for ``case.steps`` steps on the whole batch (``rank=None``) or on a rank's share.

    The loss is ``sum(y * dy)``; the step is SGD with learning rate ``LR`` on the parameter gradients
    summed over the ranks. Returns per step: output, input gradient, this process's parameter
    gradients and the buffers after the step, and finally the eval-mode output.
    """
    record = []
    for step in range(case.steps):
        x, dy = case.global_batch(step)
        if rank is not None:
            x, dy = case.share(x, rank), case.share(dy, rank)
        x = case.layout(x.to(case.dtype)).requires_grad_()
        y = bn(x)
        (y * case.layout(dy.to(case.dtype))).sum().backward()
        seen = {"y": y.detach().clone(), "dx": x.grad.clone(),
                "y_is_channels_last": torch.tensor(case.channels_last and y.dim() >= 4 and
                                                   y.is_contiguous(memory_format=torch.channels_last
                                                                   if y.dim() == 4 else
                                                                   torch.channels_last_3d))}
        with torch.no_grad():
            for name, p in bn.named_parameters():
                seen["grad_" + name] = p.grad.clone()
                if rank is not None:
                    dist.all_reduce(p.grad, group=group)
                p -= LR * p.grad
                p.grad = None
        for name, b in bn.named_buffers():
            seen[name] = b.clone()
        record.append(seen)
    bn.eval()
    x, _ = case.global_batch(case.steps)
    if rank is not None:
        x = case.share(x, rank)
    with torch.no_grad():
        record.append({"y_eval": bn(case.layout(x.to(case.dtype)))})
    bn.train()
    return record


def parity_worker(rank: int, world_size: int, cases: list[Case], group=None) -> dict[str, object]:
    """Every case on this rank of ``group`` (default: the world), the collectives used, torch's errors."""
    from bncourse.torch import SyncBatchNorm

    calls = {"all_gather": 0, "all_reduce": 0}
    originals = {name: getattr(dist, name) for name in calls}

    def counting(name):
        def call(*args, **kwargs):
            calls[name] += 1
            return originals[name](*args, **kwargs)
        return call

    out: dict[str, object] = {}
    for case in cases:
        assert len(case.splits) == world_size
        bn = SyncBatchNorm(case.channels, momentum=case.momentum, affine=case.affine,
                           track_running_stats=case.track_running_stats, bias=case.bias,
                           dtype=case.dtype, process_group=group)
        out[case.name] = run_steps(case, bn, rank, group)

    # communication: one all_gather per training forward, one all_reduce per backward, none in eval
    bn = SyncBatchNorm(3, dtype=torch.float64, process_group=group)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    try:
        for name in calls:
            setattr(dist, name, counting(name))
        y = bn(x)
        train_forward = dict(calls)
        y.sum().backward()
        train_backward = dict(calls)
        bn.eval()
        bn(x).sum().backward()
        out["calls"] = {"forward": train_forward, "backward": train_backward, "eval": dict(calls)}
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)

    errors = {}
    bn = SyncBatchNorm(3, process_group=group).train()
    for label, x in (("rank", torch.randn(4)), ("channels", torch.randn(4, 4)),
                     ("zero_channels", torch.randn(4, 0)),
                     ("one_value", torch.randn(1 if rank == 0 else 0, 3)),
                     ("one_value_spatial", torch.randn(1 if rank == world_size - 1 else 0, 3, 1, 1))):
        try:
            bn(x)
        except Exception as err:                       # noqa: BLE001 - the test compares type and text
            errors[label] = (type(err).__name__, str(err))
    x = torch.randn(3, 3, requires_grad=True)
    try:
        torch.autograd.grad(bn(x).square().sum(), x, create_graph=True)
    except RuntimeError as err:
        errors["double_backward"] = (type(err).__name__, str(err))
    out["errors"] = errors
    out["after_errors"] = bn(torch.full((2, 3), float(rank))).detach()   # the group still works
    out["specials"] = special_values_worker(rank, group)
    return out


def special_batch(rank: int) -> torch.Tensor:
    """Rank ``rank``'s share ``(2, 2)`` of the +inf case: rank 0 holds +inf in channel 0."""
    x = torch.full((2, 2), 1.0 + rank, dtype=torch.float64)
    x[1, 1] = 3.0 * rank - 1.0
    if rank == 0:
        x[0, 0] = float("inf")
    return x


def special_values_worker(rank: int, group=None) -> dict[str, object]:
    """+inf on one rank (torch: an infinite running mean); an empty global batch ``(2, 2, 0)`` per
    rank (torch: an empty output and empty / zero gradients)."""
    from bncourse.torch import SyncBatchNorm

    out: dict[str, object] = {}
    bn = SyncBatchNorm(2, momentum=0.5, dtype=torch.float64, process_group=group)
    bn(special_batch(rank))
    out["inf_running_mean"], out["inf_running_var"] = bn.running_mean.clone(), bn.running_var.clone()
    bn = SyncBatchNorm(2, dtype=torch.float64, process_group=group)
    x = torch.zeros(2, 2, 0, dtype=torch.float64, requires_grad=True)
    try:
        y = bn(x)
        out["empty"] = torch.autograd.grad(y.sum(), [x, bn.weight, bn.bias])
    except Exception as err:                           # noqa: BLE001 - the test reports it
        out["empty"] = (type(err).__name__, str(err))
    return out


def ddp_model(seed: int, batchnorm: type[nn.Module] = nn.BatchNorm1d) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8, bias=False), batchnorm(8), nn.ReLU(),
                         nn.Linear(8, 8, bias=False), batchnorm(8), nn.ReLU(),
                         nn.Linear(8, 3)).double()


def ddp_batch(step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(77 + step)
    return (torch.randn(batch, 6, generator=gen, dtype=torch.float64) * 3 + 1,
            torch.randint(0, 3, (batch,), generator=gen))


def ddp_train(model: nn.Module, splits: tuple[int, ...], steps: int, rank: int | None,
              world_size: int = 1) -> list[dict[str, torch.Tensor]]:
    """SGD on the mean cross-entropy of the global batch; with DDP (``rank`` given) on a share."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    total = sum(splits)
    record = []
    for step in range(steps):
        x, t = ddp_batch(step, total)
        if rank is not None:
            start = sum(splits[:rank])
            x, t = x[start:start + splits[rank]], t[start:start + splits[rank]]
        # DDP averages the ranks' gradients: scale the rank's sum so the average is the global mean
        loss = nn.functional.cross_entropy(model(x), t, reduction="sum") * world_size / total
        opt.zero_grad()
        loss.backward()
        opt.step()
        record.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return record


def ddp_worker(rank: int, world_size: int, splits: tuple[int, ...], steps: int, group=None) -> list:
    from bncourse.torch import SyncBatchNorm
    model = SyncBatchNorm.convert_sync_batchnorm(ddp_model(0), process_group=group)
    ddp = nn.parallel.DistributedDataParallel(model, process_group=group)
    return [{k.removeprefix("module."): v for k, v in s.items()}
            for s in ddp_train(ddp, splits, steps, rank, world_size)]


def group_worker(rank: int, world_size: int, cases: dict[int, list[Case]],
                 ddp_splits: dict[int, tuple[int, ...]], ddp_steps: int) -> dict[int, dict]:
    """The parity cases and the DDP training of each group size ``k`` in ``cases``, on ranks ``0..k-1``.

    A smaller group is a ``new_group`` of the first ranks (the others wait), so one launch serves all.
    """
    out: dict[int, dict] = {}
    for k in sorted(cases):
        group = dist.new_group(list(range(k))) if k < world_size else None
        if rank < k:
            out[k] = parity_worker(rank, k, cases[k], group)
            out[k]["ddp"] = ddp_worker(rank, k, ddp_splits[k], ddp_steps, group)
        dist.barrier()
    return out


def cuda_worker(rank: int, world_size: int, splits: tuple[int, ...], steps: int) -> list:
    """bncourse's and torch's SyncBatchNorm side by side on this rank's GPU, float32, channels (2d)."""
    from bncourse.torch import SyncBatchNorm
    device = torch.device("cuda", torch.cuda.current_device())
    record = []
    ours = SyncBatchNorm(4, device=device)
    ref = nn.SyncBatchNorm(4, device=device)
    for step in range(steps):
        gen = torch.Generator().manual_seed(step)
        x_all = (5 + 3 * torch.randn(sum(splits), 4, 6, 6, generator=gen)).to(device)
        dy_all = torch.randn(x_all.shape, generator=gen).to(device)
        start = sum(splits[:rank])
        x, dy = x_all[start:start + splits[rank]], dy_all[start:start + splits[rank]]
        seen = {}
        for name, bn in (("ours", ours), ("torch", ref)):
            xi = x.clone().requires_grad_()
            y = bn(xi)
            (y * dy).sum().backward()
            seen[name] = {"y": y.detach().cpu(), "dx": xi.grad.cpu(),
                          "dw": bn.weight.grad.cpu(), "db": bn.bias.grad.cpu(),
                          "running_mean": bn.running_mean.cpu(), "running_var": bn.running_var.cpu()}
            bn.zero_grad()
        record.append(seen)
    return record
