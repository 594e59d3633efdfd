"""Records of runs are data, never code (issue 18, cases 1 and 2): a checkpoint's stored config and a sweep
folder's recorded overrides are rebuilt through our own composition (allconv_sweep.config.records); anything
else in them (a foreign _target_, an added callback, Hydra's settings, an option conf/ lacks) is refused in
one line naming the file and the key, exit 2, and nothing of it runs."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from allconv_sweep.config import config_dir
from allconv_sweep.errors import UserError
from conftest import job_dirs, make_cfg, multirun

REFUSED = "refused: checkpoints and run folders are read as data, never run"


class _WritesMarker:
    """Unpickling it (numpy.load(allow_pickle=True)) writes the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _evil_npy(folder: Path) -> tuple[Path, Path]:
    marker = folder / "MARKER"
    npy = folder / "evil.npy"
    npy.write_bytes(pickle.dumps(_WritesMarker(marker)))
    return npy, marker


def _run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLCONV_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real last.ckpt of a tiny run."""
    from allconv_sweep.training.train import train

    tmp = tmp_path_factory.mktemp("trained")
    train(make_cfg(tmp, ["model=model_a"]))
    return tmp / "run" / "checkpoints" / "last.ckpt"


def _edited(ckpt: Path, out: Path, edit) -> Path:
    state = torch.load(ckpt, weights_only=True)
    bad = copy.deepcopy(state)
    edit(bad["hyper_parameters"]["cfg"])
    torch.save(bad, out)
    return out


# ------------------------------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("tool", ["evaluate", "visualize"])
def test_a_checkpoint_whose_model_is_numpy_load_runs_nothing(trained, tmp_path, tool):
    npy, marker = _evil_npy(tmp_path)

    def edit(cfg):
        cfg["model"] = {"_target_": "numpy.load", "file": str(npy), "allow_pickle": True}

    bad = _edited(trained, tmp_path / "evil.ckpt", edit)
    r = _run(f"allconv_sweep.{tool}", f"ckpt={bad}", "device=cpu", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0] == (f"error: {bad}: key model._target_ = 'numpy.load' is not what this tool builds (this tool "
                        f"builds allconv_sweep.model.nets.build_network); {REFUSED}")
    assert not marker.exists()
    assert not (tmp_path / "out" / "eval.json").exists() and not (tmp_path / "out" / "index.md").exists()


@pytest.mark.parametrize("tool", ["evaluate", "visualize"])
def test_a_checkpoint_whose_data_writes_a_file_runs_nothing(trained, tmp_path, tool):
    marker = tmp_path / "MARKER"

    def edit(cfg):  # builtins.dict takes the data module's keyword arguments; its entry writes the file first
        cfg["data"] = {"_target_": "builtins.dict", "name": "fake", "num_classes": 10,
                       "x": {"_target_": "pathlib.Path.write_text", "data": "ran",
                             "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]}}}

    bad = _edited(trained, tmp_path / "evil.ckpt", edit)
    r = _run(f"allconv_sweep.{tool}", f"ckpt={bad}", "device=cpu", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"error: {bad}: key data._target_ = 'builtins.dict' is not what this tool builds "
                               f"(this tool builds allconv_sweep.data.FakeDataModule)") and lines[0].endswith(REFUSED)
    assert not marker.exists()


@pytest.mark.parametrize("where, key", [
    ("model.layers", "model.layers[0]._target_"),        # a layer entry: instantiate is recursive
    ("data.noise", "data.noise._target_"),               # under our own _target_
    ("preprocess.gcn_scale", "preprocess.gcn_scale"),    # a key the schema does not have
])
def test_a_payload_nested_under_a_legit_node_is_refused_and_a_legit_checkpoint_loads_as_trained(
        trained, tmp_path, where, key):
    from allconv_sweep.model.module import load_checkpoint

    # legit: the same weights and, node by node, the config it was trained with
    model = load_checkpoint(trained)
    state = torch.load(trained, weights_only=True)
    stored = state["hyper_parameters"]["cfg"]
    for node in ("model", "data", "preprocess", "augment", "trainer"):
        assert model.config[node] == stored[node]
    assert model.config["seed"] == stored["seed"] and model.config["paths"]["cache_dir"] == stored["paths"]["cache_dir"]
    assert all(torch.equal(v, state["state_dict"][k]) for k, v in model.state_dict().items())

    npy, marker = _evil_npy(tmp_path)
    payload = {"_target_": "numpy.load", "file": str(npy), "allow_pickle": True}

    def edit(cfg):
        node, leaf = where.split(".")
        if leaf == "layers":
            cfg[node][leaf] = [payload] + cfg[node][leaf]
        else:
            cfg[node][leaf] = payload

    bad = _edited(trained, tmp_path / "evil.ckpt", edit)
    with pytest.raises(UserError) as e:
        load_checkpoint(bad)
    assert str(e.value).startswith(f"{bad}: key {key}") and str(e.value).endswith(REFUSED)
    assert not marker.exists()


def test_a_stored_value_of_the_wrong_type_or_option_is_refused(trained, tmp_path):
    from allconv_sweep.model.module import load_checkpoint

    for edit, needle in (
            (lambda c: c["model"].update(name="../../evil"), "key model.name = '../../evil' is not an option of the model group"),
            (lambda c: c["model"].update(init="nope"), "key model.init = 'nope': Invalid value 'nope'"),
            (lambda c: c["data"].update(batch_size="${oc.env:HOME}"), "key data.batch_size = '${oc.env:HOME}' is an interpolation"),
            (lambda c: c.update(hydra={"run": {"dir": "/"}}), "key hydra: a run's record holds no Hydra settings")):
        bad = _edited(trained, tmp_path / "bad.ckpt", edit)
        with pytest.raises(UserError) as e:
            load_checkpoint(bad)
        assert str(e.value).startswith(f"{bad}: {needle}"), str(e.value)


# ---------------------------------------------------------------------------------------- sweep folders

@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweeps")
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.05"], root) == 0
    return root / "lr_grid"


def _hostile_copy(sweep: Path, dst: Path, change) -> Path:
    shutil.copytree(sweep, dst)
    for m in dst.glob("*/metrics.json"):
        record = json.loads(m.read_text())
        record["overrides"] = change(record["overrides"])
        m.write_text(json.dumps(record))
    return dst


def _evil_group_option(tmp_path: Path, npy: Path) -> str:
    """A model 'option' outside conf/model/, reached by ../ (Hydra joins the group's folder and the value)."""
    (tmp_path / "evilmodel.yaml").write_text(
        f"name: evilmodel\nfamily: A\nvariant: base\npayload:\n  _target_: numpy.load\n  file: {npy}\n"
        f"  allow_pickle: true\n")
    return os.path.relpath(tmp_path / "evilmodel", config_dir() / "model")


@pytest.mark.parametrize("case", ["added_callback", "hydra_key", "group_outside_conf", "no_such_option",
                                  "resolver_in_value", "written_elsewhere"])
def test_a_sweep_folder_whose_recorded_overrides_build_something_else_launches_nothing(
        finished_sweep, tmp_path, capsys, case):
    npy, marker = _evil_npy(tmp_path)
    bad = {"added_callback": f"+callbacks.x={{_target_:numpy.load,file:'{npy}',allow_pickle:true}}",
           "hydra_key": "hydra.sweep.subdir=../escaped",
           "group_outside_conf": f"model={_evil_group_option(tmp_path, npy)}",
           "no_such_option": "model=model_z",
           # a resolver in a value runs when the job resolves it: oc.decode's YAML holds what to build
           "resolver_in_value": f"model.layers='${{oc.decode:\"[{{_target_: os.makedirs, _args_: [{marker}]}}]\"}}'",
           # a job built from a record writes into its own folder of the sweep, not into another's
           "written_elsewhere": f"paths.output_dir={tmp_path / 'elsewhere'}"}[case]
    sweep = _hostile_copy(finished_sweep, tmp_path / "sweep",
                          lambda ov: [o for o in ov if not (case.endswith(("conf", "option")) and o.startswith("model="))] + [bad])
    before = sorted(p for p in tmp_path.rglob("*") if p.is_dir())
    code = multirun(["+sweep=seeds", f"sweep.from={sweep}", "sweep.n_seeds=1"], tmp_path, tiny=False)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1, err
    (job,) = job_dirs(sweep)
    assert err[0].startswith(f"error: {job / 'metrics.json'}: override {bad!r}") and err[0].endswith(REFUSED)
    assert not marker.exists()
    assert sorted(p for p in tmp_path.rglob("*") if p.is_dir()) == before  # no job folder, here or elsewhere


def test_recorded_overrides_are_checked_one_by_one():
    from allconv_sweep.config.records import overrides_from_record

    legit = ["optimizer.lr=0.05", "+sweep=lr_grid", "data=fake", "data.train_size=64", "model=model_a",
             "trainer.enable_progress_bar=False", "sweep.root=/tmp/x", "paths.cache_dir=/tmp/c",
             "model.layers=[{conv: {out: 10, k: 1}}, {global_avg: {}}]"]
    assert overrides_from_record(legit, "f.json") == legit
    for bad, needle in (
            ("~seed", "adds or deletes an entry"), ("++trainer.x=1", "adds or deletes an entry"),
            ("+sweep=_common", "is not an option of the sweep group"),
            ("model=[model_a,../../evil]", "'../../evil' is not an option of the model group"),
            ("optimizer._target_=numpy.load", "sets a key that tells Hydra what to build"),
            ("model.layers=[{_target_: numpy.load}]", "its value holds _target_"),
            ("hydra/launcher=basic", "sets Hydra's own config"), ("seed=1,2", "is a sweep of several values"),
            ("model@x=model_a", "moves a config to another package"),
            ("data.no_such_key=1", "do not compose with this tool's config"),
            ("data.batch_size=abc", "do not compose with this tool's config")):
        with pytest.raises(UserError) as e:
            overrides_from_record(["data=fake", bad], "f.json")
        assert str(e.value).startswith("f.json: ") and needle in str(e.value) and str(e.value).endswith(REFUSED), str(e.value)
    with pytest.raises(UserError, match="is not a list of key=value strings"):
        overrides_from_record({"seed": 1}, "f.json")


# ------------------------------------------------------------------------------ a run folder's values

def test_a_run_folders_config_values_are_read_as_data(tmp_path, monkeypatch):
    """report, stability and the dashboard read values of .hydra/config.yaml: literals and references to
    other keys of the same file; nothing that needs a resolver (an env variable, Hydra's runtime)."""
    from allconv_sweep.config.records import config_values
    from allconv_sweep.results.dashboard import wandb_settings

    monkeypatch.setenv("SOME_SECRET", "s3cret")
    job = tmp_path / "sweep" / "job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(
        "sweep: {name: lr_grid}\ntracking: {group: '${sweep.name}'}\n"
        "logger: {wandb: {project: '${oc.env:SOME_SECRET}', entity: null, mode: offline}}\n"
        "optimizer: {lr: 1}\nseed: 3\n")
    values = config_values(job / ".hydra" / "config.yaml", {"tracking.group": str, "logger.wandb.project": str,
                                                            "optimizer.lr": float, "seed": int})
    assert values == {"tracking.group": "lr_grid", "logger.wandb.project": None, "optimizer.lr": 1.0, "seed": 3}

    class Row:
        path, wandb_run_id = job, "abc"

    assert wandb_settings(tmp_path / "sweep", [Row()])["project"] == "allconv_sweep"  # not the env's value
