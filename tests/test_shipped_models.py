"""The shipped models: their files, their cards' figures, and Lava against the reference on real data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lava_deploy.check import check
from lava_deploy.cli import build_parser, main
from lava_deploy.data.datasets import IDX_DATASETS, data_dir, find_idx_folder
from lava_deploy.simulate import simulate

MODELS = Path(__file__).resolve().parent.parent / "netx_models"
NAMES = sorted(p.parent.name for p in MODELS.glob("*/model.net"))
#: The official test sets' first images, which a fresh clone has (tests/data/idx_heads).
IDX_HEADS = Path(__file__).resolve().parent / "data" / "idx_heads"


def test_the_headline_models_are_shipped():
    assert {"mnist-cnn-t3", "fashion-mnist-cnn-t3", "fashion-mnist-cnn-t4"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_figures_are_what_the_file_computes(name):
    figures = json.loads((MODELS / name / "figures.json").read_text())
    if figures["dataset"] in IDX_DATASETS and find_idx_folder(figures["dataset"], data_dir()) is None:
        pytest.skip(f"the card's figures are on all 10,000 test images: lava-deploy data fetch {figures['dataset']}")
    result = simulate(MODELS / name / "model.net", dataset=figures["dataset"], backend="reference")
    assert result.accuracy == pytest.approx(figures["reference_test_accuracy"], abs=1e-12)
    assert figures["compare"]["spike_agreement"] == 1.0
    assert f"| integer reference test accuracy | {result.accuracy:.4f}" in (MODELS / name / "README.md").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_card_loihi2_check_is_what_check_computes(name):
    recorded = json.loads((MODELS / name / "figures.json").read_text())["loihi2_check"]
    fit = check(MODELS / name / "model.net", energy=False).fit
    assert (recorded["cores"], recorded["chips"], recorded["deployable"]) == (fit.cores, fit.chips, fit.deployable)
    if not recorded["activity"].get("unit_operations"):
        assert fit.deployable and fit.problems == []
    else:       # a Transformer: its products and function units need embedded cores or the host, nothing else fails
        assert not fit.deployable and fit.problems
        assert all("needs an embedded core or the host" in problem for problem in fit.problems)


@pytest.mark.lava
@pytest.mark.parametrize("name", ["digits-mlp-t3", "digits-cnn-t3"])
def test_lava_matches_reference_on_digits(name, capsys):
    assert main(["compare", str(MODELS / name / "model.net"), "--dataset", "digits", "--samples", "50",
                 "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 50
    assert summary["spike_agreement"] == 1.0 and summary["prediction_agreement"] == 1.0
    assert summary["steps_per_sample"]["lava_cpu"] == 3
    assert summary["accuracy"]["lava_cpu"] == summary["accuracy"]["reference"] > 0.9


@pytest.mark.lava
@pytest.mark.parametrize("name", ["mnist-cnn-t3", "fashion-mnist-cnn-t4"])
def test_lava_matches_reference_on_the_official_test_sets_first_images(name, capsys):
    dataset = json.loads((MODELS / name / "figures.json").read_text())["dataset"]
    assert main(["compare", str(MODELS / name / "model.net"), "--dataset", f"{dataset}:{IDX_HEADS}",
                 "--samples", "40", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 40 and summary["logit_agreement"] == 1.0
    assert summary["spike_agreement"] == 1.0 and summary["prediction_agreement"] == 1.0
    assert summary["accuracy"]["lava_cpu"] == summary["accuracy"]["reference"] > 0.8


@pytest.mark.lava
def test_shipped_resnet_is_bit_exact_on_200_mnist5k_samples(capsys):
    assert main(["compare", str(MODELS / "mnist5k-resnet-t3" / "model.net"), "--dataset", "mnist5k",
                 "--samples", "200", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 200
    assert summary["spike_agreement"] == 1.0 and summary["prediction_agreement"] == 1.0
    assert summary["logit_agreement"] == 1.0 and summary["accuracy"]["lava_cpu"] > 0.95


def test_every_verb_has_help(capsys):
    verbs = build_parser()._subparsers._group_actions[0].choices
    assert set(verbs) >= {"train", "export", "simulate", "compare", "check", "info"}
    for verb in verbs:
        with pytest.raises(SystemExit) as exit_:
            main([verb, "--help"])
        assert exit_.value.code == 0
        assert f"usage: lava-deploy {verb}" in capsys.readouterr().out
