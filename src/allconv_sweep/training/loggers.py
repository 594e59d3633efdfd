"""Loggers that survive a resume: the CSV history of a run killed and started again is kept."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from allconv_sweep.atomic import atomic_write


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes metrics.csv when its folder is not empty (every resume); this one
    appends to it, keeping its header (widened, as Lightning does, when new columns appear)."""

    rows_written = 0  # data rows in metrics.csv: what a checkpoint records (resume.ExactResume)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.metrics_keys = list(reader.fieldnames or [])
                self.rows_written = sum(1 for _ in reader)

    def save(self) -> None:
        n = len(self.metrics)
        super().save()
        self.rows_written += n


class ResumableCSVLogger(CSVLogger):
    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def truncate_csv(path: str | Path, keep_epochs_below: int) -> None:
    """Drop the rows of epochs >= keep_epochs_below (an epoch cut short by a kill, before its resume)."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [r for r in rows if not r.get("epoch") or int(float(r["epoch"])) < keep_epochs_below]
    if len(kept) < len(rows):
        _rewrite(path, fields, kept)


def restore_csv(path: str | Path, rows: int, pending: dict | None = None) -> None:
    """Keep the first ``rows`` data rows and append ``pending`` (a checkpoint's record: resume.repair_csv), under
    the header Lightning would write (the sorted keys), which the writer widens as new keys are logged."""
    path, kept = Path(path), []
    if path.is_file():
        with open(path, newline="") as f:
            kept = [{k: v for k, v in r.items() if k is not None and v not in ("", None)}
                    for r in list(csv.DictReader(f))[:rows]]
    kept += [dict(pending)] if pending else []
    if not kept:  # nothing logged before the checkpoint: the writer starts the file, as in a first start
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _rewrite(path, sorted(set().union(*kept)), kept)


def _rewrite(path: Path, fields: list, rows: list[dict]) -> None:
    with atomic_write(path, "w") as f:  # a kill never leaves half of it
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
