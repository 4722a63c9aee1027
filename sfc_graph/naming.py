"""Node naming: the one module that builds and parses node ids, site names, feature identities and
``node@position`` keys. Nothing else in the project splits a node id; everything calls this module.

The grammar (docs/bundle.md is the contract a third-party producer reads):

=============  ==================  =================================  =====================================
kind           bundle ``node_id``  columns ``site`` / ``layer`` /     shared identity in the graph
                                   ``index``
=============  ==================  =================================  =====================================
feature        ``resid_3/1234``    site kind, layer, latent index     ``<dictionary id>/<index>``
error          ``attn_2/err``      site kind, layer, null             ``<dictionary id>/err``
output         ``output``          ``output``, -1, null               ``<model>/output``
head           ``attn_2/h5``       ``attn``, layer, head index        ``<model>/attn_2/h5``
token          ``token/17``        ``embed``, -1, vocabulary index    ``<model>/token/17``
logit          ``logit/17``        ``output``, -1, vocabulary index   ``<model>/logit/17`` (an ``Output``)
=============  ==================  =================================  =====================================

A *site name* is ``embed`` or ``<kind>_<layer>`` with kind in ``attn``, ``mlp``, ``resid``. For features and
errors the part of the node id before ``/`` (its *prefix*) is the site name, which keys the bundle manifest's
``dictionaries``. Heads and tokens belong to the model, not to a dictionary: a head's prefix is its site
(``attn_L``) but names no dictionary entry, ``token`` names none either, and their identity is scoped by the
model.

A node *instance* of one circuit is ``(node_id, position)``; position -1 means "aggregated over positions".
Results and exported graphs name an instance ``node_id@position`` when the position is kept (>= 0) and
plain ``node_id`` when it is not (:func:`node_key`, :func:`parse_node_key`).

Adding a node kind (e.g. ``intervention``): add a :class:`NodeKind` to :data:`NODE_KINDS`, a builder below,
and a branch in :func:`node_id`, :func:`node_id_expr`, :func:`parse_node_id` and :func:`identity_expr`;
``tests/test_naming.py`` checks that every kind round-trips through all of them.

>>> feature_id("resid_3", 1234)
'resid_3/1234'
>>> parse_node_id("attn_2/err")
NodeName(kind='error', site='attn', layer=2, index=None)
>>> feature_identity("toy-zoo-v1/resid_3/sae-256", 1234)
'toy-zoo-v1/resid_3/sae-256/1234'
>>> node_key("resid_0/17", 3), node_key("resid_0/17", -1)
('resid_0/17@3', 'resid_0/17')
>>> parse_node_key("resid_0/17@3")
('resid_0/17', 3)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import polars as pl

from .errors import SfcError

# ----------------------------------------------------------------------------------------------- sites

SITE_KINDS = ("embed", "attn", "mlp", "resid")
"""Kinds of dictionary attachment points, in forward order within a layer (embed comes once, first)."""
NODE_SITES = SITE_KINDS + ("output",)
"""Values of the bundle's ``site`` column."""

_SITE_RE = re.compile(r"^(embed|output)$|^(attn|mlp|resid)_(\d+)$")


def site_name(kind: str, layer: int) -> str:
    """The site name of site ``kind`` at ``layer``.

    >>> site_name("mlp", 0), site_name("embed", -1)
    ('mlp_0', 'embed')
    """
    return kind if kind in ("embed", "output") else f"{kind}_{layer}"


def parse_site_name(name: str) -> tuple[str, int]:
    """``(kind, layer)`` of a site name; layer -1 for ``embed`` and ``output``.

    >>> parse_site_name("resid_3"), parse_site_name("embed")
    (('resid', 3), ('embed', -1))
    """
    match = _SITE_RE.match(name)
    if not match:
        raise SfcError(
            f"{name!r} is not a site name; expected embed, attn_L, mlp_L or resid_L with L a layer number"
        )
    if match.group(1):
        return match.group(1), -1
    return match.group(2), int(match.group(3))


def site_of_key(name: str) -> tuple[str, int]:
    """:func:`parse_site_name` of a manifest ``dictionaries`` key, or ``(name, -1)`` for a key that is not a
    site name (a producer may list a dictionary that no node uses under a name of its own).

    >>> site_of_key("mlp_2"), site_of_key("all_heads")
    (('mlp', 2), ('all_heads', -1))
    """
    return parse_site_name(name) if _SITE_RE.match(name) else (name, -1)


def site_name_expr(kind: pl.Expr, layer: pl.Expr) -> pl.Expr:
    """Vectorised :func:`site_name` over a ``site`` (kind) and a ``layer`` column."""
    return pl.when(kind.is_in(["embed", "output"])).then(kind).otherwise(kind + "_" + layer.cast(pl.String))


def site_kind_expr(name: pl.Expr) -> pl.Expr:
    """Vectorised site kind of a site-name column (``resid_3`` → ``resid``)."""
    return name.str.replace(r"_\d+$", "")


def site_layer_expr(name: pl.Expr) -> pl.Expr:
    """Vectorised layer of a site-name column (``resid_3`` → 3, ``embed`` → -1)."""
    return name.str.extract(r"_(\d+)$").cast(pl.Int64).fill_null(-1)


# ------------------------------------------------------------------------------------------ node kinds


@dataclass(frozen=True)
class NodeKind:
    """A kind of circuit node: the bundle's ``kind`` value and how its id relates to the graph."""

    name: str
    label: str
    """Graph label of the node shared across circuits (graph.py)."""
    in_dictionary: bool
    """Whether the id's prefix names an entry of the manifest's ``dictionaries`` (else: scoped by model)."""


FEATURE, ERROR, OUTPUT, HEAD, TOKEN, LOGIT = "feature", "error", "output", "head", "token", "logit"
NODE_KINDS: dict[str, NodeKind] = {
    FEATURE: NodeKind(FEATURE, "Feature", in_dictionary=True),
    ERROR: NodeKind(ERROR, "ErrorNode", in_dictionary=True),
    OUTPUT: NodeKind(OUTPUT, "Output", in_dictionary=False),
    HEAD: NodeKind(HEAD, "Head", in_dictionary=False),
    TOKEN: NodeKind(TOKEN, "Token", in_dictionary=False),
    # The logit of one vocabulary entry: circuits with several output nodes (circuit-tracer's attribution
    # graphs) have one per target token; like ``output`` it is an Output of the model in the graph.
    LOGIT: NodeKind(LOGIT, "Output", in_dictionary=False),
}

OUTPUT_ID = "output"
ERROR_SUFFIX = "err"
HEAD_SUFFIX_PREFIX = "h"
HEAD_SITE = "attn"
TOKEN_PREFIX = "token"
LOGIT_PREFIX = "logit"


class NodeName(NamedTuple):
    """A node id taken apart into the bundle's ``kind``, ``site``, ``layer`` and ``index`` columns."""

    kind: str
    site: str
    layer: int
    index: int | None  # type: ignore[assignment]  # the bundle's column name; shadows tuple.index, unused here


# --------------------------------------------------------------------------------------------- node ids


def feature_id(site: str, index: int) -> str:
    """Id of latent ``index`` of the dictionary at site ``site`` (a site name)."""
    return f"{site}/{int(index)}"


def error_id(site: str) -> str:
    """Id of the SAE error node of site ``site``."""
    return f"{site}/{ERROR_SUFFIX}"


def head_id(layer: int, head: int) -> str:
    """Id of attention head ``head`` of layer ``layer``.

    >>> head_id(2, 5)
    'attn_2/h5'
    """
    return f"{site_name(HEAD_SITE, layer)}/{HEAD_SUFFIX_PREFIX}{int(head)}"


def token_id(token: int) -> str:
    """Id of the input-token node of vocabulary entry ``token``."""
    return f"{TOKEN_PREFIX}/{int(token)}"


def logit_id(token: int) -> str:
    """Id of the output node of the logit of vocabulary entry ``token``.

    >>> logit_id(17)
    'logit/17'
    """
    return f"{LOGIT_PREFIX}/{int(token)}"


def node_id(kind: str, site: str, layer: int, index: int | None) -> str:
    """The node id for the bundle columns ``kind``, ``site`` (kind of site), ``layer`` and ``index``.

    >>> node_id("feature", "mlp", 1, 7), node_id("error", "embed", -1, None), node_id("output", "output", -1, None)
    ('mlp_1/7', 'embed/err', 'output')
    """
    if kind == FEATURE and index is not None:
        return feature_id(site_name(site, layer), index)
    if kind == ERROR:
        return error_id(site_name(site, layer))
    if kind == OUTPUT:
        return OUTPUT_ID
    if kind == HEAD and index is not None:
        return head_id(layer, index)
    if kind == TOKEN and index is not None:
        return token_id(index)
    if kind == LOGIT and index is not None:
        return logit_id(index)
    raise SfcError(f"no node id for kind {kind!r} at site {site!r}, layer {layer}, index {index}")


def node_id_expr(kind: pl.Expr, site: pl.Expr, layer: pl.Expr, index: pl.Expr) -> pl.Expr:
    """Vectorised :func:`node_id` (null where the columns describe no valid node)."""
    name = site_name_expr(site, layer)
    return (
        pl.when(kind == FEATURE).then(name + "/" + index.cast(pl.String))
        .when(kind == ERROR).then(name + f"/{ERROR_SUFFIX}")
        .when(kind == OUTPUT).then(pl.lit(OUTPUT_ID))
        .when(kind == HEAD).then(name + f"/{HEAD_SUFFIX_PREFIX}" + index.cast(pl.String))
        .when(kind == TOKEN).then(pl.lit(f"{TOKEN_PREFIX}/") + index.cast(pl.String))
        .when(kind == LOGIT).then(pl.lit(f"{LOGIT_PREFIX}/") + index.cast(pl.String))
        .otherwise(None)
    )


_HEAD_RE = re.compile(rf"^{HEAD_SITE}_(\d+)/{HEAD_SUFFIX_PREFIX}(\d+)$")
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}/(\d+)$")
_LOGIT_RE = re.compile(rf"^{LOGIT_PREFIX}/(\d+)$")


def parse_node_id(node: str) -> NodeName:
    """Take a node id apart into the bundle's kind/site/layer/index columns (the inverse of :func:`node_id`).

    >>> parse_node_id("resid_3/1234"), parse_node_id("attn_1/h0")
    (NodeName(kind='feature', site='resid', layer=3, index=1234), NodeName(kind='head', site='attn', layer=1, index=0))
    """
    if node == OUTPUT_ID:
        return NodeName(OUTPUT, "output", -1, None)
    if match := _HEAD_RE.match(node):
        return NodeName(HEAD, HEAD_SITE, int(match.group(1)), int(match.group(2)))
    if match := _TOKEN_RE.match(node):
        return NodeName(TOKEN, "embed", -1, int(match.group(1)))
    if match := _LOGIT_RE.match(node):
        return NodeName(LOGIT, "output", -1, int(match.group(1)))
    prefix, sep, suffix = node.partition("/")
    if sep and _SITE_RE.match(prefix) and prefix != "output":
        kind, layer = parse_site_name(prefix)
        if suffix == ERROR_SUFFIX:
            return NodeName(ERROR, kind, layer, None)
        if suffix.isdigit():
            return NodeName(FEATURE, kind, layer, int(suffix))
    raise SfcError(
        f"{node!r} is not a node id; expected <site>/<index>, <site>/err, output, attn_L/hH (a head), token/T or logit/T"
    )


def prefix_of(node: str) -> str:
    """The part of a node id before ``/`` (the site name for features and errors; ``output`` for output).

    >>> prefix_of("resid_3/12"), prefix_of("output")
    ('resid_3', 'output')
    """
    return node.partition("/")[0]


def prefix_expr(node: pl.Expr) -> pl.Expr:
    """Vectorised :func:`prefix_of`."""
    return node.str.split_exact("/", 1).struct.field("field_0")


# ----------------------------------------------------------------------------------- shared identities


def feature_identity(dictionary_id: str, index: int) -> str:
    """The graph identity of a feature: the same latent of the same dictionary is one node in every circuit."""
    return f"{dictionary_id}/{int(index)}"


def parse_feature_identity(identity: str) -> tuple[str, int]:
    """``<dictionary id>/<index>`` → (dictionary id, index); dictionary ids may hold slashes themselves.

    >>> parse_feature_identity("toy-zoo-v1/resid_3/sae-256/12")
    ('toy-zoo-v1/resid_3/sae-256', 12)
    """
    dictionary, sep, index = str(identity).rpartition("/")
    if not sep or not dictionary or not index.isdigit():
        raise SfcError(f"{identity!r} is not a feature id; a feature id reads '<dictionary id>/<latent index>'")
    return dictionary, int(index)


def error_identity(dictionary_id: str) -> str:
    """The graph identity of a dictionary's error node."""
    return f"{dictionary_id}/{ERROR_SUFFIX}"


def output_identity(model: str) -> str:
    """The graph identity of a model's output (metric) node."""
    return f"{model}/{OUTPUT_ID}"


def model_node_identity(model: str, node: str) -> str:
    """The graph identity of a node owned by the model rather than a dictionary (heads, tokens).

    >>> model_node_identity("toy-zoo-v1", "attn_2/h5")
    'toy-zoo-v1/attn_2/h5'
    """
    return f"{model}/{node}"


def identity_expr(
    kind: pl.Expr, node: pl.Expr, dictionary: pl.Expr, index: pl.Expr, *, model: str
) -> pl.Expr:
    """Vectorised graph identity of each node: ``dictionary`` holds the dictionary id of the node's prefix
    (null where it has none), ``model`` is the circuit's model."""
    return (
        pl.when(kind == FEATURE).then(dictionary + "/" + index.cast(pl.String))
        .when(kind == ERROR).then(dictionary + f"/{ERROR_SUFFIX}")
        .when(kind == OUTPUT).then(pl.lit(output_identity(model)))
        .otherwise(pl.lit(f"{model}/") + node)
    )


def feature_identity_expr(kind: pl.Expr, dictionary: pl.Expr, index: pl.Expr) -> pl.Expr:
    """Vectorised :func:`feature_identity`; null for every node that is not a feature."""
    return pl.when(kind == FEATURE).then(dictionary + "/" + index.cast(pl.String)).otherwise(None)


def dictionary_of_expr(node: pl.Expr, dictionaries: dict[str, str]) -> pl.Expr:
    """Vectorised dictionary id of each node id's prefix, from a ``site name -> dictionary id`` mapping
    (null where the prefix names no dictionary)."""
    return prefix_expr(node).replace_strict(dictionaries, default=None, return_dtype=pl.String)


# ------------------------------------------------------------------------------------ node@position


def node_key(node: str, position: int | None) -> str:
    """How results and exported graphs name the instance ``(node, position)``: ``node@position`` when the
    position is kept (>= 0), ``node`` when it is aggregated (-1) or unknown (None)."""
    return node if position is None or position < 0 else f"{node}@{int(position)}"


def node_key_expr(node: pl.Expr, position: pl.Expr) -> pl.Expr:
    """Vectorised :func:`node_key`."""
    return pl.when(position >= 0).then(node + "@" + position.cast(pl.String)).otherwise(node)


def parse_node_key(key: str) -> tuple[str, int | None]:
    """``resid_3/12@5`` → (``resid_3/12``, 5); ``resid_3/12`` → (``resid_3/12``, None).

    >>> parse_node_key("output")
    ('output', None)
    """
    node, sep, tail = key.rpartition("@")
    if sep and re.fullmatch(r"-?\d+", tail):
        return node, int(tail)
    return key, None


def instance_uid_expr(circuit_id: str, node: pl.Expr, position: pl.Expr) -> pl.Expr:
    """Key of a per-circuit node instance in the graph: ``<circuit>|<node_id>@<position>`` (position kept
    even when -1, so that the key is total)."""
    return pl.lit(circuit_id + "|") + node + pl.lit("@") + position.cast(pl.String)


def instance_uid(circuit_id: str, node: str, position: int) -> str:
    """:func:`instance_uid_expr` for one instance.

    >>> instance_uid("c1", "resid_0/3", -1)
    'c1|resid_0/3@-1'
    """
    return f"{circuit_id}|{node}@{int(position)}"
