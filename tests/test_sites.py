"""Hook sites as values: every site names a real hook point, and the handle takes sites."""

from __future__ import annotations

import pytest
import torch

from circuitlab import InputError, PruneHeads, Scale, sites
from circuitlab.sites import Site
from circuitlab.testing import tiny_model

PER_BLOCK = (
    sites.resid_pre,
    sites.resid_mid,
    sites.resid_post,
    sites.attn_out,
    sites.mlp_out,
    sites.z,
    sites.o_out,
    sites.pattern,
)


def test_every_site_is_a_hook_point_of_every_architecture(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    names = set(model.hook_names())
    for layer in range(model.n_layers):
        for make in PER_BLOCK:
            assert make(layer).hook_name in names, make(layer)
        for norm in model.arch.norms:
            assert norm.scale_site(layer).hook_name in names
    assert sites.norm_scale("ln_final").hook_name in names


def test_sites_are_values() -> None:
    assert sites.z(3) == Site("z", 3)
    assert len({sites.z(3), Site("z", 3), sites.z(4)}) == 2
    assert repr(sites.norm_scale("ln1", 2)) == "Site('norm_scale', layer=2, norm='ln1')"
    assert sites.resid_post(3).hook_name == "blocks.3.hook_resid_post"
    assert sites.norm_scale("ln_final").hook_name == "ln_final.hook_scale"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Site("resid", 1), "Unknown site kind 'resid'"),
        (lambda: Site("z"), "give a layer index"),
        (lambda: sites.z(-1), "give a layer index"),
        (lambda: Site("norm_scale", 1), "needs the norm's name"),
        (lambda: Site("z", 1, "ln1"), "Only norm_scale sites name a norm"),
        (lambda: sites.resid_post(7).check(2), r"layer 7, but the model has 2 layers \(0 .. 1\)"),
    ],
)
def test_bad_sites_are_clear_errors(make: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make()  # type: ignore[operator]


def test_the_handle_takes_sites_where_it_takes_hook_names() -> None:
    model = tiny_model("llama")
    site = sites.attn_out(1)
    _, by_site = model.run_with_cache("the cat sat", names=[site, sites.z(0)])
    _, by_name = model.run_with_cache("the cat sat", names=[site.hook_name])
    torch.testing.assert_close(by_site[site.hook_name], by_name[site.hook_name], atol=0, rtol=0)

    def zero(activation: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.zeros_like(activation)

    with model.hooks([(site, zero)]):
        hooked = model.logits("the cat sat")
    torch.testing.assert_close(
        model.run_with_hooks("the cat sat", [(site.hook_name, zero)]), hooked, atol=0, rtol=0
    )


def test_interventions_in_force_are_a_property_of_the_handle() -> None:
    model = tiny_model("llama")
    assert model.active_interventions == ()
    with model.intervene(PruneHeads(["L0H1"])) as outer:
        with model.intervene(Scale("MLP1", 0.5)) as inner:
            assert model.active_interventions == (outer, inner)
            assert [edit.site for edit in inner.edits] == [sites.mlp_out(1)]
        assert model.active_interventions == (outer,)
    assert model.active_interventions == ()
    with pytest.raises(RuntimeError), model.intervene(Scale("MLP1", 0.5)):
        raise RuntimeError("the block fails")
    assert model.active_interventions == ()
