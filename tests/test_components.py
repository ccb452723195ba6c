"""Component identifiers: string forms, parsing, ordering, range checks."""

from __future__ import annotations

import pytest

from circuitlab import AttnBias, Embedding, Head, InputError, Layer, Mlp, parse_component
from circuitlab.components import all_components, parse_components
from circuitlab.testing import tiny_model


@pytest.mark.parametrize(
    ("text", "component"),
    [
        ("EMBED", Embedding()),
        ("L12H3", Head(12, 3)),
        ("l12h3", Head(12, 3)),
        (" MLP7 ", Mlp(7)),
        ("BIAS4", AttnBias(4)),
        ("L7", Layer(7)),
    ],
)
def test_string_forms_round_trip(text: str, component: object) -> None:
    assert parse_component(text) == component
    assert parse_component(str(component)) == component


def test_components_sort_in_model_order_and_hash() -> None:
    shuffled = parse_components(["MLP1", "L1H0", "L0", "EMBED", "BIAS0", "L0H2", "MLP0", "L0H10"])
    assert [str(c) for c in sorted(shuffled)] == [
        "EMBED",
        "L0H2",
        "L0H10",
        "BIAS0",
        "MLP0",
        "L0",
        "L1H0",
        "MLP1",
    ]
    assert len({Head(1, 2), Head(1, 2), Mlp(1)}) == 2
    assert Head(1, 2) != Mlp(1)


@pytest.mark.parametrize("bad", ["L3H", "HEAD3", "mlp", "L-1H2", "", "EMBED1"])
def test_unparsable_components(bad: str) -> None:
    with pytest.raises(InputError, match="Cannot parse component"):
        parse_component(bad)


def test_out_of_range_components_name_the_valid_range() -> None:
    arch = tiny_model("llama").arch
    with pytest.raises(InputError, match=r"layer 5, but the model has 2 layers \(0 \.\. 1\)"):
        parse_component("L5H0", arch)
    with pytest.raises(InputError, match=r"head 4, but each layer has 4 heads \(0 \.\. 3\)"):
        parse_component("L1H4", arch)
    with pytest.raises(InputError, match="refers to layer 2"):
        parse_component("MLP2", arch)
    with pytest.raises(InputError, match="must be a string"):
        parse_component(3)  # type: ignore[arg-type]


def test_all_components_layout() -> None:
    arch = tiny_model("gpt2").arch
    components = all_components(arch, attn_bias=True)
    assert [str(c) for c in components] == [
        "EMBED",
        "L0H0",
        "L0H1",
        "L0H2",
        "L0H3",
        "BIAS0",
        "MLP0",
        "L1H0",
        "L1H1",
        "L1H2",
        "L1H3",
        "BIAS1",
        "MLP1",
    ]
    assert list(components) == sorted(components)
