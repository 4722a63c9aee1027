"""Attention-head node ids: a thin alias of :mod:`sfc_graph.naming`, which owns the format.

Kept only so that modules written before ``naming`` existed keep importing; new code imports ``naming``.
A head in a bundle is ``attn_<layer>/h<head>`` (kind ``head``, site ``attn``, ``index`` = head number); its
shared ``Head`` node in the graph is ``<model>/attn_<layer>/h<head>``.

>>> head_node_id(2, 3), parse_head_node_id('attn_2/h3'), head_identity('toy-zoo-v1', 2, 3)
('attn_2/h3', (2, 3), 'toy-zoo-v1/attn_2/h3')
"""

from __future__ import annotations

from .errors import SfcError
from .naming import HEAD as HEAD_KIND
from .naming import HEAD_SITE, head_id, model_node_identity, parse_node_id

__all__ = ["HEAD_KIND", "HEAD_SITE", "head_node_id", "parse_head_node_id", "head_identity"]

head_node_id = head_id


def parse_head_node_id(node_id: str) -> tuple[int, int]:
    """``(layer, head)`` of a bundle head node id; :class:`SfcError` for anything else."""
    name = parse_node_id(node_id)
    if name.kind != HEAD_KIND or name.index is None:
        raise SfcError(f"{node_id!r} is not a head node id; expected attn_<layer>/h<head>, e.g. attn_2/h3")
    return name.layer, name.index


def head_identity(model: str, layer: int, head: int) -> str:
    """The id of the shared ``Head`` node: the model id, then the bundle node id."""
    return model_node_identity(model, head_id(layer, head))
