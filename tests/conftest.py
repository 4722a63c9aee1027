"""Shared fixtures: a circuit store per backend (embedded always; Neo4j when SFC_NEO4J_URI is set)."""

from __future__ import annotations

import os

import pytest

from sfc_graph.store import open_store

BACKENDS = ["ladybug"] + (["neo4j"] if os.environ.get("SFC_NEO4J_URI") else [])


def clear_neo4j(store) -> None:
    """Empty the Neo4j test database (the tests own it: never point SFC_NEO4J_URI at data you keep)."""
    store._run_in_transaction(["MATCH (n) DETACH DELETE n"], {})


@pytest.fixture
def store_spec(request, tmp_path):
    """A fresh, empty store of the backend given by the test's ``backend`` parameter; yields its spec."""
    backend = getattr(request, "param", "ladybug")
    if backend == "neo4j":
        spec = os.environ["SFC_NEO4J_URI"]
        with open_store(spec) as store:
            clear_neo4j(store)
        yield spec
    else:
        yield str(tmp_path / "store")


@pytest.fixture
def store(store_spec):
    with open_store(store_spec) as opened:
        yield opened


def pytest_generate_tests(metafunc):
    if "store_spec" in metafunc.fixturenames and "backend" not in metafunc.fixturenames:
        marks = {"neo4j": [pytest.mark.neo4j]}
        metafunc.parametrize(
            "store_spec",
            [pytest.param(b, id=b, marks=marks.get(b, [])) for b in BACKENDS],
            indirect=True,
        )


@pytest.fixture(scope="module", name="zoo")
def zoo_transcoder_model():
    """The shipped zoo's model with its transcoders, read for the weight-graph and transcoder-circuit tests."""
    import torch

    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model
    from sfc_graph.ingest.transcoder_model import TranscoderModel

    torch.set_num_threads(1)
    handle = load_model("toy-zoo", device="cpu")
    dictionaries = load_dictionary_set(["toy-zoo-transcoders"], n_layers=handle.n_layers, d_model=handle.d_model,
                                       model_id=handle.model_id)
    return TranscoderModel(handle, dictionaries)
