"""Checkpoints hold what trains, and a save that fails part-way leaves the previous checkpoint for --resume, deleting
nothing that is not the loop's."""

from __future__ import annotations

from pathlib import Path

import accelerate.accelerator
import pytest
from helpers import metrics_of, text_recipe
from safetensors.torch import load_file

import hf_transfer
from hf_transfer.train.plan import Callback


class Crash(Exception):
    pass


class CrashAtStep(Callback):
    def __init__(self, step: int, check=None):
        self.step, self.check = step, check

    def on_step_end(self, step: int, epoch: int) -> None:
        if step == self.step:
            if self.check:
                self.check()
            raise Crash(f"simulated crash at step {step}")


def _size(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _checkpoints(tmp_path, name):
    return tmp_path / "outputs" / f"{name}.incomplete" / "target" / "checkpoints"


def test_a_lora_checkpoint_holds_the_adapter_and_head_not_the_model(tmp_path, tiny_bert_dir, keyword_csvs):
    train = {"epochs": 2, "save_every_steps": 5}
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora", name="lora", train=train))
    with pytest.raises(Crash):
        hf_transfer.run(recipe, callbacks=[CrashAtStep(7)])
    checkpoint = _checkpoints(tmp_path, "lora") / "step-5"
    model_bytes = (tiny_bert_dir / "model.safetensors").stat().st_size
    # 222 KB of tiny BERT: its weights in a checkpoint were 222 KB, the adapter and head are 17 KB; with the
    # optimizer's moments, scheduler and RNG states (14 KB whatever the model) the checkpoint was 289 KB, now 69 KB
    assert (checkpoint / "model.safetensors").stat().st_size < model_bytes / 10
    assert _size(checkpoint) < model_bytes / 3
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert any("lora_A" in name for name in saved) and any("classifier" in name for name in saved)
    assert not any("word_embeddings" in name for name in saved)  # frozen: rebuilt from the checkpoint on resume


def fail_save(monkeypatch, on_call: int):
    """The `on_call`-th checkpoint save fails part-way: the model file is written, the optimizer's is cut short."""
    real = accelerate.accelerator.save_accelerator_state
    calls = {"n": 0}

    def failing(output_dir, *args, **kwargs):
        calls["n"] += 1
        result = real(output_dir, *args, **kwargs)
        if calls["n"] == on_call:
            optimizer = next(p for p in Path(output_dir).iterdir() if p.name.startswith("optimizer"))
            optimizer.write_bytes(optimizer.read_bytes()[:100])
            raise OSError(28, "No space left on device")
        return result

    monkeypatch.setattr(accelerate.accelerator, "save_accelerator_state", failing)


# 216 train rows / batch 16 = 14 steps an epoch; with a checkpoint every 7 steps the saves are: step 7, step 14
# (periodic), step 14 (the epoch's end, the same step), step 21, ...
@pytest.mark.parametrize(
    "failing_save, kept",
    [(2, "step-7"), (3, "step-14")],
    ids=["a new step", "the same step again at the epoch's end"],
)
def test_a_save_that_fails_part_way_leaves_the_previous_checkpoint_to_resume_from(
    tmp_path, tiny_bert_dir, keyword_csvs, monkeypatch, failing_save, kept
):
    train = {"epochs": 2, "save_every_steps": 7}
    straight = hf_transfer.run(
        str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", name="straight", train=train))
    )
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", name="failed", train=train))
    with monkeypatch.context() as patch:
        fail_save(patch, failing_save)
        with pytest.raises(OSError, match="No space left"):
            hf_transfer.run(recipe)
    checkpoints = _checkpoints(tmp_path, "failed")
    assert sorted(p.name for p in checkpoints.iterdir()) == [kept]  # the good one, and no half-written one
    resumed = hf_transfer.run(recipe, resume=True)
    a, b = metrics_of(straight), metrics_of(resumed)
    assert [h["eval_loss"] for h in b["history"]] == pytest.approx([h["eval_loss"] for h in a["history"]], rel=1e-5)
    assert b["test"]["log_loss"] == pytest.approx(a["test"]["log_loss"], rel=1e-5)


def test_saving_checkpoints_deletes_nothing_that_is_not_the_loops(tmp_path, tiny_bert_dir, keyword_csvs):
    train = {"epochs": 2, "save_every_steps": 5}
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora", name="mine", train=train))
    with pytest.raises(Crash):
        hf_transfer.run(recipe, callbacks=[CrashAtStep(7)])
    checkpoints = _checkpoints(tmp_path, "mine")
    (checkpoints / "notes").mkdir()
    (checkpoints / "notes" / "what I tried.txt").write_text("lr 1e-3")
    (checkpoints / "step-5-backup").mkdir()
    (checkpoints / "README.txt").write_text("mine")
    seen = []

    def look():
        seen.extend(sorted(p.name for p in checkpoints.iterdir()))

    with pytest.raises(Crash):
        hf_transfer.run(recipe, resume=True, callbacks=[CrashAtStep(16, check=look)])
    assert seen == ["README.txt", "notes", "step-15", "step-5-backup"]
    assert (checkpoints / "notes" / "what I tried.txt").read_text() == "lr 1e-3"


@pytest.fixture
def checkpointer(tmp_path):
    from accelerate import Accelerator

    from hf_transfer.train.checkpointing import Checkpointer

    return Checkpointer(Accelerator(cpu=True), tmp_path / "work")


def _checkpoint_folder(root, name, whole=True):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"...")
    if whole:
        (folder / "trainer_state.json").write_text("{}")


# What a kill at each point of a save leaves, and the checkpoint --resume must take from it.
@pytest.mark.parametrize(
    "left, resumed_from",
    [
        ({"step-5": True, "step-10.partial": False}, "step-5"),  # killed inside save_state
        ({"step-5": True, "step-10.partial": True}, "step-5"),  # killed before the rename
        ({"step-14.previous": True, "step-14.partial": True}, "step-14.previous"),  # between the two renames
        ({"step-14.previous": True, "step-14": True}, "step-14"),  # before the old one was deleted
        ({"step-7": True, "step-14": True}, "step-14"),
    ],
)
def test_resume_takes_the_newest_whole_checkpoint_a_kill_left(checkpointer, left, resumed_from):
    for name, whole in left.items():
        _checkpoint_folder(checkpointer.checkpoint_dir, name, whole)
    assert checkpointer.latest().name == resumed_from


def test_a_best_weights_save_that_fails_part_way_keeps_the_previous_best(checkpointer, monkeypatch):
    import torch

    import hf_transfer.train.checkpointing as checkpointing

    model = torch.nn.Linear(4, 2)
    checkpointer.work_dir.mkdir(parents=True)
    checkpointer.save_best(model)
    best = checkpointer.work_dir / "best.safetensors"
    before = best.read_bytes()
    real_save = checkpointing.save_file

    def disk_full(tensors, filename, *args, **kwargs):
        real_save(tensors, filename, *args, **kwargs)
        with open(filename, "r+b") as f:
            f.truncate(10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpointing, "save_file", disk_full)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(OSError):
        checkpointer.save_best(model)
    assert best.read_bytes() == before
    assert sorted(p.name for p in checkpointer.work_dir.iterdir()) == ["best.safetensors"]
