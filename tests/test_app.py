"""The entry file routes to every page: AppTest of streamlit_app.py plus switch_page, no exception."""

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import menu

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "streamlit_app.py"
PAGES = [page.path for page in menu.PAGES]


def test_router_lists_every_page_file_once():
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "pages").glob("*.py"))
    assert sorted(PAGES) == files


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """What the pages open on: one untrained report model (so Evaluate measures a small network, not the
    six-view `fast` one), the bundled 1,000-image sample as data, and an empty runs folder."""
    from cnn.artifacts import save_model
    from cnn.zoo import ZOO

    folder = tmp_path_factory.mktemp("tiny_setup")
    for name in ("models", "runs", "no-data"):
        (folder / name).mkdir()
    save_model(
        ZOO["base"].build(),
        folder / "models" / "base.keras",
        {"model": "base", "epochs": 1, "metrics": {"val_accuracy": 0.1}},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNN_MODELS_DIR", str(folder / "models"))
        patch.setenv("CNN_RUNS_DIR", str(folder / "runs"))
        patch.setenv("CIFAR10_DIR", str(folder / "no-data"))
        yield folder


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_without_an_exception(page, tiny_setup):
    app = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    app.switch_page(page).run()
    assert not app.exception, f"{page}: {app.exception}"
    assert app.title, f"{page} has no title"


# In a fresh interpreter: the modules with which Home, Train, Evaluate and Build list and configure models,
# then each page that needs no model, run in turn; after each, whether TensorFlow (or Keras) is loaded.
_NO_TENSORFLOW_PROBE = """
import json, sys
from streamlit.testing.v1 import AppTest
loaded = lambda: 'tensorflow' in sys.modules or 'keras' in sys.modules
import cnn.zoo, cnn.training, cnn.jobs, ui.training_views, ui.evaluation_views, ui.home_views, ui.build_views
found = {'the modules of Home, Train, Evaluate and Build': [True, loaded()]}
for page in sys.argv[1:]:
    app = AppTest.from_file(page, default_timeout=120).run()
    found[page] = [not app.exception, loaded()]
print(json.dumps(found))
"""


@pytest.mark.slow
def test_pages_without_a_model_never_import_tensorflow(tmp_path):
    """TensorFlow takes 10-60 s to import: the router with the Home page, the Learn and Data pages, and listing
    and configuring models on the others, must open without it. The Data page runs on the bundled sample (no
    CIFAR10_DIR, and a HOME without Keras's cache)."""
    import subprocess
    import sys

    # The router first: every visitor's first run, and with it the Home page (the default).
    pages = [
        str(ENTRY),
        *(str(path) for path in sorted((ROOT / "pages").glob("learn_*.py"))),
        str(ROOT / "pages" / "dataset.py"),
    ]
    env = {name: value for name, value in os.environ.items() if name != "CIFAR10_DIR"} | {"HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", _NO_TENSORFLOW_PROBE, *pages],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(found) == 1 + len(pages)
    for what, (ran_cleanly, imported_tensorflow) in found.items():
        assert ran_cleanly, f"{what} raised an exception"
        assert not imported_tensorflow, f"{what} imported TensorFlow"


def test_a_deep_link_opened_first_goes_through_the_router():
    """A fresh process whose first run is a sub-page (as after a server start) still gets the router's menu,
    page config and sidebar: Streamlit would run the page alone, as a legacy pages/ page.

    A subprocess, because the guard acts on the first import of `ui` in a process.
    """
    import subprocess
    import sys

    code = (
        f"from streamlit.testing.v1 import AppTest\n"
        f"app = AppTest.from_file({str(ENTRY)!r}, default_timeout=120)\n"
        "app.switch_page('pages/learn_relu.py')\n"  # before the first run: the deep link
        "app.run()\n"
        "assert not app.exception, app.exception\n"
        "assert app.title[0].value.startswith('ReLU'), app.title\n"
        "assert any('Concept' in caption.value for caption in app.sidebar.caption), 'no router sidebar'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_imports_ui_before_drawing(page):
    """Importing `ui` sends a deep link through the router (ui/deep_links.py): it must come before any output."""
    import ast

    tree = ast.parse((ROOT / page).read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if module == "ui" or (module or "").startswith("ui."):
                return
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # the docstring
            pytest.fail(f"{page} runs {ast.unparse(node)[:60]!r} before importing ui")
    pytest.fail(f"{page} never imports ui")
