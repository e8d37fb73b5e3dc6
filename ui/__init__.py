"""Streamlit-side helpers shared by the pages: figures and widgets. No TensorFlow here."""
