"""The PyTorch side of the benchmark: the same model, loss, EMA quantizer and Adam as `vqvae bench`.

Trains the VQ-VAE of spec/model.md (scripts/vqvae_torch.py) on synthetic images for --steps timed
steps after --warmup, and prints one JSON object: images/s, ms per step and the peak resident
memory of every process. Two launch modes, the ones a PyTorch user would pick on a CPU node:

  python bench_pytorch.py --threads 2             # one process, intra-op threads (oneDNN)
  python bench_pytorch.py --ddp 2 --threads 1     # DistributedDataParallel, gloo, one process per core

--batch is per process (as `vqvae bench --batch`). The EMA statistics are all-reduced under DDP,
as in the Swift trainer. Needs torch (an optional tool, never a dependency of the project).
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vqvae_torch import VQVAE  # noqa: E402


def model_config(args):
    return {"hidden": args.hidden, "residual_hidden": args.res_hidden, "residual_blocks": args.res_blocks,
            "downsamplings": args.down, "code_dimension": args.code_dim, "channels": args.channels}


class Quantized(torch.nn.Module):
    """Encoder, EMA vector quantizer (straight-through) and decoder in one forward, for DDP."""

    def __init__(self, net, codes, code_dim, gamma=0.99, eps=1e-5):
        super().__init__()
        self.net, self.codes, self.gamma, self.eps = net, codes, gamma, eps
        codebook = torch.randn(codes, code_dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.zeros(codes))
        self.register_buffer("ema_sum", codebook.clone())

    def forward(self, x):
        z = self.net.encode(x)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        with torch.no_grad():
            distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                         + self.codebook.pow(2).sum(1)[None, :])
            index = distances.argmin(1)
            q = self.codebook[index]
        q_st = (flat + (q - flat).detach()).reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        return self.net.decode(q_st), flat, q, index

    @torch.no_grad()
    def ema_update(self, index, flat, world):
        one_hot = F.one_hot(index, self.codes).float()
        stats = torch.cat([one_hot.sum(0), (one_hot.t() @ flat).reshape(-1)])
        if world > 1:
            dist.all_reduce(stats)
        n, s = stats[:self.codes], stats[self.codes:].reshape(self.codes, -1)
        self.ema_count.mul_(self.gamma).add_(n, alpha=1 - self.gamma)
        self.ema_sum.mul_(self.gamma).add_(s, alpha=1 - self.gamma)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.codes * self.eps) * total
        self.codebook.copy_(self.ema_sum / smoothed.clamp_min(1e-12)[:, None])


def train(rank, world, args, out):
    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(args.seed)
    net = Quantized(VQVAE(model_config(args)), args.codes, args.code_dim)
    model = torch.nn.parallel.DistributedDataParallel(net, broadcast_buffers=False) if world > 1 else net
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-4)
    generator = torch.Generator().manual_seed(args.seed + rank)
    images = torch.rand(args.batch * 4, args.channels, args.size, args.size, generator=generator) - 0.5

    def step(i):
        x = images[(i % 4) * args.batch:(i % 4 + 1) * args.batch]
        x_hat, flat, q, index = model(x)
        loss = F.mse_loss(x_hat, x) + 0.25 * F.mse_loss(flat, q)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces the gradients in buckets during backward
        optimizer.step()
        net.ema_update(index, flat.detach(), world)

    for i in range(args.warmup):
        step(i)
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"rank": rank, "seconds": elapsed, "peak_rss_mb": peak_mb}
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, result)
        dist.destroy_process_group()
        if rank == 0:
            out.put(gathered)
    else:
        out.put([result])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    parser.add_argument("--ddp", type=int, default=1, help="processes (DistributedDataParallel over gloo)")
    parser.add_argument("--batch", type=int, default=32, help="images per process and step")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--res-hidden", type=int, default=32)
    parser.add_argument("--res-blocks", type=int, default=2)
    parser.add_argument("--down", type=int, default=2)
    parser.add_argument("--code-dim", type=int, default=64)
    parser.add_argument("--codes", type=int, default=512)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import torch.multiprocessing as mp
    if args.ddp > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        context = mp.get_context("spawn")
        queue = context.Queue()
        processes = [context.Process(target=train, args=(r, args.ddp, args, queue)) for r in range(args.ddp)]
        for p in processes:
            p.start()
        per_rank = queue.get()
        for p in processes:
            p.join()
    else:
        import queue as q
        box = q.Queue()
        train(0, 1, args, box)
        per_rank = box.get()
    seconds = max(r["seconds"] for r in per_rank)
    images = args.batch * args.ddp * args.steps
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}",
        "processes": args.ddp, "threads_per_process": args.threads, "batch_per_process": args.batch,
        "images_per_second": images / seconds, "ms_per_step": 1000 * seconds / args.steps,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in per_rank), "per_rank": per_rank,
    }))


if __name__ == "__main__":
    main()
