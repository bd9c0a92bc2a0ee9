#!/usr/bin/env bash
# CI, second job: install the lowest versions pyproject.toml declares and run a fast subset of the tests on them,
# so a declared floor can never drift below what the code needs. torch/torchvision stay the machine's build (the
# multi-GB wheel pip already cached for the first job); every other dependency is pinned to its `>=` bound.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LOWEST_VENV:-.venv-lowest}
start=$SECONDS

python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet torch torchvision
python3 .ci/lowest_constraints.py > "$venv/lowest-constraints.txt"
"$venv/bin/python" -m pip install --quiet -e ".[test]" -c "$venv/lowest-constraints.txt"
"$venv/bin/python" -m pip check
"$venv/bin/python" .ci/lowest_constraints.py --check
echo "lowest versions installed in $((SECONDS - start)) s"

# Text (probe, finetune, LoRA), images (timm probe, finetune, LoRA, transforms), the recipe schema, a sweep (optuna) and a push with
# retries and a load back by repo id, the sweep, the label coding, the image cache key, TensorBoard tracking and
# workers, the multi-label / regression metrics and iterative-stratification folds. Not test_push_lora_run_in_one_commit_then_load_it_back_by_repo_id: its
# ModelCard.validate() posts to huggingface.co itself on older huggingface_hub (a test-side check, not our code).
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 \
    tests/test_recipe.py \
    tests/test_dependencies.py \
    tests/test_text_strategies.py::test_linear_probe_learns_and_reloads \
    tests/test_text_strategies.py::test_finetune_learns_and_reloads \
    tests/test_text_strategies.py::test_lora_trains_adapter_and_head_and_reloads \
    tests/test_images.py::test_timm_backbone_is_registered \
    tests/test_images.py::test_lora_on_vit_targets_attention_and_mlp_and_saves_the_head \
    tests/test_images.py::test_finetune_last_block_freezes_the_stem_and_saves_timm_format \
    tests/test_images.py::test_transforms_are_the_models_own_with_the_augmentation_the_recipe_asks_for \
    tests/test_images.py::test_layer_groups_follow_timms_grouping \
    tests/test_hub_push.py::test_card_usage_snippets_run_against_the_pushed_repo \
    tests/test_hub_push.py::test_transient_failures_are_retried_with_backoff \
    tests/test_hub_push.py::test_a_wrong_token_says_to_log_in_again \
    tests/test_hub_push.py::test_push_image_run_and_load_it_back \
    tests/test_sweep.py::test_probe_sweep_extracts_features_once_and_minimises_a_loss \
    tests/test_sweep.py::test_every_proposal_stays_around_the_recipe_and_makes_a_valid_recipe \
    tests/test_labels.py::test_every_split_uses_one_coding_and_names_the_rows_it_codes \
    tests/test_labels.py::test_a_class_label_feature_keeps_its_names_and_ids \
    tests/test_targets.py::test_a_hub_sequence_of_class_labels_keeps_the_feature_names \
    tests/test_targets.py::test_list_columns_of_strings_are_read_from_jsonl_and_parquet \
    tests/test_targets.py::test_targets_follow_the_rows_that_a_row_check_kept \
    tests/test_targets.py::test_the_digits_multilabel_builtin_loads_through_the_recipe_path \
    tests/test_feature_cache.py::test_overwriting_the_images_in_place_is_a_cache_miss \
    tests/test_tracking.py::test_tensorboard_gets_the_loss_learning_rate_and_every_evaluation_metric \
    tests/test_train_loading.py::test_workers_give_the_same_augmented_batches_as_the_main_process \
    tests/test_metrics_multilabel.py::test_agrees_with_sklearn_on_random_shapes \
    tests/test_metrics_multilabel.py::test_multilabel_folds_beat_plain_kfold_on_a_rare_label \
    tests/test_metrics_regression.py::test_agrees_with_sklearn_on_random_shapes
echo "lowest-versions job took $((SECONDS - start)) s"
