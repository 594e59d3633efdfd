"""The real CIFAR-10/100 "python version" files. torchvision's dataset classes hold the file names, the
archive's URL and every md5, and download and check them; reading is our own, so that a bad file is named."""

from __future__ import annotations

import io
import pickle
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from allconv_sweep.errors import UserError

DATASETS = {"cifar10": CIFAR10, "cifar100": CIFAR100}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}

# The globals a real CIFAR "python version" file can name: numpy's array reconstruction (numpy < 2 and
# >= 2 spell the module differently) and dtypes; dicts, lists, strings, bytes and numbers need none.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol-5 arrays
    ("_codecs", "encode"),  # how Python 2 pickles of bytes arrays come back under encoding="latin1"
}


class _CifarUnpickler(pickle.Unpickler):
    """A dataset file is data, never code: a pickle naming any global but _ALLOWED_GLOBALS is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}: not part of the CIFAR file format")


def load_batch(path: Path) -> object:
    with open(path, "rb") as f:
        return _CifarUnpickler(io.BufferedReader(f), encoding="latin1").load()


def _problem(cls, root: Path, verify: bool) -> str | None:
    """None when every file is there (and, with verify, has the official md5); else what is wrong. Without
    verify, a subset (like ../shared/data's heads) needs only the test, the meta and one training file."""
    present_train = [n for n, _ in cls.train_list if (root / cls.base_folder / n).is_file()]
    for name, md5 in cls.train_list + cls.test_list + [(cls.meta["filename"], cls.meta["md5"])]:
        path = root / cls.base_folder / name
        if not path.is_file():
            if not verify and present_train and path.name in dict(cls.train_list):
                continue
            return f"missing {path}"
        if verify and not check_integrity(str(path), md5):
            return (f"{path} is corrupt or not the official file (md5 differs from {md5}); "
                    f"re-download it, or set data.verify=false to accept a local copy")
    return None


def ensure_cifar(name: str, root: str | Path, download: bool, verify: bool,
                 url: str | None = None, archive_md5: str | None = None) -> Path:
    """Make sure the extracted files are under ``root``; download/extract only when they are not."""
    cls = DATASETS[name]
    root = Path(root).expanduser().resolve()
    problem = _problem(cls, root, verify)
    archive = root / cls.filename
    if problem is not None and problem.startswith("missing") and (download or archive.is_file()):
        md5 = archive_md5 or cls.tgz_md5
        try:
            # a present archive with the right md5 is extracted without touching the network
            download_and_extract_archive(url or cls.url, str(root), filename=cls.filename,
                                         md5=md5 if (verify or archive_md5) else None)
        except (urllib.error.URLError, OSError) as e:
            reason = str(getattr(e, "reason", e)).splitlines()[0][:120]
            raise UserError(f"{name}: no data in {root} and the download failed ({reason}): put "
                            f"{cls.filename} (from {cls.url}) or its extracted {cls.base_folder}/ in {root}, "
                            f"or set data.root") from None
        except RuntimeError as e:  # torchvision: "File not found or corrupted."
            raise UserError(f"{name}: {archive} failed its md5 check ({md5} expected): delete it and "
                            f"download again, or set data.verify=false for a local copy") from e
        problem = _problem(cls, root, verify)
    if problem is None:
        return root
    if problem.startswith("missing"):
        raise UserError(f"{name}: {problem}. Put {cls.filename} (from {cls.url}) or its extracted "
                        f"{cls.base_folder}/ in {root}, set data.root=<folder>, or data.download=true")
    raise UserError(f"{name}: {problem}")


def read_cifar(name: str, root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor] | list[str]]:
    """uint8 images (N, 3, 32, 32) and int64 labels for train and test, plus class names."""
    cls = DATASETS[name]
    label_key = "labels" if name == "cifar10" else "fine_labels"
    out = {}
    for split, files in (("train", cls.train_list), ("test", cls.test_list)):
        xs, ys = [], []
        for fname, _ in files:
            path = root / cls.base_folder / fname
            if split == "train" and not path.is_file():  # a partial local copy (verify=false)
                warnings.warn(f"{name}: {path} is missing; training on the files that are present")
                continue
            try:
                entry = load_batch(path)
                if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
                    raise ValueError(f"not a CIFAR batch (a dict with 'data' and '{label_key}')")
                raw = entry["data"]
                if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 2 or raw.shape[1] != 3072:
                    what = f"{raw.dtype} array of shape {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
                    raise ValueError(f"'data' is a {what}; the format stores uint8 rows of 3072 values")
                data = raw.reshape(-1, 3, 32, 32)
                labels = np.asarray(entry[label_key])
                if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
                    raise ValueError(f"'{label_key}' is not a list of integers")
                labels = labels.astype(np.int64)
                if len(labels) != len(data):
                    raise ValueError(f"{len(data)} images but {len(labels)} labels")
                bad = labels[(labels < 0) | (labels >= NUM_CLASSES[name])]
                if len(bad):
                    raise ValueError(f"label {int(bad[0])} outside 0..{NUM_CLASSES[name] - 1}")
            except Exception as e:  # noqa: BLE001 - any unreadable file is named
                raise UserError(f"{name}: cannot read {path} ({type(e).__name__}: {str(e)[:120]}); "
                                f"the file is corrupt or not a CIFAR file: replace it") from None
            xs.append(data)
            ys.append(labels)
        out[split] = (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
    meta_path = root / cls.base_folder / cls.meta["filename"]
    try:
        out["classes"] = [str(c) for c in load_batch(meta_path)[cls.meta["key"]]]
    except Exception:  # noqa: BLE001
        raise UserError(f"{name}: cannot read {meta_path}: the file is corrupt: replace it") from None
    return out
