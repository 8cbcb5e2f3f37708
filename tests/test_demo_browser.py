"""``contrafuse demo`` end to end: the server on a free local port, driven by the system's
headless Chromium through Playwright (no browser is downloaded).

Set ``CONTRAFUSE_DEMO_SCREENSHOT=docs/images/demo.png`` to refresh the README's screenshot.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image

from conftest import CHROMIUM_FLAGS, REPO_ROOT, locate_shared_dir, require_chromium, require_module
from contrafuse.cli.main import main

require_module("gradio", "demo")
sync_api = require_module("playwright.sync_api", "test")
# the machine may be busy (a training run beside the tests): wait for the page generously
sync_api.expect.set_options(timeout=60_000)

EXAMPLES = REPO_ROOT / "examples"
SCREENSHOT_ENV = "CONTRAFUSE_DEMO_SCREENSHOT"
START_TIMEOUT_S = 180
FUSE_TIMEOUT_MS = 240_000
MAX_UPLOAD_MB = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """``contrafuse demo`` in its own process; its URL. Stopped (SIGTERM) at the end, and its
    temporary files checked gone."""
    port = free_port()
    log = tmp_path_factory.mktemp("demo-server") / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    data = locate_shared_dir() / "data"  # honours CONTRAFUSE_SHARED, as the other tests do
    data_root = ["--data-root", str(data)] if data.is_dir() else []
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "contrafuse.cli.main", "demo", "--port", str(port),
                                    "--max-upload-mb", str(MAX_UPLOAD_MB), *data_root], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
    roots = re.findall(r"temporary files under (\S+),", log.read_text())
    assert roots and not Path(roots[0]).exists()


def _wait_until_serving(process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while "serving http://" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the demo server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture
def new_session(playwright, tmp_path: Path):
    """Opens a browser session (the system Chromium, a fresh profile folder) on the page; every
    URL it requests is recorded in ``requested``. All close at the end."""
    chromium = require_chromium()
    contexts = []
    requested: list[str] = []

    def open_page(url: str):
        profile = tmp_path / f"profile-{len(contexts)}"
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, args=list(CHROMIUM_FLAGS), headless=True, accept_downloads=True,
            viewport={"width": 1280, "height": 900})
        contexts.append(context)
        context.set_default_timeout(60_000)
        context.set_default_navigation_timeout(120_000)
        context.on("request", lambda request: requested.append(request.url))
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url)
        page.wait_for_selector("#fuse", timeout=60_000)
        return page

    open_page.requested = requested
    yield open_page
    for context in contexts:
        context.close()


def upload(page, element: str, path: Path) -> None:
    """Put ``path`` into a file field (clearing what it holds), and wait until the server has it."""
    clear = page.locator(f"{element} button[aria-label=Clear]")
    if clear.count():
        clear.click()
    page.locator(f"{element} input[type=file]").set_input_files(str(path))
    sync_api.expect(page.locator(f"{element} a[href$='/{path.name}']")).to_be_visible()


def upload_pair(page, ir: Path, vis: Path) -> None:
    upload(page, "#ir-file", ir)
    upload(page, "#vis-file", vis)


def choose_models(page, models: list[str]) -> None:
    for checkbox in page.locator("#models input[type=checkbox]").all():
        name = checkbox.evaluate("node => node.closest('label').innerText").strip()
        checkbox.set_checked(name in models)


def fuse(page) -> str:
    """Press Fuse and return the page's message once it has changed (each test's successive
    messages differ) and no run is pending."""
    message = page.locator("#message")
    before = message.inner_text()
    page.locator("#fuse").click()
    page.wait_for_function(
        """([selector, before]) => {
            const text = document.querySelector(selector).innerText.trim();
            return text !== before.trim() && /^(fused with|contrafuse: )/.test(text);
        }""", arg=["#message", before], timeout=FUSE_TIMEOUT_MS)
    settle(page)
    return message.inner_text().strip()


def settle(page) -> None:
    """Wait until no component is pending and every image has loaded."""
    page.wait_for_function(
        """() => !document.querySelector('.pending, .generating')
                 && [...document.images].every(image => image.complete && image.naturalWidth > 0)""",
        timeout=FUSE_TIMEOUT_MS)


def download_all(page, folder: Path) -> dict[str, bytes]:
    """Every fused file the page offers, downloaded by clicking its link."""
    links = page.locator("#downloads a")
    sync_api.expect(links.first).to_be_visible()
    files = {}
    for index in range(links.count()):
        with page.expect_download() as event:
            links.nth(index).click()
        download = event.value
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / download.suggested_filename
        download.save_as(target)
        files[download.suggested_filename] = target.read_bytes()
    return files


def cli_output(folder: Path, *, ir: Path, vis: Path, model: str) -> bytes:
    out = folder / f"cli-{model}-{ir.stem}-{vis.stem}.png"
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", model]) == 0
    return out.read_bytes()


def off_machine(urls: list[str]) -> list[str]:
    """The requested URLs that left this machine (none should)."""
    return [url for url in urls if urlparse(url).scheme in ("http", "https", "ws", "wss")
            and urlparse(url).hostname not in ("127.0.0.1", "localhost")]


def save_screenshot(page, tmp_path: Path) -> Path:
    """A small PNG of the page (palette, 800 px wide); copied to $CONTRAFUSE_DEMO_SCREENSHOT when set."""
    raw = tmp_path / "demo-raw.png"
    page.screenshot(path=str(raw), full_page=True)
    with Image.open(raw) as image:
        small = image.convert("RGB").resize((800, round(image.height * 800 / image.width)), Image.LANCZOS)
    shot = tmp_path / "demo.png"
    small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(shot, optimize=True)
    if os.environ.get(SCREENSHOT_ENV):
        target = Path(os.environ[SCREENSHOT_ENV])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    return shot


def test_two_models_download_the_bytes_of_contrafuse_fuse(server, new_session, tmp_path: Path):
    page = new_session(server)
    upload_pair(page, EXAMPLES / "ir.png", EXAMPLES / "vis.png")
    choose_models(page, ["cs2fusion", "laplacian"])
    assert fuse(page) == "fused with cs2fusion, laplacian"
    sync_api.expect(page.locator("#metrics")).to_contain_text("Qabf")
    sync_api.expect(page.locator("#metrics")).to_contain_text("laplacian")
    assert page.locator("#grid img").count() == 2
    assert page.locator("#slider-vis img").count() >= 2 and page.locator("#slider-ir img").count() >= 2
    downloaded = download_all(page, tmp_path)
    assert sorted(downloaded) == ["vis-cs2fusion.png", "vis-laplacian.png"]
    for model in ("cs2fusion", "laplacian"):
        assert downloaded[f"vis-{model}.png"] == cli_output(tmp_path, ir=EXAMPLES / "ir.png", vis=EXAMPLES / "vis.png",
                                                            model=model)
    shot = save_screenshot(page, tmp_path)
    assert shot.stat().st_size < 300_000
    fused_src = "#slider-vis img"
    before = page.locator(fused_src).first.get_attribute("src")
    page.locator("#shown label", has_text="laplacian").click()
    page.wait_for_function("([s, b]) => document.querySelector(s).getAttribute('src') !== b", arg=[fused_src, before])
    assert page.locator(fused_src).first.get_attribute("src").endswith("preview-vis-laplacian.png")
    assert off_machine(new_session.requested) == []  # fully offline: nothing fetched from outside


def test_a_corrupt_upload_shows_the_message_and_the_app_keeps_serving(server, new_session, tmp_path: Path):
    page = new_session(server)
    corrupt = tmp_path / "thermal.png"
    corrupt.write_bytes(b"this is not an image" * 50)
    upload_pair(page, corrupt, EXAMPLES / "vis.png")
    choose_models(page, ["average"])
    message = fuse(page)
    assert message == "contrafuse: error: thermal.png: not a readable image (unknown or corrupt format)"
    assert "Traceback" not in page.content()
    assert page.locator("#downloads a").count() == 0

    small = tmp_path / "small.png"
    Image.open(EXAMPLES / "ir.png").resize((32, 24)).save(small)
    upload(page, "#ir-file", small)
    assert fuse(page).startswith("contrafuse: error: sizes differ: small.png is 32x24, vis.png is 320x240")

    upload(page, "#ir-file", EXAMPLES / "ir.png")
    assert fuse(page) == "fused with average"


def test_two_sessions_at_once_keep_their_own_results(server, new_session, tmp_path: Path):
    first, second = new_session(server), new_session(server)
    upload_pair(first, EXAMPLES / "ir.png", EXAMPLES / "vis.png")
    choose_models(first, ["average"])
    upload_pair(second, EXAMPLES / "vis.png", EXAMPLES / "ir.png")  # the other way round: another result
    choose_models(second, ["laplacian"])
    first.locator("#fuse").click()
    second.locator("#fuse").click()
    sync_api.expect(first.locator("#message")).to_have_text("fused with average", timeout=FUSE_TIMEOUT_MS)
    sync_api.expect(second.locator("#message")).to_have_text("fused with laplacian", timeout=FUSE_TIMEOUT_MS)
    first_files = download_all(first, tmp_path / "first")
    second_files = download_all(second, tmp_path / "second")
    assert list(first_files) == ["vis-average.png"] and list(second_files) == ["ir-laplacian.png"]
    assert first_files["vis-average.png"] == cli_output(tmp_path, ir=EXAMPLES / "ir.png", vis=EXAMPLES / "vis.png",
                                                        model="average")
    assert second_files["ir-laplacian.png"] == cli_output(tmp_path, ir=EXAMPLES / "vis.png", vis=EXAMPLES / "ir.png",
                                                          model="laplacian")


def choose(page, element: str, option: str) -> None:
    page.locator(f"{element} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    sync_api.expect(page.locator(f"{element} input")).to_have_value(option)


def test_an_example_pair_aligned_shows_its_confidence_and_checkerboard(server, new_session, shared_dir: Path):
    page = new_session(server)
    choose(page, "#example", "examples: ir.png + vis.png")
    choose_models(page, ["average", "laplacian"])
    page.locator("#align label", has_text="affine").click()
    message = fuse(page)
    assert re.fullmatch(r"fused with average, laplacian; registered \(affine, confidence 0\.\d{3}, overlap \d+%\)", message)
    sync_api.expect(page.locator("#checkerboard img")).to_be_visible()
    assert page.locator("#grid img").count() == 2

    choose(page, "#example", "harvard_mri_pet: 11")  # a medical pair (the shared data) with IVIF models
    choose_models(page, ["cs2fusion"])
    page.locator("#align label", has_text="none").click()
    assert fuse(page) == ("contrafuse: error: 11.png + 11.png: model cs2fusion fuses infrared-visible pairs, this is "
                          "a medical pair; choose a model for medical pairs")


def test_an_upload_over_the_limit_is_refused(server, new_session, tmp_path: Path):
    page = new_session(server)
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom((MAX_UPLOAD_MB + 1) * 1024 * 1024))
    page.locator("#ir-file input[type=file]").set_input_files(str(big))
    sync_api.expect(page.get_by_text(f'exceed the maximum allowed size of {MAX_UPLOAD_MB}.0 Mb: "big.png"')).to_be_visible()
    assert page.locator("#ir-file a").count() == 0
    # the server refuses it too, whatever the page does
    response = page.request.post(f"{server}gradio_api/upload", multipart={
        "files": {"name": "big.png", "mimeType": "image/png", "buffer": big.read_bytes()}})
    assert response.status == 413


def test_a_busy_port_is_one_line_naming_it(monkeypatch, capsys):
    from contrafuse.demo.app import OFFLINE_ENVIRONMENT

    for name in (*OFFLINE_ENVIRONMENT, "GRADIO_TEMP_DIR"):  # restored after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    assert f"contrafuse: error: cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err
