"""How fast the training loop reads cached features, side by side in one process: every row read under its own
seeded random state (what augmenting image rows need) vs rows that draw nothing read a batch at a time.

    python benchmarks/bench_feature_rows.py --rows 7876 --dim 384 --batch-size 64

The defaults are the Rotten Tomatoes linear probe's: 7,876 MiniLM feature rows of 384 numbers, batches of 64.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

from hf_transfer.backbones.features import FeatureDataset
from hf_transfer.train.loading import EpochRows, EpochSampler, SeededRows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=7876)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    features = FeatureDataset(torch.randn(args.rows, args.dim), torch.randint(0, 2, (args.rows,)))
    seconds = {}
    for seeded in (True, False):
        rows = SeededRows(features, seed=0)
        rows.seeded = seeded  # the loop decides this from the dataset; forced here to time both ways
        sampler = EpochRows(EpochSampler(lambda g: RandomSampler(range(args.rows), generator=g), args.rows, seed=0))
        loader = DataLoader(rows, batch_size=args.batch_size, sampler=sampler)
        start = time.perf_counter()
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            for _ in loader:
                pass
        seconds[seeded] = (time.perf_counter() - start) / args.epochs
        name = "each row seeded" if seeded else "batch reads, unseeded"
        print(f"{name:22s} {seconds[seeded]:.3f} s an epoch  (load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"batch reads / seeded rows: {seconds[True] / seconds[False]:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
