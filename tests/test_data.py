"""CIFAR on disk (generated archives in the real format, and the real heads), preprocessing, splits,
augmentation."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from allconv_sweep.data import whitening
from allconv_sweep.data.augment import flip_translate
from allconv_sweep.data.cifar import ensure_cifar, read_cifar
from allconv_sweep.data.datamodule import CifarDataModule, FakeDataModule, stratified_split
from allconv_sweep.data.whitening import ZCA, fit_zca_cached, global_contrast_normalize
from allconv_sweep.errors import UserError
from allconv_sweep.training.components import datamodule_from
from conftest import shared_cifar


def write_cifar10(folder: Path, per_batch: int = 20, seed: int = 0) -> np.ndarray:
    """The CIFAR-10 python layout: pickled dicts with an N x 3072 uint8 `data` (R, G, B planes, row-major)."""
    rng = np.random.default_rng(seed)
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data}, f, protocol=4)
        first = data if first is None else first
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per_batch}, f)
    return first


def make_archive(tmp_path: Path) -> tuple[Path, str, np.ndarray]:
    src = tmp_path / "src"
    first = write_cifar10(src)
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), first


@pytest.fixture
def served(tmp_path):
    """The archive served over HTTP on loopback, as torchvision's downloader fetches the real one."""
    archive, md5, first = make_archive(tmp_path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{archive.name}", md5, first
    server.shutdown()


def test_download_from_a_local_server_extracts_and_reads(tmp_path, served):
    url, md5, first = served
    root = tmp_path / "data"
    out = ensure_cifar("cifar10", root, download=True, verify=False, url=url, archive_md5=md5)
    assert (out / "cifar-10-batches-py" / "data_batch_5").is_file()
    raw = read_cifar("cifar10", out)
    x, y = raw["train"]
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8 and raw["test"][0].shape == (20, 3, 32, 32)
    # orientation and channel order: the first 1024 values are the red plane, row-major
    assert torch.equal(x[0, 0].flatten(), torch.from_numpy(first[0, :1024]))
    assert torch.equal(x[0, 2, 1, :], torch.from_numpy(first[0, 2048 + 32:2048 + 64]))
    assert y[:10].tolist() == list(range(10)) and raw["classes"][3] == "c3"


def test_download_checksum_failure_is_one_line(tmp_path, served):
    url, md5, _ = served
    with pytest.raises(UserError, match=r"cifar-10-python.tar.gz failed its md5 check \(0+ expected\)"):
        ensure_cifar("cifar10", tmp_path / "data", download=True, verify=False, url=url, archive_md5="0" * 32)


def test_missing_files_without_network_names_folder_and_archive(tmp_path):
    with pytest.raises(UserError) as e:
        ensure_cifar("cifar10", tmp_path / "empty", download=True, verify=True, url="http://127.0.0.1:9/x.tar.gz")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "empty") in msg and "cifar-10-python.tar.gz" in msg
    with pytest.raises(UserError, match="data.download=true"):
        ensure_cifar("cifar10", tmp_path / "empty2", download=False, verify=True)


def test_present_files_touch_no_network(tmp_path):
    write_cifar10(tmp_path)
    # an unreachable url: success proves nothing was fetched
    assert ensure_cifar("cifar10", tmp_path, download=True, verify=False, url="http://127.0.0.1:9/x") == tmp_path.resolve()


def test_verification_names_the_file_that_differs(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(UserError, match=r"data_batch_1 is corrupt or not the official file.*data.verify=false"):
        ensure_cifar("cifar10", tmp_path, download=False, verify=True)


def test_corrupt_pickle_is_named_even_without_verification(tmp_path):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(UserError, match=r"cannot read .*data_batch_3.*corrupt"):
        read_cifar("cifar10", ensure_cifar("cifar10", tmp_path, download=False, verify=False))


# -- preprocessing ---------------------------------------------------------------------------------
def test_gcn_gives_zero_mean_and_norm_55():
    x = torch.rand(16, 3, 8, 8) * 255
    g = global_contrast_normalize(x, 55.0)
    assert torch.allclose(g.mean(dim=1), torch.zeros(16), atol=1e-4)
    assert torch.allclose(g.norm(dim=1), torch.full((16,), 55.0), rtol=1e-4)


def test_zca_whitens_to_near_identity_and_follows_the_filter_bias():
    torch.manual_seed(0)
    d, n = 24, 20000
    mixing = torch.randn(d, d) * torch.linspace(0.2, 5, d)   # strongly correlated, unequal variances
    x = torch.randn(n, d) @ mixing
    white = ZCA.fit(x, filter_bias=1e-6)(x)
    cov = torch.cov(white.T.double())
    assert torch.allclose(cov, torch.eye(d, dtype=torch.float64), atol=0.02)
    # with the paper's filter bias 0.1, each eigenvalue l becomes l / (l + 0.1)
    x_small = x / x.std() * 0.3
    lam = torch.linalg.eigvalsh(torch.cov(x_small.T.double(), correction=0))
    got = torch.linalg.eigvalsh(torch.cov(ZCA.fit(x_small, 0.1)(x_small).T.double(), correction=0))
    assert torch.allclose(got, lam / (lam + 0.1), atol=1e-3)
    # ZCA (not PCA) whitening: the transform is symmetric, so images stay image-like
    assert torch.allclose(ZCA.fit(x, 0.1).matrix, ZCA.fit(x, 0.1).matrix.T, atol=1e-5)


def test_zca_cache_is_hit_the_second_time(tmp_path, monkeypatch):
    x = torch.randn(500, 12)
    zca1, hit1 = fit_zca_cached(x, 0.1, tmp_path, {"dataset": "t"})
    monkeypatch.setattr(whitening.ZCA, "fit", classmethod(lambda cls, *a, **k: pytest.fail("refitted")))
    zca2, hit2 = fit_zca_cached(x, 0.1, tmp_path, {"dataset": "t"})
    assert (hit1, hit2) == (False, True) and torch.equal(zca1.matrix, zca2.matrix)
    assert len(list(tmp_path.glob("zca_t_*.pt"))) == 1


def test_zca_cache_key_changes_with_parameters(tmp_path):
    x = torch.randn(300, 12)
    fit_zca_cached(x, 0.1, tmp_path, {"dataset": "t"})
    _, hit = fit_zca_cached(x, 0.2, tmp_path, {"dataset": "t"})
    assert not hit and len(list(tmp_path.glob("*.pt"))) == 2


def test_datamodule_fits_gcn_zca_on_the_training_split_only(tmp_path):
    write_cifar10(tmp_path / "d", per_batch=60)
    data = {"name": "cifar10", "num_classes": 10, "root": str(tmp_path / "d"), "download": False, "verify": False,
            "val_size": 50, "split_seed": 0, "classes": None, "batch_size": 16, "eval_batch_size": 50,
            "on_device": False, "num_workers": 0, "image_size": 32,
            "preprocess": {"name": "gcn_zca", "gcn_scale": 55.0, "zca_filter_bias": 0.1}, "augment": {"name": "none"},
            "cache_dir": str(tmp_path / "cache")}
    dm = CifarDataModule(**data)
    dm.setup()
    assert dm.describe() == {"train": 250, "val": 50, "test": 60} and dm.cache_hit is False
    xt = dm.splits["train"][0].flatten(1)
    assert torch.allclose(xt.mean(0), torch.zeros(3072), atol=1e-3)  # centred with the training mean
    assert xt.shape[1] == 3072 and not torch.allclose(dm.splits["val"][0].flatten(1).mean(0), torch.zeros(3072), atol=1e-3)
    dm2 = CifarDataModule(**data)
    dm2.setup()
    assert dm2.cache_hit is True and torch.equal(dm2.splits["test"][0], dm.splits["test"][0])


def test_stratified_split_is_fixed_disjoint_and_proportional():
    y = torch.arange(1000) % 10
    tr, va = stratified_split(y, 100, seed=0)
    tr2, va2 = stratified_split(y, 100, seed=0)
    assert torch.equal(va, va2) and len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == 1000
    assert torch.bincount(y[va]).tolist() == [10] * 10
    assert not torch.equal(stratified_split(y, 100, seed=1)[1], va)


def test_class_subset_relabels_and_val_size_too_large(cfg_factory):
    cfg = cfg_factory(["data.classes=[2,5,7]", "data.num_classes=3", "data.val_size=30", "data.train_size=400"])
    from allconv_sweep.config import to_container
    r = to_container(cfg)
    dm = datamodule_from(r)
    dm.setup()
    assert set(dm.splits["train"][1].tolist()) == {0, 1, 2} and dm.class_names == ["class_2", "class_5", "class_7"]
    r["data"]["val_size"] = 10_000
    with pytest.raises(UserError, match=r"data.val_size=10000 but the training set has \d+ images"):
        datamodule_from(r).setup()


# -- augmentation ----------------------------------------------------------------------------------
def test_flip_translate_moves_pixels_and_keeps_labels():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    torch.manual_seed(0)
    out = flip_translate(x, max_shift=5, flip=True)
    assert out.shape == x.shape
    for i in range(2):  # every output is a shifted (maybe flipped) copy of its own input, zeros elsewhere
        ok = False
        for flip in (False, True):
            src = x[i].flip(-1) if flip else x[i]
            for dy in range(-5, 6):
                for dx in range(-5, 6):
                    ref = torch.zeros_like(src)
                    ys, yd = slice(max(0, -dy), 32 - max(0, dy)), slice(max(0, dy), 32 - max(0, -dy))
                    xs, xd = slice(max(0, -dx), 32 - max(0, dx)), slice(max(0, dx), 32 - max(0, -dx))
                    ref[:, yd, xd] = src[:, ys, xs]
                    ok = ok or torch.equal(ref, out[i])
        assert ok
    # through the data module: labels untouched, augmentation only while training
    dm = FakeDataModule(name="fake", num_classes=10, batch_size=2, eval_batch_size=2, val_size=0,
                        preprocess={"name": "none"}, augment={"name": "flip_translate", "max_shift": 5, "flip": True})
    y = torch.tensor([3, 7])
    dm.trainer = type("T", (), {"training": True})()
    ax, ay = dm.on_after_batch_transfer((x, y), 0)
    assert torch.equal(ay, y) and not torch.equal(ax, x)
    dm.trainer = type("T", (), {"training": False})()
    assert torch.equal(dm.on_after_batch_transfer((x, y), 0)[0], x)


# -- the real heads in ../shared/data --------------------------------------------------------------
def test_shared_cifar10_head_loads_with_right_orientation_and_labels():
    root = shared_cifar("cifar10")
    with pytest.warns(UserWarning, match="data_batch_5 is missing"):
        raw = read_cifar("cifar10", ensure_cifar("cifar10", root, download=False, verify=False))
    x, y = raw["train"]
    assert x.shape == (4153, 3, 32, 32) and raw["test"][0].shape == (1017, 3, 32, 32)
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # the real first labels of data_batch_1
    assert raw["classes"][:3] == ["airplane", "automobile", "bird"] and set(y.tolist()) == set(range(10))
    xf = x.float()
    # rows are rows: neighbours along a row and a column correlate as strongly (a transposed or
    # mis-reshaped image would break one of them)
    def corr(a, b):
        return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    assert corr(xf[..., :, 1:], xf[..., :, :-1]) > 0.85 and corr(xf[..., 1:, :], xf[..., :-1, :]) > 0.85
    # channel order RGB: ships and planes are bluer than they are red; the sky is at the top
    blue_minus_red = (xf[:, 2] - xf[:, 0]).mean(dim=(1, 2))
    assert blue_minus_red[(y == 0) | (y == 8)].mean() > 5
    top, bottom = xf[y == 0][:, 2, :8].mean(), xf[y == 0][:, 2, -8:].mean()
    assert top > bottom  # airplanes: sky above


def test_shared_cifar100_head_loads():
    root = shared_cifar("cifar100")
    raw = read_cifar("cifar100", ensure_cifar("cifar100", root, download=False, verify=False))
    assert raw["train"][0].shape == (486, 3, 32, 32) and raw["test"][0].shape == (916, 3, 32, 32)
    assert len(raw["classes"]) == 100 and int(raw["train"][1].max()) < 100


# -- a dataset file is data, never code ---------------------------------------------------------------
class _Payload:
    """A pickle that, if unpickled without restriction, runs a shell command creating a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_file_that_would_run_code_is_refused_and_never_runs(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with open(bad, "wb") as f:
        pickle.dump({"data": _Payload(marker), "labels": [0]}, f)
    with pytest.raises(UserError, match=r"data_batch_2.*refused global posix.system"):
        read_cifar("cifar10", ensure_cifar("cifar10", tmp_path, download=False, verify=False))
    assert not marker.exists()


@pytest.mark.parametrize("batch,change,match", [
    ("data_batch_1", lambda e: {**e, "data": e["data"].astype(np.float32) / 255}, r"'data' is a float32 array"),
    ("data_batch_1", lambda e: {**e, "data": e["data"].astype(np.int64)}, r"'data' is a int64 array"),
    ("test_batch", lambda e: {**e, "labels": [11] + list(e["labels"][1:])}, r"test_batch.*label 11 outside 0..9"),
    ("data_batch_3", lambda e: {**e, "labels": [-1] + list(e["labels"][1:])}, r"data_batch_3.*label -1 outside 0..9"),
])
def test_cifar_files_with_wrong_types_or_labels_are_one_line_errors(tmp_path, batch, change, match):
    """Silently casting float [0,1] data to uint8 gives all-zero images that train to status ok; an
    out-of-range label crashes mid-run. Both are refused when the files are read, before training."""
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / batch
    with open(path, "rb") as f:
        entry = pickle.load(f)  # the test's own file
    with open(path, "wb") as f:
        pickle.dump(change(entry), f)
    with pytest.raises(UserError, match=match):
        read_cifar("cifar10", ensure_cifar("cifar10", tmp_path, download=False, verify=False))


def test_zca_cache_key_covers_every_training_image(tmp_path):
    """Changing one image that a sample of every 64th would not see still means another whitening."""
    x = torch.randn(640, 12)
    fit_zca_cached(x, 0.1, tmp_path, {"dataset": "t"})
    y = x.clone()
    y[1] += 1.0  # not a multiple of 64
    _, hit = fit_zca_cached(y, 0.1, tmp_path, {"dataset": "t"})
    assert not hit


def test_a_mirror_given_as_data_url_reaches_the_download(tmp_path, monkeypatch):
    """+data.url / +data.archive_md5 (a mirror of the archive) are handed to ensure_cifar, not dropped."""
    from allconv_sweep.data import datamodule

    seen = {}
    monkeypatch.setattr(datamodule, "ensure_cifar", lambda *a: seen.setdefault("args", a) and tmp_path)
    dm = CifarDataModule(name="cifar10", num_classes=10, root=str(tmp_path), download=True, verify=False,
                         val_size=0, batch_size=8, eval_batch_size=8, preprocess={"name": "none"},
                         augment={"name": "none"}, url="http://mirror.example/c.tar.gz", archive_md5="abc")
    dm.prepare_data()
    assert seen["args"][-2:] == ("http://mirror.example/c.tar.gz", "abc")
