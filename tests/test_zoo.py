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


# Statements allowed to name three or more zoo models, by file and the name they assign. Each is the zoo's
# own data, not a copy of its list:
ZOO_KEYED_TABLES = {
    # The registry itself.
    "cnn/zoo.py": {"ZOO"},
    # The report models' layer specs: the zoo builds the report's models from them (cnn.zoo.REPORT_BUILDER),
    # and test_the_report_models_are_the_report_specs_numbered_in_order keeps its keys the zoo's report models.
    "cnn/spec.py": {"REPORT_SPECS"},
}


def _own_expressions(statement: ast.stmt) -> list[ast.AST]:
    """The expressions of one statement, not those of the statements nested in it (a function's body)."""
    found, todo = [], list(ast.iter_child_nodes(statement))
    while todo:
        node = todo.pop()
        if not isinstance(node, ast.stmt):
            found.append(node)
            todo.extend(ast.iter_child_nodes(node))
    return found


def _assigned_names(statement: ast.stmt) -> set[str]:
    """The names an assignment statement binds (`ZOO: dict = ...` binds ZOO)."""
    targets = statement.targets if isinstance(statement, ast.Assign) else []
    if isinstance(statement, ast.AnnAssign):
        targets = [statement.target]
    return {target.id for target in targets if isinstance(target, ast.Name)}


def _zoo_names_in(text: str) -> set[str]:
    return set(re.findall(r"\w+", text)) & set(ZOO)


def copied_zoo_lists(source: str, shell: bool = False, allowed: frozenset[str] = frozenset()) -> list[str]:
    """The places naming three or more zoo models: in Python, a statement whose string constants do (whatever
    holds them: a list, dict keys, a comprehension, call arguments), or one string that does (a docstring,
    `"base dropout deeper".split()`), except statements assigning an `allowed` name; in a shell script, a line."""
    if shell:
        return [line for line in source.splitlines() if len(_zoo_names_in(line)) >= 3]
    found = []
    for statement in ast.walk(ast.parse(source)):
        if not isinstance(statement, ast.stmt) or _assigned_names(statement) & allowed:
            continue
        strings = [
            node.value
            for node in _own_expressions(statement)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
        if len(set(strings) & set(ZOO)) >= 3 or any(len(_zoo_names_in(string)) >= 3 for string in strings):
            found.append(f"line {statement.lineno}: {ast.unparse(statement)[:80]}")
    return found


def test_no_product_file_keeps_its_own_list_of_the_zoo():
    """The pages, the CLI, the benchmarks and the scripts read cnn.zoo: a list typed anywhere else goes stale
    (it did: the CLI test and a benchmark lost `best`)."""
    found = {}
    for folder in PRODUCT_CODE:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".sh") and path.is_file():
                name = path.relative_to(ROOT).as_posix()
                allowed = frozenset(ZOO_KEYED_TABLES.get(name, ()))
                copies = copied_zoo_lists(path.read_text(), shell=path.suffix == ".sh", allowed=allowed)
                if copies:
                    found[name] = copies
    assert not found, (
        f"lists of zoo models outside cnn.zoo (derive them from cnn.zoo.ZOO or report_models(); a table that is "
        f"the zoo's own data goes in ZOO_KEYED_TABLES, with why): {found}"
    )


def test_the_allowed_tables_exist():
    """An allowance for a table that is gone would let a new copy under that name through."""
    for name, tables in ZOO_KEYED_TABLES.items():
        tree = ast.parse((ROOT / name).read_text())
        assigned = set().union(*(_assigned_names(node) for node in tree.body if isinstance(node, ast.stmt)))
        assert tables <= assigned, f"{name}: {tables - assigned}"


def test_the_copy_detector_finds_the_kinds_of_copies_it_guards_against():
    assert copied_zoo_lists('ORDER = ["base", "dropout", "fast"]\n')
    assert copied_zoo_lists('NUMBERS = {"base": 1, "dropout": 2, "deeper": 3}\n')
    assert copied_zoo_lists("models=(fast base dropout)\n", shell=True)
    assert not copied_zoo_lists('STORY = ("base", "dropout")\n')
    assert copied_zoo_lists('ORDER = "base dropout deeper".split()\n')
    assert copied_zoo_lists('"""The report models: base, dropout and deeper."""\n')
    assert copied_zoo_lists('RANKS = {"base": -1, "dropout": -2, "deeper": -3}\n')
    assert copied_zoo_lists('ORDER = [m for m in ("base", "dropout")] + ["deeper"]\n')
    assert copied_zoo_lists('COLOURS = {"base": colors.RED, "dropout": colors.BLUE, "deeper": pick("green")}\n')
    assert copied_zoo_lists('SPECS = {"base": spec(), "dropout": spec(), "deeper": spec()}\n')
    assert copied_zoo_lists('def colour(name):\n    return {"base": RED, "dropout": BLUE, "deeper": GREEN}[name]\n')
    assert not copied_zoo_lists('SPECS = {"base": spec(), "dropout": spec(), "deeper": spec()}\n', allowed={"SPECS"})
    # Names counted per statement: a function's body is its own statements, not one list.
    assert not copied_zoo_lists('def story():\n    first = "base"\n    second = "dropout"\n    return "deeper"\n')
