"""The app's menu: every page with its section, title and icon, in the order the sidebar lists them.

The router builds `st.navigation` from it; the tests read it to know which pages exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

# One row a page: section | script under pages/ | title | Material icon. The first page opens at "/".
_MENU = """
Start   | home                | Home                    | home
Learn   | learn_pixels        | How a computer sees     | grid_on
Learn   | learn_convolution   | Convolution             | filter_center_focus
Learn   | learn_relu          | ReLU                    | show_chart
Learn   | learn_pooling       | Pooling                 | compress
Learn   | learn_dense_softmax | Flatten, dense, softmax | linear_scale
Data    | dataset             | CIFAR-10 dataset        | photo_library
Model   | build               | Build                   | construction
Model   | train               | Train                   | model_training
Model   | evaluate            | Evaluate                | fact_check
Model   | inspect             | Inspect                 | visibility
Predict | predict             | Predict                 | image_search
"""


@dataclass(frozen=True)
class MenuPage:
    """One page of the menu, as `st.Page` takes it."""

    section: str
    path: str  # the page's script, relative to the project root ("pages/home.py")
    title: str
    icon: str  # Streamlit's ":material/NAME:"
    default: bool  # the page at "/"


def _menu_pages(table: str) -> tuple[MenuPage, ...]:
    rows = [[cell.strip() for cell in line.split("|")] for line in table.strip().splitlines()]
    return tuple(
        MenuPage(section, f"pages/{script}.py", title, f":material/{icon}:", default=number == 0)
        for number, (section, script, title, icon) in enumerate(rows)
    )


PAGES = _menu_pages(_MENU)


def navigation_pages() -> dict[str, list[st.Page]]:
    """The menu as `st.navigation` takes it: each section's st.Page objects, in menu order."""
    sections: dict[str, list[st.Page]] = {}
    for page in PAGES:
        sections.setdefault(page.section, []).append(
            st.Page(page.path, title=page.title, icon=page.icon, default=page.default)
        )
    return sections
