"""GPU readiness without a GPU: the hot paths of node and edge attribution must not read device values back to
the host once per node (``.item()``, ``bool(t)``, ``float(t)``, ``.tolist()``, boolean-mask indexing and
``nonzero`` all wait for the device on CUDA). Every such read is counted at the dispatcher level, where it
happens whatever the Python spelling, and the count must not grow with the number of kept nodes."""

from __future__ import annotations

import pytest
import torch
from sfc_graph.ingest.attribution import batch_effects
from sfc_graph.ingest.edges import KeptNodes, batch_edges
from sfc_graph.ingest.metrics import logit_diff
from sfc_graph.ingest.splice import SplicedModel
from sfc_graph.ingest.tasks import Example, Task, tokenize_task
from torch.utils._python_dispatch import TorchDispatchMode
from test_ingest_helpers import AGREEMENT, build_dictionaries, build_model, one_thread  # noqa: F401 (autouse)

# ops whose result the host must wait for on a CUDA device
SYNCING = {
    torch.ops.aten._local_scalar_dense.default,  # .item(), bool(), int(), float(), .tolist()
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
    torch.ops.aten.is_nonzero.default,
}


class SyncCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCING:
            self.count += 1
        elif func in (torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
            self.count += sum(1 for i in indices if i is not None and i.dtype == torch.bool)  # x[mask]: a nonzero
        return func(*args, **kwargs)


def test_the_counter_sees_a_per_node_item():
    """The check itself is not vacuous: a per-node ``.item()`` loop is counted once per node."""
    values = torch.arange(7.0)
    with SyncCounter() as counter:
        _ = [values[i].item() for i in range(7)]
        _ = values[values > 2]
    assert counter.count == 8


def _setup():
    handle = build_model()
    dictionaries = build_dictionaries(handle)
    spliced = SplicedModel(handle, dictionaries)
    task = Task("agree", tuple(Example(c, ca, p, pa) for c, p, ca, pa in AGREEMENT), "memory")
    batch = next(b for b in tokenize_task(task, handle).batches(16, handle.device) if b.n_pos == 6)
    return spliced, batch


@pytest.mark.parametrize("method", ["attrib", "ig"])
def test_node_effects_do_not_sync_per_site_or_node(method):
    spliced, batch = _setup()
    with SyncCounter() as counter:
        batch_effects(spliced, batch, logit_diff, method=method, ig_steps=3)
    assert counter.count == 0


@pytest.mark.parametrize("per_position", [False, True])
def test_edges_sync_a_bounded_number_of_times_whatever_the_number_of_kept_nodes(per_position):
    spliced, batch = _setup()
    effects, clean, patch = batch_effects(spliced, batch, logit_diff, method="attrib")

    def counted(n_features: int, error: bool) -> tuple[int, int]:
        kept = {s: KeptNodes(features=torch.arange(n_features), error=error) for s in spliced.sites}
        with SyncCounter() as counter:
            blocks = batch_edges(spliced, batch.clean, effects.grads, clean, patch, kept,
                                 per_position=per_position, chunk=3)
        assert blocks and all(b.weights.shape[0] >= n_features for b in blocks)
        return counter.count, len(blocks)

    few, blocks_few = counted(2, error=False)
    many, blocks_many = counted(24, error=True)
    # at most one read per pair of wired sites (whether any weight is non-zero), never one per node or row
    assert few <= blocks_few + len(spliced.sites) and many <= blocks_many + len(spliced.sites)
    assert many == few
