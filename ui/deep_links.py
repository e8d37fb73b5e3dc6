"""Deep links: every URL is drawn by the router (`st.navigation`), even the first one after a server start.

Streamlit (1.67) treats an app whose entry file has a `pages/` folder beside it as a
legacy multipage app until `st.navigation` has run once in the server process: a link
opened first, say /evaluate, runs pages/evaluate.py on its own, with the automatic menu
of file names, no page config (a narrow layout) and no shared sidebar. `st.navigation`
switches that mode off for the life of the process (it clears
`PagesManager.uses_pages_directory`); `client.showSidebarNavigation` only hides the
legacy menu. So the first page run that finds the legacy mode on switches it off the
same way and reruns: the rerun goes through streamlit_app.py, which draws the real menu
and layout and then this very page.
"""

from __future__ import annotations


def route_through_the_router() -> None:
    """Rerun a page that Streamlit started as a legacy `pages/` page, so the router draws it."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    if PagesManager.uses_pages_directory and get_script_run_ctx(suppress_warning=True) is not None:
        import streamlit as st

        PagesManager.uses_pages_directory = False  # what st.navigation does on its first call
        st.rerun()
