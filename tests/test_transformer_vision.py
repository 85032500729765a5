"""The float twin of the shipped ViT: built in the ``vit`` shape, trained in float, saved safely, converted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from lava_deploy.data.datasets import Dataset  # noqa: E402
from lava_deploy.errors import DeployError  # noqa: E402
from lava_deploy.transformers import vision  # noqa: E402
from lava_deploy.transformers.ops import AnnOps  # noqa: E402


def bars(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 images of a bright horizontal (class 0) or vertical (class 1) bar at a random place, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, count)
    x = rng.uniform(0, 0.3, (count, 1, 8, 8)).astype(np.float32)
    where = rng.integers(0, 8, count)
    for i in range(count):
        if y[i]:
            x[i, 0, :, where[i]] = 1
        else:
            x[i, 0, where[i], :] = 1
    return x, y


@pytest.fixture(scope="module")
def trained():
    (x_train, y_train), (x_test, y_test) = bars(512, 0), bars(200, 1)
    dataset = Dataset("bars", x_train, y_train, x_test, y_test, ["horizontal", "vertical"])
    torch.set_num_threads(1)
    return dataset, vision.train_float_vit(dataset, epochs=12, batch_size=64, lr=3e-3)


def test_float_vit_has_the_spiking_vits_shape():
    classifier = vision.float_vit((1, 28, 28), 10)
    config = classifier.encoder.config
    assert (config.patch_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size) == (7, 64, 2, 4, 128)
    assert vision.tokens_of(classifier) == 17 and classifier.pooling == "mean" and classifier.family == "vit"


def test_training_learns_and_the_sites_compute_the_trained_model(trained):
    dataset, classifier = trained
    assert vision.accuracy(classifier, dataset.x_test, dataset.y_test) >= 0.9
    batch, _ = vision.image_batches(classifier, dataset.x_test[:16], dataset.y_test[:16], 16)[0]
    with torch.no_grad():
        ours = classifier.logits(AnnOps(), batch)
        theirs = vision._logits(classifier, torch.as_tensor(dataset.x_test[:16]))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_weights_round_trip_without_pickle_and_garbage_is_refused(trained, tmp_path):
    dataset, classifier = trained
    path = tmp_path / "vit.pt"
    vision.save_float_vit(classifier, path)
    loaded = vision.load_float_vit(path, dataset.input_shape, dataset.num_classes)
    x = torch.as_tensor(dataset.x_test[:8])
    with torch.no_grad():
        assert torch.equal(vision._logits(loaded, x), vision._logits(classifier, x))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DeployError, match="never unpickles"):
        vision.load_float_vit(path, dataset.input_shape, dataset.num_classes)
    with pytest.raises(DeployError, match="not a float ViT"):       # another shape's weights
        vision.save_float_vit(vision.float_vit((1, 8, 8), 3), path)
        vision.load_float_vit(path, dataset.input_shape, dataset.num_classes)


def test_converted_float_vit_approaches_the_ann(trained):
    dataset, classifier = trained
    results, calibration = vision.convert_images(classifier, dataset, ["ec"], samples=100, steps=16)
    assert calibration.samples == vision.CALIBRATION_IMAGES
    result = results["ec"]
    errors = [result.logit_error(t) for t in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]
    assert result.agreement(16) >= 0.9
    with pytest.raises(DeployError, match="samples must be"):
        vision.convert_images(classifier, dataset, ["ec"], samples=201)


def test_cli_converts_a_saved_hugging_face_vit_on_a_dataset(tmp_path):
    """``convert-transformer --model-dir DIR --dataset SPEC``: a ViTForImageClassification folder on test images."""
    import transformers

    from lava_deploy.cli import main

    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    x, y = bars(120, 0)
    np.savez(tmp_path / "bars.npz", x=(255 * x[:, 0]).astype(np.uint8), y=y)
    output = tmp_path / "result.json"
    code = main(["convert-transformer", "--model-dir", str(tmp_path / "vit"), "--dataset", f"npz:{tmp_path / 'bars.npz'}",
                 "--samples", "20", "--steps", "6", "--method", "ec", "-q", "--output", str(output)])
    assert code == 0
    import json
    report = json.loads(output.read_text())
    assert report["calibration_images"] == 64 and set(report["methods"]) == {"ec"}
    rows = report["methods"]["ec"]["rows"]
    assert [r["T"] for r in rows] == list(range(1, 7)) and report["methods"]["ec"]["samples"] == 20
    assert rows[-1]["logit_error"] < rows[0]["logit_error"]
    # An image shape the ViT does not take, and a folder without a ViT: one line, exit 2.
    np.savez(tmp_path / "big.npz", x=np.zeros((120, 9, 9), np.uint8), y=y)
    assert main(["convert-transformer", "--model-dir", str(tmp_path / "vit"), "--dataset",
                 f"npz:{tmp_path / 'big.npz'}", "-q"]) == 2
    assert main(["convert-transformer", "--model-dir", str(tmp_path), "--dataset", "digits", "-q"]) == 2
