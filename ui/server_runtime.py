"""How the one server process runs the scripts of many sessions: what Streamlit does between runs.

After every script run of every session, Streamlit resets Keras (`keras.backend.clear_session()` in
`script_runner._clean_problem_modules`). In this dashboard's server, with the shipped models loaded, that reset
costs about 190 ms of CPU with Python's lock held (a full garbage collection), empties TensorFlow's kernel cache
(the next prediction is several times slower) and swaps Keras' global state under the threads of other sessions
that are building or running a model. Our models are created once per process (cached resources), so the reset
has nothing to free; it only makes 30 sessions wait on each other. `python benchmarks/rerun_cost.py` measures it.
The other per-run collection, `runner.postScriptGC`, is switched off in `.streamlit/config.toml`.
"""

from __future__ import annotations

import logging
import sys

from streamlit.runtime.scriptrunner import script_runner

_LOGGER = logging.getLogger(__name__)
_STREAMLIT_CLEANUP = "_clean_problem_modules"


def close_matplotlib_figures() -> None:
    """The part of Streamlit's between-runs cleanup that is kept: open pyplot figures are closed (the dashboard
    draws with plotly, so there are none unless a library made some)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def keep_keras_state_between_runs() -> None:
    """Make Streamlit's between-runs cleanup leave Keras alone (idempotent; call before any page runs)."""
    if not hasattr(script_runner, _STREAMLIT_CLEANUP):
        _LOGGER.debug("this Streamlit has no %s: nothing resets Keras between runs", _STREAMLIT_CLEANUP)
        return
    setattr(script_runner, _STREAMLIT_CLEANUP, close_matplotlib_figures)
