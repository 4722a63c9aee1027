"""Behaviour discovery (ingest/discovery.py) and the executors (ingest/executor.py).

Checked against independent computations: ARI and purity against scikit-learn's metrics and a hand count;
clustering on planted, well-separated groups; context vectors against the model's own cache and an analytic
gradient through the final LayerNorm and unembedding; the Ray executor against the local one (same circuits,
same effects).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score

from sfc_graph.bundle import read_bundle
from sfc_graph.cli import main
from sfc_graph.errors import ComputeError
from sfc_graph.ingest.compute import CircuitSettings
from sfc_graph.ingest.discovery import (
    Context,
    DiscoverySettings,
    agreement,
    circuit_settings,
    cluster,
    context_vectors,
    read_corpus,
    run_discovery,
    sample_contexts,
)
from sfc_graph.ingest.executor import CircuitJob, ModelSpec, run_circuits
from sfc_graph.ingest.model import load_model
from sfc_graph.ingest.tasks import Example, Task
from sfc_graph.store import open_store


@pytest.fixture(scope="module")
def zoo_handle():
    torch.set_num_threads(1)
    return load_model("toy-zoo", device="cpu")


def _labelled_corpus(path, handle, n_per_task: int = 6):
    """A corpus in the stream format from zoo task sentences: the answer token is labelled with the task's
    family, every other token 'none' (what the zoo's own labelled stream records)."""
    from sfc_graph import zoo

    family = {"agreement_simple": "agreement", "agreement_nounpp": "agreement", "ioi": "ioi",
              "greater_than": "greater_than"}
    lines = []
    for task, label in family.items():
        with open(zoo.task_path(task, split="train")) as handle_file:
            for i, line in enumerate(handle_file):
                if i >= n_per_task:
                    break
                row = json.loads(line)
                text = f"{row['clean']} {row['clean_answer']}"
                tokenizer = handle.model.tokenizer
                tokens = [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
                labels = ["none"] * (len(tokens) - 1) + [label]
                lines.append(json.dumps({"doc": len(lines), "tokens": tokens, "labels": labels}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_agreement_matches_sklearn_and_a_hand_count():
    rng = random.Random(0)
    labels = [rng.choice("abc") for _ in range(60)]
    assignments = np.array([rng.randrange(4) for _ in range(60)])
    got = agreement(assignments, labels)
    assert got["ari"] == pytest.approx(adjusted_rand_score(labels, assignments))
    majority = 0
    for k in range(4):
        members = [labels[i] for i in range(60) if assignments[i] == k]
        majority += max((members.count(x) for x in "abc"), default=0)
    assert got["purity"] == pytest.approx(majority / 60)
    assert agreement(assignments, [None] * 60) == {}
    assert "ari_planted" not in got  # no background label: nothing to leave out


def test_agreement_on_planted_contexts_leaves_the_background_out():
    rng = random.Random(1)
    labels = [rng.choice(["none"] * 8 + ["copy", "ioi"]) for _ in range(200)]
    assignments = np.array([rng.randrange(5) for _ in range(200)])
    got = agreement(assignments, labels)
    planted = [i for i, label in enumerate(labels) if label != "none"]
    assert got["ari_planted"] == pytest.approx(adjusted_rand_score([labels[i] for i in planted], assignments[planted]))
    assert got["ari"] == pytest.approx(adjusted_rand_score(labels, assignments))


def test_excluded_labels_leave_their_contexts_out(tmp_path, zoo_handle):
    docs = read_corpus(str(_labelled_corpus(tmp_path / "c.jsonl", zoo_handle, n_per_task=2)), zoo_handle)
    kept = sample_contexts(docs, DiscoverySettings(n_clusters=2, n_contexts=10_000, exclude_labels=("none",)))
    assert kept and all(c.label != "none" for c in kept)
    assert len(kept) == sum(label != "none" for d in docs for label in d["labels"][2:])


@pytest.mark.parametrize("algorithm", ["spectral", "kmeans"])
def test_clustering_recovers_planted_groups(algorithm):
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 5
    truth = np.repeat(np.arange(3), 30)
    points = centres[truth] + rng.normal(scale=0.3, size=(90, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    found = cluster(points, DiscoverySettings(n_clusters=3, algorithm=algorithm, n_contexts=90))
    assert adjusted_rand_score(truth, found) == pytest.approx(1.0)


def test_contexts_are_every_prefix_with_its_next_token(tmp_path, zoo_handle):
    docs = read_corpus(str(_labelled_corpus(tmp_path / "c.jsonl", zoo_handle, n_per_task=2)), zoo_handle)
    settings = DiscoverySettings(n_clusters=2, n_contexts=10_000, min_prefix=2)
    contexts = sample_contexts(docs, settings)
    assert len(contexts) == sum(len(d["tokens"]) - 2 for d in docs)
    for context in contexts[:20]:
        doc = docs[context.doc]
        assert list(context.prefix) == doc["tokens"][: context.position]
        assert context.answer == doc["tokens"][context.position]
        assert context.label == doc["labels"][context.position]
    with pytest.raises(ComputeError, match="fewer than"):
        sample_contexts(docs[:1], DiscoverySettings(n_clusters=500, n_contexts=1000))


def test_context_vectors_match_the_cache_and_an_analytic_gradient(zoo_handle):
    model = zoo_handle.model
    contexts = [Context(0, 3, ("the", "dogs", "near"), "the"),
                Context(1, 5, ("when", "peter", "and", "anna", "went"), "to")]
    vectors = context_vectors(zoo_handle, contexts, batch_size=8)  # two lengths in one (padded) batch
    last = f"blocks.{zoo_handle.n_layers - 1}.hook_resid_post"
    for i, context in enumerate(contexts):
        tokens = model.to_tokens(context.text)
        _, cache = model.run_with_cache(tokens)
        resid = cache[last][0, -1].detach().clone()
        assert np.allclose(vectors["act"][i], resid.numpy(), atol=1e-5)
        answer = model.to_single_token(context.answer)

        def loss_of(x):
            logits = model.unembed(model.ln_final(x[None, None, :]))[0, 0]
            return -torch.log_softmax(logits, dim=-1)[answer]

        expected = torch.func.grad(loss_of)(resid)
        assert np.allclose(vectors["grad"][i], expected.numpy(), atol=1e-5)


def test_discovery_loads_behaviours_and_their_circuits(tmp_path, zoo_handle):
    corpus = _labelled_corpus(tmp_path / "corpus.jsonl", zoo_handle)
    settings = DiscoverySettings(n_clusters=3, n_contexts=60, features="both", min_cluster_size=2,
                                 examples_per_circuit=6)
    base = CircuitSettings(method="attrib", node_threshold=0.01, eval_thresholds=(0.1,))
    with open_store(str(tmp_path / "store")) as store:
        run = run_discovery(zoo_handle, model_spec="toy-zoo", dict_specs=["toy-zoo"], corpus=str(corpus),
                            settings=settings, circuit=base, out=tmp_path / "bundles", store=store)
        table = store.query("behaviours", discovery=run.discovery.id)
        circuits = store.circuits()
    behaviours = run.discovery.behaviours
    assert run.computed == run.loaded == len(behaviours) >= 2
    assert sorted(table["behaviour"].to_list()) == sorted(b.name for b in behaviours)
    sizes = dict(zip(table["behaviour"], table["size"]))
    for b in behaviours:
        assert sizes[b.name] == b.size == sum(1 for a in run.discovery.assignments if a == _cluster_of(run, b))
        bundle = read_bundle(b.bundle)
        assert bundle.manifest["metric"] == "neg_log_prob" and bundle.manifest["ablation"] == "zero"
        assert bundle.task == b.name and bundle.manifest["n_examples"] == min(b.size, 6)
    assert set(circuits["task"].to_list()) == {b.name for b in behaviours}
    assert set(run.discovery.agreement) == {"ari", "purity", "ari_planted", "purity_planted"}  # labelled, with filler
    # re-running records nothing twice and recomputes nothing
    with open_store(str(tmp_path / "store")) as store:
        again = run_discovery(zoo_handle, model_spec="toy-zoo", dict_specs=["toy-zoo"], corpus=str(corpus),
                              settings=settings, circuit=base, out=tmp_path / "bundles", store=store)
        assert again.computed == 0 and again.loaded == 0
        assert store.query("behaviours", discovery=run.discovery.id).height == len(behaviours)


def _cluster_of(run, behaviour) -> int:
    members = {(c.doc, c.position) for c in behaviour.contexts}
    for context, a in zip(run.discovery.contexts, run.discovery.assignments):
        if (context.doc, context.position) in members:
            return int(a)
    raise AssertionError("behaviour without contexts")


def test_circuit_settings_are_the_papers():
    settings = circuit_settings(CircuitSettings(method="attrib", node_threshold=0.05))
    assert (settings.metric, settings.ablation, settings.aggregation, settings.method) == \
        ("neg_log_prob", "zero", "sum", "attrib")


def test_bad_discovery_input_gets_one_sentence(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["discover", "--corpus", str(tmp_path / "missing.txt"), "--no-load",
                                  "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no such corpus file" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": ["a", "b"], "labels": ["x"]}\n')
    result = runner.invoke(main, ["discover", "--corpus", str(bad), "--no-load", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "as long as 'tokens'" in result.output


def _jobs(tmp_path):
    tasks = []
    for name, examples in (("a", [("the dogs near the", "cat"), ("the cat near the", "dogs")]),
                           ("b", [("when peter and anna went to the", "school")])):
        tasks.append(Task(name, tuple(Example(clean=c, clean_answer=a) for c, a in examples), f"test:{name}"))
    settings = circuit_settings(CircuitSettings(method="attrib", node_threshold=0.01, eval_thresholds=()))
    return [CircuitJob(task=t, settings=settings, out=tmp_path, key=t.name) for t in tasks]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for this module's Ray tests (the executor joins a running one)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_ray_executor_computes_what_the_local_one_does(tmp_path, ray_cluster):
    spec = ModelSpec(model="toy-zoo", dictionaries=("toy-zoo",), device="cpu", threads=1)
    local = {d.job.key: d for d in run_circuits(spec, _jobs(tmp_path / "local"))}
    remote = {d.job.key: d for d in run_circuits(spec, _jobs(tmp_path / "ray"), executor="ray", workers=2)}
    assert local.keys() == remote.keys() == {"a", "b"}
    assert {d.worker for d in remote.values()} <= {"ray-0", "ray-1"}
    for key in local:
        assert local[key].circuit_id == remote[key].circuit_id
        a, b = read_bundle(local[key].path), read_bundle(remote[key].path)
        joined = a.nodes.join(b.nodes, on=["node_id", "position"], suffix="_ray")
        assert joined.height == a.nodes.height == b.nodes.height
        assert (joined["effect"] - joined["effect_ray"]).abs().max() < 1e-6
    # a second run finds the bundles and computes nothing
    again = list(run_circuits(spec, _jobs(tmp_path / "ray"), executor="ray", workers=2))
    assert not any(d.computed for d in again)


@pytest.mark.ray
def test_ingest_run_with_ray_loads_every_circuit(tmp_path, ray_cluster):
    job = tmp_path / "job.toml"
    job.write_text('model = "toy-zoo"\ndictionaries = ["toy-zoo"]\ntasks = ["agreement_simple", "ioi"]\n'
                   'methods = ["attrib"]\nout = "bundles"\ndevice = "cpu"\n'
                   '[settings]\nn_examples = 4\neval_thresholds = []\n')
    store = tmp_path / "store"
    result = CliRunner().invoke(main, ["ingest", "run", str(job), "--executor", "ray", "--workers", "2", "--store",
                                       str(store), "--quiet", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "2 circuit(s), 2 computed, 2 loaded" in result.output
    with open_store(str(store), read_only=True) as opened:
        assert sorted(opened.circuits()["task"].to_list()) == ["agreement_simple", "ioi"]
