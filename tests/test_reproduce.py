"""`snnbp reproduce ROW` and the generated results table (train/reproduce.py), on a tiny fake MNIST."""

from __future__ import annotations

import json

import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.train.reproduce import ROWS, row_status

TINY = ["model.hidden=[30]", "train.epochs=2", "train.chunk=20", "train.eval_every=1", "train.eval_last=2",
        "data.test_ms=200.0"]


def _cmd(tmp_path, extra=()):
    root = write_fake_mnist(tmp_path / "data")
    args = ["reproduce", "mnist-800", "--results", str(tmp_path / "results")]
    for kv in [*TINY, f"data.root=\"{root}\"", *extra]:
        args += ["--set", kv]
    return args


def test_reproduce_writes_record_and_table_and_leaves_finished_row_untouched(tmp_path, capsys):
    assert main(_cmd(tmp_path)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    d = tmp_path / "results" / "mnist-800"
    for f in ("config.toml", "metrics.jsonl", "model.safetensors", "summary.json", "record.json"):
        assert (d / f).is_file(), f
    record = json.loads((d / "record.json").read_text())
    assert record["row"] == "mnist-800" and record["command"][0].startswith("snnbp reproduce mnist-800")
    assert record["sessions"][0]["wall_s"] > 0 and record["sessions"][0]["machine"]
    st = row_status("mnist-800", d)
    assert st["finished"] and st["n_window"] == 2
    table = (tmp_path / "results" / "README.md").read_text()
    line = next(l for l in table.splitlines() if l.startswith("| [mnist-800]"))
    accs = [100 * json.loads(l)["test_accuracy"] for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert f"[{min(accs):.2f}, {sum(accs) / 2:.2f}, {max(accs):.2f}]" in line  # read from the record, not typed
    assert "[98.56, 98.64, 98.71]" in line and "finished, 2 epochs" in line
    assert all(f"| {name} |" in table or f"[{name}]" in table for name in ROWS)
    assert summary["epochs"] == 2
    # the same command again: finished, nothing rewritten
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert main(_cmd(tmp_path)) == 0
    assert "finished" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_reproduce_continues_an_unfinished_row(tmp_path, capsys):
    assert main(_cmd(tmp_path, ["train.epochs=1"])) == 0
    d = tmp_path / "results" / "mnist-800"
    (d / "summary.json").unlink()  # as if the session had stopped during epoch 2
    assert main(_cmd(tmp_path)) == 0
    capsys.readouterr()
    rows = [json.loads(l)["epoch"] for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2]
    assert len(json.loads((d / "record.json").read_text())["sessions"]) == 2


def test_unknown_row_is_one_clear_error(tmp_path, capsys):
    assert main(["reproduce", "mnist-9000", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown row" in err and "mnist-800" in err


@pytest.mark.parametrize("args", [["reproduce", "--table"]])
def test_table_of_an_empty_results_folder_says_not_run(tmp_path, capsys, args):
    assert main([*args, "--results", str(tmp_path)]) == 0
    assert "not run" in (tmp_path / "README.md").read_text()


def test_a_row_without_a_window_shows_its_final_test(tmp_path, capsys):
    # The main job (eval_last = 0, a time budget) is judged by its final test, read from its metrics.
    root = write_fake_mnist(tmp_path / "data")
    args = ["reproduce", "main-job", "--results", str(tmp_path / "results")]
    for kv in ["model.hidden=[30]", "train.epochs=2", "train.chunk=20", "data.test_ms=200.0", f"data.root=\"{root}\""]:
        args += ["--set", kv]
    assert main(args) == 0
    d = tmp_path / "results" / "main-job"
    final = 100 * [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()][-1]["test_accuracy"]
    line = next(l for l in (tmp_path / "results" / "README.md").read_text().splitlines() if l.startswith("| [main-job]"))
    assert f"{final:.2f} (final test)" in line and "finished, 2 epochs" in line


def test_a_row_trained_on_synthetic_nmnist_says_so_in_the_table(tmp_path, capsys):
    from snnbp.config import embedded_config, load_config, to_toml

    d = tmp_path / "results" / "nmnist-800"
    d.mkdir(parents=True)
    cfg = load_config(embedded_config("paper/nmnist-800.toml"), ['data.source="nmnist-synthetic"'])
    (d / "config.toml").write_text(to_toml(cfg))
    (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "epoch_wall_s": 10.0, "test_accuracy": 0.9}) + "\n")
    assert main(["reproduce", "--table", "--results", str(tmp_path / "results")]) == 0
    line = next(l for l in (tmp_path / "results" / "README.md").read_text().splitlines() if l.startswith("| [nmnist-800]"))
    assert "| N-MNIST (synthetic) |" in line and "unfinished: epoch 1/200, latest 90.00 %" in line


def test_table_gains_baseline_rows_and_operations_read_from_the_records(tmp_path, capsys):
    # A conventional baseline row and a spiking row evaluated with --curves: the table's operations and
    # "vs baseline" cells come from their summary.json / curves.json, none typed.
    root = write_fake_mnist(tmp_path / "data")
    results = tmp_path / "results"
    ann = ["reproduce", "ann-mnist-800", "--results", str(results)]
    for kv in ["model.hidden=[30]", "train.epochs=2", "optim.batch_size=10", f"data.root=\"{root}\""]:
        ann += ["--set", kv]
    assert main(ann) == 0
    snn = ["reproduce", "main-job", "--results", str(results)]
    for kv in ["model.hidden=[30]", "train.epochs=2", "train.chunk=20", "data.test_ms=200.0", f"data.root=\"{root}\""]:
        snn += ["--set", kv]
    assert main(snn) == 0
    assert main(["eval", str(results / "main-job"), "--curves"]) == 0  # finds results/ann-mnist-800 itself
    assert main(["reproduce", "--table", "--results", str(results)]) == 0
    capsys.readouterr()
    table = (results / "README.md").read_text().splitlines()
    base = next(l for l in table if l.startswith("| [ann-mnist-800]"))
    assert f"{(784 * 30 + 300) / 1e6:.2f} M MACs" in base and "| 98.40 |" in base
    curves = json.loads((results / "main-job" / "curves.json").read_text())
    line = next(l for l in table if l.startswith("| [main-job]"))
    assert f"{curves['ops_per_sample'][-1] / 1e6:.2f} M SynOps + lateral" in line
    hit = curves["comparison"]["at_baseline"]
    assert (f"MACs / ops = {hit['fewer_ops_factor']:.2f}" in line) if hit else ("never reaches" in line)
    assert "[ann-mnist-800]" in line
