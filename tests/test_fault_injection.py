"""Fault injection on the write paths this package owns: publishing a run folder (replacing an old one) and staging
a push. Whatever fails or is killed part-way, the run folder is the old one or the new one, complete, and nothing
that is not hf-transfer's own is deleted."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hf_transfer
import hf_transfer.hub.push as hub_push
import hf_transfer.hub.stage as hub_stage
import hf_transfer.runs.folder as run_folder
from hf_transfer.core.errors import HfTransferError, HubError
from hf_transfer.runs.folder import METADATA_FILE, check_can_write, publish


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fake_run(folder: Path, tag: str) -> Path:
    """A run folder as publish sees it: the metadata file and some weights, each file saying which run it is."""
    (folder / "sub").mkdir(parents=True)
    (folder / METADATA_FILE).write_text(f'{{"format": 1, "run": "{tag}"}}')
    (folder / "model.safetensors").write_bytes(tag.encode() * 1000)
    (folder / "sub" / "config.json").write_text(f'{{"run": "{tag}"}}')
    return folder


@pytest.fixture
def old_and_new(tmp_path):
    run_dir = fake_run(tmp_path / "run", "old")
    staging = fake_run(tmp_path / "run.incomplete" / "final", "new")
    return run_dir, staging, digest(run_dir), digest(staging)


def leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.parent.iterdir() if p.name.startswith(f".{run_dir.name}."))


# ---------------------------------------------------------------------------------------------------------------
# Publish: failures raised part-way


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_publish_replaces_an_old_run_completely(old_and_new, monkeypatch, exchange):
    run_dir, staging, _, new = old_and_new
    if not exchange:
        monkeypatch.setattr(run_folder, "_exchange", lambda a, b: False)
    publish(staging, run_dir)
    assert digest(run_dir) == new
    assert not staging.exists() and leftovers(run_dir) == []


def test_the_atomic_exchange_is_used_on_linux(old_and_new, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux's")
    run_dir, staging, _, new = old_and_new
    monkeypatch.setattr(os, "replace", lambda *a: pytest.fail("two renames where one exchange would do"))
    publish(staging, run_dir)
    assert digest(run_dir) == new


def test_a_failing_second_rename_puts_the_old_run_back(old_and_new, monkeypatch):
    run_dir, staging, old, new = old_and_new
    monkeypatch.setattr(run_folder, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the old run is out of the way, the new one not yet in place
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        publish(staging, run_dir)
    assert digest(run_dir) == old and digest(staging) == new
    assert leftovers(run_dir) == []


def test_a_failing_exchange_leaves_both_folders_as_they_were(old_and_new, monkeypatch):
    run_dir, staging, old, new = old_and_new

    def broken(a, b):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(run_folder, "_exchange", broken)
    with pytest.raises(OSError):
        publish(staging, run_dir)
    assert digest(run_dir) == old and digest(staging) == new


def test_publish_never_replaces_what_appeared_at_the_run_folder_during_training(tmp_path):
    run_dir = tmp_path / "run"
    check_can_write(run_dir, overwrite=True, resume=False)  # nothing there when the run started ...
    staging = fake_run(tmp_path / "run.incomplete" / "final", "new")
    (run_dir / "notes").mkdir(parents=True)  # ... then someone put their work there
    (run_dir / "notes" / "thesis.tex").write_text("keep")
    with pytest.raises(HfTransferError, match="not an hf-transfer run folder"):
        publish(staging, run_dir)
    assert (run_dir / "notes" / "thesis.tex").read_text() == "keep"
    assert digest(staging) and (staging / METADATA_FILE).is_file()  # the new run waits in the work folder


# ---------------------------------------------------------------------------------------------------------------
# Publish: a process killed (SIGKILL) at a chosen point

KILLER = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    import hf_transfer.runs.folder as run_folder

    point, run_dir, staging = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "before-exchange":
        run_folder._exchange = die
    elif point == "between-renames":
        run_folder._exchange = lambda a, b: False
        real, calls = os.replace, []
        def replace(src, dst):
            calls.append(src)
            if len(calls) == 2:
                die()
            real(src, dst)
        run_folder.os.replace = replace
    elif point == "while-deleting-the-old":
        real_rmtree = shutil.rmtree
        def rmtree(path, *args, **kwargs):
            # delete part of the old run, then die
            next(p for p in Path(path).rglob("*") if p.is_file()).unlink()
            die()
        run_folder.shutil.rmtree = rmtree
    run_folder.publish(staging, run_dir)
    """
)


@pytest.mark.parametrize("point", ["before-exchange", "between-renames", "while-deleting-the-old"])
def test_a_publish_killed_part_way_leaves_the_old_run_or_the_new_one(old_and_new, point):
    run_dir, staging, old, new = old_and_new
    done = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(run_dir), str(staging)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(Path(hf_transfer.__file__).parents[1])},
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    # What the next run (or `hf-transfer predict`) finds once it checks the folder:
    check_can_write(run_dir, overwrite=True, resume=True)
    assert digest(run_dir) in (old, new)
    assert leftovers(run_dir) == []
    if point == "while-deleting-the-old":
        assert digest(run_dir) == new


def test_a_stranded_old_run_is_not_put_back_over_a_new_one(tmp_path):
    run_dir = fake_run(tmp_path / "run", "new")
    stranded = fake_run(tmp_path / ".run.replaced-123", "old")
    check_can_write(run_dir, overwrite=True, resume=False)
    assert digest(run_dir)["model.safetensors"] == hashlib.sha256(b"new" * 1000).hexdigest()
    assert stranded.exists()  # not ours to decide about once a newer run is in place


# ---------------------------------------------------------------------------------------------------------------
# Push staging: failures and kills part-way never touch the run folder


@pytest.fixture
def run_copy(probe_run_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(probe_run_dir, run)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    return run, temp, digest(run)


@pytest.mark.parametrize(
    ("failing", "at_call"), [("copyfile", 2), ("write_record", 1), ("write_yaml", 1), ("card", 1)]
)
def test_push_staging_failing_part_way_leaves_the_run_folder_and_no_staging(run_copy, monkeypatch, failing, at_call):
    run, temp, before = run_copy
    calls = []

    def failing_at(real):
        def wrapper(*args, **kwargs):
            calls.append(args)
            if len(calls) == at_call:
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)

        return wrapper

    if failing == "copyfile":
        monkeypatch.setattr(hub_stage.shutil, "copyfile", failing_at(shutil.copyfile))
    elif failing == "card":
        import hf_transfer.runs.card as model_card

        monkeypatch.setattr(model_card, "build_model_card", failing_at(model_card.build_model_card))
    else:
        monkeypatch.setattr(hub_stage, failing, failing_at(getattr(hub_stage, failing)))
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    monkeypatch.setattr(hub_push, "_send", lambda *a, **k: pytest.fail("a failed staging must send nothing"))
    for dry_run in (True, False):
        calls.clear()
        with pytest.raises(OSError, match="No space left"):
            hub_push.push_run(run, "tester/fault", dry_run=dry_run)
        assert digest(run) == before
        assert list(temp.iterdir()) == []  # the staging folder went with the failure


def test_a_push_killed_while_staging_leaves_the_run_folder(run_copy):
    run, temp, before = run_copy
    script = textwrap.dedent(
        """
        import os, signal, sys
        import hf_transfer.hub.push as hub
        import hf_transfer.hub.stage as stage
        real = stage.write_yaml
        def die_midway(path, data):
            real(path, data)
            os.kill(os.getpid(), signal.SIGKILL)
        stage.write_yaml = die_midway
        hub.push_run(sys.argv[1], "tester/killed", dry_run=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(run)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(Path(hf_transfer.__file__).parents[1])},
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert digest(run) == before
    # The half-built staging folder is in the system's temporary folder, never beside or inside the run.
    assert [p.name.startswith("hf_transfer-push-") for p in temp.iterdir()] == [True]
    assert sorted(p.name for p in run.parent.iterdir()) == ["run", "tmp"]


def test_a_successful_push_leaves_the_run_folder_byte_for_byte(run_copy, monkeypatch):
    run, _, before = run_copy
    sent = []
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    monkeypatch.setattr(hub_push, "_send", lambda staging, *a: sent.append(digest(staging)))
    hub_push.push_run(run, "tester/fine")
    assert sent and digest(run) == before


def test_a_refused_push_leaves_no_staging_behind(run_copy, monkeypatch):
    run, temp, _ = run_copy
    (run / "notes.txt").write_text("hf_" + "Q" * 34)
    monkeypatch.setattr(hub_push, "_send", lambda *a, **k: pytest.fail("sent"))
    with pytest.raises(HubError, match="refusing to push: notes.txt"):
        hub_push.push_run(run, "tester/fine", dry_run=True)
    assert list(temp.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# The one atomic-write helper every file write of the package goes through


@given(
    old=st.binary(max_size=64), new=st.binary(min_size=1, max_size=64), fail_at=st.sampled_from(["write", "rename"])
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, old, new, fail_at):
    folder = tmp_path / f"case-{uuid.uuid4().hex}"
    folder.mkdir()
    target = folder / "metrics.json"
    target.write_bytes(old)

    def writer(tmp: Path) -> None:
        tmp.write_bytes(new[: len(new) // 2])  # half written, then the disk fills
        if fail_at == "write":
            raise OSError(28, "No space left on device")
        tmp.write_bytes(new)

    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError(18, "Invalid cross-device link")

    os.replace = failing_replace if fail_at == "rename" else real_replace
    try:
        with pytest.raises(OSError):
            run_folder.atomic_write(target, writer, fsync=True)
    finally:
        os.replace = real_replace
    assert target.read_bytes() == old
    assert [p.name for p in folder.iterdir()] == ["metrics.json"]

    run_folder.atomic_write(target, lambda tmp: tmp.write_bytes(new))
    assert target.read_bytes() == new
    assert [p.name for p in folder.iterdir()] == ["metrics.json"]
