"""``contrafuse bench``: files, tables that match metrics.csv, caching, errors, named datasets."""
from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CHROMIUM_FLAGS, require_chromium
from contrafuse.bench import BenchError, parse_models, resolve_dataset
from contrafuse.cli.main import main
from contrafuse.metrics import metric_info

MODELS = ("average", "laplacian")
PAIRS = ("a01", "b02", "c03")


def _write_pairs(root: Path, names=PAIRS, size=(64, 80), sizes=None) -> tuple[Path, Path, Path]:
    """IR (gray), VIS (colour) and a results folder (pixel max) of small synthetic scenes
    (``sizes``: one (height, width) per pair instead of ``size``)."""
    rng = np.random.default_rng(7)
    ir_dir, vis_dir, res_dir = root / "ir", root / "vis", root / "maxfuse"
    for folder in (ir_dir, vis_dir, res_dir):
        folder.mkdir(parents=True)
    for i, name in enumerate(names):
        size = sizes[i] if sizes else size
        yy, xx = np.mgrid[: size[0], : size[1]]
        ir = np.clip(120 + 90 * np.sin(xx / (4 + i)) + rng.normal(0, 10, size), 0, 255)
        texture = rng.random(size) * 255
        vis = np.stack([texture, 0.8 * texture, 0.5 * texture + 40 * np.cos(yy / 6)], -1).clip(0, 255)
        Image.fromarray(ir.astype(np.uint8)).save(ir_dir / f"{name}.png")
        Image.fromarray(vis.astype(np.uint8)).save(vis_dir / f"{name}.png")
        Image.fromarray(np.maximum(ir, vis.mean(-1)).astype(np.uint8)).save(res_dir / f"{name}.png")
    return ir_dir, vis_dir, res_dir


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> Path:
    """One bench run: two models and one result folder on three pairs of mixed shapes (wide, portrait)."""
    root = tmp_path_factory.mktemp("bench")
    ir_dir, vis_dir, res_dir = _write_pairs(root / "data", sizes=[(120, 420), (260, 100), (96, 400)])
    out = root / "out"
    code = main(["bench", "--data", f"toy={ir_dir},{vis_dir}", "--models", ",".join(MODELS),
                 "--results", f"maxfuse={res_dir}", "--out", str(out), "--grid", "2", "--quiet"])
    assert code == 0
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def markdown_table(text: str, dataset: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header and rows (by method) of the metric table under ``## dataset``."""
    section = text.split(f"## {dataset}\n", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("Method",):
            break
        rows[cells[0]] = cells[1:]
    return header, rows


def test_bench_writes_every_file(bench_run: Path):
    for name in ("metrics.csv", "metrics.json", "report.md", "report.html", "figures/toy_boxplots.png",
                 "figures/toy_boxplots.pdf", "figures/toy_grid.png", "figures/toy_grid.pdf"):
        assert (bench_run / name).is_file() and (bench_run / name).stat().st_size > 0, name
    for model in MODELS:
        assert sorted(p.stem for p in (bench_run / "fused" / "toy" / model).glob("*.png")) == list(PAIRS)
    # two grid pairs x (IR, VIS, 3 methods)
    assert len(list((bench_run / "assets" / "toy").rglob("*.png"))) == 2 * 5
    assert not list(bench_run.rglob("*.tmp")), "temporary files left behind"


def test_csv_has_images_mean_and_std_per_method(bench_run: Path):
    rows = read_csv(bench_run / "metrics.csv")
    methods = {r["method"] for r in rows}
    assert methods == {*MODELS, "maxfuse"}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        assert sorted(r["image"] for r in mine if r["row"] == "image") == list(PAIRS)
        assert [r["row"] for r in mine if r["row"] != "image"] == ["mean", "std"]
        per_image = np.array([float(r["EN"]) for r in mine if r["row"] == "image"])
        mean = next(float(r["EN"]) for r in mine if r["row"] == "mean")
        assert mean == pytest.approx(per_image.mean())
    assert {r["convention"] for r in rows} == {"cddfuse"}


def test_report_table_matches_csv_and_marks_best(bench_run: Path):
    rows = read_csv(bench_run / "metrics.csv")
    means = {r["method"]: r for r in rows if r["row"] == "mean"}
    text = (bench_run / "report.md").read_text()
    header, table = markdown_table(text, "toy")
    names = [h.split()[0] for h in header[1:-1]]
    assert header[-1].startswith("Mean rank")
    assert set(table) == set(means)
    for i, name in enumerate(names):
        column = {m: float(means[m][name]) for m in means}
        best = max(column.values()) if metric_info(name).direction == "higher" else min(column.values())
        for method, cells in table.items():
            shown = cells[i].strip("*")
            assert float(shown) == pytest.approx(column[method], rel=1e-3, abs=1e-4), (method, name)
            assert cells[i].startswith("**") == (column[method] == best), (method, name)
    ranks = {m: float(cells[-1].strip("*")) for m, cells in table.items()}
    assert sum(ranks.values()) == pytest.approx(len(names) * (1 + 2 + 3) / len(names))  # ranks 1..3 per metric


def test_report_states_convention_versions_and_timing(bench_run: Path):
    text = (bench_run / "report.md").read_text()
    assert "`cddfuse`" in text
    assert re.search(r"torch \d", text) and "contrafuse 0.1" in text
    timing = text.split("Fusion time", 1)[1]
    for model in MODELS:
        assert re.search(rf"\| {model} \| \d+\.\d+ \| cpu \| 3 \|", timing)
    doc = json.loads((bench_run / "metrics.json").read_text())
    assert doc["convention"] == "cddfuse" and doc["directions"]["MSE"] == "lower"
    entry = doc["datasets"]["toy"]["methods"]["laplacian"]
    assert entry["timing"]["device"] == "cpu" and entry["timing"]["seconds_per_pair"] > 0
    assert doc["datasets"]["toy"]["methods"]["maxfuse"]["timing"] is None
    assert set(entry["images"]) == set(PAIRS)


def test_second_run_reuses_outputs_unless_refresh(bench_run: Path, tmp_path: Path):
    import shutil

    data = bench_run.parent / "data"
    out = shutil.copytree(bench_run, tmp_path / "out")  # keeps mtimes; the shared run stays untouched
    fused = out / "fused" / "toy" / "average" / "a01.png"
    before = fused.stat().st_mtime_ns
    args = ["bench", "--data", f"toy={data / 'ir'},{data / 'vis'}", "--models", "average", "--out", str(out),
            "--no-plots", "--quiet"]
    assert main(args) == 0
    assert fused.stat().st_mtime_ns == before
    assert "from an earlier run" in (out / "report.md").read_text()
    assert main(args + ["--refresh"]) == 0
    assert fused.stat().st_mtime_ns != before


def test_max_baseline_has_a_row_in_the_table_and_fuses_to_the_brighter_source(tmp_path: Path):
    from contrafuse.color import rgb_to_luma
    from contrafuse.io import read_image

    ir_dir, vis_dir, _ = _write_pairs(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["bench", "--data", f"toy={ir_dir},{vis_dir}", "--models", "average,max", "--out", str(out),
                 "--no-plots", "--quiet", "--metrics", "EN", "SD"]) == 0
    _, rows = markdown_table((out / "report.md").read_text(), "toy")
    assert {"average", "max"} <= set(rows)
    fused = read_image(out / "fused" / "toy" / "max" / "a01.png").astype(float)
    expected = np.maximum(read_image(ir_dir / "a01.png"), rgb_to_luma(read_image(vis_dir / "a01.png")))
    assert np.abs(fused - expected).max() <= 1


def test_model_options_reach_the_bench_and_its_cache_recipe(tmp_path: Path, capsys):
    from contrafuse.io import read_image

    ir_dir, vis_dir, _ = _write_pairs(tmp_path / "data", names=("a01",))
    base = ["bench", "--data", f"toy={ir_dir},{vis_dir}", "--no-plots", "--quiet", "--metrics", "EN"]
    runs = {}
    for label, extra in (("replicate", []), ("zeros", ["--model-option", "cs2fusion:border=zeros"])):
        assert main([*base, "--models", "cs2fusion", "--out", str(tmp_path / label), *extra]) == 0
        folder = tmp_path / label / "fused" / "toy" / "cs2fusion"
        runs[label] = read_image(folder / "a01.png")
        assert json.loads((folder / "run.json").read_text())["recipe"]["model_options"] == {"border": label}
    assert not np.array_equal(runs["replicate"][0], runs["zeros"][0])  # the top row differs
    assert np.array_equal(runs["replicate"][10:-10, 10:-10], runs["zeros"][10:-10, 10:-10])
    assert "border=zeros" in (tmp_path / "zeros" / "report.md").read_text()
    for option, message in (("coconet:border=zeros", "'coconet' is not a registered model listed in --models"),
                            ("width=3", "no model listed in --models has the option 'width'")):
        assert main([*base, "--models", "cs2fusion,average", "--out", str(tmp_path / "x"), "--model-option", option]) == 2
        assert message in capsys.readouterr().err


def test_missing_result_is_reported_and_exit_status_is_1(tmp_path: Path, capsys):
    ir_dir, vis_dir, res_dir = _write_pairs(tmp_path / "data")
    (res_dir / "b02.png").unlink()
    out = tmp_path / "out"
    code = main(["bench", "--data", f"{ir_dir},{vis_dir}", "--models", "average", "--results", f"partial={res_dir}",
                 "--out", str(out), "--no-plots", "--quiet", "--metrics", "EN", "SSIM"])
    assert code == 1
    assert "b02" in capsys.readouterr().err
    text = (out / "report.md").read_text()
    assert "partial / b02" in text


def test_unequal_pair_counts_rank_on_the_common_pairs_with_paired_p_values(tmp_path: Path):
    from scipy.stats import wilcoxon

    names = tuple(f"p{i:02d}" for i in range(8))
    ir_dir, vis_dir, res_dir = _write_pairs(tmp_path / "data", names=names)
    for missing in ("p01", "p05"):
        (res_dir / f"{missing}.png").unlink()
    out = tmp_path / "out"
    code = main(["bench", "--data", f"toy={ir_dir},{vis_dir}", "--models", "average,laplacian", "--results",
                 f"partial={res_dir}", "--out", str(out), "--no-plots", "--quiet", "--metrics", "EN", "SD", "SSIM",
                 "--grid", "0"])
    assert code == 1  # the two missing results are failures
    doc = json.loads((out / "metrics.json").read_text())["datasets"]["toy"]
    common = [n for n in names if n not in ("p01", "p05")]
    assert doc["ranking"]["basis"] == "common" and doc["ranking"]["pairs"] == common
    rows = read_csv(out / "metrics.csv")
    per_image = {(r["method"], r["image"]): float(r["SD"]) for r in rows if r["row"] == "image"}
    mean = {r["method"]: float(r["SD"]) for r in rows if r["row"] == "mean"}
    for method in ("average", "laplacian"):  # 8 pairs each, but averaged over the 6 common ones
        assert mean[method] == pytest.approx(np.mean([per_image[(method, n)] for n in common]))
        assert mean[method] != pytest.approx(np.mean([per_image[(method, n)] for n in names]))
    text = (out / "report.md").read_text()
    assert "Ranked on the 6 pairs every method has (of 8; pairs scored: partial 6)" in text
    header, table = markdown_table(text, "toy")
    assert float(table["average"][1].strip("*")) == pytest.approx(mean["average"], abs=1e-4)
    # the p-values are Wilcoxon signed-rank tests over the common pairs, in the JSON and the report
    a = [per_image[("average", n)] for n in common]
    b = [per_image[("laplacian", n)] for n in common]
    expected = wilcoxon(np.subtract(a, b)).pvalue
    assert doc["significance"]["p_values"]["SD"]["average vs laplacian"] == pytest.approx(expected)
    assert expected < 0.05  # laplacian keeps more contrast on every pair: 6 pairs can show that
    section = text.split("Paired tests", 1)[1].split("Fusion time", 1)[0]
    assert "Wilcoxon signed-rank" in section and "over the 6 pairs" in section
    p_rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
              for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Method")}
    best_sd = max(("average", "laplacian", "partial"), key=lambda m: mean[m])
    assert p_rows[best_sd][1] == "best"
    assert all(cell == "best" or re.fullmatch(r"[0-9.e-]+\*?|n/a", cell) for cells in p_rows.values() for cell in cells)


def test_own_pairs_basis_warns_that_the_images_differ(tmp_path: Path):
    ir_dir, vis_dir, res_dir = _write_pairs(tmp_path / "data")
    (res_dir / "b02.png").unlink()
    out = tmp_path / "out"
    main(["bench", "--data", f"toy={ir_dir},{vis_dir}", "--models", "average", "--results", f"partial={res_dir}",
          "--out", str(out), "--no-plots", "--quiet", "--metrics", "EN", "--rank-pairs", "own", "--grid", "0"])
    text = (out / "report.md").read_text()
    assert "Warning: each method is averaged over its own pairs" in text
    rows = read_csv(out / "metrics.csv")
    en = [float(r["EN"]) for r in rows if r["method"] == "average" and r["row"] == "image"]
    assert next(float(r["EN"]) for r in rows if r["method"] == "average" and r["row"] == "mean") == pytest.approx(np.mean(en))


def test_report_explains_the_convention_scale(bench_run: Path):
    text = (bench_run / "report.md").read_text()
    assert "SSIM is ssim(F, IR) + ssim(F, VIS), summed over the two sources: it runs from 0 to 2" in text
    assert "MI is MI(F, IR) + MI(F, VIS) in nats" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["--models", "average", "--weights", "laplacian=x.safetensors"], "--weights given for laplacian"),
        (["--models", "cs2fusion=missing.safetensors"], "missing.safetensors not found"),
        (["--results", "average=.", "--models", "average"], "two methods are labelled 'average'"),
        ([], "nothing to compare"),
    ],
)
def test_argument_errors_name_the_problem(tmp_path: Path, capsys, args, message):
    ir_dir, vis_dir, _ = _write_pairs(tmp_path / "data", names=("x1",))
    code = main(["bench", "--data", f"{ir_dir},{vis_dir}", "--out", str(tmp_path / "out"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_named_dataset_resolves_from_the_data_root(tmp_path: Path, monkeypatch):
    _write_pairs(tmp_path / "root" / "tno42")
    monkeypatch.setenv("CONTRAFUSE_DATA", str(tmp_path / "root"))
    dataset = resolve_dataset("tno42")
    assert dataset.label == "tno42" and [p.name for p in dataset.pairs] == list(PAIRS)
    assert len(resolve_dataset("tno42", limit=2).pairs) == 2
    with pytest.raises(BenchError, match="unknown dataset 'tno43'"):
        resolve_dataset("tno43")


def test_weights_option_and_inline_weights_agree(tmp_path: Path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    inline = parse_models([f"cs2fusion={weights},average"])
    separate = parse_models(["cs2fusion,average"], {"cs2fusion": str(weights)})
    assert inline == separate and inline[0].weights == str(weights) and inline[1].weights is None


def test_plots_without_matplotlib_raise_a_clear_error(monkeypatch, tmp_path: Path):
    from contrafuse.bench import plots
    from contrafuse.errors import ContrafuseError

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ContrafuseError, match=r"pip install 'contrafuse\[report\]'"):
        plots.box_plots({"a": {"x": {"EN": 1.0}}}, ["EN"], tmp_path / "box")


def test_box_plot_files_are_images(bench_run: Path):
    with Image.open(bench_run / "figures" / "toy_boxplots.png") as image:
        assert image.size[0] > 300 and image.size[1] > 200
    assert (bench_run / "figures" / "toy_boxplots.pdf").read_bytes().startswith(b"%PDF")
    assert not math.isnan(json.loads((bench_run / "metrics.json").read_text())["datasets"]["toy"]["methods"]["average"]["mean_rank"])


# -- report.html in a real browser -------------------------------------------------------------

def _chromium() -> str:
    """Path of a headless-capable Chromium; FAIL under CI when missing, skip elsewhere."""
    return require_chromium()


def _run_chromium(profile: Path, *args: str) -> str:
    import subprocess

    command = [_chromium(), *CHROMIUM_FLAGS, "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _DomDigest:
    """The parts of a dumped DOM the test checks: table cells, images and body attributes."""

    def __init__(self, markup: str) -> None:
        from html.parser import HTMLParser

        self.cells: dict[tuple[str, str, str], float] = {}  # (dataset, method, metric) -> value
        self.images: list[dict[str, str]] = []
        self.body: dict[str, str] = {}
        digest = self

        class Parser(HTMLParser):
            dataset = method = ""

            def handle_starttag(self, tag, attrs):
                attrs = {k: v or "" for k, v in attrs}
                if tag == "body":
                    digest.body = attrs
                elif tag == "table" and "metrics" in attrs.get("class", ""):
                    Parser.dataset = attrs["data-dataset"]
                elif tag == "tr" and "data-method" in attrs:
                    Parser.method = attrs["data-method"]
                elif tag == "td" and "data-metric" in attrs:
                    key = (Parser.dataset, Parser.method, attrs["data-metric"])
                    digest.cells[key] = float(attrs["data-value"])
                    if "best" in attrs.get("class", ""):
                        digest.best.add(key)
                elif tag == "img":
                    digest.images.append(attrs)

        self.best: set[tuple[str, str, str]] = set()
        Parser().feed(markup)


def test_html_report_renders_tables_and_images_in_chromium(bench_run: Path, tmp_path: Path):
    url = (bench_run / "report.html").resolve().as_uri()
    dom = _DomDigest(_run_chromium(tmp_path / "profile", "--virtual-time-budget=5000", "--window-size=1400,2000",
                                   "--dump-dom", url))
    means = {r["method"]: r for r in read_csv(bench_run / "metrics.csv") if r["row"] == "mean"}
    metric_names = [n for n in read_csv(bench_run / "metrics.csv")[0] if n not in ("dataset", "method", "row", "image", "convention")]
    for method, row in means.items():
        for name in metric_names:
            assert dom.cells[("toy", method, name)] == pytest.approx(float(row[name]), rel=1e-12)
        assert ("toy", method, "mean_rank") in dom.cells
    assert ("toy", "average", "MSE") in dom.best  # MSE is lower-is-better: the average has the smallest
    grid = [i for i in dom.images if "data-column" in i]
    assert len(grid) == 2 * 5 and {i["data-column"] for i in grid} == {"IR", "VIS", *MODELS, "maxfuse"}
    assert any(i["src"].endswith("toy_boxplots.png") for i in dom.images)
    assert not any(i["src"].endswith("toy_grid.png") for i in dom.images)  # linked, not shown twice
    assert dom.body.get("data-images-broken") == "0"
    assert dom.body.get("data-images-loaded") == str(len(dom.images))
    # five columns of 400-px-wide panels: the grid must share the 1400 px page, not widen it
    assert dom.body.get("data-window-width") == "1400"
    assert int(dom.body["data-page-width"]) <= 1400, f"page is {dom.body['data-page-width']} px wide"

    shot = tmp_path / "shot.png"
    _run_chromium(tmp_path / "profile", "--virtual-time-budget=5000", f"--screenshot={shot}", "--window-size=1400,3600", url)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (3600, 1400)
    best_fill = np.all(np.abs(pixels - [230, 244, 230]) <= 2, axis=-1)  # td.best background
    inset_red = np.all(np.abs(pixels - [255, 48, 48]) <= 8, axis=-1)  # zoom box outlines in the grid
    assert best_fill.sum() > 500 and inset_red.sum() > 200
    assert (pixels.std(axis=-1) + pixels.mean(axis=-1) < 250).mean() > 0.05, "page looks blank"
