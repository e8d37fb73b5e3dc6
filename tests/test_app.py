"""The entry file routes to every page: AppTest of streamlit_app.py plus switch_page, no exception."""

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "streamlit_app.py"
PAGES = re.findall(r'st\.Page\("(pages/[a-z_]+\.py)"', ENTRY.read_text())


def test_router_lists_every_page_file_once():
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "pages").glob("*.py"))
    assert sorted(PAGES) == files


def test_home_page_opens_with_the_navigation():
    app = AppTest.from_file(str(ENTRY), default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value.startswith("How a convolutional neural network")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_without_an_exception(page):
    app = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    app.switch_page(page).run()
    assert not app.exception, f"{page}: {app.exception}"
    assert app.title, f"{page} has no title"


def test_train_and_evaluate_pages_open_without_tensorflow():
    """Listing and configuring models needs no TensorFlow: those pages must open fast."""
    import subprocess
    import sys

    code = ("import sys, streamlit; import cnn.recipes, cnn.training, cnn.jobs, ui.training_views, "
            "ui.evaluation_views, ui.model_summary; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
