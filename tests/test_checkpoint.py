"""What every run writes: checkpoint contents, its SHA-256, meta.json provenance."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from breaklab import METRICS_SCHEMA_VERSION
from breaklab.canonical_setup import SetupError, load_checkpoint



@pytest.fixture(scope="module")
def run(train_run):
    return train_run("none")


@pytest.mark.slow
def test_checkpoint_holds_everything_needed_to_continue(run):
    ckpt = torch.load(run.out / "checkpoint.pt", weights_only=False)
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "step", "rng", "config"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 3 and ckpt["step"] == len(run.steps)
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch_cpu"}
    assert ckpt["config"]["seed"] == 42 and ckpt["config"]["break_name"] == "none"
    assert "fc1.weight" in ckpt["model"] and "bn1.running_var" in ckpt["model"]
    assert ckpt["optimizer"]["state"], "momentum buffers are saved"
    assert ckpt["scheduler"]["last_epoch"] == len(run.steps)


@pytest.mark.slow
def test_checkpoint_sha256_file_matches_and_sha256sum_format(run):
    data = (run.out / "checkpoint.pt").read_bytes()
    line = (run.out / "checkpoint.pt.sha256").read_text()
    assert line == f"{hashlib.sha256(data).hexdigest()}  checkpoint.pt\n"
    assert run.meta["checkpoint_sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_meta_records_provenance(run):
    meta = run.meta
    assert meta["seed"] == 42 and meta["break"] == "none" and meta["status"] == "complete"
    assert meta["config"]["threads"] == 1 and meta["env"]["threads"] == 1
    for key in ("python", "torch", "torchvision", "numpy", "device"):
        assert meta["env"][key]
    assert meta["git"]["commit"] == "nogit" or len(meta["git"]["commit"]) == 40
    ds = meta["dataset"]
    assert ds["name"] == "mnist-sample" and ds["train_size"] == 4000 and ds["test_size"] == 1000
    assert len(ds["files"]) == 4 and all(len(v) == 64 for v in ds["files"].values())
    assert meta["metrics_schema"] == METRICS_SCHEMA_VERSION == 3


@pytest.mark.slow
def test_metrics_schema_fields(run):
    header = run.records[0]
    assert header == {"type": "header", "schema": "breaklab.metrics", "version": 3}
    step = run.steps[0]
    for key in ("step", "epoch", "loss", "lr", "grad_mean", "grad_norm", "grad_norm_by_layer",
                "zero_grad_frac", "act_first_mean", "act_first_var", "act_last_mean",
                "act_last_var", "logit_min", "logit_max", "loss_finite", "grads_finite",
                "loss_graphs_alive", "grad_norm_pre_clip", "grad_norm_carried", "update_norm_by_layer", "forward_float_max",
                "grad_scaler_enabled"):
        assert key in step, key
    assert set(step["grad_mean"]) == {"fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias",
                                      "fc2.weight", "fc2.bias"}
    assert len(run.epochs) == 3
    assert set(run.epochs[0]) >= {"train_loss", "train_acc", "test_loss", "test_acc", "test_autograd_bytes"}
    # The clean loop keeps no earlier step's graph and records none during evaluation.
    assert all(s["loss_graphs_alive"] == 0 for s in run.steps)
    assert all(e["test_autograd_bytes"] == 0 for e in run.epochs)
    # float32 without a GradScaler, measured per step; no clipping: the norm before it is the same
    assert all(s["forward_float_max"] == torch.finfo(torch.float32).max and s["grad_scaler_enabled"] is False
               for s in run.steps)
    assert all(s["grad_norm_pre_clip"] == pytest.approx(s["grad_norm"], rel=1e-4) for s in run.steps)
    assert all(s["grad_norm_carried"] == 0.0 for s in run.steps)  # zero_grad(set_to_none=True): nothing left
    # every step is present, in order
    assert [s["step"] for s in run.steps] == list(range(len(run.steps)))


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, run):
    bad = tmp_path / "checkpoint.pt"
    data = bytearray((run.out / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    (tmp_path / "checkpoint.pt.sha256").write_text((run.out / "checkpoint.pt.sha256").read_text())
    with pytest.raises(SetupError, match="does not match checkpoint.pt.sha256"):
        load_checkpoint(bad)
    (tmp_path / "checkpoint.pt.sha256").unlink()
    bad.write_bytes(bytes(data[:1000]))
    with pytest.raises(SetupError, match="corrupt"):
        load_checkpoint(bad)


def test_non_finite_values_are_null_in_json(tmp_path):
    from breaklab.diagnostics import finite_or_none

    rec = finite_or_none({"loss": float("nan"), "g": {"a": float("inf"), "b": 1.5}})
    assert json.dumps(rec, allow_nan=False) == '{"loss": null, "g": {"a": null, "b": 1.5}}'
