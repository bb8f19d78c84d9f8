"""The import layering of pyproject.toml (what `make test` checks with lint-imports): the package keeps it,
and an import that climbs up a layer or joins two independent rooms breaks it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _layers_contract() -> dict:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["type"] == "layers")


def _illegal(graph: grimp.ImportGraph) -> set:
    contract = _layers_contract()
    layers = [grimp.Layer(*(n.strip() for n in layer.split("|")), independent=True) for layer in contract["layers"]]
    return graph.find_illegal_dependencies_for_layers(layers=layers, containers=set(contract["containers"]))


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("anovit", exclude_type_checking_imports=True)


def test_the_package_keeps_its_layers() -> None:
    assert _illegal(_graph()) == set()


def test_every_room_is_in_a_layer() -> None:
    rooms = {m.split(".")[1] for m in _graph().find_children("anovit")}
    named = {n.strip() for layer in _layers_contract()["layers"] for n in layer.split("|")}
    assert rooms - {"__main__"} == named


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("anovit.scoring.maps", "anovit.runs.train"),  # upward
        ("anovit.config", "anovit.models.weights"),  # the core reaching up
        ("anovit.training.loop", "anovit.evaluation.evaluate"),  # two independent rooms of one layer
    ],
)
def test_an_upward_import_breaks_them(importer: str, imported: str) -> None:
    graph = _graph()
    graph.add_import(importer=importer, imported=imported)
    broken = _illegal(graph)
    assert {(d.importer, d.imported) for d in broken} == {
        (".".join(importer.split(".")[:2]), ".".join(imported.split(".")[:2]))
    }
