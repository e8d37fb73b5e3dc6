"""AppTest of the Home page (pages/home.py, the router's default page): its title and the model tables."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ENTRY = Path(__file__).resolve().parent.parent / "streamlit_app.py"


def test_home_lists_shipped_models_apart_from_classroom_runs(save_untrained_model):
    save_untrained_model("base", "base", {"val_accuracy": 0.6, "test_clean_accuracy": 0.63, "test_all_accuracy": 0.61})
    save_untrained_model("base_classroom", "base", {"val_accuracy": 0.3})
    app = AppTest.from_file(str(ENTRY), default_timeout=60).run()  # Home is the default page
    assert not app.exception
    assert app.title[0].value.startswith("How a convolutional neural network")
    shipped, trained_here = (table.value for table in app.dataframe)
    assert list(shipped["Model"]) == ["base"] and list(trained_here["Model"]) == ["base_classroom"]
    assert [header.value for header in app.subheader][-2:] == ["Models that ship with the dashboard", "Trained here"]
