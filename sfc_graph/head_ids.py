"""Ids of attention-head nodes (the ``head`` bundle kind and the ``Head`` graph label).

One home for the format until ``sfc_graph.naming`` owns every node id; then these functions move there.

A head in a bundle is ``attn_<layer>/h<head>`` (site ``attn``, its layer, ``index`` = the head number), so
that the part before ``/`` is the site as for every other node. Its shared identity in the graph is the
model id in front: ``<model>/attn_<layer>/h<head>``; two circuits on the same model share the ``Head``.

>>> head_node_id(2, 3)
'attn_2/h3'
>>> parse_head_node_id('attn_2/h3')
(2, 3)
>>> head_identity('toy-zoo-v1', 2, 3)
'toy-zoo-v1/attn_2/h3'
"""

from __future__ import annotations

import re

from .errors import SfcError

HEAD_KIND = "head"
HEAD_SITE = "attn"
_HEAD_RE = re.compile(r"^attn_(\d+)/h(\d+)$")


def head_node_id(layer: int, head: int) -> str:
    """The bundle node id of head ``head`` of layer ``layer``."""
    return f"{HEAD_SITE}_{int(layer)}/h{int(head)}"


def parse_head_node_id(node_id: str) -> tuple[int, int]:
    """``(layer, head)`` of a bundle head node id; :class:`SfcError` for anything else."""
    match = _HEAD_RE.match(node_id)
    if not match:
        raise SfcError(f"{node_id!r} is not a head node id; expected attn_<layer>/h<head>, e.g. attn_2/h3")
    return int(match.group(1)), int(match.group(2))


def head_identity(model: str, layer: int, head: int) -> str:
    """The id of the shared ``Head`` node: the model id, then the bundle node id."""
    return f"{model}/{head_node_id(layer, head)}"


def head_suffix(head: int) -> str:
    """The part of a head node id after ``/`` (what the bundle validator expects for ``index`` = head)."""
    return f"h{int(head)}"
