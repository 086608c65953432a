"""Browser pages: they render, every control is labelled, no inline script, model files served safely."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from app import create_app

from .conftest import TEST_CONFIG


class PageAudit(HTMLParser):
    """Collects what the checks below need from a page: controls, labels, scripts, inline handlers and
    styles."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict] = []
        self.label_for: set[str] = set()
        self.open_labels = 0
        self.scripts: list[dict] = []
        self.inline_handlers: list[str] = []
        self.style_attributes = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.inline_handlers += [name for name in attrs if name.startswith("on")]
        self.style_attributes += "style" in attrs
        if tag == "label":
            self.open_labels += 1
            if "for" in attrs:
                self.label_for.add(attrs["for"])
        if tag in ("input", "select", "textarea"):
            self.controls.append({**attrs, "wrapped": self.open_labels > 0})
        if tag == "script":
            self.scripts.append(attrs)

    def handle_endtag(self, tag):
        if tag == "label":
            self.open_labels -= 1


def audit(html: bytes) -> PageAudit:
    parser = PageAudit()
    parser.feed(html.decode())
    return parser


@pytest.mark.parametrize("path", ["/", "/compare", "/models/tiny-gpt", "/models/tiny-lstm"])
def test_pages_render_with_labels_and_no_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = audit(response.data)
    for control in page.controls:
        assert control["wrapped"] or control.get("id") in page.label_for, control
    assert all(script.get("src", "").startswith("/static/") for script in page.scripts)
    assert page.inline_handlers == [] and page.style_attributes == 0
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_playground_has_the_controls(client):
    ids = {control.get("id") for control in audit(client.get("/").data).controls}
    assert {
        "prompt",
        "model",
        "temperature",
        "max_new_tokens",
        "top_k",
        "top_p",
        "repetition_penalty",
        "seed",
        "show-probabilities",
        "colouring",
    } <= ids


def test_playground_slider_stops_at_max_new_tokens(client, app):
    page = audit(client.get("/").data)
    [slider] = [c for c in page.controls if c.get("id") == "max_new_tokens"]
    assert int(slider["max"]) == app.config["MAX_NEW_TOKENS"]


def test_pages_link_their_assets(client):
    html = client.get("/").data.decode()
    for asset in ("/static/css/style.css", "/static/js/playground.js"):
        assert asset in html and client.get(asset).status_code == 200
    for module in ("api.js", "apihint.js", "form.js", "tokens.js", "compare.js"):
        assert client.get(f"/static/js/{module}").status_code == 200


def test_model_page_shows_card_escaped_metrics_and_curve(client):
    html = client.get("/models/tiny-gpt").data.decode()
    assert "<h1>tiny-gpt</h1>" in html  # the card's Markdown, rendered
    assert "&lt;b&gt;test&lt;/b&gt;" in html and "<b>test</b>" not in html  # its raw HTML shown as text
    assert "val_bits_per_char" in html and "2.1" in html
    assert "/models/tiny-gpt/training_curve.png" in html
    lstm = client.get("/models/tiny-lstm").data.decode()
    assert "no card.md" in lstm and "No training curve" in lstm


LADDER = {"summary": "Beats the character 7-gram (Kneser-Ney) by 0.15 bits/char <script>", "rungs": [
    {"name": "this model", "kind": "model", "model": "static", "bits_per_char": 2.0368, "nats_per_char": 1.4118},
    {"name": "character 7-gram (Kneser-Ney)", "kind": "ngram", "model": None, "bits_per_char": 2.1879,
     "nats_per_char": 1.5165, "detail": "order 7 chosen on the training text"},
]}


def test_model_page_shows_the_baseline_ladder_with_the_model_on_it(make_models_dir, monkeypatch):
    root = make_models_dir()
    (root / "tiny-gpt" / "evaluation.json").write_text(json.dumps({"data": "valid split", "ladder": LADDER}))
    (root / "tiny-lstm" / "evaluation.json").write_text('{"ladder": {"rungs": [{"name": "x"}]}}')  # damaged
    monkeypatch.delenv("MODEL_DIR", raising=False)
    client = create_app({**TEST_CONFIG, "MODEL_DIR": str(root)}).test_client()
    html = client.get("/models/tiny-gpt").data.decode()
    assert "baseline ladder" in html and "Beats the character 7-gram (Kneser-Ney) by 0.15 bits/char" in html
    assert "&lt;script&gt;" in html and "<script>" not in html.split("</header>")[1].split("</main>")[0]
    assert html.index('class="ladder-model"') < html.index("2.0368") < html.index("2.1879")
    lstm = client.get("/models/tiny-lstm")
    assert lstm.status_code == 200 and "baseline ladder" not in lstm.data.decode()


def test_a_card_renders_markdown_tables_and_code_but_no_html_or_script_links(models_dir, tmp_path):
    import shutil

    from app import create_app

    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    (root / "tiny-gpt" / "card.md").write_text(
        "# Card\n\n| figure | value |\n| --- | --- |\n| loss | 1.25 |\n\n```bash\npython -m training train\n```\n\n"
        "<script>alert(1)</script>\n\n[click](javascript:alert(1)) <img src=x onerror=alert(1)>\n", encoding="utf-8")
    html = create_app({"TESTING": True, "MODEL_DIR": str(root)}).test_client().get("/models/tiny-gpt").data.decode()
    card = html[html.index('<div class="card">'):]
    assert "<table>" in card and "<td>1.25</td>" in card and '<code class="language-bash">' in card
    assert "<script>alert" not in card and "&lt;script&gt;" in card and "<img" not in card
    assert 'href="javascript' not in card


def test_training_curve_route_serves_only_that_file_of_a_loaded_model(client):
    curve = client.get("/models/tiny-gpt/training_curve.png")
    assert curve.status_code == 200 and curve.mimetype == "image/png" and curve.data.startswith(b"\x89PNG")
    for path in (
        "/models/tiny-lstm/training_curve.png",
        "/models/nope/training_curve.png",
        "/models/tiny-gpt/config.json",
        "/models/tiny-gpt/model.safetensors",
        "/models/..%2F..%2Fetc/training_curve.png",
        "/models/tiny-gpt/../../../etc/passwd",
    ):
        assert client.get(path).status_code == 404, path


def test_unknown_model_page_is_404(client):
    assert client.get("/models/nope").status_code == 404


def test_a_browser_gets_an_html_error_page_and_scripts_get_json(client):
    browser = client.get("/nope", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 404 and browser.mimetype == "text/html"
    assert client.get("/nope", headers={"Accept": "*/*"}).mimetype == "application/json"
    api = client.get("/generate", headers={"Accept": "text/html"})
    assert api.status_code == 405 and api.mimetype == "application/json"
