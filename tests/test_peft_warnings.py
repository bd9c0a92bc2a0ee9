"""A LoRA run, and loading it back to predict or evaluate, prints no warning about a call our code never makes."""

from __future__ import annotations

import warnings

from helpers import text_recipe

import hf_transfer
from hf_transfer.strategies import peft_adapters


def _gradient_checkpointing_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)]


def test_lora_run_predict_and_eval_print_no_gradient_checkpointing_future_warning(
    tmp_path, tiny_bert_dir, keyword_csvs
):
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora", train={"epochs": 1}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = hf_transfer.run(recipe)
        classifier = hf_transfer.load(run_dir)
        classifier.predict(["a good film"])
        classifier.evaluate([str(keyword_csvs["test"])])
    assert _gradient_checkpointing_warnings(caught) == []


def test_only_that_one_message_is_ignored_while_peft_wraps():
    deprecated = "`is_gradient_checkpointing` is deprecated and will be removed in v6."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with peft_adapters._peft_wrapping():
            warnings.warn(deprecated, FutureWarning, stacklevel=1)
            warnings.warn("some other deprecation", FutureWarning, stacklevel=1)
            warnings.warn("a user warning", UserWarning, stacklevel=1)
        warnings.warn(deprecated, FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "some other deprecation",
        "a user warning",
        deprecated,
    ]
