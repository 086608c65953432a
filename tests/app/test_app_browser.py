"""The playground in headless Chromium (driven by Playwright's Python package) against the real waitress server:
type a prompt, stream a generation, see a field error, and model-controlled HTML stays text. Which Chromium:
tests/app/browser.py (`make test` gets one where the machine allows; without one these tests are skipped and the
run's summary says why)."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.app.browser import CHROMIUM_ARGS, find_chromium
from tests.app.servers import Server

pytestmark = pytest.mark.slow

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    """Found first (autouse), so without a browser no server is started for nothing."""
    path, what = find_chromium()
    if path is None:
        pytest.skip(f"{what}; `make test` installs one where the machine allows")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.app.conftest import build_models

    models = build_models(tmp_path_factory.mktemp("browser-models"))
    server = Server("waitress", models, MAX_NEW_TOKENS="100000", GENERATION_TIMEOUT="120")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("dialog", lambda dialog: (page.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()


def generate(server, page, prompt: str = "ROMEO:", max_new_tokens: int = 20) -> str:
    """Open the playground, generate to the end; the output as shown."""
    page.goto(server.url + "/")
    assert page.is_disabled("#copy")  # nothing to copy yet
    page.fill("#prompt", prompt)
    page.fill("#max_new_tokens", str(max_new_tokens))
    page.click("#generate")
    page.locator("#stats", has_text="finish").wait_for(timeout=30_000)
    return page.text_content("#output")


def test_generate_streams_text_into_the_page(server, page):
    output = generate(server, page, max_new_tokens=40)
    assert page.locator("#output .tok").count() > 0
    assert output.startswith("ROMEO:") and len(output) > len("ROMEO:")
    assert "tokens/s" in page.text_content("#stats")
    page.click("#stats button")  # reuse seed
    assert page.input_value("#seed") == page.text_content("#stats").split("seed ")[1].split()[0]
    page.check("#show-probabilities")
    page.locator("#output .tok").first.focus()
    assert page.locator("#token-tip").is_visible()
    assert page.problems == []


def test_rank_colouring_shows_gltrs_buckets(server, page):
    generate(server, page, max_new_tokens=40)
    page.check("#show-probabilities")
    assert "probabilities" in page.get_attribute("#output", "class")
    assert page.locator('.legend[data-colouring="probability"]').is_visible()
    page.select_option("#colouring", "rank")
    classes = page.get_attribute("#output", "class").split()
    assert "ranks" in classes and "probabilities" not in classes
    assert page.locator('.legend[data-colouring="rank"]').is_visible()
    assert page.locator('.legend[data-colouring="probability"]').is_hidden()
    shown = page.eval_on_selector_all("#output .tok", "spans => spans.map(s => [s.tokenData.rank, s.className])")
    assert shown
    for rank, class_name in shown:
        bucket = next(name for limit, name in ((10, "rank-10"), (100, "rank-100"), (1000, "rank-1000"),
                                               (float("inf"), "rank-beyond")) if rank <= limit)
        assert rank >= 1 and bucket in class_name.split(), (rank, class_name)
    page.locator("#output .tok").first.focus()
    assert f"rank {shown[0][0]}" in page.text_content("#token-tip")
    # GLTR's green for the top 10 (the tiny models' vocabulary has about 80 tokens, so 10 and 100 are what occur)
    colours = page.eval_on_selector_all("#output .tok.rank-10",
                                        "spans => spans.map(s => getComputedStyle(s).backgroundColor)")
    assert set(colours) <= {"rgb(173, 255, 128)"}
    page.uncheck("#show-probabilities")
    assert page.locator(".legend[data-colouring]:visible").count() == 0
    assert page.problems == []


def test_the_api_hint_shows_both_curl_lines_and_they_work(server, page):
    page.goto(server.url + "/")
    page.fill("#prompt", "It's ROMEO")
    page.fill("#max_new_tokens", "7")
    page.click("#api-hint summary")
    lines = [page.text_content("#curl-generate"), page.text_content("#curl-completions")]
    assert "/generate -d" in lines[0] and "/v1/completions -d" in lines[1]
    generated, completed = (json.loads(subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=60,
                                                      check=True).stdout) for line in lines)
    assert generated["prompt"] == "It's ROMEO" and generated["generated_tokens"] <= 7
    assert completed["object"] == "text_completion" and completed["usage"]["completion_tokens"] <= 7
    assert page.problems == []


def test_the_playground_works_when_the_api_needs_keys(page, tmp_path):
    from tests.app.conftest import build_models

    keyed = Server("waitress", build_models(tmp_path / "models"), API_KEYS="a-key-for-scripts-only")
    try:
        assert requests.post(keyed.url + "/generate", json={"prompt": "A"}, timeout=30).status_code == 401
        output = generate(keyed, page, max_new_tokens=10)
        assert output.startswith("ROMEO:") and page.locator("#output .tok").count() > 0
        page.goto(keyed.url + "/compare")
        page.fill("#max_new_tokens", "5")
        page.click("#generate")
        page.locator("#stats-b", has_text="finish").wait_for(timeout=30_000)
        assert page.problems == []
    finally:
        keyed.stop()


def test_copy_puts_prompt_and_generation_on_the_clipboard(server, page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    shown = generate(server, page)
    page.click("#copy")
    page.locator("#copy", has_text="Copied").wait_for(timeout=5_000)
    assert page.evaluate("navigator.clipboard.readText()") == shown
    page.locator("#copy", has_text="Copy").wait_for(timeout=5_000)  # the label comes back
    assert page.problems == []


def test_copy_selects_the_text_when_the_clipboard_is_refused(server, page):
    # as on plain http at a LAN address, where browsers refuse the clipboard API
    page.add_init_script("navigator.clipboard.writeText = () => Promise.reject(new Error('refused'))")
    shown = generate(server, page)
    page.click("#copy")
    page.locator("#copy", has_text="Selected").wait_for(timeout=5_000)
    # the whole output is selected; Chromium's serialisation of a selection leaves out a final line break, which
    # the sampled text sometimes ends with
    assert page.evaluate("window.getSelection().toString()").rstrip("\n") == shown.rstrip("\n")
    assert page.problems == []


def test_a_bad_value_shows_the_servers_message_next_to_the_field(server, page):
    page.goto(server.url + "/")
    page.click("#advanced summary")
    page.fill("#top_p", "5")
    page.click("#generate")
    error = page.locator("#top_p-error")
    error.wait_for(state="visible", timeout=30_000)
    assert "top_p" in error.text_content()
    assert page.get_attribute("#top_p", "aria-invalid") == "true"
    assert page.problems == []


def test_html_in_the_prompt_is_shown_as_text(server, page, tmp_path):
    generate(server, page, prompt=XSS, max_new_tokens=10)
    assert page.text_content("#output .prompt-text") == XSS
    assert page.locator("#output img").count() == 0
    assert page.problems == []  # no alert() dialog, no script error
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    # Nothing sticks out sideways at phone width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_stop_aborts_the_generation_and_the_server_lets_go(server, page):
    page.goto(server.url + "/")
    page.fill("#max_new_tokens", "100000")
    page.click("#generate")
    # attached, not visible: a token that is only a newline has no box of its own
    page.locator("#output .tok").first.wait_for(state="attached", timeout=30_000)
    page.click("#stop")
    page.locator("#stats", has_text="Stopped").wait_for(timeout=30_000)
    assert page.is_enabled("#generate") and page.is_disabled("#stop")
    deadline = time.monotonic() + 30
    while requests.get(server.url + "/health", timeout=5).json()["generations"]["active"]:
        assert time.monotonic() < deadline, "the server kept generating after Stop"
        time.sleep(0.2)
    assert page.problems == []


def test_compare_runs_two_models_side_by_side(server, page):
    page.goto(server.url + "/compare")
    page.select_option("#model_a", "tiny-gpt")
    page.select_option("#model_b", "tiny-lstm")
    page.fill("#max_new_tokens", "20")
    page.click("#generate")
    for side in ("a", "b"):
        page.locator(f"#stats-{side}", has_text="finish").wait_for(timeout=30_000)
        assert page.locator(f"#output-{side} .tok").count() > 0
    assert page.text_content("#name-a") == "tiny-gpt" and page.text_content("#name-b") == "tiny-lstm"
    assert page.problems == []
