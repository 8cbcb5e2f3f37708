"""The demo page: a Gradio app around :func:`contrafuse.demo.runner.run_request`, served offline.

Offline means: Gradio's analytics and update check are off, no share link is made, the theme's
fonts are the ones Gradio ships, and nothing on the page is fetched from outside the server.
Each browser session keeps its results in its own folder (held in its ``gr.State``; replaced
when it fuses again, removed an hour after its last run); the whole temporary tree, Gradio's upload cache
included, lives under one folder removed when the server stops. Nothing about a result is
kept at module level.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registration import MODES as ALIGN_MODES
from ..errors import ContrafuseError
from ..models import DEFAULT_MODEL, list_models
from ..options import Color, Gamut
from . import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT
from .runner import DemoResult, Example, Request, find_examples, run_request

DEMO_EXTRA = "pip install 'contrafuse[demo]'"
NO_EXAMPLE = "(none: use the uploaded files)"
SESSION_TTL_S = 3600  # a session's results folder goes this long after its last run (Gradio's clock)
TITLE = "contrafuse demo"

# Set before Gradio is imported: it reads some of them at import time.
OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "GRADIO_SHARE": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


class DemoUnavailableError(ContrafuseError):
    """Gradio (the ``demo`` extra) is not installed."""


def import_gradio(temp_root: Path) -> Any:
    """Gradio, imported with the offline settings and its cache under ``temp_root``."""
    os.environ.update(OFFLINE_ENVIRONMENT)
    os.environ["GRADIO_TEMP_DIR"] = str(temp_root / "gradio")
    try:
        import gradio
    except ImportError as exc:
        raise DemoUnavailableError(f"the demo page needs Gradio ({exc}); install the extra: {DEMO_EXTRA}") from None
    return gradio


@dataclass(frozen=True)
class DemoConfig:
    """What the page offers: the models to choose from, the example pairs, the temporary root."""

    temp_root: Path
    models: tuple[str, ...]
    examples: tuple[Example, ...]


def message_of(exc: BaseException) -> str:
    """One line for the page, as the CLI prints it (never a traceback)."""
    if isinstance(exc, ContrafuseError):
        return f"contrafuse: error: {exc}"
    if isinstance(exc, MemoryError):
        return "contrafuse: error: out of memory (try a smaller input)"
    return f"contrafuse: internal error: {type(exc).__name__}: {exc} (please report it)"


def new_session_folder(config: DemoConfig, previous: str | None) -> Path:
    """A fresh results folder for this browser session; the one of its previous run is removed."""
    remove_folder(previous)
    return Path(tempfile.mkdtemp(prefix="session-", dir=config.temp_root))


def remove_folder(folder: str | None) -> None:
    """Remove a session's results folder (the ``gr.State`` delete callback); None does nothing."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def pick_pair(config: DemoConfig, ir_file: str | None, vis_file: str | None,
              example: str | None) -> tuple[Path, Path, str, str, str | None]:
    """The pair to fuse: a chosen example, else the two uploads. Returns the paths, their names
    for messages and the pair's task when known."""
    if example and example != NO_EXAMPLE:
        chosen = next((e for e in config.examples if e.label == example), None)
        if chosen is None:
            raise ContrafuseError(f"unknown example {example!r}")
        return chosen.ir, chosen.vis, chosen.ir.name, chosen.vis.name, chosen.task
    if not ir_file or not vis_file:
        raise ContrafuseError("upload an infrared (or CT/PET/SPECT) image and a visible (or MRI) image, or pick an example")
    return Path(ir_file), Path(vis_file), Path(ir_file).name, Path(vis_file).name, None


def chosen_models(models: list[str] | None, onnx_files: list[str] | None) -> tuple[str, ...]:
    """Registered names, then uploaded ``.onnx`` files (anything else uploaded there is refused)."""
    files = [str(f) for f in onnx_files or []]
    for path in files:
        if not path.lower().endswith(".onnx"):
            raise ContrafuseError(f"{Path(path).name}: not an .onnx file (export one with `contrafuse export`)")
    return (*(models or []), *files)


def summary(result: DemoResult) -> str:
    """The line above the results: what was fused, and the registration's confidence."""
    text = f"fused with {', '.join(r.model for r in result.results)}"
    if result.registration is not None:
        reg = result.registration
        text += f"; registered ({reg.mode}, confidence {reg.confidence:.3f}, overlap {reg.overlap():.0%})"
    return text


def slider_pairs(result: DemoResult) -> dict[str, list[str]]:
    """For each model: its preview, the visible and the infrared preview (what the sliders show)."""
    return {r.model: [str(r.preview), str(result.vis_preview), str(result.ir_preview)] for r in result.results}


def build_app(config: DemoConfig) -> Any:
    """The page, as a ``gr.Blocks`` (not launched)."""
    gr = import_gradio(config.temp_root)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(600, SESSION_TTL_S)) as app:
        session_folder = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=remove_folder)
        previews = gr.State({}, time_to_live=SESSION_TTL_S)
        gr.Markdown(f"# {TITLE}\nInfrared + visible and medical image fusion, on this machine: upload a pair (or "
                    "pick an example), choose models and options as `contrafuse fuse` takes them, compare and score.")
        inputs = input_fields(gr, config)
        run = gr.Button("Fuse", variant="primary", elem_id="fuse")
        outputs = output_fields(gr)
        run.click(fuse_handler(gr, config), [*inputs.values(), session_folder], [*outputs.values(), session_folder, previews],
                  concurrency_limit=2)
        outputs["shown"].change(show_handler(gr), [outputs["shown"], previews],
                                [outputs["against_vis"], outputs["against_ir"]])
        for upload in (inputs["ir"], inputs["vis"]):  # an upload means the uploads are wanted, not the example
            upload.upload(lambda: NO_EXAMPLE, None, inputs["example"], queue=False)
    return app


def input_fields(gr: Any, config: DemoConfig) -> dict[str, Any]:
    """The pair, the models and the options, in the order :func:`fuse_handler` takes them."""
    fields = {}
    with gr.Row():
        with gr.Column(scale=1):
            fields["ir"] = gr.File(label="infrared (or CT / PET / SPECT)", type="filepath", elem_id="ir-file")
            fields["vis"] = gr.File(label="visible (or MRI)", type="filepath", elem_id="vis-file")
            fields["example"] = gr.Dropdown([NO_EXAMPLE, *(e.label for e in config.examples)], value=NO_EXAMPLE,
                                            label="or an example pair", elem_id="example")
        with gr.Column(scale=1):
            fields["models"] = gr.CheckboxGroup(list(config.models), value=[DEFAULT_MODEL],
                                                label="--model (one or several)", elem_id="models")
            fields["onnx"] = gr.File(label="--model FILE.onnx (from contrafuse export; extra onnx)",
                                     file_count="multiple", type="filepath", elem_id="onnx-files")
        with gr.Column(scale=1):
            fields["color"] = gr.Radio([c.value for c in Color], value="auto", label="--color", elem_id="color")
            fields["gamut"] = gr.Radio([g.value for g in Gamut], value="auto", label="--gamut", elem_id="gamut")
            fields["ir_range"] = gr.Textbox("auto", label="--ir-range (auto, full, LOW:HIGH, pLOW:pHIGH)",
                                            elem_id="ir-range")
            fields["align"] = gr.Radio(list(ALIGN_MODES), value="none", label="--align", elem_id="align")
    return fields


def output_fields(gr: Any) -> dict[str, Any]:
    """What a run shows, in the order :func:`fuse_handler` returns it."""
    fields = {"message": gr.Markdown("", elem_id="message"),
              "shown": gr.Radio([], label="model shown in the sliders", elem_id="shown")}
    with gr.Row():
        fields["against_vis"] = gr.ImageSlider(label="fused | visible", type="filepath", elem_id="slider-vis")
        fields["against_ir"] = gr.ImageSlider(label="fused | infrared", type="filepath", elem_id="slider-ir")
    fields["grid"] = gr.Gallery(label="all models", columns=4, height="auto", object_fit="contain", elem_id="grid")
    fields["table"] = gr.Dataframe(label="metrics (contrafuse.metrics, cddfuse convention)", interactive=False,
                                   elem_id="metrics")
    fields["checker"] = gr.Image(label="aligned pair: warped infrared over visible", type="filepath", visible=False,
                                 elem_id="checkerboard")
    fields["downloads"] = gr.File(label="fused files, as contrafuse fuse writes them", file_count="multiple",
                                  interactive=False, elem_id="downloads")
    return fields


def fuse_handler(gr: Any, config: DemoConfig) -> Callable[..., tuple]:
    """The Fuse button: the request from the fields, run in this session's fresh folder."""
    def fuse(ir_path, vis_path, example, models, onnx_paths, color, gamut, ir_range, align, folder):  # noqa: ANN001
        try:
            ir, vis, ir_name, vis_name, task = pick_pair(config, ir_path, vis_path, example)
            request = Request(ir, vis, chosen_models(models, onnx_paths), color=color, gamut=gamut,
                              ir_range=(ir_range or "auto").strip(), align=align, ir_name=ir_name, vis_name=vis_name,
                              task=task)
            folder = str(new_session_folder(config, folder))
            result = run_request(request, Path(folder))
        except Exception as exc:  # noqa: BLE001  (the page shows one line and keeps serving)
            if not isinstance(exc, ContrafuseError):
                traceback.print_exc()  # for whoever runs the server; the page gets one line
            return (message_of(exc), gr.update(choices=[], value=None), None, None, [], None,
                    gr.update(value=None, visible=False), None, folder, {})
        return (*result_values(gr, result), folder, slider_pairs(result))

    return fuse


def result_values(gr: Any, result: DemoResult) -> tuple:
    """The output fields' values for a finished run (in :func:`output_fields` order)."""
    pairs = slider_pairs(result)
    fused, vis, ir = pairs[result.results[0].model]
    headers, rows = result.table()
    checker = str(result.checkerboard) if result.checkerboard else None
    return (summary(result), gr.update(choices=list(pairs), value=result.results[0].model), (fused, vis), (fused, ir),
            [(str(r.preview), r.model) for r in result.results], gr.update(value=rows, headers=headers),
            gr.update(value=checker, visible=checker is not None), [str(r.fused) for r in result.results])


def show_handler(gr: Any) -> Callable[[str, dict], tuple]:
    """The model choice above the sliders: show that model's result in both."""
    def show(model: str, pairs: dict[str, list[str]]) -> tuple:
        if not model or model not in pairs:
            return gr.update(), gr.update()
        fused, vis, ir = pairs[model]
        return (fused, vis), (fused, ir)

    return show


def make_config(data_root: str | os.PathLike | None = None) -> DemoConfig:
    """A temporary root (removed at exit), every registered model and the examples found."""
    temp_root = Path(tempfile.mkdtemp(prefix="contrafuse-demo-"))
    atexit.register(shutil.rmtree, temp_root, True)
    return DemoConfig(temp_root, tuple(list_models()), tuple(find_examples(data_root)))


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM as Ctrl+C while serving, so the server closes and its temporary files go
    (Python's default SIGTERM ends the process without running cleanup)."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data_root: str | os.PathLike | None = None,
          max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB) -> None:
    """Build the page and serve it at ``http://host:port`` until interrupted (no share link)."""
    config = make_config(data_root)
    try:
        app = build_app(config)
        app.queue(default_concurrency_limit=2)
        try:
            app.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=False, quiet=True,
                       max_file_size=f"{max_upload_mb}mb", footer_links=[], ssr_mode=False, pwa=False,
                       mcp_server=False, prevent_thread_lock=True)
        except OSError as exc:
            raise ContrafuseError(f"cannot serve on {host}:{port} (in use, or not an address of this machine?): "
                                  "choose another --port or --host") from exc
        print(f"contrafuse demo: serving http://{host}:{port}/ (Ctrl+C stops it); temporary files under "
              f"{config.temp_root}, removed when it stops", flush=True)
        with stop_on_sigterm():
            app.block_thread()
    finally:
        shutil.rmtree(config.temp_root, ignore_errors=True)
