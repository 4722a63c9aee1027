"""sfc_graph.naming: every node kind round-trips through the builders, the parser and the vectorised forms."""

from __future__ import annotations

import polars as pl
import pytest

from sfc_graph import naming
from sfc_graph.errors import SfcError

# (kind, site, layer, index) -> the id written by hand from the grammar in docs/bundle.md
CASES = [
    (("feature", "resid", 3, 1234), "resid_3/1234"),
    (("feature", "embed", -1, 0), "embed/0"),
    (("error", "attn", 2, None), "attn_2/err"),
    (("error", "embed", -1, None), "embed/err"),
    (("output", "output", -1, None), "output"),
    (("head", "attn", 1, 7), "attn_1/h7"),
    (("token", "embed", -1, 42), "token/42"),
    (("logit", "output", -1, 17), "logit/17"),
]


@pytest.mark.parametrize(("columns", "expected"), CASES)
def test_node_id_round_trip(columns, expected):
    assert naming.node_id(*columns) == expected
    assert tuple(naming.parse_node_id(expected)) == columns


def test_every_kind_is_covered_by_the_cases():
    assert {columns[0] for columns, _ in CASES} == set(naming.NODE_KINDS)


def test_vectorised_node_id_matches_scalar():
    frame = pl.DataFrame([c for c, _ in CASES], schema=["kind", "site", "layer", "index"], orient="row")
    got = frame.select(naming.node_id_expr(pl.col("kind"), pl.col("site"), pl.col("layer"), pl.col("index")))
    assert got.to_series().to_list() == [e for _, e in CASES]


def test_identities():
    frame = pl.DataFrame(
        {
            "node_id": [e for _, e in CASES],
            "kind": [c[0] for c, _ in CASES],
            "index": [c[3] for c, _ in CASES],
        }
    )
    dictionaries = {"resid_3": "m/resid_3/sae", "embed": "m/embed/sae", "attn_2": "m/attn_2/sae"}
    got = frame.select(
        naming.identity_expr(
            pl.col("kind"), pl.col("node_id"), naming.dictionary_of_expr(pl.col("node_id"), dictionaries),
            pl.col("index"), model="m",
        )
    ).to_series().to_list()
    assert got == [
        "m/resid_3/sae/1234", "m/embed/sae/0", "m/attn_2/sae/err", "m/embed/sae/err", "m/output",
        "m/attn_1/h7", "m/token/42", "m/logit/17",
    ]
    assert got[0] == naming.feature_identity("m/resid_3/sae", 1234)
    assert got[2] == naming.error_identity("m/attn_2/sae")


@pytest.mark.parametrize("bad", ["resid/3", "resid_3/x", "output/1", "head_1", "attn_1/h", "attn_1/hx", "", "attn_2/", "mlp_0/-1"])
def test_bad_node_ids_are_refused(bad):
    with pytest.raises(SfcError, match="not a node id"):
        naming.parse_node_id(bad)


def test_node_keys():
    assert naming.parse_node_key(naming.node_key("resid_0/3", 4)) == ("resid_0/3", 4)
    assert naming.parse_node_key(naming.node_key("resid_0/3", -1)) == ("resid_0/3", None)
    assert naming.parse_node_key("weird@name") == ("weird@name", None)
    frame = pl.DataFrame({"n": ["a/1", "b/err"], "p": [2, -1]})
    assert frame.select(naming.node_key_expr(pl.col("n"), pl.col("p"))).to_series().to_list() == ["a/1@2", "b/err"]


def test_site_names():
    for kind, layer in [("embed", -1), ("attn", 0), ("mlp", 11), ("resid", 2)]:
        assert naming.parse_site_name(naming.site_name(kind, layer)) == (kind, layer)
    frame = pl.DataFrame({"s": ["embed", "mlp_11", "resid_2"]})
    assert frame.select(naming.site_kind_expr(pl.col("s"))).to_series().to_list() == ["embed", "mlp", "resid"]
    assert frame.select(naming.site_layer_expr(pl.col("s"))).to_series().to_list() == [-1, 11, 2]
    with pytest.raises(SfcError):
        naming.parse_site_name("resid")


def test_stored_identity_is_the_bundle_identity(tmp_path, store):
    """The store keeps each node's identity (circuit-nodes.cypher returns it) and it is what naming computes."""
    from builders import build_circuit

    bundle = build_circuit(tmp_path / "b", "c1", model="m")
    store.load(bundle.path)
    back = store.read_circuit("c1").nodes.sort("node_id", "position")
    here = bundle.nodes.with_columns(bundle.identity().alias("identity")).sort("node_id", "position")
    assert back["identity"].to_list() == here["identity"].to_list()
    by_hand = {"resid_1/err": "m/resid_1/sae-64/err", "output": "m/output"}
    for node, identity in by_hand.items():
        assert here.filter(pl.col("node_id") == node)["identity"].item() == identity
