"""What a researcher looks at after a sweep, on hand-written run folders: figures whose texts fit their canvas,
bars from zero, a one-epoch curve as a point on a whole-epoch axis, image counts named by what they count, and
the end-of-sweep table (rich on a terminal, plain text in a pipe)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from rich.console import Console

from allconv_sweep.results.report import write_report
from test_figures import _log
from test_report import job


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """{file name: its matplotlib figure}, as write_report saved it (after its layout)."""
    kept, savefig = {}, Figure.savefig

    def keep(fig, path, **kwargs) -> None:
        savefig(fig, path, **kwargs)
        kept[Path(path).name] = fig

    monkeypatch.setattr(Figure, "savefig", keep)
    return kept


def drawn_texts(fig) -> list[Text]:
    """The figure's non-empty texts as drawn: tick labels only of ticks inside their axis' view."""
    FigureCanvasAgg(fig).draw()  # pyplot.close left it a bare canvas: one that draws, the layout as saved
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = 1e-9 * max(1.0, abs(hi))
            for tick in list(axis.majorTicks) + list(axis.minorTicks):
                if tick.get_loc() is None or not lo - eps <= tick.get_loc() <= hi + eps:
                    hidden |= {tick.label1, tick.label2}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and t not in hidden]


def two_data_sets(sweep: Path) -> None:
    """All-CNN-C on CIFAR-10+ and CIFAR-100 (the paper's numbers for both): a long title on a narrow figure."""
    for data, augment in (("cifar10", "flip_translate"), ("cifar100", "none")):
        for lr, val in ((0.1, 0.3), (0.05, 0.2)):
            d = job(sweep, "all_cnn_c", lr, data=data, augment=augment, extra=(f"data={data}",), val=val, test=val,
                    val_size=5000, train_size=45000)
            _log(d, [0.9, 0.5, val], drop_at=2)


def test_every_title_and_label_fits_its_figure_at_the_saved_size(tmp_path, drawn):
    two_data_sets(tmp_path / "two_sets")
    write_report(tmp_path / "two_sets", echo=False)
    assert set(drawn) == {"table3.png", "lr_grid.png", "curves.png"}
    for name, fig in drawn.items():
        texts = drawn_texts(fig)
        canvas, renderer = fig.bbox, fig.canvas.get_renderer()
        for text in texts:
            box = text.get_window_extent(renderer)
            assert (box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1 and box.y0 >= canvas.y0 - 1
                    and box.y1 <= canvas.y1 + 1), f"{name}: {text.get_text()!r} at {box} outside {canvas}"


def test_table3_bars_start_at_zero(tmp_path, drawn):
    two_data_sets(tmp_path / "two_sets")
    write_report(tmp_path / "two_sets", echo=False)
    (ax,) = drawn["table3.png"].axes
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 33.71  # the tallest bar (CIFAR-100, the paper) inside


def test_a_one_epoch_curve_is_a_visible_point_on_a_whole_epoch_axis(tmp_path, drawn):
    d = job(tmp_path / "one", "all_cnn_c", 0.05, data="fake", val=0.9062, test=0.9062)
    _log(d, [0.9062])
    write_report(tmp_path / "one", echo=False)
    (ax,) = drawn["curves.png"].axes
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [1] and line.get_marker() == "o" and line.get_markersize() >= 5
    low, high = ax.get_xlim()
    assert low <= 0.5 and high >= 1.5  # not 0.96-1.04
    lo, hi = sorted(ax.xaxis.get_view_interval())
    assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1]  # whole epochs only
    assert ax.get_ylim()[1] - ax.get_ylim()[0] >= 2  # a readable error axis around the point


def test_every_image_count_in_the_report_names_what_it_counts(tmp_path):
    job(tmp_path / "heads", "all_cnn_c", 0.05, data="cifar10", train_size=384, val_size=128)
    md = write_report(tmp_path / "heads", plot=False, echo=False)["markdown"]
    assert "lr selection: validation held out (384 training images, 128 validation images)" in md
    assert not re.search(r"validation held out \(384 images\)", md)


def test_end_of_sweep_report_is_a_table_then_the_path_of_results_md(tmp_path, capsys):
    for lr, val in ((0.1, 0.3), (0.05, 0.2)):
        job(tmp_path / "grid", "all_cnn_c", lr, val=val, test=val)
    result = write_report(tmp_path / "grid", plot=False)  # stdout captured: not a terminal
    piped = capsys.readouterr().out
    assert "\x1b[" not in piped and "|---|" not in piped and "All-CNN-C" in piped and "┃" in piped
    assert piped.rstrip().splitlines()[-2] == f"report: {tmp_path / 'grid' / 'results.md'}"
    from allconv_sweep.results.report import print_report
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    print_report(tmp_path / "grid", result, console=terminal)
    shown = terminal.file.getvalue()
    assert "\x1b[" in shown and "|---|" not in shown and "All-CNN-C" in shown
    assert re.sub(r"\x1b\[[0-9;]*m", "", shown).rstrip().splitlines()[-2] == \
        f"report: {tmp_path / 'grid' / 'results.md'}"


def test_table3_bars_of_one_network_say_the_setting_that_sets_them_apart(tmp_path, drawn):
    """An ablation's bars are one network each: without its setting every bar would read just "All-CNN-C"."""
    for extra in ((), ("model.head=fc",), ("model.batch_norm=true",)):
        job(tmp_path / "ablation", "all_cnn_c", 0.05, extra=extra)
    write_report(tmp_path / "ablation", echo=False)
    labels = [t.get_text() for t in drawn["table3.png"].axes[0].get_xticklabels()]
    assert len(set(labels)) == 3, labels
    assert any("head=fc" in s for s in labels) and any("batch_norm=true" in s for s in labels), labels
