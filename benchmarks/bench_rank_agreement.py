"""Does `hf-transfer rank` (scores before training) order backbones as a real fine-tune does?

Three BERT-architecture candidates of equal cost: the pretrained MiniLM from ../shared, the same network with
its top 3 of 6 layers re-initialised, and the same network fully re-initialised. Each is ranked on a sample of
Rotten Tomatoes, then fine-tuned with the shipped finetune recipe on the same budget and scored on the test
split; the script prints both orders and their Spearman correlation.

    python benchmarks/bench_rank_agreement.py --train-samples 2000 --rank-samples 1000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import torch
from scipy.stats import spearmanr

SHARED = Path(__file__).resolve().parents[2] / "shared"


def variant(source: Path, folder: Path, reinit_from_layer: int) -> str:
    """`source` with every encoder layer from `reinit_from_layer` on (and the embeddings when 0) re-initialised."""
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModel.from_pretrained(source)
    modules = list(model.encoder.layer[reinit_from_layer:]) + ([model.embeddings] if reinit_from_layer == 0 else [])
    std = model.config.initializer_range
    with torch.no_grad():
        for module in (m for top in modules for m in top.modules()):
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.normal_(0.0, std)
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return str(folder)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--train", default=str(SHARED / "data" / "rotten_tomatoes" / "train.csv"))
    p.add_argument("--test", default=str(SHARED / "data" / "rotten_tomatoes" / "test.csv"))
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--rank-samples", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args()

    import hf_transfer
    from hf_transfer.apps.cli import main as cli

    tmp = Path(tempfile.mkdtemp(prefix="rank-agreement-"))
    candidates = {
        "pretrained": args.model,
        "top-3-layers-reset": variant(Path(args.model), tmp / "top3", 3),
        "all-reset": variant(Path(args.model), tmp / "all", 0),
    }
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(
            [
                "rank",
                "--checkpoints",
                *candidates.values(),
                "--data",
                args.train,
                "--max-samples",
                str(args.rank_samples),
                "--json",
            ]
        )
    assert code == 0, "rank failed"
    scores = {row["checkpoint"]: row for row in json.loads(out.getvalue())["candidates"]}

    rows = []
    for name, checkpoint in candidates.items():
        run_dir = hf_transfer.run(
            "sentiment/minilm-finetune-rotten-tomatoes",
            [
                f"model.checkpoint={checkpoint}",
                f"data.train_files={args.train}",
                f"data.test_files={args.test}",
                f"data.max_train_samples={args.train_samples}",
                f"train.epochs={args.epochs}",
                f"output.dir={tmp / ('run-' + name)}",
            ],
        )
        accuracy = json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]
        score = scores[checkpoint]
        rows.append(
            {
                "name": name,
                "logme": score["logme"],
                "knn": score["knn_accuracy"],
                "linear": score["linear_accuracy"],
                "finetune_accuracy": accuracy,
            }
        )
    print(f"{'candidate':22s} {'LogME':>8s} {'kNN':>6s} {'linear':>7s} {'fine-tuned acc':>15s}")
    for r in rows:
        print(f"{r['name']:22s} {r['logme']:8.4f} {r['knn']:6.3f} {r['linear']:7.3f} {r['finetune_accuracy']:15.4f}")
    truth = [r["finetune_accuracy"] for r in rows]
    for key in ("logme", "knn", "linear"):
        print(f"Spearman({key}, fine-tuned accuracy) = {spearmanr([r[key] for r in rows], truth).statistic:+.2f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
