"""Figures read right: real head indices, colour bars beside their panel, visible zero bars.

Structural checks on the figures every result draws (tiny models and hand-built results, no
display): what a reader would trip on, not pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from circuitlab import ComponentAccuracy, LayerScores, PruningStudy, ReweightingStudy
from circuitlab.ablation import AblationEffects, ablation_study
from circuitlab.components import Head, Mlp, parse_components
from circuitlab.decomposition import direct_logit_attribution
from circuitlab.decomposition.plots import NOT_MEASURED, ZERO_BAR, plot_bars
from circuitlab.reweighting.study import METHODS
from circuitlab.testing import tiny_model

PROMPTS = ["the cat sat on the", "a dog", "yes the capital of france is", "no"]


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return tiny_model("llama")  # 2 layers x 4 heads


def _drawn(figure: Figure) -> Figure:
    figure.draw_without_rendering()  # runs the constrained layout
    return figure


def _panels(figure: Figure) -> list[Axes]:
    return [axes for axes in figure.axes if axes.images]


def _tick_labels(axes: Axes, axis: str = "x") -> list[str]:
    ticks = axes.get_xticklabels() if axis == "x" else axes.get_yticklabels()
    return [tick.get_text() for tick in ticks]


def _zero_markers(axes: Axes) -> list[tuple[float, float]]:
    return [
        (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
        for line in axes.get_lines()
        if line.get_gid() == ZERO_BAR
    ]


def _assert_colour_bars_beside_their_panels(figure: Figure) -> None:
    panels = sorted(_panels(_drawn(figure)), key=lambda axes: axes.get_position().x0)
    for index, axes in enumerate(panels):
        panel = axes.get_position()
        bar = axes.images[0].colorbar.ax.get_position()
        assert bar.x0 >= panel.x1 - 1e-6, "the colour bar must sit right of its panel"
        if index + 1 < len(panels):
            assert bar.x1 <= panels[index + 1].get_position().x0, "not squeezed into the next"
        assert bar.height >= 0.95 * panel.height, "full height, not squashed"
        assert abs(bar.y0 - panel.y0) < 0.05 * panel.height


# ------------------------------------------------------------------ heatmaps
def test_ablation_plot_of_a_head_subset_shows_the_chosen_heads(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the tutorial-3 shape: a few heads, and every MLP beside them
    result = ablation_study(model, PROMPTS, "mat", components=["L1H3", "L0H2", "L1H2", "mlps"])
    figure = result.plot()
    heads, mlps = _panels(figure)
    assert heads.get_title() == "heads" and mlps.get_title() == "MLP"
    assert _tick_labels(heads) == ["2", "3"]  # real head indices, not 0 .. 3
    assert _tick_labels(heads, "y") == ["0", "1"]  # every layer labelled
    assert "only the heads measured" in heads.get_xlabel()
    assert NOT_MEASURED in heads.get_xlabel()  # L0H3 was not measured: hatched, and said so
    assert any(patch.get_hatch() for patch in heads.patches)
    matrix = heads.images[0].get_array()
    assert matrix.shape == (2, 2)
    assert np.ma.is_masked(matrix[0, 1]) and not np.ma.is_masked(matrix[1, 1])
    assert matrix[1, 1] == pytest.approx(result.score_of("L1H3"))
    assert {text.get_text() for text in heads.texts} == {  # sparse: values written in
        f"{result.score_of(name):.2g}" for name in ("L0H2", "L1H2", "L1H3")
    }
    _assert_colour_bars_beside_their_panels(figure)
    figure.savefig(tmp_path / "subset.png")


def test_tutorial_3_figure_on_30_layers_keeps_each_colour_bar_beside_its_panel() -> None:
    # SmolLM2's shape: three writer heads and the 30 MLPs (tutorial 3), values made up
    components = (Head(23, 4), Head(29, 1), Head(29, 2), *(Mlp(layer) for layer in range(30)))
    effects = torch.linspace(-0.7, 0.1, len(components))
    result = AblationEffects(
        ablated=(0.77 + effects)[None], baseline=torch.tensor([0.77]),
        components=components, metric="prob", method="zero",
    )  # fmt: skip
    figure = result.plot()
    heads, mlps = _panels(figure)
    assert mlps.get_title() == "MLP"
    assert _tick_labels(heads) == ["1", "2", "4"]
    assert _tick_labels(heads, "y") == [str(layer) for layer in range(30)]
    _assert_colour_bars_beside_their_panels(figure)
    assert "(1 example)" in figure.get_suptitle()


def test_full_ablation_plot_has_a_colour_bar_beside_every_panel(model) -> None:  # type: ignore[no-untyped-def]
    result = ablation_study(model, PROMPTS, "mat", components=["heads", "mlps", "layers"])
    figure = result.plot()
    panels = _panels(figure)
    assert [axes.get_title() for axes in panels] == ["heads", "MLP", "layer"]
    assert _tick_labels(panels[0]) == ["0", "1", "2", "3"]
    assert panels[0].get_xlabel() == "head"  # nothing hatched when everything was measured
    assert not any(patch.get_hatch() for patch in panels[0].patches)
    _assert_colour_bars_beside_their_panels(figure)
    labels = [axes.images[0].colorbar.ax.get_ylabel() for axes in panels]
    assert labels == [f"{name}: effect on log_prob" for name in ("heads", "MLP", "layer")]


def test_plot_heads_of_a_subset_labels_the_real_heads(model) -> None:  # type: ignore[no-untyped-def]
    result = ablation_study(model, PROMPTS, "mat", components=["L1H3", "L1H1"])
    figure = result.plot_heads()
    [axes] = _panels(figure)
    assert _tick_labels(axes) == ["1", "3"]
    assert axes.images[0].get_array().shape == (2, 2)
    assert NOT_MEASURED in axes.get_xlabel()
    _assert_colour_bars_beside_their_panels(figure)


def test_plot_heads_of_every_head_labels_every_head_and_layer(model) -> None:  # type: ignore[no-untyped-def]
    result = direct_logit_attribution(model, PROMPTS, "mat")
    figure = result.plot_heads()
    [axes] = _panels(figure)
    assert _tick_labels(axes) == ["0", "1", "2", "3"]
    assert _tick_labels(axes, "y") == ["0", "1"]
    assert axes.get_xlabel() == "head"
    expected = result.head_matrix().numpy()
    np.testing.assert_allclose(np.ma.getdata(axes.images[0].get_array()), expected)
    _assert_colour_bars_beside_their_panels(figure)


# ---------------------------------------------------------------- bar charts
def test_layer_scores_plot_marks_zero_bars() -> None:
    scores = LayerScores("drop_last", [3.0, 2.0, 1.0, 0.0], model="m")
    axes = scores.plot(25).axes[0]
    assert _zero_markers(axes) == [(3.0, 0.0)]  # the removed layer is still visible
    assert len(axes.patches) == 4  # the bars themselves are unchanged
    random = LayerScores("random", [2.0, 0.0, 3.0, 1.0])
    assert _zero_markers(random.plot(None).axes[0]) == [(1.0, 0.0)]
    assert _zero_markers(LayerScores("avss", [0.5, 0.1, 0.9, 0.2]).plot().axes[0]) == []


def test_accuracy_bars_start_at_chance_and_zero_accuracy_is_visible() -> None:
    components = tuple(parse_components(["L0H0", "L0H1", "L1H0", "MLP1"]))
    result = ComponentAccuracy(
        accuracy=torch.tensor([0.5, 1.0, 0.0, 0.75]),
        predictions=torch.zeros(4, 4, dtype=torch.long),
        labels=torch.tensor([0, 1, 0, 1]),
        model_predictions=torch.tensor([0, 1, 0, 1]),
        components=components,
        label_words=("no", "yes"),
    )
    axes = result.plot(4).axes[0]
    assert [bar.get_x() for bar in axes.patches] == [0.5] * 4  # drawn from chance
    widths = {label.get_text(): bar.get_width() for label, bar in
              zip(axes.get_yticklabels()[::-1], axes.patches[::-1], strict=True)}  # fmt: skip
    assert widths["L1H0"] == pytest.approx(-0.5) and widths["L0H1"] == pytest.approx(0.5)
    assert "chance" in axes.get_title()
    # L0H0 sits exactly at chance: a zero-length bar, marked
    assert [x for x, _ in _zero_markers(axes)] == [0.5]


def test_plot_bars_marks_a_zero_value() -> None:
    axes = plot_bars(["A", "B", "C"], [2.0, -1.0, 0.0], title="t", value_label="v").axes[0]
    assert _zero_markers(axes) == [(0.0, 0.0)]  # C is the bottom bar, at y = 0


def test_pruning_study_legend_is_outside_the_panels() -> None:
    def row(method: str, percent: float, kept: float) -> dict[str, object]:
        retention = {"qa": kept, "perplexity": kept, "sentiment": kept}
        return {
            "method": method, "percent": percent, "layers": [1], "metrics": {},
            "retention": retention, "mean_retention": kept,
        }  # fmt: skip

    rows = [row(m, p, 0.95) for m in ("avss", "random") for p in (25.0, 40.0)]
    study = PruningStudy("m", 4, {}, {"qa": 1.0}, {}, rows)
    figure = _drawn(study.plot())
    renderer = figure._get_renderer()  # type: ignore[attr-defined]
    [legend] = figure.legends
    box = legend.get_window_extent(renderer)
    for axes in figure.axes:
        assert not Bbox.intersection(box, axes.get_window_extent(renderer))
    markers = [line.get_marker() for line in figure.axes[0].get_lines()[:2]]
    assert markers[0] != markers[1]  # coinciding lines stay distinguishable


def test_reweighting_plot_marks_zero_and_missing_accuracies() -> None:
    accuracy = {"oracle_worst": 0.0, "icl_all": math.nan}
    records = tuple(
        {"demo_set": 0, "template": 0, "k": 8, "method": method,
         "accuracy": accuracy.get(method, 0.8)}
        for method in METHODS
    )  # fmt: skip
    study = ReweightingStudy(
        task="t",
        model_name="m",
        settings={"ks": [8], "templates": [0], "label_words": ["no", "yes"]},
        records=records,
        components=(Head(0, 0), Mlp(0)),
        component_accuracy=torch.zeros(1, 1, 2),
        weights=torch.zeros(1, 1, 1, 2),
    )
    axes = study.plot().axes[0]
    worst = list(METHODS).index("oracle_worst")
    assert _zero_markers(axes) == [(float(worst), 0.0)]
    texts = [text.get_text() for text in axes.texts]
    assert "not run" in texts and "0.00" in texts and "chance 0.50" in texts
    assert axes.get_ylim()[1] > 1.0  # a bar at 1.0 and its label are not clipped


# ------------------------------------------------------------- API reference
@pytest.mark.parametrize(
    "module",
    ["circuitlab", "circuitlab.layers", "circuitlab.ablation", "circuitlab.decomposition",
     "circuitlab.reweighting", "circuitlab.evaluation", "circuitlab.interventions"],
)  # fmt: skip
def test_public_signatures_have_no_private_parameters(module: str) -> None:
    """The API reference renders these signatures: a ``_private=`` argument must not show."""
    import importlib
    import inspect

    namespace = importlib.import_module(module)
    private = []
    for name in namespace.__all__:
        value = getattr(namespace, name)
        members = [(name, value)]
        if inspect.isclass(value):
            members += [
                (f"{name}.{key}", member)
                for key, member in vars(value).items()
                if not key.startswith("_") and callable(member)
            ]
        for label, member in members:
            try:
                parameters = inspect.signature(member).parameters
            except (TypeError, ValueError):
                continue
            private += [f"{label}({p}=)" for p in parameters if p.startswith("_")]
    assert private == []
