"""Streamlit-side helpers shared by the pages: figures and widgets. No TensorFlow here."""

from ui.deep_links import route_through_the_router

# Every page imports ui first: a deep link that Streamlit runs without the router is sent through it.
route_through_the_router()
