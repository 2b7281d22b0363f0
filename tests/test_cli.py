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
