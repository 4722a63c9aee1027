"""Examples are aligned within a template: batches never mix templates, per-position means are taken per
template (checked against means computed here from the model's own cache and the SAE formula), and
``--aggregation none`` refuses a task of several templates."""

from __future__ import annotations

import json

import pytest
import torch
from sfc_graph.ingest.compute import CircuitSettings, compute_circuit
from sfc_graph.ingest.evaluation import dataset_means
from sfc_graph.ingest.splice import SplicedModel
from sfc_graph.ingest.tasks import Example, Task, load_task, tokenize_task
from test_ingest_helpers import build_dictionaries, build_model, one_thread  # noqa: F401 (autouse)

from sfc_graph.errors import ComputeError, TaskError
from sfc_graph.sites import parse_site

# two templates of the same token length: a position holds a different slot in each
ROWS = [
    ("the parents near the dog", "the parent near the dog", "are", "is", "pp"),
    ("the parent near the cats", "the parents near the cats", "is", "are", "pp"),
    ("the dogs by the cat", "the dog by the cat", "run", "runs", "pp"),
    ("the cats who saw mary", "the cat who saw mary", "are", "is", "rc"),
    ("the cat who saw john", "the cats who saw john", "is", "are", "rc"),
]


def _task() -> Task:
    return Task("mixed", tuple(Example(c, ca, p, pa, t) for c, p, ca, pa, t in ROWS), "memory")


def test_batches_never_mix_templates():
    handle = build_model()
    batches = tokenize_task(_task(), handle).batches(16, handle.device)
    assert sorted(b.template for b in batches) == ["pp", "rc"]
    for batch in batches:
        assert {ROWS[i][4] for i in batch.indices} == {batch.template}


def test_means_are_per_template_and_position():
    handle = build_model()
    dictionaries = build_dictionaries(handle)
    spliced = SplicedModel(handle, dictionaries)
    batches = tokenize_task(_task(), handle).batches(16, handle.device)
    means = dataset_means(spliced, batches)
    site = parse_site("resid_0")
    d = dictionaries[site]
    pooled = []
    for template in ("pp", "rc"):
        texts = [r[0] for r in ROWS if r[4] == template]
        tokens = torch.stack([torch.tensor(tokenize_task(Task("x", (Example(t, "is"),), "m"), handle).clean[0])
                              for t in texts])
        _, cache = handle.model.run_with_cache(tokens, names_filter=site.hook)
        codes = torch.relu((cache[site.hook] - d.b_dec) @ d.W_enc + d.b_enc)  # written out, not Dictionary.encode
        expected = codes.mean(0)
        assert torch.allclose(means.by_template[template][site][0], expected, atol=1e-5)
        pooled.append(codes)
    # not vacuous: the pooled mean over both templates is a different thing
    pooled_mean = torch.cat(pooled).mean(0)
    assert not torch.allclose(means.by_template["pp"][site][0], pooled_mean, atol=1e-3)


def test_aggregation_none_needs_one_template(tmp_path):
    handle = build_model()
    dictionaries = build_dictionaries(handle)
    settings = CircuitSettings(aggregation="none", method="ig", ig_steps=2, eval_thresholds=())
    with pytest.raises(ComputeError, match="template"):
        compute_circuit(handle, dictionaries, _task(), settings)
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"clean": c, "patch": p, "clean_answer": ca, "patch_answer": pa, "template": t})
                            + "\n" for c, p, ca, pa, t in ROWS))
    only = load_task(f"{path}#rc")
    assert [e.clean for e in only.examples] == [r[0] for r in ROWS if r[4] == "rc"]
    circuit = compute_circuit(handle, dictionaries, only, settings)
    assert circuit is not None
    with pytest.raises(TaskError, match="no example has template"):
        load_task(f"{path}#nope")
