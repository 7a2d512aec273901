"""The bundled MNIST sample: checksums, torchvision's own reader, clear errors."""
from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from breaklab import canonical_setup as cs

EXPECTED = {  # data/sample/SHA256SUMS, made by data/make_sample.py
    "t10k-images-idx3-ubyte.gz": "f8cbd79f2db37870d876942826b4ef9064643422dc5117ba4ab682bbc382d905",
    "t10k-labels-idx1-ubyte.gz": "b42ecc3004fe544b93f9e23b216103f6e8417d82f371ca2a47bbdcdb5ce44998",
    "train-images-idx3-ubyte.gz": "414811f135136db744ea7cc82b40dbfee7c473f5e4cc5b3b186fb0328c5ff187",
    "train-labels-idx1-ubyte.gz": "387339cb4d512c89c8fc667db02409099d2e11cb7be42663fcf0bbc05c1902ae",
}


def test_bundled_files_match_their_checksums():
    raw = cs.SAMPLE_DIR / "MNIST" / "raw"
    for name, digest in EXPECTED.items():
        assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == digest
    assert cs.verify_sample() == EXPECTED


def test_sample_loads_through_torchvision_stratified():
    ds = cs.load_dataset("sample")
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert torch.bincount(ds.y_train).tolist() == [400] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    # normalised with the MNIST mean/std: background pixels map to -0.4242
    assert ds.x_train.min().item() == pytest.approx((0 - 0.1307) / 0.3081, abs=1e-4)
    assert ds.identity["files"] == EXPECTED


def test_minibatches_are_a_seeded_permutation():
    a = list(cs.minibatches(100, 32, seed=1, epoch=0))
    b = list(cs.minibatches(100, 32, seed=1, epoch=0))
    c = list(cs.minibatches(100, 32, seed=1, epoch=1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert sorted(torch.cat(a).tolist()) == list(range(100))
    assert [len(x) for x in a] == [32, 32, 32, 4]


@pytest.fixture
def sample_copy(tmp_path, monkeypatch):
    """A private copy of data/sample and cache, so tests can damage them."""
    copy = tmp_path / "sample"
    shutil.copytree(cs.SAMPLE_DIR, copy)
    monkeypatch.setattr(cs, "SAMPLE_DIR", copy)
    monkeypatch.setenv("BREAKLAB_CACHE", str(tmp_path / "cache"))
    return copy


def test_unpacks_into_a_cache_once(sample_copy, tmp_path):
    cs.load_dataset("sample")
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("mnist-sample-")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".unpack-")]


def test_bit_flipped_data_file_is_a_clear_error(sample_copy):
    path = sample_copy / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[5000] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(cs.SetupError, match="train-images-idx3-ubyte.gz is corrupt.*git checkout"):
        cs.load_dataset("sample")


def test_missing_data_file_is_a_clear_error(sample_copy):
    (sample_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(cs.SetupError, match="t10k-labels-idx1-ubyte.gz is missing"):
        cs.load_dataset("sample")


def test_full_mnist_missing_says_where_and_how(tmp_path):
    with pytest.raises(cs.SetupError, match=r"MNIST not found under .*MNIST/raw.*--download"):
        cs.load_dataset("mnist", data_dir=str(tmp_path))


def test_full_mnist_reads_torchvision_layout(tmp_path):
    """--data mnist reads DIR/MNIST/raw with the same loader (here: the sample, unpacked)."""
    root = cs.unpacked_sample_root(cs.verify_sample())
    shutil.copytree(root / "MNIST", tmp_path / "MNIST")
    ds = cs.load_dataset("mnist", data_dir=str(tmp_path))
    assert ds.identity["name"] == "mnist" and ds.identity["train_size"] == 4000
    # a truncated file is a clear error naming the folder
    f = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(cs.SetupError, match="corrupt or truncated"):
        cs.load_dataset("mnist", data_dir=str(tmp_path))
