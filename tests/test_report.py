"""The analysis report on a tiny random model: the folder, its page, its results, bad input.

The page is checked twice: parsed here (self-contained: no script, no external resource,
every image embedded and a real PNG), and rendered in headless Chromium (`report_browser`):
no console error, no broken image, no sideways scrolling on a phone, screenshots kept.
"""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from report_browser import check_in_browser

import circuitlab
from circuitlab.cli.main import main
from circuitlab.decomposition import Attribution, direct_logit_attribution
from circuitlab.errors import CircuitlabError, InputError, NoContrastError
from circuitlab.ila import load_instructions
from circuitlab.ila.fit import fit_lora
from circuitlab.layers import LayerScores
from circuitlab.patching import PatchingMap
from circuitlab.report import ReportSettings, read_results, write_report
from circuitlab.results import Result
from circuitlab.testing import tiny_hf_model

PAIR = ("the cat sat on", "the dog sat on", " mat", " rug")
SMALL = {
    "task_examples": 8,
    "calibration_texts": 1,
    "ground_truth_tokens": 32,
    "ground_truth_examples": 6,
    "paraphrase_inputs": 4,
    "factual_questions": 12,
    "pairs": (PAIR,),
    "ila_steps": 3,
}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "a":
            self.links.append(values.get("href") or "")
        if "id" in values:
            self.ids.append(values["id"] or "")


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tokenizer = tiny_hf_model("llama")
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_model_folder: Path) -> circuitlab.ModelHandle:
    return circuitlab.load(str(tiny_model_folder))


@pytest.fixture(scope="module")
def adapter(tiny: circuitlab.ModelHandle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-1 LoRA adapter for the ILA section (a few steps)."""
    data = load_instructions("facts", limit=8)
    fit = fit_lora(tiny, data, stable=None, max_steps=3, batch_size=4, learning_rate=1e-2)
    folder = tmp_path_factory.mktemp("adapter") / "stage1"
    fit.adapter.save(folder)
    fit.adapter.remove()
    return folder


@pytest.fixture(scope="module")
def report(
    tiny: circuitlab.ModelHandle, adapter: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("report") / "report"
    write_report(tiny, folder, ReportSettings(**SMALL, ila_adapter=str(adapter)), progress=False)
    return folder


def test_the_folder_holds_page_results_and_figures(report: Path) -> None:
    document = json.loads((report / "results.json").read_text())
    assert document["format"] == "circuitlab-report"
    assert list(document["sections"]) == list(ReportSettings().sections)  # ILA ran too
    for key, section in document["sections"].items():
        assert document["seconds"][key] == section["seconds"] >= 0.0
        for stem in section["figures"]:
            png = (report / "figures" / f"{stem}.png").read_bytes()
            svg = (report / "figures" / f"{stem}.svg").read_text()
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and "<svg" in svg
    assert document["seconds"]["total"] >= sum(
        section["seconds"] for section in document["sections"].values()
    )
    assert not [p for p in report.parent.iterdir() if ".partial" in p.name or ".old" in p.name]


def test_the_page_is_self_contained(report: Path) -> None:
    text = (report / "index.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert "script" not in page.tags and "link" not in page.tags  # no script, no stylesheet
    assert "http://" not in text and "https://" not in text and "@import" not in text
    document = json.loads((report / "results.json").read_text())
    figures = [stem for s in document["sections"].values() for stem in s["figures"]]
    assert len(page.images) == len(figures) >= 6
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")
    for link in page.links:  # in-page anchors, or the figure files next to the page
        assert (link.startswith("#") and link[1:] in page.ids) or (report / link).is_file()
    assert "<meta name='viewport'" in text


def test_results_read_back_through_the_result_protocol(
    report: Path, tiny: circuitlab.ModelHandle
) -> None:
    results = read_results(report)
    assert all(isinstance(r, Result) for section in results.values() for r in section.values())
    attribution = results["decomposition"]["first_prompt"]
    assert isinstance(attribution, Attribution)
    assert attribution.reconstruction_error() < 1e-4
    prompt = ReportSettings().prompts[0]
    target = tiny.top_next_tokens(prompt, k=1)[0].token_id
    fresh = direct_logit_attribution(tiny, prompt, target)
    torch.testing.assert_close(attribution.values, fresh.values, atol=1e-5, rtol=1e-5)
    layers = results["layers"]
    assert {name for name in layers} == {"avss", "block_influence", "ground_truth"}
    assert all(isinstance(s, LayerScores) and s.n_layers == tiny.n_layers for s in layers.values())
    patching = results["patching"]["patching_map"]
    assert isinstance(patching, PatchingMap)
    assert patching.mean()[0, 1].item() == pytest.approx(1.0, abs=1e-4)  # the changed token
    assert results["ila"]["ila_ranking"].n_layers == tiny.n_layers


def test_a_random_model_leaves_nothing_to_contrast(tiny: circuitlab.ModelHandle) -> None:
    from circuitlab.consistency import load_paraphrase_task, locate_consistency_heads

    task = load_paraphrase_task("sentiment").balanced_sample(SMALL["paraphrase_inputs"], seed=0)
    with pytest.raises(NoContrastError, match="nothing to probe"):
        locate_consistency_heads(tiny, task, progress=False)


def test_data_dependent_sections_say_why_they_did_not_run(report: Path) -> None:
    document = json.loads((report / "results.json").read_text())
    page = (report / "index.html").read_text(encoding="utf-8")
    for section in document["sections"].values():
        if section["skipped"] is not None:  # a random model answers too uniformly
            assert section["results"] == {} and section["skipped"] in page.replace("&#x27;", "'")
    assert "nothing to probe" in document["sections"]["consistency"]["skipped"]


def test_the_page_renders_in_a_real_browser(report: Path) -> None:
    check_in_browser(report)


def test_a_rerun_replaces_a_report_but_never_a_foreign_folder(
    tiny: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    settings = ReportSettings(sections=("decomposition",), prompts=("the cat sat on",))
    first = write_report(tiny, tmp_path / "r", settings, progress=False)
    again = write_report(tiny, tmp_path / "r", settings, progress=False)
    assert again.index == first.index and again.index.is_file()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(InputError, match=r"not a circuitlab report.*--overwrite"):
        write_report(tiny, foreign, settings, progress=False)
    assert (foreign / "cat.jpg").read_bytes() == b"\xff\xd8"
    write_report(tiny, foreign, settings, progress=False, overwrite=True)
    assert not (foreign / "cat.jpg").exists()


def test_bad_input_is_refused_before_any_work(tiny: circuitlab.ModelHandle, tmp_path: Path) -> None:
    multi = tmp_path / "multi.jsonl"  # label words are " " + label: " very good" is 2 tokens
    rows = [{"text": f"review {i}", "label": ["very good", "bad"][i % 2]} for i in range(8)]
    multi.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="single tokens"):
        write_report(tiny, out, ReportSettings(task=str(multi)), progress=False)
    with pytest.raises(InputError, match="same token count"):
        pair = ("the cat sat on", "the big dog sat on", " mat", " rug")
        write_report(tiny, out, ReportSettings(pairs=(pair,)), progress=False)
    with pytest.raises(CircuitlabError, match="not writable"):
        write_report(tiny, "/proc/report", ReportSettings(), progress=False)
    assert not out.exists()
    with pytest.raises(InputError, match="Unknown report section"):
        ReportSettings(sections=("decomposition", "nope"))
    with pytest.raises(InputError, match="ILA adapter folder"):
        ReportSettings(ila_adapter=str(tmp_path / "missing"))
    with pytest.raises(InputError, match="even number of at least 6"):
        ReportSettings(ground_truth_examples=4)


def test_report_command(
    tiny_model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(
        [
            "report",
            "--model",
            str(tiny_model_folder),
            "--out",
            str(out),
            "--sections",
            "decomposition",
            "patching",
            "--prompt",
            "the cat sat on",
            "--pair",
            *PAIR,
            "--json",
            str(tmp_path / "copy.json"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert f"Report: {(out / 'index.html').resolve()}" in printed
    assert "Time per stage" in printed and "patching" in printed
    copy = json.loads((tmp_path / "copy.json").read_text())
    assert copy == json.loads((out / "results.json").read_text())
    assert list(copy["sections"]) == ["decomposition", "patching"]
