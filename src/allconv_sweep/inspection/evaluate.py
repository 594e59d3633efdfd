"""python -m allconv_sweep.evaluate ckpt=<path>: score a checkpoint on its test split (conf/evaluate.yaml).
For a run's last.ckpt the test accuracy is that run's metrics.json test accuracy, exactly: the same weights,
data, batches and kernels."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from allconv_sweep.config import config_dir
from allconv_sweep.errors import UserError, command

EVAL_FILE = "eval.json"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score cfg.ckpt; returns (and writes) the eval.json record."""
    import lightning as L

    from allconv_sweep import runs
    from allconv_sweep.inspection.inputs import data_module, device_from
    from allconv_sweep.model.module import load_checkpoint
    from allconv_sweep.training.precision import resolve

    t0 = time.perf_counter()
    device = device_from(str(cfg.device))  # a bad device= fails before the checkpoint and the data load
    output_dir = runs.ensure_writable(Path(cfg.output_dir))
    model = load_checkpoint(str(cfg.ckpt))
    run_cfg = dict(model.config)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    changes = {k: data.pop(k) for k in ("root", "verify", "download") if data.get(k) is not None}
    if data.get("name"):  # data=<name>: that data set's config instead
        if int(data["num_classes"]) != model.num_classes:
            raise UserError(f"data={data['name']} has {data['num_classes']} classes but the checkpoint's network "
                            f"has {model.num_classes}; valid: a data set with {model.num_classes} classes")
        run_cfg["data"] = data
    datamodule = data_module(run_cfg, changes, cfg.cache_dir)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    precision = resolve(str((run_cfg.get("trainer") or {}).get("precision", "32-true")), accelerator).precision
    trainer = L.Trainer(accelerator=accelerator, devices=[device.index] if device.index is not None else 1,
                        logger=False, precision=precision, enable_model_summary=False, enable_progress_bar=False,
                        enable_checkpointing=False)
    if hasattr(datamodule, "use_device"):
        datamodule.use_device(trainer.strategy.root_device)
    scores = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    acc, top5 = scores.get("test/acc"), scores.get("test/acc_top5")
    data = {**run_cfg["data"], **changes}
    record = {"ckpt": str(Path(cfg.ckpt).resolve()), "result_key": model.hparams.get("result_key"),
              "model": run_cfg["model"].get("name"), "data": data.get("name"), "data_root": data.get("root"),
              "test_size": datamodule.describe().get("test"), "test_acc": acc,
              "test_error": None if acc is None else 1 - acc, "test_acc_top5": top5,
              "test_live_fraction": scores.get("test/live_fraction"), "device": str(trainer.strategy.root_device),
              "precision": str(trainer.precision), "wall_time_s": time.perf_counter() - t0,
              "versions": runs.versions()}
    path = runs.write_json(output_dir / EVAL_FILE, record)
    _print(record, path)
    return record


def _print(r: dict, path: Path) -> None:
    """The headline numbers, then what was written: its full path alone on a line (to paste)."""
    def scores(acc: float) -> str:
        return f"accuracy {100 * acc:.2f}% (error {100 * (1 - acc):.2f}%)"

    top5 = "" if r.get("test_acc_top5") is None else f", top-5 {scores(r['test_acc_top5'])}"
    print(f"{r['model']} on {r['data']}, {r['test_size']:,} test images: top-1 {scores(r['test_acc'])}{top5}")
    print(f"checkpoint {r['ckpt']} (result key {r['result_key']})")
    print(f"wrote:\n{path.resolve()}")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from allconv_sweep.console import quiet_lightning

    quiet_lightning(logging.WARNING)
    if code := command(evaluate, cfg):  # a successful job returns: under -m, Hydra runs the next one
        sys.exit(code)


if __name__ == "__main__":
    main()
