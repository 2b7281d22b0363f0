"""The command line: `fastact train` and `fastact bench` run and print their tables."""
import json

from fastact import train as train_module
from fastact.__main__ import main


def test_train_prints_table_and_losses_agree(capsys, tmp_path):
    out_json = tmp_path / "train.json"
    assert main(["train", "--model", "circles", "simplenn", "--epochs", "3", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "circles" in text and "simplenn" in text and "speedup" in text
    rows = json.loads(out_json.read_text())
    assert [r["model"] for r in rows] == ["circles", "simplenn"] and all(r["agree"] for r in rows)


def test_every_tutorial_trains_identically():
    for name in train_module.TUTORIALS:
        row = train_module.compare(name, epochs=1, warmup=1)
        assert row.agree, name


def test_bench_prints_ratios(capsys, tmp_path):
    out_json = tmp_path / "bench.json"
    assert main(["bench", "--ops", "relu", "softmax", "--sizes", "8x16", "--budget", "0.05",
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "ratio" in text and "copy bandwidth" in text
    data = json.loads(out_json.read_text())
    assert {r["op"] for r in data["results"]} == {"relu", "softmax"} and data["copy_gbps"] > 0
