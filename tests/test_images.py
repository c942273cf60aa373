"""The course figures in images/: the committed PNGs are what images/make_images.py draws.

The script is run into a temporary folder and each figure compared with the committed one pixel by
pixel. On the environment the course pins they are identical: the fonts are matplotlib's own DejaVu
files and matplotlib's wheels bundle their own FreeType, so pip installs draw the same glyphs.
Two things may still differ elsewhere, and `TOLERANCE` allows exactly these:
- the palette: Pillow is not pinned, and another version's quantizer may pick other palette
  colours; each palette PNG stays within ~30 levels of the full-colour drawing (measured: 25 on the
  diagram, 30 on the activations), so two quantizations differ by less than 64 levels;
- text edges: a matplotlib linked against another FreeType (conda-forge builds use the system
  one) may rasterise glyph edges differently, a small share of the pixels.
A real change (a moved label, another colour, a missing arrow) changes more pixels by far more:
more than 0.2% of the pixels by more than 64 levels fails (a 27x27 block on the smaller figure).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import ALL, ROOT, nb_id
from PIL import Image

IMAGES = ROOT / "images"
FIGURES = ["mlp_architecture.png", "activations.png", "wavenet.png"]
MAX_BYTES = 60_000
# (max share of pixels that may differ by more than `big` levels in a channel, `big`, max mean abs diff)
TOLERANCE = (0.002, 64, 0.5)


def differences(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(share of pixels differing by more than TOLERANCE's `big` levels, mean absolute difference)."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float((d.max(-1) > TOLERANCE[1]).mean()), float(d.mean())


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    share, mean = differences(a, b)
    return share <= TOLERANCE[0] and mean <= TOLERANCE[2]


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("images")
    r = subprocess.run([sys.executable, str(IMAGES / "make_images.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"images/make_images.py failed:\n{r.stderr[-3000:]}"
    return out


def test_script_draws_exactly_the_committed_figures(regenerated):
    assert sorted(p.name for p in regenerated.glob("*.png")) == sorted(FIGURES)
    assert sorted(p.name for p in IMAGES.glob("*.png")) == sorted(FIGURES), \
        "images/ holds a PNG that make_images.py does not draw (or misses one)"


@pytest.mark.parametrize("name", FIGURES)
def test_committed_figure_is_up_to_date(name, regenerated):
    new, old = rgb(regenerated / name), rgb(IMAGES / name)
    assert new.shape == old.shape, f"{name}: {old.shape} committed, {new.shape} drawn"
    share, mean = differences(new, old)
    assert same_picture(new, old), (
        f"images/{name} differs from what images/make_images.py draws ({100 * share:.2f}% of pixels, "
        f"mean difference {mean:.2f}): run `python images/make_images.py` and commit the result")


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_small(name, regenerated):
    for path in (IMAGES / name, regenerated / name):
        size = path.stat().st_size
        assert size <= MAX_BYTES, f"{path} is {size / 1000:.1f} KB, over {MAX_BYTES // 1000} KB"
        with Image.open(path) as im:
            assert im.mode == "P", f"{path} is not a palette PNG ({im.mode})"


def test_comparison_catches_a_real_change():
    """The tolerance must not hide an edit: a 30x30 block of another colour is 0.25% of this figure."""
    a = rgb(IMAGES / "activations.png")
    b = a.copy()
    b[100:130, 100:130] = (255, 0, 0)
    assert same_picture(a, a)
    assert not same_picture(a, b)
    assert not same_picture(a, a[:-1])


def _make_images():
    sys.path.insert(0, str(IMAGES))
    sys.dont_write_bytecode, before = True, sys.dont_write_bytecode  # no images/__pycache__
    try:
        import make_images
    finally:
        sys.path.remove(str(IMAGES))
        sys.dont_write_bytecode = before
    return make_images


def test_tanh_saturation_edge():
    """The figure's "|x| > 2.64" is where tanh' = 1 - tanh^2 falls below 0.02, i.e. |tanh| > 0.99."""
    make_images = _make_images()
    edge = make_images.tanh_saturation_edge(0.02)
    assert round(edge, 2) == 2.64
    x = np.array([edge - 1e-3, edge + 1e-3])
    slope = 1 - np.tanh(x) ** 2
    assert slope[0] > 0.02 > slope[1]
    assert abs(abs(np.tanh(edge)) - 0.99) < 1e-3


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_wavenet_figure_draws_each_outputs_tree_as_the_model_computes_it(levels):
    """The convolution panel's highlighted nodes are the tree of lesson 05's model: the output at t sees
    exactly the 2**levels characters ending at t, and level k holds the nodes t, t - 2**k, t - 2 * 2**k, ..."""
    make_images = _make_images()
    t = 40
    nodes = make_images.tree_nodes(t, levels)
    for k in range(levels + 1):
        want = {t - j * 2**k for j in range(2 ** (levels - k))}
        assert {u for (level, u) in nodes if level == k} == want, k
    assert make_images.conv_inputs(3, 10) == [6, 10]   # dilation 4 at the third level


IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")


@pytest.mark.parametrize("path", ALL, ids=nb_id)
def test_notebook_figures_resolve(path):
    """Every figure a lesson links exists at that path relative to the notebook."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for link in IMAGE_LINK.findall(cell.source):
            if link.startswith(("http:", "https:", "data:")):
                continue
            if not (path.parent / link).exists():
                problems.append(f"cell {i}: {link} does not exist relative to {path.parent.name}/")
    assert not problems, "\n".join(problems)
