"""The run screen's loss plot stays readable when one loss dwarfs the rest."""

import re

from rich.style import Style
from textual.app import App

from ftui.engine.events import from_record
from ftui.engine.history import RunHistory
from ftui.tui.plots import SMOOTHED, AccuracyPlot, LossPlot, accuracy_range, log_ticks, loss_scale


def history_with(test_losses: list[float], train_loss: float = 2.0) -> RunHistory:
    history = RunHistory()
    records = [{"type": "start", "steps_per_epoch": 4, "epochs": len(test_losses), "batch_size": 8, "start_epoch": 0}]
    for epoch, test_loss in enumerate(test_losses):
        records.append(
            {
                "type": "steps",
                "epoch": epoch,
                "step": 0,
                "global_step": epoch * 4,
                "losses": [train_loss] * 4,
                "lr": 0.1,
                "images_per_sec": 10.0,
            }
        )
        records.append(
            {
                "type": "epoch",
                "epoch": epoch,
                "train_loss": train_loss,
                "test_loss": test_loss,
                "test_acc": 20.0 + epoch,
                "lr": 0.1,
                "seconds": 1.0,
                "images_per_sec": 10.0,
            }
        )
    history.feed([from_record(r) for r in records])
    return history


def test_losses_of_one_range_stay_linear_and_a_wide_range_goes_log():
    assert loss_scale([2.3, 1.9, 0.4, 0.2]) == "linear"
    assert loss_scale([2.0, 1.8, 134.0]) == "log"  # a first test loss from scratch beside training losses
    assert loss_scale([]) == "linear"
    assert loss_scale([0.0, 5.0]) == "log"  # a loss of 0 must not break the check


def test_log_ticks_are_round_loss_values():
    positions, labels = log_ticks(1.7, 134.0)
    assert labels == ["2", "5", "10", "20", "50", "100"]
    assert positions[2] == 1.0  # log10(10)
    assert log_ticks(1e-4, 1e4)[1] == ["0.0001", "0.001", "0.01", "0.1", "1", "10", "100", "1000", "10000"]


def ticks(text: str) -> list[str]:
    return [line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line]


async def plot_texts(*histories: RunHistory) -> list[str]:
    """The plot as drawn after each history, each drawn twice (a screen repaints its widgets often)."""

    class One(App):
        def compose(self):
            yield LossPlot()

    texts = []
    async with One().run_test(size=(60, 20)) as pilot:
        plot = pilot.app.query_one(LossPlot)
        for history in histories:
            plot.show(history)
            await pilot.pause()
            plot.render()
            texts.append(plot.render().plain)
    return texts


async def test_a_huge_first_test_loss_puts_the_plot_on_a_log_axis_and_back():
    wide, narrow = history_with([134.0, 3.0, 1.7]), history_with([2.1, 1.9])
    log_text, linear_text, log_again = await plot_texts(wide, narrow, wide)
    assert "loss (log)" in log_text
    assert ticks(log_text) == ["100", "50", "20", "10", "5", "2"]  # in loss units, not log10
    assert "(log)" not in linear_text and ticks(linear_text)[0] == "2.100"  # the log ticks are gone
    assert log_again == log_text


def history_of(records: list[dict]) -> RunHistory:
    history = RunHistory()
    history.feed([from_record(r) for r in records])
    return history


START = {"type": "start", "steps_per_epoch": 4, "epochs": 5, "batch_size": 8, "start_epoch": 0}


def step(global_step: int, loss: float = 2.0) -> dict:
    return {"type": "steps", "epoch": global_step // 4, "step": global_step % 4, "global_step": global_step,
            "losses": [loss], "lr": 0.1, "images_per_sec": 10.0}  # fmt: skip


def epoch(number: int, acc: float) -> dict:
    return {"type": "epoch", "epoch": number, "train_loss": 1.9, "test_loss": 2.0, "test_acc": acc}


async def drawn(plot_class, history: RunHistory, **options):
    """The plot's Text as drawn for history."""

    class One(App):
        def compose(self):
            yield plot_class()

    async with One().run_test(size=(50, 20)) as pilot:
        plot = pilot.app.query_one(plot_class)
        plot.show(history, **options)
        await pilot.pause()
        return plot.render()


def x_ticks(text: str) -> list[str]:
    lines = text.splitlines()
    below = next(i for i, line in enumerate(lines) if "└" in line) + 1
    return lines[below].split()


async def test_after_one_step_the_epoch_axis_runs_from_0_to_the_planned_epochs():
    text = (await drawn(LossPlot, history_of([START, step(0)]))).plain
    assert x_ticks(text)[0] == "0" and x_ticks(text)[-1] == "5"  # was -1.00 … 1.00
    assert not any(t.startswith("-") for t in x_ticks(text))


async def test_a_half_point_gain_does_not_fill_the_accuracy_axis():
    history = history_of([START, step(0), epoch(0, 18.0), step(4), epoch(1, 18.5)])
    values = [float(t) for t in ticks((await drawn(AccuracyPlot, history)).plain)]
    assert max(values) - min(values) >= 5
    assert accuracy_range([99.0, 99.5]) == (94.0, 100.0) and accuracy_range([0.5]) == (0.0, 5.0)  # within 0-100
    assert accuracy_range([20.0, 60.0]) == (18.0, 62.0)  # a wide range keeps its shape


async def test_the_legend_is_in_the_title_line_keyed_by_colour_and_resumes_are_marked():
    records = [START, step(0), step(1), epoch(0, 20.0), step(4, 1.5), {"type": "stopped"}]
    history = history_of([*records, {**START, "start_epoch": 1}, step(4, 1.6), epoch(1, 25.0)])
    text = await drawn(LossPlot, history)
    title, *rest = text.plain.splitlines()
    assert "━steps" in title and "━smooth" in title and "•test" in title and "│resume" in title
    assert not any(word in line for line in rest for word in ("steps", "smooth", "test", "train"))  # off the data
    key = title.index("━smooth")
    colours = [s.style.color for s in text.spans if s.start <= key < s.end and isinstance(s.style, Style)]
    assert any(c is not None and tuple(c.get_truecolor()) == SMOOTHED for c in colours)
    assert "┴" in next(line for line in rest if "└" in line)  # the resume's vertical mark meets the x axis
    assert "│resume" in (await drawn(AccuracyPlot, history)).plain.splitlines()[0]


async def test_the_reports_accuracy_is_a_line_on_the_accuracy_plot():
    history = history_of([START, step(0), epoch(0, 40.0), step(4), epoch(1, 50.0)])
    text = await drawn(AccuracyPlot, history, reference=80.9)
    title, *rest = text.plain.splitlines()
    assert "report 80.9" in title
    values = [float(m) for m in re.findall(r"^\s*(\d+\.\d+)┤", text.plain, re.M)]
    assert max(values) >= 80.9 > 50.0 >= min(values)  # the axis reaches the line, whatever the run's accuracy
    assert any(line.count("─") > 20 for line in rest if "└" not in line)  # the horizontal line itself
    plain = (await drawn(AccuracyPlot, history)).plain
    assert "report" not in plain  # an experiment without reference_acc: no line
