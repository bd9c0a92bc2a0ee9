"""Training throughput, model FLOPs utilisation and peak memory of hf-transfer's own training path on a GPU.

    python benchmarks/bench_gpu.py                      # on a GPU: the four rows of issue 12 at real sizes
    python benchmarks/bench_gpu.py --tiny               # on a CPU: the same code on tiny models, in seconds
    python benchmarks/bench_gpu.py --rows bert-base:finetune,bert-base:lora --bert-batch-size 64 --json out.json

Rows: BERT-base full fine-tune and LoRA (query, value), ViT-B/16 LoRA (qkv) and ResNet-50 full fine-tune, all
random-init models of the real sizes (transformers' `BertConfig()` defaults, timm `vit_base_patch16_224` and
`resnet50` with `pretrained=False`: nothing is downloaded) on synthetic inputs of the real shapes (text: sequences of
`--seq-len` tokens, no padding; images: 3x224x224, made on the device). Every row runs hf-transfer's own path: the
package's backbone builds the classifier, its `finetune` / `lora` strategy freezes, wraps and groups parameters,
and `hf_transfer.train.loop.TrainingLoop` trains it (Accelerate, bf16 autocast, AdamW, clipping at 1.0, schedule). Only
the data differs: the backbones below hand the loop synthetic tensors instead of tokenised text or decoded images.

Timing: one epoch of `--warmup + --steps` optimizer steps; the clock starts after the warm-up steps and stops after
the last step, with `torch.cuda.synchronize()` at both ends (the loop's end-of-epoch evaluation and checkpoint come
after it). Peak memory is `torch.cuda.max_memory_allocated` over the run up to the last timed step (n/a on a CPU).

FLOPs: counted, not assumed: one forward + backward of the same model on two samples under
`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions and attention as autograd runs them), so a frozen
weight costs its forward and the gradient of its input (~4 FLOPs a parameter a token) and a trained one also its
weight gradient (~6). MFU = counted FLOPs a sample x samples/s / the device's peak dense bf16 FLOP/s. The classic
formulas are printed beside the count as a check: transformers tokens x (6 N_trained + 4 N_frozen) + 12 L s^2 d
(N: Linear/Conv weights, no embedding tables; L layers, s tokens, d width); ResNet-50 3 x 2 x 4.1 G (4.1 G is its
multiply-accumulates per 224 px image; a multiply-accumulate is 2 FLOPs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, default_collate

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hf_transfer.backbones.timm_image import INPUT, TimmImageBackbone  # noqa: E402
from hf_transfer.backbones.transformers_text import TransformersTextBackbone  # noqa: E402
from hf_transfer.config.recipe import recipe_from_dict  # noqa: E402
from hf_transfer.data.splits import Splits  # noqa: E402
from hf_transfer.problems.base import LABEL  # noqa: E402
from hf_transfer.strategies.factory import build_strategy  # noqa: E402
from hf_transfer.train.evaluation import logits_of  # noqa: E402
from hf_transfer.train.loop import TrainingLoop  # noqa: E402
from hf_transfer.train.plan import Callback  # noqa: E402

# Peak dense (no sparsity) bf16 tensor-core FLOP/s from NVIDIA's datasheets, matched in order against
# torch.cuda.get_device_name(): the more specific names first ("H100 PCIe" before "H100", "L40S" before "L4").
PEAK_BF16_FLOPS = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
]
RESNET50_MACS_224 = 4.1e9
NUM_LABELS = 10
LORA_TARGETS = {"bert-base": ["query", "value"], "vit-b16": ["qkv"]}  # resnet50: the package's default (every conv)
DEFAULT_ROWS = "bert-base:finetune,bert-base:lora,vit-b16:lora,resnet50:finetune"


def peak_flops_of(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a known GPU by its name, else None."""
    name = device_name.lower()
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in name:
            return flops
    return None


# --- synthetic data through the package's backbones --------------------------------------------------------------
class SyntheticTokens(Dataset):
    """Rows of `seq_len` random token ids (no padding) with the split's labels."""

    def __init__(self, labels: list[int], seq_len: int, vocab_size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(0, vocab_size, (len(labels), seq_len), generator=generator)
        self.attention_mask = torch.ones_like(self.input_ids)
        self.labels = torch.tensor(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.input_ids[i], "attention_mask": self.attention_mask[i], LABEL: self.labels[i]}


class SyntheticImages(Dataset):
    """Images of the model's input size drawn from a small pool made on the device: the benchmark measures the
    model and the loop, not image decoding, augmentation or host-to-device copies (a real run adds those)."""

    def __init__(self, labels: list[int], input_size: tuple[int, int, int], device: torch.device, pool: int = 32):
        generator = torch.Generator().manual_seed(0)
        self.pool = torch.randn((min(pool, len(labels)), *input_size), generator=generator).to(device)
        self.labels = list(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {INPUT: self.pool[i % len(self.pool)], LABEL: self.labels[i]}


class SyntheticTextBackbone(TransformersTextBackbone):
    """The package's text backbone (classifier, LoRA targets, head), fed token ids instead of tokenised text."""

    def __init__(self, model_cfg, data_cfg, *, seq_len: int):
        super().__init__(model_cfg, data_cfg)
        self.seq_len = seq_len

    def prepare(self, split, train: bool):
        return SyntheticTokens(list(split[LABEL]), self.seq_len, self.config.vocab_size, seed=int(train))

    def collate_fn(self):
        return default_collate  # every row has seq_len tokens: nothing to pad

    def lengths(self, prepared):
        return None


class SyntheticImageBackbone(TimmImageBackbone):
    """The package's timm backbone (classifier, hooks, LoRA targets, head), fed tensors instead of decoded images."""

    def __init__(self, model_cfg, data_cfg, *, device: torch.device):
        super().__init__(model_cfg, data_cfg)
        self.device = device

    def prepare(self, split, train: bool):
        return SyntheticImages(list(split[LABEL]), tuple(self.data_config["input_size"]), self.device)


# --- the models ----------------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    name: str
    task: str
    checkpoint: str  # a timm name, or "bert" (a folder with the config is written at run time)
    image_size: int | None = None  # tiny mode: timm models at a small resolution


def model_specs(tiny: bool) -> dict[str, ModelSpec]:
    if tiny:
        return {
            "bert-base": ModelSpec("bert-base", "text-classification", "bert"),
            "vit-b16": ModelSpec("vit-b16", "image-classification", "test_vit", image_size=32),
            "resnet50": ModelSpec("resnet50", "image-classification", "test_resnet", image_size=32),
        }
    return {
        "bert-base": ModelSpec("bert-base", "text-classification", "bert"),
        "vit-b16": ModelSpec("vit-b16", "image-classification", "vit_base_patch16_224"),
        "resnet50": ModelSpec("resnet50", "image-classification", "resnet50"),
    }


def bert_config(tiny: bool, seq_len: int):
    from transformers import BertConfig

    if tiny:
        return BertConfig(
            vocab_size=1024,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=256,
            max_position_embeddings=max(seq_len, 64),
        )
    return BertConfig()  # BERT-base: 12 layers, hidden 768, 12 heads, vocab 30522, 512 positions


def base_model(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def matmul_weights(model: nn.Module) -> tuple[int, int]:
    """(trained, frozen) weights of the Linear and Conv layers: the parameters that cost FLOPs every token."""
    trained = frozen = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if module.weight.requires_grad:
                trained += module.weight.numel()
            else:
                frozen += module.weight.numel()
    return trained, frozen


def formula_flops_per_sample(spec: ModelSpec, model: nn.Module, seq_len: int) -> float | None:
    """The classic estimate the count is checked against (see the module docstring); None where none applies."""
    base = base_model(model)
    if spec.task == "text-classification":
        tokens, layers, width = seq_len, base.config.num_hidden_layers, base.config.hidden_size
    elif hasattr(base, "patch_embed"):
        tokens = base.patch_embed.num_patches + base.num_prefix_tokens
        layers, width = len(base.blocks), base.embed_dim
    elif spec.checkpoint == "resnet50" and spec.image_size is None:
        return 3 * 2 * RESNET50_MACS_224
    else:
        return None
    trained, frozen = matmul_weights(model)
    return tokens * (6 * trained + 4 * frozen) + 12 * layers * tokens**2 * width


def counted_flops_per_sample(model: nn.Module, batch: dict, device: torch.device) -> float:
    """FLOPs of one training step a sample, counted while autograd runs forward and backward on `batch`."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch.pop(LABEL)
    model.to(device).train()
    # The math kernel runs attention as matmuls the counter sees (it does not count the fused CPU kernel).
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        F.cross_entropy(logits_of(model(**batch)).float(), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(labels)


# --- one row -------------------------------------------------------------------------------------------------------
class StepTimer(Callback):
    """The clock from the end of the warm-up steps to the end of the last timed step, and the peak memory of the
    run up to that step (model, optimizer state and activations; on a GPU only)."""

    def __init__(self, warmup: int, steps: int, device: torch.device):
        self.warmup, self.steps, self.device = warmup, steps, device
        self.start = self.seconds = None
        self.peak_memory = None

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_step_end(self, step: int, epoch: int) -> None:
        if step == self.warmup:
            self._sync()
            self.start = time.perf_counter()
        elif step == self.warmup + self.steps:
            self._sync()
            self.seconds = time.perf_counter() - self.start
            if self.device.type == "cuda":
                self.peak_memory = torch.cuda.max_memory_allocated(self.device)


def fresh_accelerator(precision: str):
    from hf_transfer.core.accelerator import fresh_accelerator as fresh

    return fresh(mixed_precision=precision)


def recipe_for(spec: ModelSpec, strategy: str, batch_size: int, args, work_dir: Path):
    """The recipe a user would write for this row (the BERT config written into work_dir as its checkpoint)."""
    checkpoint = spec.checkpoint
    if checkpoint == "bert":
        checkpoint = str(work_dir / "bert")
        bert_config(args.tiny, args.seq_len).save_pretrained(checkpoint)
    strategy_cfg = {"name": strategy}
    if strategy == "lora":
        strategy_cfg |= {"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.1}
        if spec.name in LORA_TARGETS:
            strategy_cfg["target_modules"] = LORA_TARGETS[spec.name]
    return recipe_from_dict(
        {
            "name": f"bench-{spec.name}-{strategy}",
            "task": spec.task,
            "model": {"checkpoint": checkpoint, "pretrained": False},
            "data": {"dataset": "synthetic", "image_size": spec.image_size, "max_length": args.seq_len},
            "strategy": strategy_cfg,
            "train": {
                "epochs": 1,
                "batch_size": batch_size,
                "learning_rate": 1e-4,
                "mixed_precision": args.precision,
                "log_every_steps": 10**9,  # the loop's loss read-back is a host sync: none in the timed steps
            },
        }
    )


def plan_for(spec: ModelSpec, recipe, args, accelerator, n_train: int):
    """(splits, TrainingPlan) as the package's strategy builds them, on synthetic rows."""
    from datasets import Dataset as HFDataset

    labels = [i % NUM_LABELS for i in range(max(n_train, recipe.train.batch_size))]
    splits = Splits(
        train=HFDataset.from_dict({LABEL: labels[:n_train]}),
        validation=HFDataset.from_dict({LABEL: labels[: recipe.train.batch_size]}),
        test=None,
        label_names=[f"class_{i}" for i in range(NUM_LABELS)],
    )
    if spec.task == "text-classification":
        backbone = SyntheticTextBackbone(recipe.model, recipe.data, seq_len=args.seq_len)
    else:
        backbone = SyntheticImageBackbone(recipe.model, recipe.data, device=accelerator.device)
    return splits, build_strategy(recipe.strategy, backbone).plan(splits, recipe, accelerator)


def run_row(spec: ModelSpec, strategy: str, batch_size: int, args, peak_flops: float | None) -> dict:
    from accelerate.utils import set_seed

    with tempfile.TemporaryDirectory(prefix="bench_gpu-") as tmp:
        work_dir = Path(tmp)
        recipe = recipe_for(spec, strategy, batch_size, args, work_dir)
        accelerator = fresh_accelerator(args.precision)
        device = accelerator.device
        set_seed(recipe.train.seed)
        splits, plan = plan_for(spec, recipe, args, accelerator, batch_size * (args.warmup + args.steps))
        total = sum(p.numel() for p in plan.model.parameters())
        trainable = sum(p.numel() for p in plan.model.parameters() if p.requires_grad)
        sample = plan.collate_fn([plan.train[0], plan.train[1]])
        counted = counted_flops_per_sample(plan.model, sample, device)
        formula = formula_flops_per_sample(spec, plan.model, args.seq_len)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timer = StepTimer(args.warmup, args.steps, device)
        (work_dir / "loop").mkdir()
        loop = TrainingLoop(recipe, accelerator, work_dir / "loop", splits.label_names, callbacks=[timer])
        loop.run(plan)
        del loop, plan, sample
        accelerator.free_memory()  # drops its references to the model and optimizer, collects, empties the cache

    checkpoint = spec.checkpoint if spec.checkpoint != "bert" else "BertConfig" + (" (tiny)" if args.tiny else "()")
    samples_per_s = args.steps * batch_size / timer.seconds
    achieved = counted * samples_per_s
    return {
        "model": spec.name,
        "checkpoint": checkpoint,
        "strategy": strategy,
        "batch_size": batch_size,
        "seq_len": args.seq_len if spec.task == "text-classification" else None,
        "params_total": total,
        "params_trainable": trainable,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "seconds": timer.seconds,
        "samples_per_s": samples_per_s,
        "flops_per_sample": counted,
        "formula_flops_per_sample": formula,
        "achieved_flops": achieved,
        "mfu": achieved / peak_flops if peak_flops else None,
        "peak_memory_bytes": timer.peak_memory,
    }


# --- report --------------------------------------------------------------------------------------------------------
def memory_ratios(rows: list[dict]) -> dict[str, float | None]:
    """LoRA peak memory / full fine-tune peak memory, per model that has both rows (None where not measured)."""
    peaks = {(r["model"], r["strategy"]): r["peak_memory_bytes"] for r in rows}
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        if (model, "finetune") in peaks and (model, "lora") in peaks:
            full, lora = peaks[model, "finetune"], peaks[model, "lora"]
            out[model] = lora / full if full and lora else None
    return out


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_report(result: dict) -> str:
    lines = [
        f"device: {result['device']}; peak bf16 used for MFU: "
        + (f"{result['peak_flops'] / 1e12:.0f} TFLOP/s" if result["peak_flops"] else "n/a (give --peak-tflops)"),
        f"precision: {result['precision']}; text rows: {result['seq_len']} tokens a sample; warm-up "
        f"{result['warmup_steps']} steps, timed {result['timed_steps']} steps",
        "",
        "| model | mode | batch | samples/s | GFLOP/sample (counted / formula) | TFLOP/s | MFU | peak memory |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        formula = "n/a" if r["formula_flops_per_sample"] is None else f"{r['formula_flops_per_sample'] / 1e9:.2f}"
        mode = "full fine-tune" if r["strategy"] == "finetune" else r["strategy"]
        lines.append(
            f"| {r['model']} | {mode} | {r['batch_size']} | {r['samples_per_s']:.1f} | "
            f"{r['flops_per_sample'] / 1e9:.2f} / {formula} | {r['achieved_flops'] / 1e12:.2f} | {_pct(r['mfu'])} | "
            f"{_gib(r['peak_memory_bytes'])} |"
        )
    lines.append("")
    for model, ratio in result["lora_full_memory_ratio"].items():
        shown = "n/a (no GPU memory figures)" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"LoRA / full fine-tune peak memory, {model}: {shown} (goal <= 0.6x)")
    for r in result["rows"]:
        if r["model"] == "bert-base" and r["strategy"] == "finetune":
            lines.append(f"BERT-base full fine-tune MFU: {_pct(r['mfu'])} (goal >= 40%)")
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="Tiny models of the same families, a few steps (CPU smoke).")
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"Comma-separated model:strategy (default {DEFAULT_ROWS}).")
    p.add_argument("--steps", type=int, default=None, help="Timed optimizer steps (default 30; --tiny 2).")
    p.add_argument("--warmup", type=int, default=None, help="Untimed steps first (default 5; --tiny 1).")
    p.add_argument("--seq-len", type=int, default=None, help="Tokens a text sample (default 128; --tiny 16).")
    p.add_argument("--bert-batch-size", type=int, default=None, help="Default 256 (--tiny 4).")
    p.add_argument("--vit-batch-size", type=int, default=None, help="Default 256 (--tiny 4).")
    p.add_argument("--resnet-batch-size", type=int, default=None, help="Default 256 (--tiny 4).")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (alpha = 2r, dropout 0.1).")
    p.add_argument("--precision", choices=["bf16", "no"], default="bf16", help="The loop's mixed precision.")
    p.add_argument("--peak-tflops", type=float, default=None, help="Peak dense bf16 TFLOP/s of the device for MFU.")
    p.add_argument("--json", help="Also write the results to this file.")
    args = p.parse_args(argv)
    defaults = {"steps": (30, 2), "warmup": (5, 1), "seq_len": (128, 16)}
    defaults |= {f"{m}_batch_size": (256, 4) for m in ("bert", "vit", "resnet")}
    for name, (full, tiny) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    for name in ("steps", "warmup", "seq_len", "lora_r", *(f"{m}_batch_size" for m in ("bert", "vit", "resnet"))):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1 (the warm-up step absorbs start-up costs).")
    specs = model_specs(args.tiny)
    args.row_list = []
    for item in args.rows.split(","):
        model, _, strategy = item.strip().partition(":")
        if model not in specs or strategy not in ("finetune", "lora"):
            p.error(f"--rows: '{item}' is not model:strategy with a model in {sorted(specs)} and finetune or lora.")
        args.row_list.append((specs[model], strategy))
    return args


def batch_size_of(spec: ModelSpec, args) -> int:
    return {"bert-base": args.bert_batch_size, "vit-b16": args.vit_batch_size, "resnet50": args.resnet_batch_size}[
        spec.name
    ]


def main(argv=None) -> dict:
    args = parse_args(argv)
    if torch.cuda.is_available():
        device_name = torch.cuda.get_device_name()
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops_of(device_name)
    else:
        device_name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        peak = args.peak_tflops * 1e12 if args.peak_tflops else None
        if not args.tiny:
            print("No GPU found: the real sizes take hours on a CPU; --tiny is the CPU smoke run.", file=sys.stderr)
    rows = [run_row(spec, strategy, batch_size_of(spec, args), args, peak) for spec, strategy in args.row_list]
    result = {
        "device": device_name,
        "peak_flops": peak,
        "precision": args.precision,
        "seq_len": args.seq_len,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "tiny": args.tiny,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "rows": rows,
        "lora_full_memory_ratio": memory_ratios(rows),
    }
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
