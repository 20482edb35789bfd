"""The demo app in a real browser (issue 22): ``python -m helpers.demo`` started as a user starts it, driven by
Playwright with Debian's chromium (as ../shared/tools/jupyterlab_run_all.py drives JupyterLab): upload an image,
wait for the overlay, check the reported area against predict's mask, upload a text file and read the message.
Skips, saying why, where gradio, playwright or chromium is missing. SKINSEG_DEMO_SCREENSHOT=path saves the page."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from helpers.data.synthetic import generate_pair
from helpers.evaluation.predict import postprocess, predict_probabilities

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated_home")]
pytest.importorskip("gradio", reason='gradio not installed: pip install -e ".[demo]"')
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium browser: apt-get install chromium (.ci/run does where it can)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A trained checkpoint, the demo serving it on 127.0.0.1 (a subprocess), and the page's URL."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_demo import trained_checkpoint

    folder = tmp_path_factory.mktemp("browser")
    model, best = trained_checkpoint(folder)
    port = _free_port()
    log = open(folder / "demo.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "helpers.demo", "--checkpoint", str(best), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(180):
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}: {(folder / 'demo.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(1)
        yield model, url, folder
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_upload_shows_overlay_and_the_area_of_predicts_mask_and_a_text_file_gets_a_message(served):
    model, url, folder = served
    image = generate_pair(21, 160)[0]
    photo, notes = folder / "lesion.png", folder / "notes.txt"
    Image.fromarray(image).save(photo)
    notes.write_text("this is not an image\n")
    expected = int(postprocess(predict_probabilities(model, image, 32, tta=True) > 0.5).sum())
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, timeout=120000)
        page.wait_for_selector("#footer", timeout=120000)
        for where in ("#disclaimer", "#footer"):
            assert "Teaching model, not a medical device" in page.inner_text(where)
        page.set_input_files("#upload input[type=file]", str(photo))
        page.wait_for_selector("#overlay img", timeout=120000)
        page.wait_for_function("document.querySelector('#report').innerText.includes('Lesion area')", timeout=120000)
        report = page.inner_text("#report")
        area = int(re.search(r"Lesion area:\s*([\d,]+) pixels", report).group(1).replace(",", ""))
        # The server runs bf16 autocast on CPUs with native bf16, as this process does: the same mask, give or
        # take a pixel whose probability sits on 0.5 under another thread count.
        assert abs(area - expected) <= max(2, expected // 200), (area, expected)
        assert page.locator("#uncertainty img").count() == 1
        if os.environ.get("SKINSEG_DEMO_SCREENSHOT"):
            page.screenshot(path=os.environ["SKINSEG_DEMO_SCREENSHOT"], full_page=True)
        page.locator("#upload button[aria-label*='Clear'], #upload button[aria-label*='Remove']").first.click()
        page.set_input_files("#upload input[type=file]", str(notes))
        page.wait_for_function("document.querySelector('#report').innerText.includes('Cannot analyse')",
                               timeout=60000)
        text = page.inner_text("#report")
        assert "is not an image this demo can read" in text and "Traceback" not in page.content()
        browser.close()
