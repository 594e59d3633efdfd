"""Hydra-native: every component named in config (_target_), one schema, the evaluate command, a CLI that helps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from allconv_sweep.cli import check_overrides
from allconv_sweep.config import compose, validate
from allconv_sweep.config.files import group_options
from allconv_sweep.errors import UserError
from allconv_sweep.model.nets import count_parameters

ROOT = Path(__file__).resolve().parents[1]


def composed(*overrides: str):
    cfg = compose(list(overrides))
    cfg.paths.output_dir = "/tmp/allconv_unused"
    return cfg


def test_instantiate_model_is_all_cnn_c_with_the_papers_parameter_count():
    net = instantiate(composed().model)
    assert isinstance(net, torch.nn.Sequential) and count_parameters(net) == 1_369_738
    assert net.name == "all_cnn_c" and net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("model", group_options("model"))
def test_every_model_option_instantiates(model):
    cfg = composed(f"model={model}", *(["data=imagenet"] if model == "all_cnn_imagenet" else []))
    assert isinstance(instantiate(cfg.model), torch.nn.Sequential)


@pytest.mark.parametrize("data", group_options("data"))
def test_every_data_option_instantiates(data):
    from allconv_sweep.training.components import datamodule_from

    dm = datamodule_from(composed(f"data={data}"))  # constructing reads nothing from disk
    assert type(dm).__name__ == {"cifar10": "CifarDataModule", "cifar100": "CifarDataModule",
                                 "fake": "FakeDataModule", "imagenet": "ImageNetDataModule"}[data]


@pytest.mark.parametrize("optimizer", group_options("optimizer"))
def test_every_optimizer_option_instantiates_and_binds_the_parameters_later(optimizer):
    make = instantiate(composed(f"optimizer={optimizer}").optimizer)
    opt = make([torch.nn.Parameter(torch.zeros(3))])
    expected = {"sgd": torch.optim.SGD, "sgd_nesterov": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
    assert type(opt) is expected
    if optimizer == "sgd_nesterov":
        assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


@pytest.mark.parametrize("scheduler", group_options("scheduler"))
def test_every_scheduler_option_instantiates(scheduler):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = instantiate(composed(f"scheduler={scheduler}").scheduler)(opt, max_epochs=35, steps_per_epoch=3)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)


@pytest.mark.parametrize("trainer", group_options("trainer"))
def test_every_trainer_option_instantiates(trainer, tmp_path):
    import lightning as L

    from allconv_sweep.training.precision import resolve

    node = composed(f"trainer={trainer}").trainer  # as train() does: precision=auto resolved for Lightning
    t = instantiate(node, accelerator="cpu", devices=1, logger=False, default_root_dir=str(tmp_path),
                    enable_checkpointing=False, precision=resolve(node.precision, "cpu").precision)
    assert isinstance(t, L.Trainer) and t.max_epochs == 350


@pytest.mark.parametrize("callbacks", group_options("callbacks"))
def test_every_callbacks_option_instantiates(callbacks):
    import lightning as L

    cfg = composed(f"callbacks={callbacks}")
    made = [instantiate(node) for node in cfg.callbacks.values()]
    assert made and all(isinstance(c, L.Callback) for c in made)
    names = {type(c).__name__ for c in made}
    assert {"ModelCheckpoint", "DivergenceMonitor", "EarlyStopping", "LearningRateMonitor", "Throughput"} <= names


@pytest.mark.parametrize("logger", group_options("logger"))
def test_every_logger_option_instantiates(logger, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import Logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = composed(f"logger={logger}")
    cfg.paths.output_dir = str(tmp_path)
    made = [instantiate(node) for node in cfg.logger.values()]
    assert made and all(isinstance(lg, Logger) for lg in made)
    assert {"csv", "tensorboard", "wandb"}.intersection(cfg.logger) == {logger} | {"csv"}


def test_a_user_adds_a_callback_by_config_alone(cfg_factory):
    from allconv_sweep.training.train import train

    cfg = cfg_factory(["model=model_a", "+callbacks.timer={_target_: lightning.pytorch.callbacks.Timer}"])
    assert train(cfg)["status"] == "ok"


def test_optimizer_adam_trains(cfg_factory):
    from allconv_sweep.training.train import train

    cfg = cfg_factory(["model=model_a", "optimizer=adam", "trainer.max_epochs=2"])
    m = train(cfg)
    assert m["status"] == "ok" and m["lr"] == 0.001
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    (opt,) = state["optimizer_states"]
    assert "exp_avg" in next(iter(opt["state"].values()))  # Adam's moments, not SGD's momentum buffer


# -------------------------------------------------------------------------------------------- schema

@pytest.mark.parametrize("overrides,message", [
    (["model.init=xavier_unifrom"], "model.init=xavier_unifrom: no such option; did you mean xavier_uniform? valid:"),
    (["model.head=dense"], "model.head=dense: no such option"),
    (["data.batch_size=0"], "data.batch_size=0: must be an integer > 0"),
    (["data=fake", "data.noise=-1"], "data.noise=-1.0: must be a finite number >= 0"),
    (["data=imagenet", "model=all_cnn_imagenet", "data.resize=100"], "data.resize=100 < data.image_size=224"),
    (["preprocess.gcn_scale=0"], "preprocess.gcn_scale=0.0: must be a finite number > 0"),
    (["augment=flip_translate", "augment.max_shift=-1"], "augment.max_shift=-1: must be an integer >= 0"),
    (["optimizer.momentum=1.5"], "optimizer.momentum=1.5: must be in [0, 1)"),
    (["optimizer=adam", "optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: must be two numbers"),
    (["scheduler.gamma=2"], "scheduler.gamma=2.0: must be in (0, 1]"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be an integer > 0"),
    (["trainer.precision=64"], "trainer.precision='64'; valid: 32-true, 32, bf16-mixed"),
    (["callbacks.divergence.dead_output_fraction=2"], "callbacks.divergence.dead_output_fraction=2.0: must be in [0, 1]"),
    (["logger=wandb", "logger.wandb.mode=sometimes"], "logger.wandb.mode='sometimes'; valid: null"),
    (["launcher=gpus", "launcher.jobs_per_gpu=0"], "launcher.jobs_per_gpu=0: must be an integer > 0"),
    (["launcher=slurm", "launcher.mem_gb=0"], "launcher.mem_gb=0: must be an integer > 0"),
    (["seed=-3"], "seed=-3: must be an integer in [0, 2^32)"),
    (["optimizer.lr=fast"], "optimizer.lr: Value 'fast' of type 'str' could not be converted to Float"),
    (["optimizer.lrr=0.1"], "optimizer.lrr: no such key; did you mean lr? valid keys in optimizer:"),
])
def test_a_schema_violation_in_any_group_is_one_line(overrides, message):
    with pytest.raises(UserError) as e:
        check_overrides(overrides)  # what `python -m allconv_sweep ...` runs before Hydra starts
    text = str(e.value)
    assert "\n" not in text and message in text, text


def test_an_env_default_is_a_number_where_the_schema_says_so(monkeypatch):
    """${oc.env:X,0.05} gives the string '0.05'; the schema's float field takes it as the number."""
    monkeypatch.delenv("ALLCONV_TEST_LR", raising=False)
    cfg = composed("optimizer.lr=${oc.env:ALLCONV_TEST_LR,0.05}")
    validate(cfg)
    assert cfg.optimizer.lr == 0.05 and isinstance(cfg.optimizer.lr, float)
    monkeypatch.setenv("ALLCONV_TEST_LR", "0.2")
    assert compose(["optimizer.lr=${oc.env:ALLCONV_TEST_LR,0.05}"]).optimizer.lr == 0.2


@pytest.mark.parametrize("head", ["conv", "fc"])
def test_every_init_and_head_the_schema_accepts_builds_a_network(head):
    """The schema's choices (validated at composition) and the builder's (nets.py) must not drift apart:
    each accepted value builds a network whose weights that init filled and whose head gives class scores."""
    from allconv_sweep.config.schema import Head, Init

    assert head in {h.value for h in Head}
    for init in Init:
        net = instantiate(compose(["model=model_a", f"model.init={init.value}", f"model.head={head}"]).model)
        weights = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert all(w.abs().sum() > 0 for w in weights), init
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------------------------------ evaluate

def run_module(module: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLCONV_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_evaluate_reproduces_the_runs_test_accuracy_exactly(tmp_path):
    run = tmp_path / "run"
    r = run_module("allconv_sweep", "experiment=smoke", "trainer.max_epochs=2", "data.train_size=160",
                   "print_config=false", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((run / "metrics.json").read_text())
    out = tmp_path / "eval"
    e = run_module("allconv_sweep.evaluate", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={out}",
                   cwd=tmp_path)
    assert e.returncode == 0, e.stderr[-2000:]
    scored = json.loads((out / "eval.json").read_text())
    assert scored["test_acc"] == record["test_acc"] and scored["test_acc_top5"] == record["test_acc_top5"]
    assert scored["result_key"] == record["result_key"] and scored["test_size"] == record["test_size"]
    assert "top-1" in e.stdout and f"{100 * record['test_acc']:.2f}%" in e.stdout


def test_evaluate_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    for args, needle in ((["ckpt=/no/such.ckpt"], "ckpt=/no/such.ckpt: no such file"),
                         ([f"ckpt={bad}"], "cannot be read as a checkpoint"),
                         ([f"ckpt={bad}", "device=tpu"], "device='tpu'; valid: auto, cpu, cuda, cuda:<index>")):
        r = run_module("allconv_sweep.evaluate", *args, f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
        assert not (tmp_path / "out" / "eval.json").exists()


# ------------------------------------------------------------------------------------------------ CLI

def test_tab_completion_of_the_installed_command():
    script = Path(sys.executable).parent / "allconv-sweep"
    assert script.is_file(), "pyproject.toml's [project.scripts] entry is not installed"
    env = {**os.environ, "COMP_LINE": "allconv-sweep model=all_cnn_"}
    out = subprocess.run([str(script), "-sc", "query=bash"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "model=all_cnn_c" in out.stdout.split(), out.stdout + out.stderr
    env["COMP_LINE"] = "allconv-sweep +sweep=table"
    assert "+sweep=table3" in subprocess.run([str(script), "-sc", "query=bash"], env=env, capture_output=True,
                                             text=True, timeout=120).stdout.split()


def test_a_sweep_without_plus_is_one_line():
    with pytest.raises(UserError, match=r"^sweep=lr_grid: a sweep is added to the run, not chosen: use \+sweep=lr_grid$"):
        check_overrides(["sweep=lr_grid"])


def test_help_opens_with_what_the_tool_does_examples_and_the_groups(tmp_path):
    r = run_module("allconv_sweep", "--help", cwd=tmp_path)
    assert r.returncode == 0
    head = r.stdout.splitlines()[0]
    assert head.startswith("allconv_sweep: the networks of \"Striving for Simplicity")
    for example in ("train ", "sweep ", "report ", "evaluate ", "visualize "):
        assert f"  {example}" in r.stdout
    assert "optimizer: adam, sgd, sgd_nesterov" in r.stdout and "+sweep: " in r.stdout and "table3" in r.stdout
    assert "schema" not in r.stdout and "_target_" not in r.stdout  # no config dump (that is --cfg job)


def test_cfg_hydra_resolve_works_for_a_sweep(tmp_path):
    r = run_module("allconv_sweep", "+sweep=lr_grid", "--cfg", "hydra", "--resolve", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "dir: outputs/sweeps/lr_grid" in r.stdout


def test_the_job_is_named_allconv_sweep(cfg_factory):
    cfg = compose([], return_hydra_config=True)
    assert cfg.hydra.job.name == "allconv_sweep"


def test_table3_is_the_pooling_ablation_by_the_papers_name():
    a = compose(["+sweep=table3"], return_hydra_config=True)
    b = compose(["+sweep=pooling_ablation"], return_hydra_config=True)
    assert a.sweep.name == b.sweep.name == "pooling_ablation"
    assert a.hydra.sweeper.params == b.hydra.sweeper.params
