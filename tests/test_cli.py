"""The command line: `fastact train` and `fastact bench` run and print their tables."""
import json

import pytest
import torch

from fastact_apps.cli import main
from fastact_apps.train.trainer import compare
from fastact_apps.train.tutorials import TUTORIALS


def test_train_prints_table_and_losses_agree(capsys, tmp_path):
    out_json = tmp_path / "train.json"
    assert main(["train", "--model", "circles", "simplenn", "--epochs", "3", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "circles" in text and "simplenn" in text and "speedup" in text
    rows = json.loads(out_json.read_text())
    assert [r["model"] for r in rows] == ["circles", "simplenn"] and all(r["agree"] for r in rows)


@pytest.mark.once  # the command's own arguments, plot, files or warning: the same on every backend
def test_train_writes_a_plot_and_saves_models(capsys, tmp_path):
    png = tmp_path / "train.png"
    assert main(["train", "--model", "spiral", "simplenn", "--epochs", "2", "--plot", str(png),
                 "--save", str(tmp_path)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "spiral.pt").exists() and (tmp_path / "simplenn.pt").exists()


def test_train_with_a_compiled_column(capsys):
    assert main(["train", "--model", "sigmoid", "--epochs", "3", "--compile", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "compiled steps/s" in text and "vs compiled" in text


@pytest.mark.once  # the command's own arguments, plot, files or warning: the same on every backend
def test_train_refuses_a_missing_device(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--device", "cuda", "--model", "circles"]) == 2
    assert "no usable CUDA device" in capsys.readouterr().err


def test_every_tutorial_trains_identically():
    for name in TUTORIALS:
        row = compare(name, epochs=1, warmup=1)
        assert row.agree, name


def test_bench_prints_ratios(capsys, tmp_path):
    out_json = tmp_path / "bench.json"
    assert main(["bench", "--ops", "relu", "softmax", "--sizes", "8x16", "--budget", "0.05",
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "ratio" in text and "copy bandwidth" in text
    data = json.loads(out_json.read_text())
    assert {r["op"] for r in data["results"]} == {"relu", "softmax"} and data["copy_gbps"] > 0


@pytest.mark.once  # the command's own arguments, plot, files or warning: the same on every backend
@pytest.mark.parametrize("command", [["train", "--model", "circles"], ["bench", "--ops", "relu"]])
def test_plot_without_matplotlib_is_refused_before_any_work(command, capsys, monkeypatch, tmp_path):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--plot", str(tmp_path / "out.png")])
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and "--plot needs matplotlib" in captured.err and "pip install matplotlib" in captured.err
    assert captured.out == ""  # nothing trained or timed


@pytest.mark.once  # the command's own arguments, plot, files or warning: the same on every backend
def test_bench_refuses_a_missing_device_and_a_malformed_size(capsys):
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda"]) == 2
        assert "no usable CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--sizes", "4096-4096"])
    assert exit_.value.code == 2 and "'4096-4096' is not a size" in capsys.readouterr().err


@pytest.mark.once  # the command's own arguments, plot, files or warning: the same on every backend
def test_bench_takes_a_capital_x_and_reports_the_mlp_only_with_leaky_relu(capsys):
    assert main(["bench", "--ops", "relu", "--sizes", "8X16", "--budget", "0.02", "--mode", "fwd"]) == 0
    text = capsys.readouterr().out
    assert "(8, 16)" in text and "saved for backward" not in text


@pytest.mark.once  # the command's own arguments, plot, files or warning: the same on every backend
def test_bench_warns_when_the_machine_is_busy(capsys, monkeypatch):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert main(["bench", "--ops", "relu", "--sizes", "8x16", "--budget", "0.02", "--mode", "fwd"]) == 0
    assert capsys.readouterr().out.count("warning: the machine is busy (load average 64.0") == 1


def test_train_profile_keeps_the_profilers_chatter_out_of_stderr(capfd):
    assert main(["train", "--profile", "--model", "circles"]) == 0
    out, err = capfd.readouterr()
    assert "microseconds per training step" in out
    assert "USDT:" not in err and "STAGE:" not in err


@pytest.mark.once  # the command's own arguments, plot, files or warning: the same on every backend
def test_bench_writes_a_plot(tmp_path):
    png = tmp_path / "bench.png"
    assert main(["bench", "--ops", "relu", "gelu", "--sizes", "8x16", "64x64", "--budget", "0.02",
                 "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
