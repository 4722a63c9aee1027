"""`sfc ingest compute` / `sfc ingest run` on a tiny local checkpoint: bundles that validate and load, stable
circuit ids, sharded jobs that skip finished work, and one clear sentence for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from sfc_graph.cli.app import main
from sfc_graph.ingest.dictionaries import Dictionary, load_dictionary
from test_ingest_helpers import one_thread  # noqa: F401 (autouse fixture)
from test_ingest_helpers import (
    build_dictionary,
    build_model,
    write_saelens_dir,
    write_task,
)

from sfc_graph.bundle import read_bundle
from sfc_graph.sites import all_sites, parse_site

FAST = ["--ig-steps", "2", "--eval-thresholds", "0.1", "--node-threshold", "0.05", "-q"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A checkpoint directory, a directory of per-site SAEs and a task file."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("ingest")
    handle = build_model()
    model_dir = root / "model"
    model_dir.mkdir()
    cfg = handle.model.cfg
    fields = {k: getattr(cfg, k) for k in ("n_layers", "d_model", "d_head", "n_heads", "d_mlp", "d_vocab", "n_ctx",
                                           "act_fn", "normalization_type", "default_prepend_bos")}
    fields["model_name"] = "tiny-ckpt"
    (model_dir / "config.json").write_text(json.dumps(fields))
    save_file({k: v.contiguous() for k, v in handle.model.state_dict().items()}, str(model_dir / "model.safetensors"))
    handle.model.tokenizer.save_pretrained(str(model_dir))
    dicts = root / "dicts"
    for number, site in enumerate(all_sites(handle.n_layers)):
        write_saelens_dir(dicts / site.name, build_dictionary(handle.d_model, 24, seed=number), hook_name=site.hook,
                          dictionary_id=f"tiny-ckpt/{site.name}/sae-24")
    write_task(root / "agree.jsonl")
    return root


def invoke(*args: str):
    return CliRunner().invoke(main, ["ingest", *args], catch_exceptions=False)


def compute_args(ws: Path, out: Path, *extra: str) -> list[str]:
    return ["compute", "--model", str(ws / "model"), "--dict", str(ws / "dicts"), "--task", str(ws / "agree.jsonl"),
            "--device", "cpu", "--out", str(out), *FAST, *extra]


def test_compute_writes_a_valid_bundle_with_a_stable_id(workspace, tmp_path):
    result = invoke(*compute_args(workspace, tmp_path / "a", "--method", "attrib"))
    assert result.exit_code == 0, result.output
    bundle = read_bundle(tmp_path / "a")
    manifest = bundle.manifest
    assert manifest["dictionaries"]["resid_1"]["id"] == "tiny-ckpt/resid_1/sae-24"
    assert manifest["model"] == "tiny-ckpt" and manifest["method"] == "attrib" and manifest["n_examples"] == 8
    assert manifest["evaluation"][0]["node_threshold"] == 0.1
    output = bundle.nodes.filter(bundle.nodes["node_id"] == "output")
    assert output.height == 1 and output["effect"][0] == pytest.approx(manifest["metric_clean"])
    into_output = bundle.edges.filter(bundle.edges["dst"] == "output")
    site_of = _site_names(bundle)
    assert into_output.height > 0 and {site_of[n] for n in into_output["src"]} == {"resid_1"}
    assert bundle.edges.height > into_output.height
    # same inputs, same id; a changed setting, another id
    assert invoke(*compute_args(workspace, tmp_path / "b", "--method", "attrib")).exit_code == 0
    assert read_bundle(tmp_path / "b").circuit_id == bundle.circuit_id
    assert invoke(*compute_args(workspace, tmp_path / "c", "--method", "attrib", "--n-examples", "4")).exit_code == 0
    assert read_bundle(tmp_path / "c").circuit_id != bundle.circuit_id


def _site_names(bundle) -> dict[str, str]:
    """node id -> site name, from the bundle's site and layer columns."""
    return {n: s if s in ("embed", "output") else f"{s}_{layer}"
            for n, s, layer in bundle.nodes.select("node_id", "site", "layer").iter_rows()}


def test_per_position_bundle_and_site_pairs(workspace, tmp_path):
    rows = [json.loads(line) for line in (workspace / "agree.jsonl").read_text().splitlines()]
    same_length = workspace / "same.jsonl"
    same_length.write_text("\n".join(json.dumps(r) for r in rows if len(r["clean"].split()) == 5) + "\n")
    args = ["compute", "--model", str(workspace / "model"), "--task", str(same_length), "--device", "cpu",
            "--aggregation", "none", "--method", "ig", "--out", str(tmp_path / "pp"), *FAST]
    for site in ("resid_0", "mlp_1", "resid_1"):
        args += ["--dict", f"{site}={workspace / 'dicts' / site}"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    bundle = read_bundle(tmp_path / "pp")
    assert set(bundle.manifest["dictionaries"]) == {"resid_0", "mlp_1", "resid_1"}
    features = bundle.nodes.filter(bundle.nodes["kind"] != "output")
    assert features["position"].min() >= 0
    # with resid_0, mlp_1 and resid_1 only, resid_0 feeds mlp_1 and resid_1 directly
    site_of = _site_names(bundle)
    pairs = {(site_of[s], site_of[d]) for s, d in zip(bundle.edges["src"], bundle.edges["dst"])}
    assert ("resid_0", "resid_1") in pairs and ("mlp_1", "resid_1") in pairs


def test_run_job_shards_skips_and_loads(workspace, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(
        f'model = "{workspace / "model"}"\n'
        f'dictionaries = ["{workspace / "dicts"}"]\n'
        f'tasks = ["{workspace / "agree.jsonl"}"]\n'
        'methods = ["attrib", "ig"]\n'
        'out = "bundles"\ndevice = "cpu"\n'
        '[settings]\nig_steps = 2\neval_thresholds = [0.1]\nnode_threshold = 0.05\n'
    )
    store = tmp_path / "store"
    first = invoke("run", str(job), "--shard", "1/2", "--store", str(store), "-q")
    assert first.exit_code == 0, first.output
    assert "1 computed, 1 loaded" in first.output
    second = invoke("run", str(job), "--store", str(store), "-q")
    assert second.exit_code == 0, second.output
    assert "2 circuit(s), 1 computed, 1 loaded" in second.output
    again = invoke("run", str(job), "--store", str(store), "-q")
    assert "2 circuit(s), 0 computed, 0 loaded" in again.output
    bundles = sorted((tmp_path / "bundles").iterdir())
    assert len(bundles) == 2 and all(read_bundle(b).circuit_id == b.name for b in bundles)
    from sfc_graph.store import open_store

    with open_store(str(store)) as opened:
        assert all(opened.has_circuit(b.name) for b in bundles)


# ------------------------------------------------------------------------------------------ bad input


def _fails(result, *fragments: str) -> None:
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    message = errors[0]
    for fragment in fragments:
        assert fragment in message, message


def test_wrong_shaped_dictionary_is_refused(workspace, tmp_path):
    bad = write_saelens_dir(tmp_path / "bad", build_dictionary(8, 24, seed=1), hook_name="blocks.0.hook_mlp_out")
    result = invoke("compute", "--model", str(workspace / "model"), "--dict", f"mlp_0={bad}", "--task",
                    str(workspace / "agree.jsonl"), "--device", "cpu", "--out", str(tmp_path / "o"), "-q")
    _fails(result, "sae_weights.safetensors", "mlp_0", "d_model=16", "[8, 24]")


@pytest.mark.parametrize("content,fragment", [
    ("", "no examples"),
    ('{"clean": "the dogs", "patch": "the big dog", "clean_answer": "are", "patch_answer": "is"}\n',
     "same token length"),
    ('{"clean": "the zebras", "patch": "the zebra", "clean_answer": "are", "patch_answer": "is"}\n', "'zebras'"),
    ('{"clean": "the dogs", "patch": "the dog", "clean_answer": "purr", "patch_answer": "is"}\n', "'purr'"),
    ('{"clean": "the dogs", "clean_answer": "are", "patch": "the dog"}\n', "patch_answer"),
    ("not json\n", "not valid JSON"),
])
def test_bad_task_files_are_refused(workspace, tmp_path, content, fragment):
    task = tmp_path / "task.jsonl"
    task.write_text(content)
    result = invoke("compute", "--model", str(workspace / "model"), "--dict", str(workspace / "dicts"),
                    "--task", str(task), "--device", "cpu", "--out", str(tmp_path / "o"), "-q")
    _fails(result, fragment)
    assert not (tmp_path / "o").exists()


def test_unknown_task_and_missing_things_are_refused(workspace, tmp_path):
    result = invoke("compute", "--model", str(workspace / "model"), "--dict", str(workspace / "dicts"),
                    "--task", "no_such_task", "--device", "cpu", "--out", str(tmp_path / "o"), "-q")
    _fails(result, "no_such_task")
    result = invoke("compute", "--model", str(tmp_path / "nope"), "--dict", "x", "--task", "t",
                    "--out", str(tmp_path / "o"), "--device", "cpu")
    _fails(result, "nope")
    result = invoke("compute", "--model", str(workspace / "model"), "--dict", "attn_9=/tmp", "--task",
                    str(workspace / "agree.jsonl"), "--out", str(tmp_path / "o"), "--device", "cpu")
    _fails(result, "attn_9")
    result = invoke("run", str(tmp_path / "missing.toml"))
    _fails(result, "missing.toml")
    (tmp_path / "typo.toml").write_text('model = "m"\ndictionaries = "d"\ntasks = ["t"]\n[settings]\nnode_treshold = 1\n')
    _fails(invoke("run", str(tmp_path / "typo.toml")), "node_treshold")
    _fails(invoke("run", str(tmp_path / "typo.toml"), "--shard", "0/2"), "--shard")


def test_a_model_directory_with_a_bare_tokenizer_json_loads(tmp_path):
    """The zoo's model/ plus its tokenizer.json, with no tokenizer_config.json (a word-level tokenizer saved
    alone): the special tokens' roles come from the file, and batched prompts of different lengths give the
    zoo's own tokens and logits. Without a bos token among its special tokens: one sentence."""
    import shutil

    from sfc_graph.errors import ComputeError
    from sfc_graph.ingest.model import load_model
    from sfc_graph import zoo

    root = zoo.zoo_dir()
    model_dir = tmp_path / "m"
    shutil.copytree(root / "model", model_dir)
    shutil.copy(root / "tokenizer.json", model_dir / "tokenizer.json")
    prompts = ["the dog near the cats runs", "a"]
    ours, reference = load_model(str(model_dir), device="cpu").model, load_model("toy-zoo", device="cpu").model
    assert torch.equal(ours.to_tokens(prompts), reference.to_tokens(prompts))
    assert torch.equal(ours(prompts), reference(prompts))

    spec = json.loads((model_dir / "tokenizer.json").read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<bos>"]
    (model_dir / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ComputeError, match="beginning-of-sequence"):
        load_model(str(model_dir), device="cpu")


# --------------------------------------------------------------------------------------- dictionaries


def test_dictionary_formats_load_and_agree(tmp_path):
    """SAELens and dictionary_learning files of the same SAE give the same codes; JumpReLU and TopK encode."""
    site = parse_site("resid_0")
    sae = build_dictionary(16, 24, seed=3)
    x = torch.randn(5, 16)
    saelens = load_dictionary(write_saelens_dir(tmp_path / "s", sae, hook_name=site.hook), site, d_model=16,
                              model_id="m")
    (tmp_path / "dl").mkdir()
    torch.save({"encoder.weight": sae.W_enc.T.clone(), "encoder.bias": sae.b_enc, "decoder.weight": sae.W_dec.T.clone(),
                "bias": sae.b_dec}, tmp_path / "dl" / "ae.pt")
    (tmp_path / "dl" / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder"}}))
    learning = load_dictionary(tmp_path / "dl", site, d_model=16, model_id="m")
    torch.testing.assert_close(saelens.dictionary.encode(x), learning.dictionary.encode(x))
    assert saelens.info.id == "m/resid_0/s" and len(saelens.info.sha256) == 64

    from sfc_graph.ingest.dictionaries import JumpReLUDictionary, TopKDictionary

    jump = JumpReLUDictionary(*sae.tensors().values(), threshold=torch.full((24,), 0.2))
    loaded = load_dictionary(write_saelens_dir(tmp_path / "j", jump, hook_name=site.hook), site, d_model=16,
                             model_id="m")
    codes = loaded.dictionary.encode(x)
    assert isinstance(loaded.dictionary, JumpReLUDictionary) and ((codes == 0) | (codes > 0.2)).all()
    topk = TopKDictionary(*sae.tensors().values(), k=3)
    loaded = load_dictionary(write_saelens_dir(tmp_path / "k", topk, hook_name=site.hook, k=3), site, d_model=16,
                             model_id="m")
    assert ((loaded.dictionary.encode(x) > 0).sum(-1) <= 3).all()
    assert isinstance(sae, Dictionary)


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_tasks_without_counterfactuals_use_neg_log_prob_and_ablation(tmp_path, ablation):
    from sfc_graph.ingest.compute import CircuitSettings, compute_circuit
    from sfc_graph.ingest.tasks import load_task
    from test_ingest_helpers import build_dictionaries

    handle = build_model()
    task = load_task(str(write_task(tmp_path / "plain.jsonl", counterfactual=False)))
    settings = CircuitSettings(method="ig", ig_steps=2, ablation=ablation, node_threshold=0.01,
                               eval_thresholds=(0.01,))
    circuit = compute_circuit(handle, build_dictionaries(handle), task, settings)
    bundle = circuit.write(tmp_path / "b")
    manifest = read_bundle(tmp_path / "b").manifest
    assert manifest["metric"] == "neg_log_prob" and manifest["ablation"] == ablation
    assert bundle.nodes.height > 1 and "metric_patch" not in manifest
    with pytest.raises(Exception, match="counterfactual"):
        compute_circuit(handle, build_dictionaries(handle), task, CircuitSettings(metric="logit_diff"))


def test_job_file_expands_tasks_methods_and_circuits(tmp_path):
    from sfc_graph.ingest.job import load_job, shard_of

    (tmp_path / "t.jsonl").write_text("")
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        'model = "toy-zoo"\ndictionaries = "toy-zoo"\ntasks = ["ioi", "t.jsonl"]\nmethods = ["attrib", "ig"]\n'
        'store = "st"\n[settings]\nnode_threshold = 0.2\n'
        '[[circuits]]\ntask = "greater_than"\nmethod = "exact"\nsettings = { n_examples = 8 }\n'
    )
    job = load_job(job_file)
    specs = [(s.task, s.settings.method, s.settings.node_threshold, s.settings.n_examples) for s in job.circuits]
    assert specs == [
        ("ioi", "attrib", 0.2, 64), ("ioi", "ig", 0.2, 64),
        (str(tmp_path / "t.jsonl"), "attrib", 0.2, 64), (str(tmp_path / "t.jsonl"), "ig", 0.2, 64),
        ("greater_than", "exact", 0.2, 8),
    ]
    assert job.out == tmp_path / "bundles" and job.store == str(tmp_path / "st")
    shards = [shard_of(job, i, 2) for i in (1, 2)]
    assert [len(s) for s in shards] == [3, 2]
    assert sorted(map(id, shards[0] + shards[1])) == sorted(map(id, job.circuits))


def _zoo_ready() -> bool:
    try:
        from sfc_graph import zoo

        zoo.zoo_dir()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _zoo_ready(), reason="the toy zoo's artefacts are not built")
def test_compute_and_run_on_the_shipped_zoo(tmp_path):
    result = invoke("compute", "--model", "toy-zoo", "--dict", "toy-zoo", "--task", "agreement_nounpp",
                    "--n-examples", "8", "--device", "cpu", "--out", str(tmp_path / "b"), *FAST)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(tmp_path / "b")  # -q: only the path on stdout
    bundle = read_bundle(tmp_path / "b")
    from sfc_graph import zoo

    assert bundle.manifest["dictionaries"]["resid_0"]["id"].startswith(f"{zoo.ZOO_NAME}/")
    job = tmp_path / "job.toml"
    job.write_text('model = "toy-zoo"\ndictionaries = ["toy-zoo-transcoders"]\ntasks = ["ioi"]\nmethods = ["attrib"]\n'
                   'device = "cpu"\n[settings]\nn_examples = 8\neval_thresholds = [0.1]\n')
    result = invoke("run", str(job), "--store", str(tmp_path / "store"), "-q")
    assert result.exit_code == 0 and "1 computed, 1 loaded" in result.output, result.output
    (bundle_dir,) = (tmp_path / "bundles").iterdir()
    assert read_bundle(bundle_dir).manifest["dictionaries"]["mlp_0"]["kind"] == "transcoder"
