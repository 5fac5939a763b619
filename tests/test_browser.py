"""bertviz's head view of our model, drawn by a real browser (headless Chromium) with no internet.

This is the check for the blank view bertviz users report: the view draws nothing when its JavaScript libraries
do not load. The test installs nothing and reaches no network: the libraries (require.js 2.3.6, d3 5.7.0 and
jQuery 2.x, the versions bertviz asks the CDN for) are put into data/cache/bertviz-js by `make browser-deps` (npm),
and Debian's ``chromium`` by apt-get; ``.ci/run`` does both before `make test`. Where either is missing, the test
is skipped and says which setup step brings it.
"""

import re
import shutil
import subprocess
from html import unescape

import pytest
import torch

from roberta_from_scratch import viz
from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.model import RobertaForMaskedLM
from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer

from conftest import ROOT

import bertviz  # noqa: E402,F401 (a declared dependency)
JS_DIR = ROOT / "data" / "cache" / "bertviz-js"
NPM_PACKAGES = ["d3@5.7.0", "requirejs@2.3.6", "jquery@2"]  # the Makefile's browser-deps installs the same


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def chromium() -> str:
    browser = find_chromium()
    if browser is None:
        pytest.skip("no Chromium: install Debian's `chromium` (apt-get install chromium; .ci/run does) to run the "
                    "browser test")
    return browser


@pytest.fixture(scope="module")
def libraries() -> dict[str, str]:
    files = {"require": JS_DIR / "node_modules/requirejs/require.js",
             "d3": JS_DIR / "node_modules/d3/dist/d3.min.js",
             "jquery": JS_DIR / "node_modules/jquery/dist/jquery.min.js"}
    if not all(f.is_file() for f in files.values()):
        pytest.skip(f"no bertviz JavaScript libraries in {JS_DIR.relative_to(ROOT)}: run `make browser-deps` "
                    f"(npm install of {' '.join(NPM_PACKAGES)}; .ci/run does) to run the browser test")
    # require.js appends ".js" to the paths of d3 and jquery
    return {name: f.as_uri().removesuffix(".js") if name != "require" else f.as_uri() for name, f in files.items()}


def drawn_labels(browser: str, page, tmp_path) -> dict[str, list[str]]:
    """Load the page in headless Chromium and read the token labels it drew: left and right columns, top down."""
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    labels = {"end": [], "start": []}
    for attrs, text in re.findall(r"<text([^>]*)>([^<]*)</text>", done.stdout):
        anchor = re.search(r"text-anchor:\s*(\w+)", attrs).group(1)
        y = float(re.search(r'\by="([\d.]+)"', attrs).group(1))
        labels[anchor].append((y, unescape(text)))
    return {"left": [t for _, t in sorted(labels["end"])], "right": [t for _, t in sorted(labels["start"])]}


@pytest.fixture(scope="module")
def view(python_docs):
    corpus, _ = python_docs
    tokenizer = ByteLevelBPETokenizer.train(list(corpus["train"]["text"][:300]), vocab_size=500)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(RobertaConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)).eval()
    inp = viz.attention_inputs(model, tokenizer, "The cat sat on the mat.")
    return inp.tokens, viz.head_view(inp.attentions, inp.tokens, html_action="return")


def test_head_view_draws_every_token_on_both_sides(chromium, libraries, view, tmp_path):
    tokens, html = view
    page = viz.save_html(html, tmp_path / "head_view.html", libraries)
    labels = drawn_labels(chromium, page, tmp_path)
    assert labels["left"] == tokens, labels
    assert labels["right"] == tokens, labels
    assert " cat" in tokens or " c" in tokens  # a space-led token is drawn with its space, not as 'Ġ'


def test_without_its_libraries_the_view_is_blank(chromium, view, tmp_path):
    """The failure the test above guards against: with the CDN out of reach, nothing is drawn."""
    tokens, html = view
    page = viz.save_html(html, tmp_path / "blank.html", {name: (tmp_path / f"missing-{name}.js").as_uri()
                                                          for name in viz.CDN_LIBRARIES})
    assert drawn_labels(chromium, page, tmp_path) == {"left": [], "right": []}
