"""The bundled MNIST sample: checksums, the IDX reader (equal to torchvision's), clear errors."""
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


def test_sample_loads_stratified():
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


@pytest.mark.slow  # imports torchvision (and with it torch's compiler stack): seconds
def test_idx_files_decode_as_torchvision_reads_them(tmp_path):
    """The sample and a full-MNIST layout give the tensors torchvision.datasets.MNIST gives."""
    import torchvision
    from torchvision.datasets import MNIST

    root = cs.unpacked_sample_root(cs.verify_sample())
    shutil.copytree(root / "MNIST", tmp_path / "MNIST")
    for ds, where in ((cs.load_dataset("sample"), root), (cs.load_dataset("mnist", data_dir=str(tmp_path)), tmp_path)):
        for train, x, y in ((True, ds.x_train, ds.y_train), (False, ds.x_test, ds.y_test)):
            reference = MNIST(str(where), train=train)
            pixels = reference.data.to(torch.float32).div_(255.0).sub_(cs.MNIST_MEAN).div_(cs.MNIST_STD)
            assert torch.equal(x, pixels.reshape(len(pixels), -1))
            assert torch.equal(y, reference.targets) and y.dtype == reference.targets.dtype
    assert cs.torchvision_version() == torchvision.__version__


def idx(kind: int, dims: tuple[int, ...], body: bytes) -> bytes:
    return bytes([0, 0, kind, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + body


def test_idx_decoding_checks_header_and_length():
    assert cs.decode_idx(idx(8, (2, 3), bytes(range(6))), 2).tolist() == [[0, 1, 2], [3, 4, 5]]
    for data, ndim, message in [
        (b"\x00\x00", 1, "shorter than an IDX header"),
        (idx(9, (2,), b"\x01\x02"), 1, "not that of a 1-dimensional unsigned-byte"),   # int8
        (idx(8, (2, 3), bytes(6)), 3, "not that of a 3-dimensional"),
        (idx(8, (2, 3), bytes(6))[:10], 2, "shorter than its 12-byte header"),
        (idx(8, (2, 3), bytes(5)), 2, "needs 18"),                                       # truncated
        (idx(8, (2, 3), bytes(7)), 2, "needs 18"),                                       # trailing bytes
    ]:
        with pytest.raises(cs.IdxError, match=message):
            cs.decode_idx(data, ndim)


def test_images_and_labels_must_match(sample_copy, tmp_path):
    raw = tmp_path / "full" / "MNIST" / "raw"
    shutil.copytree(cs.unpacked_sample_root(cs.verify_sample()) / "MNIST" / "raw", raw)
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx(8, (999,), labels.read_bytes()[8:1007]))
    with pytest.raises(cs.SetupError, match=r"corrupt or truncated \(t10k: \(1000, 28, 28\) images.*999 labels"):
        cs.load_dataset("mnist", data_dir=str(tmp_path / "full"))


@pytest.mark.slow  # a fresh process that imports torch: seconds
def test_loading_data_does_not_import_torchvision():
    """torchvision's import costs more than reading and checking the data; a run needs only its
    version number (meta.json), which is read without importing it."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from breaklab.canonical_setup import environment_info, load_dataset\n"
            "load_dataset('sample'); env = environment_info('cpu', 1)\n"
            "print(sorted(m for m in sys.modules if m.startswith('torchvision')), bool(env['torchvision']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split("\n")[0] == "[] True"
