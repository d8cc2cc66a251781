"""Training a conventional baseline (``model.kind = "ann"``) into a run directory like any snnbp run.

The run directory has the same files as a spiking run (train/run_dir.py): config.toml, metrics.jsonl
(one line per epoch: loss, train and test accuracy, MACs per sample), last.safetensors (model and
optimizer state after every epoch, written atomically), model.safetensors and summary.json at the
end. Loss: softmax cross-entropy; optimizer: optim.name (adam | sgd) with optim.lr, optim.batch_size,
the learning rate multiplied by optim.decay_per_epoch after every epoch. No validation split and no
early stopping (as the paper's protocol, docs/method.md 5): the reported accuracy is the last epoch's.
Resume continues after the last completed epoch; the shuffles are a pure function of (seed, epoch),
so a resumed run records the same metrics as one never stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from snnbp.ann.features import dense_inputs, describe_inputs
from snnbp.ann.network import build_ann, describe, macs_per_sample
from snnbp.config import Config, to_dict, to_toml
from snnbp.data.sources import make_source
from snnbp.errors import DataError
from snnbp.files import read_jsonl, write_json_atomic, write_text_atomic
from snnbp.serialization import FINAL, LAST, load_tensors, save_tensors_atomic
from snnbp.train.protocol import load_optimizer_state, optimizer_state_tensors, subnormals_flushed

ANN_HEADER = "ann"  # header key marking a conventional network's file (spiking ones have "network")


def _optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "adam":
        return torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.adam_betas), eps=o.adam_eps)
    return torch.optim.SGD(model.parameters(), lr=o.lr)


def model_tensors(model: nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters as ``ann.<state_dict key>`` arrays (the file format of ``load_ann``)."""
    return {f"ann.{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _load_model_tensors(model: nn.Module, tensors: dict, path) -> None:
    """Inverse of ``model_tensors``; DataError when the file's tensors do not fit ``model``."""
    try:
        model.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in tensors.items() if k.startswith("ann.")})
    except (RuntimeError, KeyError) as err:
        raise DataError(f"{path}: its tensors do not fit the network of its config ({err}); the file is damaged") from None


def load_ann(path: str | Path) -> tuple[nn.Module, Config, dict]:
    """(model, config, header) of an ANN file (model.safetensors or last.safetensors); never runs code."""
    from snnbp.config import load_config

    tensors, meta = load_tensors(path)
    if ANN_HEADER not in meta or "config" not in meta:
        raise DataError(f"{path} is not an snnbp conventional-network file (no '{ANN_HEADER}' header)")
    cfg = load_config(None, [], base=meta["config"])
    model = build_ann(cfg.model, int(meta[ANN_HEADER]["n_inputs"]), cfg.train.seed)
    _load_model_tensors(model, tensors, path)
    return model, cfg, meta


@torch.no_grad()
def ann_accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for s in range(0, len(y), batch):
        logits = model(torch.from_numpy(X[s:s + batch]))
        correct += int((logits.argmax(1).numpy() == y[s:s + batch]).sum())
    return correct / max(1, len(y))


def train_ann(cfg: Config, out_dir: Path, resume: bool = False, log=print) -> dict:
    """Train the baseline of ``cfg`` into ``out_dir`` (module doc); returns the summary (also saved)."""
    from snnbp.train.run_dir import check_fresh_out_dir, git_commit, machine

    out_dir = Path(out_dir)
    commit = git_commit()
    if not resume:
        check_fresh_out_dir(out_dir)
    source = make_source(cfg.data, cfg.train.seed)
    Xtr, ytr = dense_inputs(source, "train")
    Xte, yte = dense_inputs(source, "test")
    n_inputs = Xtr.shape[1]
    model = build_ann(cfg.model, n_inputs, cfg.train.seed)
    opt = _optimizer(cfg, model)
    macs = macs_per_sample(cfg.model, n_inputs)
    epoch, train_wall = 0, 0.0
    metrics = out_dir / "metrics.jsonl"
    if resume:
        tensors, meta = load_tensors(out_dir / LAST)
        _load_model_tensors(model, tensors, out_dir / LAST)
        load_optimizer_state(opt, tensors, meta.get("optimizer", {}))
        epoch = int(meta["progress"]["epoch"])
        train_wall = float(meta["progress"]["train_wall_s"])
        rows = [r for r in read_jsonl(metrics)[0] if r["epoch"] <= epoch] if metrics.is_file() else []
        write_text_atomic(metrics, "".join(_line(r) for r in rows))  # lines after the checkpoint are redone
        (out_dir / "summary.json").unlink(missing_ok=True)
        log(f"resuming {out_dir} at epoch {epoch + 1}")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics.write_text("")
    write_text_atomic(out_dir / "config.toml", to_toml(cfg))
    cfg_dict = to_dict(cfg)
    header = {"n_inputs": n_inputs, "macs_per_sample": macs, "describe": describe(cfg.model, n_inputs)}
    log(f"data: {describe_inputs(source)}; {len(ytr)} training / {len(yte)} test samples; conventional network "
        f"{header['describe']}, {macs:,} MACs per sample")
    loss_fn = nn.CrossEntropyLoss()
    bs = cfg.optim.batch_size
    last = None
    while epoch < cfg.train.epochs:
        lr = cfg.optim.lr * cfg.optim.decay_per_epoch ** epoch
        for g in opt.param_groups:
            g["lr"] = lr
        order = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(ytr))
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct = 0.0, 0
        with subnormals_flushed():  # Adam moments of never-lit inputs decay into subnormals (protocol.py)
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                xb, yb = torch.from_numpy(Xtr[idx]), torch.from_numpy(ytr[idx])
                logits = model(xb)
                loss = loss_fn(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
        dt = time.perf_counter() - t0
        train_wall += dt
        t1 = time.perf_counter()
        acc = ann_accuracy(model, Xte, yte)
        epoch += 1
        last = {"epoch": epoch, "lr": lr, "epoch_wall_s": round(dt + time.perf_counter() - t1, 2),
                "train_wall_s": round(train_wall, 2), "train_loss": loss_sum / len(ytr),
                "train_accuracy": correct / len(ytr), "test_accuracy": acc, "macs_per_sample": macs}
        with metrics.open("a") as f:  # the line first, then the checkpoint that commits it
            f.write(_line(last))
        opt_tensors, opt_meta = optimizer_state_tensors(opt)
        save_tensors_atomic(out_dir / LAST, {**model_tensors(model), **opt_tensors},
                            {ANN_HEADER: header, "optimizer": opt_meta,
                             "progress": {"epoch": epoch, "train_wall_s": train_wall}, "config": cfg_dict})
        log(f"epoch {epoch}: train acc {last['train_accuracy']:.4f}  test acc {acc:.4f}")
    save_tensors_atomic(out_dir / FINAL, model_tensors(model), {ANN_HEADER: header, "config": cfg_dict})
    rows = read_jsonl(metrics)[0]
    summary = {
        "name": cfg.name, "kind": "ann", "data": describe_inputs(source), "network": header["describe"], "epochs": epoch,
        "train_wall_s": round(train_wall, 1), "wall_s": round(sum(r["epoch_wall_s"] for r in rows), 1),
        "test_accuracy": rows[-1]["test_accuracy"], "macs_per_sample": macs,
        "commit": commit, "machine": machine(), "run_dir": str(out_dir),
    }
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def _line(row: dict) -> str:
    return json.dumps(row) + "\n"
