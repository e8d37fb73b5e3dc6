"""ui/server_runtime.py: the router makes Streamlit leave Keras alone between script runs, and the server's
config skips the forced garbage collection after each run (benchmarks/rerun_cost.py measures both)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import keras
from conftest import ROOT, STREAMLIT_RUN_CLEANUP
from streamlit import config
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

from ui.server_runtime import close_matplotlib_figures, keep_keras_state_between_runs


def test_the_router_keeps_keras_state_across_a_run(monkeypatch):
    # As a fresh server has it (raising=False: if Streamlit renamed it, its reset still runs and this test fails).
    monkeypatch.setattr(script_runner, "_clean_problem_modules", STREAMLIT_RUN_CLEANUP, raising=False)
    counted = keras.backend.get_uid("server_runtime_probe")
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    assert not app.exception
    # Streamlit's cleanup would have called keras.backend.clear_session(), which restarts every counter at 1.
    assert keras.backend.get_uid("server_runtime_probe") == counted + 1


def test_keeping_keras_state_is_idempotent_and_still_closes_pyplot_figures(monkeypatch):
    monkeypatch.setattr(script_runner, "_clean_problem_modules", STREAMLIT_RUN_CLEANUP, raising=False)
    keep_keras_state_between_runs()
    keep_keras_state_between_runs()
    assert script_runner._clean_problem_modules is close_matplotlib_figures
    closed = []
    fake_pyplot = type("pyplot", (), {"close": staticmethod(closed.append)})
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", fake_pyplot)
    close_matplotlib_figures()
    assert closed == ["all"]


def test_the_server_does_not_force_a_garbage_collection_after_every_run(monkeypatch, tmp_path):
    """Read back through Streamlit's own loader: an option Streamlit renamed or dropped would be ignored (with only
    a logged warning), so reading our TOML file alone would not tell."""
    project_file = ROOT / ".streamlit" / "config.toml"
    try:
        with monkeypatch.context() as patch:
            patch.chdir(ROOT)  # `streamlit run` reads $CWD/.streamlit/config.toml
            patch.setenv("HOME", str(tmp_path))  # and ~/.streamlit/config.toml, here none
            config.get_config_options(force_reparse=True)
            assert config.get_option("runner.postScriptGC") is False
            assert Path(config._config_options["runner.postScriptGC"].where_defined) == project_file
    finally:
        config.get_config_options(force_reparse=True)  # the other tests' configuration, as it was
    # The script runner still consults the option before its collection after each run.
    assert "runner.postScriptGC" in inspect.getsource(script_runner.ScriptRunner)
