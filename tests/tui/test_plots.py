"""The run screen's loss plot stays readable when one loss dwarfs the rest."""

from textual.app import App

from ftui.engine.events import from_record
from ftui.engine.history import RunHistory
from ftui.tui.plots import LossPlot, log_ticks, loss_scale


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
    assert "loss (log scale)" in log_text
    assert ticks(log_text) == ["100", "50", "20", "10", "5", "2"]  # in loss units, not log10
    assert "log scale" not in linear_text and ticks(linear_text)[0] == "2.100"  # the log ticks are gone
    assert log_again == log_text
