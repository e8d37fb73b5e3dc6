"""cnn.zoo is the one registry of the models: every reader takes names, figures and recipes from it.

That every entry builds is checked where the networks are used: test_training (each trainable network
takes a step) and test_explain (each shipped network's layer table). The Train page's list: test_train_page.
"""

import ast
import re
from pathlib import Path

import pytest

from cnn.errors import UserError
from cnn.spec import REPORT_SPECS
from cnn.zoo import ZOO, _resolve, get_entry, report_accuracy, report_models, zoo_position

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_CODE = ("cnn", "ui", "pages", "benchmarks", "docs", "scripts")


def test_every_entry_names_builders_that_exist():
    for entry in ZOO.values():
        for reference in filter(None, (entry.builder, entry.training_builder)):
            assert callable(_resolve(reference)), f"{entry.name}: {reference}"


def test_the_report_models_are_the_report_specs_numbered_in_order():
    numbered = report_models()
    assert [entry.report_number for entry in numbered] == list(range(1, len(REPORT_SPECS) + 1))
    assert [entry.name for entry in numbered] == list(REPORT_SPECS)
    assert all(entry.description.startswith(f"Report model {entry.report_number}: ") for entry in numbered)


def test_the_report_figures_and_the_order_come_from_the_entries():
    assert report_accuracy("base") == ZOO["base"].report_accuracy is not None
    assert report_accuracy("deeper") is None and report_accuracy("my_cnn") is None and report_accuracy(None) is None
    assert [zoo_position(name) for name in ZOO] == list(range(len(ZOO)))
    assert zoo_position("my_cnn") == len(ZOO)


def test_an_unknown_name_is_one_plain_error_listing_the_zoo():
    with pytest.raises(UserError, match="Unknown model 'nope': choose one of base, dropout"):
        get_entry("nope")


def test_a_spec_entry_builds_the_students_spec_under_their_name():
    entry = get_entry("my_cnn", REPORT_SPECS["base"])
    assert entry.description.startswith("Built on the Build page: ")
    assert entry.builder_args["name"] == "my_cnn" and entry.report_number is None


def _string_items(node) -> list[str]:
    """The string constants a literal list, tuple or set holds, or the keys of a dict of plain values."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = node.elts
    elif isinstance(node, ast.Dict) and all(isinstance(value, ast.Constant) for value in node.values):
        items = node.keys  # a table of names to numbers or words (e.g. report figures, report numbers)
    else:
        return []
    return [item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)]


def copied_zoo_lists(source: str, shell: bool = False) -> list[str]:
    """Python literals naming three or more zoo models; in a shell script, lines naming three or more."""
    if shell:
        return [line for line in source.splitlines() if len(set(re.findall(r"\w+", line)) & set(ZOO)) >= 3]
    tree = ast.parse(source)
    return [ast.unparse(node)[:80] for node in ast.walk(tree) if len(set(_string_items(node)) & set(ZOO)) >= 3]


def test_no_product_file_keeps_its_own_list_of_the_zoo():
    """The pages, the CLI, the benchmarks and the scripts read cnn.zoo: a list typed anywhere else goes stale
    (it did: the CLI test and a benchmark lost `best`)."""
    found = {}
    for folder in PRODUCT_CODE:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".sh") and path.is_file():
                copies = copied_zoo_lists(path.read_text(), shell=path.suffix == ".sh")
                if copies:
                    found[str(path.relative_to(ROOT))] = copies
    assert not found, f"lists of zoo models outside cnn/zoo.py: {found}"


def test_the_copy_detector_finds_the_kinds_of_copies_it_guards_against():
    assert copied_zoo_lists('ORDER = ["base", "dropout", "fast"]\n')
    assert copied_zoo_lists('NUMBERS = {"base": 1, "dropout": 2, "deeper": 3}\n')
    assert copied_zoo_lists("models=(fast base dropout)\n", shell=True)
    assert not copied_zoo_lists('STORY = ("base", "dropout")\n')
    assert not copied_zoo_lists('SPECS = {"base": spec(), "dropout": spec(), "deeper": spec()}\n')
