"""The command line: every subcommand works, and every user mistake is one sentence, exit code 2, nothing written."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import text_recipe

from hf_transfer.apps.cli import main


def hf_transfer_command() -> list[str]:
    script = Path(sys.executable).parent / "hf-transfer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hf_transfer.apps.cli"]


def cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*hf_transfer_command(), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_bert_dir, keyword_csvs):
    tmp = tmp_path_factory.mktemp("cli")
    recipe = text_recipe(tmp, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 10, "learning_rate": 1e-3})
    assert main(["run", str(recipe)]) == 0
    return tmp / "outputs" / "run"


def test_help_everywhere():
    for command in ([], ["run"], ["ls"], ["cp"], ["validate"], ["eval"], ["predict"], ["push"]):
        with pytest.raises(SystemExit) as info:
            main([*command, "--help"])
        assert info.value.code == 0


@pytest.mark.parametrize(
    "argv", [["--help"], ["ls"], ["validate", "sentiment/minilm-lora-rotten-tomatoes"], ["validate", "--help"]]
)
def test_recipe_commands_answer_without_loading_torch(argv):
    # A fresh process, as a user's shell starts one: `--help`, `ls` and `validate` only read YAML.
    code = (
        "import sys\n"
        "from hf_transfer.apps.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "assert code == 0, code\n"
        "heavy = ('torch', 'transformers', 'peft', 'timm', 'datasets', 'sklearn', 'numpy')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_ls_lists_shipped_recipes_with_descriptions(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("sentiment/minilm-lora-rotten-tomatoes"))
    assert "LoRA" in line


def test_cp_then_validate_the_copy(tmp_path, capsys):
    assert main(["cp", "sentiment/minilm-lora-rotten-tomatoes", str(tmp_path)]) == 0
    copy = tmp_path / "minilm-lora-rotten-tomatoes.yaml"
    assert copy.read_text().startswith("# Run:")
    assert main(["validate", str(copy), "strategy.r=4"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "strategy lora" in out and "Config" not in out  # the name a recipe uses
    assert main(["cp", "sentiment/minilm-lora-rotten-tomatoes", str(tmp_path)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err


def test_run_prints_the_metrics_table_and_predict_eval_work(trained_run, keyword_csvs, capsys):
    out = main(["predict", str(trained_run), "a wonderful fun film", "dull and awful", "--json"])
    assert out == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in predictions] == ["pos", "neg"]
    assert set(predictions[0]["probabilities"]) == {"neg", "pos"}

    assert main(["eval", str(trained_run), "--data", str(keyword_csvs["test"]), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    recorded = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"])
    assert metrics["confusion_matrix"] == recorded["confusion_matrix"]

    assert main(["eval", str(trained_run), "--data", str(keyword_csvs["test"])]) == 0
    table = capsys.readouterr().out
    assert "accuracy" in table and "confusion matrix" in table


def test_predict_reads_a_file(trained_run, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a wonderful fun film\n\ndull and awful\n")
    assert main(["predict", str(trained_run), "--file", str(texts)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]


def test_the_console_script_runs_as_a_process(trained_run):
    done = cli("predict", trained_run, "a wonderful fun film")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pos\t")


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def bad_inputs(tmp_path, tiny_bert_dir, keyword_csvs):
    """A valid recipe plus ways to break it, each with the phrase its error must contain."""
    good = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 1})
    rows = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"}] * 4
    unseen = _write_csv(tmp_path / "unseen.csv", [{"text": "meh", "label": "mixed"}])
    no_label = _write_csv(tmp_path / "no_label.csv", [{"text": r["text"], "sentiment": r["label"]} for r in rows])
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    return good, {
        "unknown key": (["train.epoch=1"], "unknown recipe key 'train.epoch' (did you mean 'epochs'?)"),
        "wrong type": (["train.batch_size=many"], "train.batch_size must be an integer"),
        "missing file": (["data.train_files=nope.csv"], "data.train_files: file 'nope.csv' does not exist"),
        "missing text column": (["data.text_column=review"], "column 'review' (data.text_column) is missing"),
        "missing label column": ([f"data.train_files={no_label}"], "column 'label' (data.label_column) is missing"),
        "unseen eval label": ([f"data.test_files={unseen}"], "has label 'mixed', which train never saw"),
        "empty split": ([f"data.test_files={empty}"], "empty.csv holds no rows"),
        "no checkpoint": (["model.checkpoint=/nonexistent/model"], "model.checkpoint '/nonexistent/model'"),
        "unknown hub model": (["model.checkpoint=nobody/no-such-model"], "model.checkpoint 'nobody/no-such-model'"),
    }


def test_user_mistakes_exit_2_with_one_line_and_write_nothing(bad_inputs, tmp_path, capsys):
    good, cases = bad_inputs
    outputs = tmp_path / "outputs"
    for name, (overrides, phrase) in cases.items():
        code = main(["run", str(good), *overrides])
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bars
        assert code == 2, name
        assert err.startswith("error: ") and phrase in err, (name, err)
        assert not outputs.exists() or not any(outputs.iterdir()), name


def test_mistake_in_a_real_process_has_no_traceback(tmp_path):
    done = cli("run", "sentiment/minilm-lora-rotten-tomatoes", "train.epochs=two")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: train.epochs must be an integer, not 'two'."
    assert "Traceback" not in done.stderr


def test_existing_run_folder_is_not_overwritten_without_asking(trained_run, capsys):
    recipe = trained_run.parent.parent / "run.yaml"
    before = (trained_run / "metrics.json").read_bytes()
    assert main(["run", str(recipe)]) == 2
    assert "output.overwrite=true" in capsys.readouterr().err
    assert (trained_run / "metrics.json").read_bytes() == before


def test_eval_with_an_unknown_label_names_the_row(trained_run, tmp_path, capsys):
    data = _write_csv(tmp_path / "new.csv", [{"text": "good", "label": "pos"}, {"text": "hm", "label": "meh"}])
    assert main(["eval", str(trained_run), "--data", str(data)]) == 2
    assert "row 1 of" in capsys.readouterr().err


def test_predict_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["predict", str(tmp_path), "text"]) == 2
    assert "is not an hf-transfer run folder" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing"), "text"]) == 2


def test_shipped_recipe_copied_and_run_by_path(tmp_path, tiny_bert_dir, keyword_csvs):
    """`hf-transfer cp` then `hf-transfer run PATH overrides` as the README shows, on tiny local data."""
    assert main(["cp", "sentiment/minilm-linear-probe-rotten-tomatoes", str(tmp_path / "mine.yaml")]) == 0
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(tmp_path / "mine.yaml"),
            f"model.checkpoint={tiny_bert_dir}",
            f"data.train_files={keyword_csvs['train']}",
            f"data.test_files={keyword_csvs['test']}",
            "data.label_names=null",
            "train.epochs=2",
            f"output.dir={out}",
        ]
    )
    assert code == 0
    assert (out / "head.safetensors").is_file()
    shutil.rmtree(out)


def test_a_run_folder_recorded_with_the_old_data_keys_still_predicts_evaluates_and_pushes(
    trained_run, keyword_csvs, tmp_path, capsys, caplog
):
    # An older release recorded data.eval_files and data.max_eval_samples in the run folder's recipe.yaml.
    old = tmp_path / "old-run"
    shutil.copytree(trained_run, old)
    recipe = yaml.safe_load((old / "recipe.yaml").read_text())
    data = recipe["data"]
    data["eval_files"] = data.pop("test_files")
    data["eval_split"] = data.pop("test_split")
    del data["max_test_samples"]
    data["max_eval_samples"] = data.pop("max_validation_samples")
    (old / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))

    assert main(["predict", str(old), "a wonderful fun film", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == "pos"
    assert main(["eval", str(old), "--data", str(keyword_csvs["test"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] > 0
    argv = ["push", str(old), "--repo-id", "me/old-run", "--base-model", "org/tiny-bert", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Dry run, nothing was sent" in out and "recipe.yaml" in out
    assert "deprecated" not in caplog.text  # the user did not write these keys and cannot change them
