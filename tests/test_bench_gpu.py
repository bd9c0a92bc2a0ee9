"""benchmarks/bench_gpu.py: its CPU smoke mode runs the package's own loop end to end, counts FLOPs honestly, and
reports MFU and the LoRA/full memory ratio only where they are measurable."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_script()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One --tiny run of the four issue rows, 1 warm-up + 1 timed step each, with an assumed 1 TFLOP/s peak."""
    out = tmp_path_factory.mktemp("bench_gpu") / "result.json"
    result = bench.main(["--tiny", "--steps", "1", "--peak-tflops", "1", "--json", str(out)])
    return result, out


def test_tiny_run_trains_every_row_through_the_loop_and_writes_the_json(tiny_run):
    result, out = tiny_run
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {(r["model"], r["strategy"]): r for r in result["rows"]}
    assert list(rows) == [
        ("bert-base", "finetune"),
        ("bert-base", "lora"),
        ("vit-b16", "lora"),
        ("resnet50", "finetune"),
    ]
    for row in rows.values():
        assert row["samples_per_s"] > 0 and row["seconds"] > 0
        assert row["samples_per_s"] == pytest.approx(row["batch_size"] * row["timed_steps"] / row["seconds"])
        assert row["mfu"] == pytest.approx(row["flops_per_sample"] * row["samples_per_s"] / 1e12)
        assert row["peak_memory_bytes"] is None  # no GPU: no allocator figure to report
    # LoRA trains a small share of the parameters (adapters + the new head); a full fine-tune trains all of them.
    assert rows["bert-base", "finetune"]["params_trainable"] == rows["bert-base", "finetune"]["params_total"]
    assert rows["bert-base", "lora"]["params_trainable"] < 0.1 * rows["bert-base", "lora"]["params_total"]
    assert result["lora_full_memory_ratio"] == {"bert-base": None}


def test_flops_are_counted_as_autograd_runs_them(tiny_run):
    rows = {(r["model"], r["strategy"]): r for r in tiny_run[0]["rows"]}
    full, lora = rows["bert-base", "finetune"], rows["bert-base", "lora"]
    # A full fine-tune costs ~6 FLOPs per weight and token: the count agrees with 6*N*tokens + attention (the
    # formula over-counts the pooler and head, which see one token, not all of them).
    assert full["flops_per_sample"] == pytest.approx(full["formula_flops_per_sample"], rel=0.1)
    # Frozen weights skip their weight gradients: LoRA is not credited with the 6*N of a full fine-tune.
    assert 0.5 < lora["flops_per_sample"] / full["flops_per_sample"] < 0.8
    vit = rows["vit-b16", "lora"]
    assert vit["flops_per_sample"] == pytest.approx(vit["formula_flops_per_sample"], rel=0.2)
    assert rows["resnet50", "finetune"]["formula_flops_per_sample"] is None  # 4.1 GMACs is for ResNet-50 at 224 px


def test_report_prints_one_table_with_n_a_where_nothing_was_measured(tiny_run):
    result, _ = tiny_run
    text = bench.format_report(result | {"peak_flops": None, "rows": [r | {"mfu": None} for r in result["rows"]]})
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    table = lines[header + 2 : header + 6]
    assert [line.split("|")[1:3] for line in table] == [
        [" bert-base ", " full fine-tune "],
        [" bert-base ", " lora "],
        [" vit-b16 ", " lora "],
        [" resnet50 ", " full fine-tune "],
    ]
    assert all(line.split("|")[7:9] == [" n/a ", " n/a "] for line in table)  # MFU and peak memory
    assert "give --peak-tflops" in text
    assert "LoRA / full fine-tune peak memory, bert-base: n/a" in text


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H200", 989e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA GeForce RTX 3090", None),
    ],
)
def test_peak_flops_by_device_name(name, peak):
    assert bench.peak_flops_of(name) == peak


def _row(model, strategy, peak):
    return {"model": model, "strategy": strategy, "peak_memory_bytes": peak}


@given(full=st.integers(1, 2**40), lora=st.integers(1, 2**40))
def test_memory_ratio_is_lora_over_full_per_model(full, lora):
    rows = [_row("bert-base", "lora", lora), _row("vit-b16", "lora", 5), _row("bert-base", "finetune", full)]
    # vit-b16 has no full fine-tune row: no ratio for it
    assert bench.memory_ratios(rows) == {"bert-base": pytest.approx(lora / full)}


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--rows", "bert-base:ia3"], "--rows: 'bert-base:ia3'"),
        (["--rows", "gpt2:finetune"], "--rows: 'gpt2:finetune'"),
        (["--warmup", "0"], "--warmup must be at least 1"),
    ],
)
def test_bad_arguments_name_the_flag(argv, complaint, capsys):
    with pytest.raises(SystemExit) as info:
        bench.parse_args(argv)
    assert info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_sizes_default_to_the_real_models_and_tiny_shrinks_them():
    real, tiny = bench.parse_args([]), bench.parse_args(["--tiny"])
    assert (real.seq_len, real.bert_batch_size, real.warmup) == (128, 256, 5)
    assert [(s.checkpoint, s.image_size) for s, _ in real.row_list] == [
        ("bert", None),
        ("bert", None),
        ("vit_base_patch16_224", None),
        ("resnet50", None),
    ]
    assert tiny.seq_len == 16 and all(s.image_size == 32 for s, _ in tiny.row_list[2:])
