"""How the explorers publish a redraw (issue 15: an unattended notebook run could hang at an explorer cell).

An explorer shows its text and PNG by setting its Output widget's `outputs` from the kernel: one state
update, nothing for the client to capture and send back. `with output: print(...)` instead made nbclient
(papermill, nbconvert) send every captured output back to the kernel on the shell socket while it awaited
the cell's reply there, which could swallow the reply's wake-up and leave the run waiting forever.
`benchmarks/notebook_hangs.py` measures the hang itself; these tests pin the publishing path, and fail on
the capture path (outside a kernel, captured output never reaches `outputs`).
"""

from __future__ import annotations

import base64

import pytest
import torch

from mmlib.widgets import init_explorer


@pytest.fixture()
def explorer():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 30, generator=g), torch.randint(0, 27, (64,), generator=g)
    return init_explorer(x, y, 27, gain=1.0, depth=3, width=40)


def shown(explorer) -> tuple[str, bytes]:
    """The text and the PNG the explorer's Output area holds."""
    text, image = explorer.output.outputs
    assert text["output_type"] == "stream" and text["name"] == "stdout"
    assert image["output_type"] == "display_data"
    return text["text"], base64.b64decode(image["data"]["image/png"])


def test_a_new_explorer_shows_its_text_and_plot_as_widget_state(explorer):
    text, png = shown(explorer)
    assert text == explorer.result.text() + "\n"
    assert png == explorer.png and png.startswith(b"\x89PNG")
    assert explorer.output.msg_id == ""          # never asked a client to capture output


def test_moving_a_slider_replaces_what_is_shown(explorer):
    before, png_before = shown(explorer)
    explorer.gain.value = 3.0
    after, png_after = shown(explorer)
    assert after.startswith("gain=3.00 ") and before.startswith("gain=1.00 ")
    assert png_after != png_before
    assert len(explorer.output.outputs) == 2     # replaced, not appended
    assert explorer.output.msg_id == ""
