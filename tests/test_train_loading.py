"""How the training loop reads rows: the length-grouped sampler, worker processes, seeded per-row random state and
batched reads. These change how fast rows arrive, never which rows or what they hold (issue 12)."""

from __future__ import annotations

import datasets
import pytest
import torch
import yaml
from accelerate import Accelerator
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_transfer.backbones import build_backbone
from hf_transfer.backbones.features import FeatureDataset
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.sections import TrainConfig
from hf_transfer.data.splits import load_splits
from hf_transfer.strategies.factory import build_strategy
from hf_transfer.train.loading import SeededRows, build_train_sampler, resolve_num_workers
from hf_transfer.train.loop import TrainingLoop
from hf_transfer.train.plan import TrainingPlan


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 128), min_size=1, max_size=200),
    batch_size=st.integers(1, 32),
    epoch=st.integers(0, 5),
)
def test_batches_grouped_by_length_hold_every_row_once_per_epoch(lengths, batch_size, epoch):
    rows = list(range(len(lengths)))
    plan = TrainingPlan(model=None, param_groups=[], train=rows, evals={}, train_lengths=lengths)
    grouped = build_train_sampler(plan, TrainConfig(batch_size=batch_size, group_by_length=True, seed=1))
    shuffled = build_train_sampler(plan, TrainConfig(batch_size=batch_size, group_by_length=False, seed=1))
    grouped.set_epoch(epoch)
    shuffled.set_epoch(epoch)
    assert sorted(grouped) == sorted(shuffled) == rows
    assert len(grouped) == len(lengths)


def _image_loop(tmp_path, checkpoint, csvs, workers):
    recipe = {
        "description": "workers",
        "task": "image-classification",
        "model": {"checkpoint": str(checkpoint)},
        "data": {"train_files": [str(csvs["train"])], "test_files": [str(csvs["test"])], "augment": "model"},
        "strategy": "finetune",
        "train": {"epochs": 2, "batch_size": 8, "seed": 3, "num_workers": workers},
        "output": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / f"workers-{workers}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    recipe = load_recipe(str(path))
    backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
    columns, fields = backbone.required_columns()
    splits = load_splits(recipe.data, columns, fields, recipe.train.seed, check_rows=backbone.check_rows)
    plan = build_strategy(recipe.strategy, backbone).plan(splits, recipe, Accelerator(cpu=True))
    loop = TrainingLoop(recipe, Accelerator(cpu=True), tmp_path / f"work-{workers}", splits.label_names)
    loader, _ = loop._setup_data(plan)
    return loader


def _epoch_batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [(b["pixel_values"].clone(), b["labels"].clone()) for b in loader]


def test_workers_give_the_same_augmented_batches_as_the_main_process(tmp_path, tiny_timm_dir, digits_csv):
    main = _image_loop(tmp_path, tiny_timm_dir, digits_csv, 0)
    workers = _image_loop(tmp_path, tiny_timm_dir, digits_csv, 2)
    assert workers.num_workers == 2 and workers.persistent_workers
    for epoch in (0, 1, 0):  # and an epoch read again (a resume) is read the same
        expected, got = _epoch_batches(main, epoch), _epoch_batches(workers, epoch)
        assert len(got) == len(expected)
        for (pixels, labels), (want_pixels, want_labels) in zip(got, expected):
            assert torch.equal(labels, want_labels)
            assert torch.equal(pixels, want_pixels)
    # not vacuous: augmentation does draw, differently for each epoch (the order differs too, so sort by content)
    first, second = _epoch_batches(main, 0), _epoch_batches(main, 1)
    sums = [sorted(torch.cat([p for p, _ in batches]).sum(dim=(1, 2, 3)).tolist()) for batches in (first, second)]
    assert sums[0] != pytest.approx(sums[1])


def test_reading_rows_leaves_the_main_process_random_state_alone(tmp_path, tiny_timm_dir, digits_csv):
    loader = _image_loop(tmp_path, tiny_timm_dir, digits_csv, 0)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    _epoch_batches(loader, 0)
    assert torch.equal(torch.rand(3), expected)  # dropout masks do not depend on how rows were augmented


def test_num_workers_auto_uses_half_the_cores_for_images_and_none_for_text(monkeypatch):
    monkeypatch.setattr("hf_transfer.train.loading.available_cores", lambda: 6)
    assert resolve_num_workers("auto", "image", [0, 1]) == 3
    assert resolve_num_workers("auto", "text", [0, 1]) == 0
    monkeypatch.setattr("hf_transfer.train.loading.available_cores", lambda: 64)
    assert resolve_num_workers("auto", "image", [0, 1]) == 8
    assert resolve_num_workers(5, "text", [0, 1]) == 5  # a number is taken as given
    on_gpu = torch.zeros(1, device="meta")  # stands for a CUDA tensor: rows already on a device, nothing to load
    assert resolve_num_workers("auto", "image", [{"pixel_values": on_gpu}]) == 0


def test_num_workers_auto_is_zero_where_workers_cannot_get_the_data(monkeypatch):
    monkeypatch.setattr("hf_transfer.train.loading.available_cores", lambda: 8)
    monkeypatch.setattr("multiprocessing.get_start_method", lambda allow_none=False: "spawn")
    unpicklable = [lambda: None]  # a transform defined inside a function: spawned workers cannot receive it
    assert resolve_num_workers("auto", "image", unpicklable) == 0
    assert resolve_num_workers("auto", "image", [0, 1]) == 4


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.integers(0, 29), min_size=1, max_size=40), epoch=st.integers(0, 5))
def test_rows_that_draw_nothing_are_read_a_batch_at_a_time_and_equal_row_reads(rows, epoch):
    features = FeatureDataset(torch.randn(30, 4), torch.arange(30) % 3)
    text = datasets.Dataset.from_dict({"input_ids": [[i, i + 1] for i in range(30)], "labels": list(range(30))})
    for dataset in (features, text):
        seeded = SeededRows(dataset, seed=0)
        assert not seeded.seeded  # no augmentation: the per-row random state would cost ~0.5 ms a row for nothing
        keys = [(epoch, row) for row in rows]
        batch = seeded.__getitems__(keys)
        for got, row in zip(batch, rows, strict=True):
            expected = dataset[row]
            assert set(got) == set(expected)
            for key in expected:
                assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(expected[key]))


def test_rows_read_through_a_transform_keep_their_seeded_random_state():
    images = datasets.Dataset.from_dict({"x": list(range(8))})
    images.set_transform(lambda batch: {"x": [torch.rand(()) + v for v in batch["x"]]})  # an augmentation's draw
    seeded = SeededRows(images, seed=3)
    assert seeded.seeded
    first, again = seeded.__getitems__([(1, 5), (2, 5)]), seeded.__getitems__([(1, 5), (2, 5)])
    assert torch.equal(first[0]["x"], again[0]["x"]) and not torch.equal(first[0]["x"], first[1]["x"])
