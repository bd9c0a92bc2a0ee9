"""The one loop: resume ends where an uninterrupted run ends, NaN stops the run, several processes work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from crashes import Crash, CrashAtStep
from helpers import metrics_of, text_recipe

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.core.accelerator import resolve_mixed_precision
from hf_transfer.core.errors import TrainingDivergedError
from hf_transfer.train.plan import Callback


@pytest.mark.parametrize("strategy", ["finetune", "lora"])
def test_resume_after_a_crash_ends_like_an_uninterrupted_run(tmp_path, tiny_bert_dir, keyword_csvs, strategy):
    # 216 train rows / batch 16 = 14 steps an epoch; checkpoints every 5 steps and at each epoch end.
    train = {"epochs": 3, "learning_rate": 1e-3, "save_every_steps": 5}
    straight = hf_transfer.run(
        str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, strategy, name="straight", train=train))
    )
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, strategy, name="crashed", train=train))
    with pytest.raises(Crash):
        hf_transfer.run(recipe, callbacks=[CrashAtStep(23)])  # in epoch 2, 3 steps after the step-20 checkpoint
    run_dir = tmp_path / "outputs" / "crashed"
    assert not run_dir.exists()  # a crash leaves no half-written run folder ...
    checkpoint = tmp_path / "outputs" / "crashed.incomplete" / "target" / "checkpoints" / "step-20"
    assert checkpoint.is_dir()  # ... but a checkpoint to resume from
    resumed = hf_transfer.run(recipe, resume=True)
    a, b = metrics_of(straight), metrics_of(resumed)
    for split in ("validation", "test"):
        assert b[split]["accuracy"] == a[split]["accuracy"]
        assert b[split]["log_loss"] == pytest.approx(a[split]["log_loss"], rel=1e-5)
    assert [h["eval_loss"] for h in b["history"]] == pytest.approx([h["eval_loss"] for h in a["history"]], rel=1e-5)
    assert not (tmp_path / "outputs" / "crashed.incomplete").exists()


def test_an_interrupted_run_asks_for_resume(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 2}))
    with pytest.raises(Crash):
        hf_transfer.run(recipe, callbacks=[CrashAtStep(3)])
    assert main(["run", recipe]) == 2
    assert "add --resume" in capsys.readouterr().err


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny_bert_dir, keyword_csvs):
    train = {
        "epochs": 3,
        "optimizer": "sgd",
        "learning_rate": 1e4,
        "max_grad_norm": None,
        "momentum": 0.0,
        "scheduler": "constant",
        "log_every_steps": 1,
        "save_every_steps": 1,
    }
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train=train))
    with pytest.raises(TrainingDivergedError) as info:
        hf_transfer.run(recipe)
    message = str(info.value)
    assert "the training loss became" in message and "Lower train.learning_rate" in message
    assert not (tmp_path / "outputs" / "run").exists()
    checkpoints = list((tmp_path / "outputs" / "run.incomplete" / "target" / "checkpoints").iterdir())
    assert len(checkpoints) == 1 and str(checkpoints[0]) in message


def test_early_stopping_and_best_checkpoint(tmp_path, tiny_bert_dir, keyword_csvs):
    # A learning rate of ~0 cannot improve validation loss after the first epoch: patience 2 stops at epoch 3.
    train = {"epochs": 8, "learning_rate": 1e-12, "early_stopping_patience": 2}
    run_dir = hf_transfer.run(
        str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train=train, eval={"metric": "log_loss"}))
    )
    metrics = metrics_of(run_dir)
    assert metrics["stopped_early"] is True
    assert len(metrics["history"]) < 8
    best = min(metrics["history"], key=lambda h: h["eval_loss"])
    assert metrics["best_epoch"] == best["epoch"]


def test_history_holds_the_validation_loss_once(tmp_path, tiny_bert_dir, keyword_csvs):
    run_dir = hf_transfer.run(
        str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 2}))
    )
    history = metrics_of(run_dir)["history"]
    # training_curves.png draws every history key ending in "loss": log_loss beside eval_loss drew one curve twice
    assert [[key for key in entry if key.endswith("loss")] for entry in history] == [["train_loss", "eval_loss"]] * 2


def test_mixed_precision_bf16_runs_on_cpu(tmp_path, tiny_bert_dir, keyword_csvs):
    run_dir = hf_transfer.run(
        str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora", train={"epochs": 1, "mixed_precision": "bf16"}))
    )
    metrics = metrics_of(run_dir)
    assert metrics["test"]["num_samples"] == 80
    assert metrics["mixed_precision"] == "bf16"  # the run folder records the precision it trained in


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, native):
    # Emulated bf16 is slower than fp32: auto must fall back to fp32 on a CPU without AVX512-BF16 or AMX.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_mixed_precision("auto", torch.device("cpu")) == ("bf16" if native else "no")


@pytest.mark.parametrize(
    ("setting", "gpu_bf16", "expected"),
    [("auto", True, "bf16"), ("auto", False, "no"), ("fp16", True, "fp16"), ("no", True, "no")],
)
def test_auto_precision_on_cuda_follows_the_gpu(monkeypatch, setting, gpu_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: gpu_bf16)
    assert resolve_mixed_precision(setting, torch.device("cuda")) == expected


def test_gradient_accumulation_counts_optimizer_steps(tmp_path, tiny_bert_dir, keyword_csvs):
    seen = []

    class Record(Callback):
        def on_step_end(self, step, epoch):
            seen.append(step)

    hf_transfer.run(
        str(
            text_recipe(
                tmp_path,
                tiny_bert_dir,
                keyword_csvs,
                "finetune",
                train={"epochs": 1, "gradient_accumulation_steps": 4},
            )
        ),
        callbacks=[Record()],
    )
    assert seen == [1, 2, 3, 4]  # 14 batches, an update every 4 (the last one after 2)


@pytest.mark.skipif(
    shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None,
    reason="accelerate's launcher is not installed beside this Python",
)
def test_same_code_runs_under_accelerate_launch_with_two_processes(tmp_path, tiny_bert_dir, keyword_csvs):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 2})
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    done = subprocess.run(
        [
            launcher,
            "launch",
            "--cpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "hf_transfer.apps.cli",
            "run",
            str(recipe),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = metrics_of(tmp_path / "outputs" / "run")
    # gather_for_metrics drops the samples padded in to even out the two shards: every row counted once
    assert metrics["test"]["num_samples"] == 80
    assert metrics["validation"]["num_samples"] == 24
    assert sum(sum(row) for row in metrics["test"]["confusion_matrix"]) == 80
    assert hf_transfer.load(tmp_path / "outputs" / "run").predict(["a good film"])[0]["label"] in ("neg", "pos")
