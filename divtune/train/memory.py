"""GPU memory arithmetic of a training rank: what one GPU of the train step (or of a TrainJob node) holds.

Per GPU, in GiB (2^30 bytes):

``base weights``
    the frozen base model in its dtype (bf16: 2 bytes a parameter), divided by the world size under FSDP
    (``train.sharding: fsdp``, full shard), whole otherwise;
``FSDP gathered units``
    under FSDP, the decoder layers that are unsharded at once (the one computing and the one prefetched: 2) plus
    the tail unit (final norm and LM head; and the tied embedding) that accelerate keeps gathered between forward
    and backward (``reshard_after_forward=False``, ``accelerate/utils/fsdp_utils.py`` ``fsdp2_prepare_model``);
``LoRA params + grads + Adam``
    the adapter in fp32 (peft keeps adapters in fp32; accelerate's FSDP2 path upcasts trainable parameters to
    fp32): 4 bytes parameter + 4 gradient + 8 Adam moments = 16 bytes a LoRA parameter, sharded under FSDP; with
    several unsharded processes (DDP) a gradient bucket copy (4 bytes) on top;
``activations``
    with gradient checkpointing: every layer's input hidden state (``layers x tokens x hidden`` in bf16) plus one
    layer recomputed in the backward pass (its saved tensors and their gradients, 2 x ``tokens x per_layer``);
    without it, every layer's saved tensors.  ``tokens`` = ``per_device_train_batch_size x (prompt + completion)``;
    the per-layer saved tensors of a Llama/Qwen layer with SDPA attention are ``6h + 4q + 3kv + 4i`` bf16 values a
    token (RMSNorm keeps fp32 inputs; q/k/v/o and the SwiGLU gate/up/product; ``h`` hidden, ``q`` heads x head_dim,
    ``kv`` kv-heads x head_dim, ``i`` intermediate), plus the LoRA dropout copies of each adapted input when
    ``train.lora.dropout`` > 0.  The logits are not materialised: TRL 1.16 scores completions through a tiled
    fused LM head (``trl/trainer/utils.py`` ``add_fused_lm_head``);
``reward model``
    DARLING with ``quality: reward_model`` loads the reward model on every rank's GPU in bf16
    (``divtune/rewards/quality.py``); its size is not in the config (a path), so an 8B Llama-3.1 sequence classifier
    is assumed (the reference used Athene-RM-8B, a Llama-3.1-8B fine-tune with a score head);
``vLLM (colocate)``
    ``train.vllm_gpu_memory_utilization x`` the card: vLLM claims that share for its own copy of the weights
    (1/TP of them with ``train.vllm_tensor_parallel_size``), its activations and the KV cache.  vLLM starts only if
    the share holds the weights, its working memory and the KV cache of one sequence of the context window
    (``train.vllm_max_model_length`` or the model's ``max_position_embeddings``);
``margin``
    CUDA context, NCCL and cuBLAS workspaces (a fixed 2 GiB) and allocator fragmentation (5 % of the card).

The prompt length is not in the config (TRL 1.16 does not truncate prompts): the estimate assumes
:data:`PROMPT_TOKENS` per ``data.task``.  Model sizes come from :data:`ARCHITECTURES` (the hub ``config.json``
values of the presets' models, cited there) or a local model's ``config.json`` (``model.source: path``).

:func:`check_training_fit` is the compile-time check (``divtune compile``, ``run --kfp-host``, ``schedule``):
a preset whose arithmetic does not fit ``cluster.gpu_memory_gib`` is refused with one line.
``python -m divtune.train.memory > docs/memory.md`` writes the table of every shipped preset; a test keeps it in
sync.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtune.errors import ConfigError

__all__ = ["ARCHITECTURES", "Architecture", "MemoryEstimate", "architecture_for", "check_training_fit",
           "check_training_layout", "estimate", "render_memory_table", "train_world_size"]

GIB = float(1 << 30)
MARGIN_FIXED_GIB = 2.0
"""CUDA context, NCCL buffers and cuBLAS workspaces of one process."""
MARGIN_FRACTION = 0.05
"""Allocator fragmentation, as a share of the card."""
VLLM_WORKING_GIB = 2.0
"""vLLM's own working memory inside its share besides weights and KV cache: the profiling forward of TRL's
``max_num_batched_tokens=4096``, the sampler and CUDA graphs."""
PROMPT_TOKENS = {"lists": 256, "math": 512, "prompts": 1024}
"""Assumed prompt tokens per ``data.task`` (list prompts with few-shot examples; GSM8K/MATH problems; WildChat-style
instructions), for the activation estimate."""
FSDP_GATHERED_LAYERS = 2
"""Decoder layers unsharded at once under FSDP: the one computing and the one prefetched."""

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}
_ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Architecture:
    """A decoder-only Llama/Qwen-style model, as its ``config.json`` describes it."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    max_positions: int
    tied: bool
    head_dim: int | None = None  # null: hidden / heads (Qwen3 sets it apart)
    qkv_bias: bool = False
    source: str = ""

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear module of one layer, by its module name."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def layer_params(self) -> int:
        lin = sum(a * b for a, b in self.linear_shapes().values())
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        qk_norm = 2 * self.hd if self.head_dim else 0  # Qwen3's per-head q/k RMSNorm
        return lin + bias + 2 * self.hidden + qk_norm

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        return self.layers * self.layer_params + self.embedding_params + head + self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_dim * dtype_bytes

    def lora_params(self, r: int, targets: list[str] | str, layers: list[int] | None = None) -> int:
        names = _ALL_LINEAR if targets == "all-linear" else tuple(targets)
        shapes = self.linear_shapes()
        per_layer = sum(r * (a + b) for n, (a, b) in shapes.items() if n in names)
        n_layers = len([x for x in layers if x < self.layers]) if layers is not None else self.layers
        return per_layer * n_layers

    def saved_per_token(self, lora_dropout_inputs: int = 0) -> int:
        """Values one layer saves for backward per token (SDPA attention, no T^2 scores)."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        return 6 * h + 4 * q + 3 * kv + 4 * i + lora_dropout_inputs


def _hub(name: str) -> str:
    return f"hub config.json of {name} (https://huggingface.co/{name}/blob/main/config.json)"


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("Qwen/Qwen2.5-7B-Instruct", layers=28, hidden=3584, intermediate=18944, heads=28, kv_heads=4,
                 vocab=152064, max_positions=32768, tied=False, qkv_bias=True,
                 source=_hub("Qwen/Qwen2.5-7B-Instruct") + "; model card: 7.61B parameters"),
    Architecture("Qwen/Qwen2.5-32B-Instruct", layers=64, hidden=5120, intermediate=27648, heads=40, kv_heads=8,
                 vocab=152064, max_positions=32768, tied=False, qkv_bias=True,
                 source=_hub("Qwen/Qwen2.5-32B-Instruct") + "; model card: 32.5B parameters"),
    Architecture("meta-llama/Llama-3.1-8B-Instruct", layers=32, hidden=4096, intermediate=14336, heads=32,
                 kv_heads=8, vocab=128256, max_positions=131072, tied=False,
                 source=_hub("meta-llama/Llama-3.1-8B-Instruct") + "; model card: 8.03B parameters"),
    Architecture("Qwen/Qwen3-4B-Base", layers=36, hidden=2560, intermediate=9728, heads=32, kv_heads=8,
                 head_dim=128, vocab=151936, max_positions=32768, tied=True,
                 source=_hub("Qwen/Qwen3-4B-Base") + "; model card: 4.0B parameters"),
    Architecture("HuggingFaceTB/SmolLM2-135M-Instruct", layers=30, hidden=576, intermediate=1536, heads=9,
                 kv_heads=3, vocab=49152, max_positions=8192, tied=True,
                 source=_hub("HuggingFaceTB/SmolLM2-135M-Instruct") + "; 134.5M parameters as divtune loads it "
                        "(`model.source: smollm2`)"),
)}
"""The shipped presets' base models.  The hub was not reachable here: the values are the models' published
``config.json`` fields; the parameter counts they give are checked against the model cards by a test."""

REWARD_MODEL = ARCHITECTURES["meta-llama/Llama-3.1-8B-Instruct"]
"""The size assumed for a DARLING reward model (Athene-RM-8B: Llama-3.1-8B with a one-logit score head)."""


def architecture_from_config(d: dict[str, Any], name: str) -> Architecture | None:
    """An :class:`Architecture` from a transformers ``config.json`` dict; None when it is not decoder-shaped."""
    d = d.get("text_config", d)
    try:
        return Architecture(
            name, layers=int(d["num_hidden_layers"]), hidden=int(d["hidden_size"]),
            intermediate=int(d["intermediate_size"]), heads=int(d["num_attention_heads"]),
            kv_heads=int(d.get("num_key_value_heads") or d["num_attention_heads"]), vocab=int(d["vocab_size"]),
            max_positions=int(d.get("max_position_embeddings") or 2048), tied=bool(d.get("tie_word_embeddings")),
            head_dim=int(d["head_dim"]) if d.get("head_dim") and d.get("model_type") == "qwen3" else None,
            qkv_bias=bool(d.get("attention_bias")) or d.get("model_type") == "qwen2", source=f"{name}/config.json")
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def architecture_for(cfg: Any) -> Architecture | None:
    """The base model's architecture: the table for hub ids and SmolLM2, a local ``config.json`` for ``path``;
    None when unknown (the toy, an unlisted hub id, a path not on this machine)."""
    m = cfg.model
    if m.source == "hub":
        return ARCHITECTURES.get(m.hub_id or "")
    if m.source == "smollm2":
        return ARCHITECTURES["HuggingFaceTB/SmolLM2-135M-Instruct"]
    if m.source == "path" and m.path:
        p = Path(m.path) / "config.json"
        try:
            return architecture_from_config(json.loads(p.read_text()), m.path)
        except (OSError, ValueError):
            return None
    return None


def train_world_size(cfg: Any) -> int:
    """Training processes: ``train_nodes x train_gpus`` for a TrainJob, the pod's GPUs otherwise (at least 1)."""
    c = cfg.cluster
    return max(1, c.train_gpus) * (c.train_nodes if c.uses_trainjob else 1)


@dataclass
class MemoryEstimate:
    """Per-GPU memory of one training rank (GiB)."""

    preset: str
    model: str
    gpus: int
    sharding: str
    gpu_memory_gib: float | None
    rows: list[tuple[str, float]] = field(default_factory=list)
    vllm_need_gib: float | None = None  # what vLLM must hold inside its share
    vllm_share_gib: float | None = None
    vllm_detail: str = ""
    host_ram_gib: float = 0.0  # per node, while every rank loads the model before FSDP shards it

    @property
    def total_gib(self) -> float:
        return sum(v for _, v in self.rows)

    @property
    def fits(self) -> bool | None:
        if self.gpu_memory_gib is None:
            return None
        vllm_ok = self.vllm_need_gib is None or (self.vllm_share_gib or 0.0) >= self.vllm_need_gib
        return self.total_gib <= self.gpu_memory_gib and vllm_ok


def estimate(cfg: Any) -> MemoryEstimate | None:
    """The per-GPU memory of ``cfg``'s training rank; None when the model's architecture is unknown."""
    arch = architecture_for(cfg)
    if arch is None:
        return None
    t, c = cfg.train, cfg.cluster
    world = train_world_size(cfg)
    fsdp = t.sharding == "fsdp" and world > 1
    shard = world if fsdp else 1
    wbytes = _DTYPE_BYTES.get(cfg.model.dtype, 2)
    card = c.gpu_memory_gib
    est = MemoryEstimate(cfg.name, arch.name, world, t.sharding if world > 1 else "none", card)
    rows = est.rows
    rows.append(("base weights" + (f" (1/{shard})" if fsdp else ""), arch.params * wbytes / shard / GIB))
    if fsdp:
        tail = arch.embedding_params + arch.hidden  # LM head (or the tied embedding) and the final norm
        gathered = FSDP_GATHERED_LAYERS * arch.layer_params + tail
        rows.append(("FSDP gathered units", gathered * wbytes / GIB))
    n_lora = arch.lora_params(t.lora.r, t.lora.target_modules, t.lora.layers_to_transform)
    lora = n_lora * 16 / shard + (n_lora * 4 if world > 1 and not fsdp else 0)
    rows.append((f"LoRA params + grads + Adam ({n_lora / 1e6:.0f}M, fp32)", lora / GIB))
    prompt = PROMPT_TOKENS.get(cfg.data.task, 512)
    tokens = t.per_device_train_batch_size * (prompt + t.max_completion_length)
    dropout_inputs = 0
    if t.lora.dropout > 0:
        names = _ALL_LINEAR if t.lora.target_modules == "all-linear" else tuple(t.lora.target_modules)
        dropout_inputs = sum(a for n, (a, _) in arch.linear_shapes().items() if n in names)
    abytes = 2 if (t.bf16 or wbytes == 2) else 4  # activations in the compute dtype
    per_layer = arch.saved_per_token(dropout_inputs) * abytes * tokens
    if t.gradient_checkpointing:
        acts = arch.layers * tokens * arch.hidden * abytes + 2 * per_layer
    else:
        acts = arch.layers * per_layer
    rows.append((f"activations ({t.per_device_train_batch_size} x {prompt}+{t.max_completion_length} tokens"
                 f"{', checkpointed' if t.gradient_checkpointing else ''})", acts / GIB))
    if t.method == "darling" and t.darling.quality == "reward_model":
        rm = REWARD_MODEL.params - REWARD_MODEL.embedding_params  # a score head instead of the LM head
        rows.append(("reward model (8B assumed, bf16)", rm * 2 / GIB))
    if t.use_vllm and t.vllm_mode == "colocate":
        tp = t.vllm_tensor_parallel_size
        ctx = t.vllm_max_model_length or arch.max_positions
        weights = arch.params * 2 / tp / GIB
        kv_min = ctx * arch.kv_bytes_per_token() / tp / GIB
        est.vllm_need_gib = weights + kv_min + VLLM_WORKING_GIB
        est.vllm_detail = (f"weights {weights:.1f} (TP {tp}) + KV of one {ctx}-token sequence {kv_min:.1f} + "
                           f"working {VLLM_WORKING_GIB:.1f}")
        if card is not None:
            est.vllm_share_gib = t.vllm_gpu_memory_utilization * card
            rows.append((f"vLLM colocate share ({t.vllm_gpu_memory_utilization:g} x card)", est.vllm_share_gib))
        else:
            rows.append(("vLLM colocate (its least)", est.vllm_need_gib))
    rows.append(("margin (CUDA context, NCCL, fragmentation)",
                 MARGIN_FIXED_GIB + MARGIN_FRACTION * (card if card is not None else est.total_gib)))
    per_node = max(1, c.train_gpus)
    est.host_ram_gib = per_node * arch.params * wbytes / GIB if world > 1 else 0.0
    return est


# --------------------------------------------------------------------------------------
# The compile-time checks
# --------------------------------------------------------------------------------------


def check_training_layout(cfg: Any) -> None:
    """More than one training GPU trains as a TrainJob with FSDP; FSDP needs a TrainJob."""
    c, t = cfg.cluster, cfg.train
    gpus = max(1, c.train_gpus) * c.train_nodes
    if c.train_gpus > 1 and not c.uses_trainjob:
        raise ConfigError(f"{cfg.name}: cluster.train_gpus {c.train_gpus} in one pod trains in one process on one GPU "
                          "(the others idle); set cluster.train_distributed: trainjob (torchrun, one process per "
                          "GPU) and train.sharding: fsdp")
    if gpus > 1 and t.sharding == "none":
        raise ConfigError(f"{cfg.name}: {gpus} training GPUs with train.sharding none hold a whole model copy each; "
                          "set train.sharding: fsdp")
    if t.sharding == "fsdp" and not c.uses_trainjob:
        raise ConfigError(f"{cfg.name}: train.sharding fsdp shards across a TrainJob's processes; set "
                          "cluster.train_distributed: trainjob")


def check_training_fit(cfg: Any) -> MemoryEstimate | None:
    """Refuse (one line) a cluster config whose training rank does not fit ``cluster.gpu_memory_gib``; returns the
    estimate (None for a model of unknown size, which is not checked)."""
    c = cfg.cluster
    if c.train_gpus < 1:
        return None
    check_training_layout(cfg)
    est = estimate(cfg)
    if est is None:
        return None
    if c.gpu_memory_gib is None:
        raise ConfigError(f"{cfg.name}: cluster.gpu_memory_gib is not set; training {est.model} needs "
                          f"{est.total_gib:.1f} GiB per GPU by docs/memory.md's arithmetic: set the train GPUs' "
                          "memory so the fit is checked")
    if est.total_gib > c.gpu_memory_gib:
        top = sorted(est.rows, key=lambda r: -r[1])[:3]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in top)
        raise ConfigError(f"{cfg.name}: training needs {est.total_gib:.1f} GiB per GPU ({parts}, ...) on "
                          f"{est.gpus} GPU(s) with train.sharding {est.sharding}, but cluster.gpu_memory_gib is "
                          f"{c.gpu_memory_gib:g}; see docs/memory.md")
    if not est.fits:  # the total fits: vLLM's share is what falls short
        raise ConfigError(f"{cfg.name}: vLLM's share {est.vllm_share_gib:.1f} GiB (train.vllm_gpu_memory_utilization "
                          f"{cfg.train.vllm_gpu_memory_utilization:g} x {c.gpu_memory_gib:g} GiB) cannot hold "
                          f"{est.vllm_need_gib:.1f} GiB ({est.vllm_detail}); raise the share or "
                          "train.vllm_tensor_parallel_size, or lower train.vllm_max_model_length")
    return est


# --------------------------------------------------------------------------------------
# docs/memory.md
# --------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def render_memory_table(presets: list[str] | None = None) -> str:
    """docs/memory.md: the per-GPU memory table of every shipped preset with a known model."""
    from divtune.config import list_presets, load_config

    lines = ["# GPU memory per training rank", "",
             "Generated by `python -m divtune.train.memory > docs/memory.md` from the presets and the arithmetic "
             "of `divtune/train/memory.py` (its docstring states every term and assumption); a test keeps this file "
             "in sync. `divtune compile`, `run --kfp-host` and `schedule` refuse a cluster preset whose total "
             "exceeds `cluster.gpu_memory_gib`, or whose vLLM share cannot hold vLLM's least. GiB = 2^30 bytes. "
             "A model that is neither in the table at the end nor a local `model.path` is not checked. Nothing here "
             "was measured on a GPU.", ""]
    for name in presets if presets is not None else list_presets():
        cfg = load_config(name)
        est = estimate(cfg)
        if est is None:
            continue
        t, c = cfg.train, cfg.cluster
        launch = ("TrainJob, torchrun" if c.uses_trainjob else "one pod") if c.train_gpus else "local"
        gen = "transformers generate"
        if t.use_vllm:
            gen = (f"vLLM colocate, TP {t.vllm_tensor_parallel_size}, share {t.vllm_gpu_memory_utilization:g}"
                   if t.vllm_mode == "colocate" else "vLLM server")
        lines += [f"## `{name}`", "",
                  f"{est.model}: {ARCHITECTURES[est.model].params / 1e9 if est.model in ARCHITECTURES else 0:.2f}B "
                  f"parameters; {est.gpus} training GPU(s) ({launch}), sharding `{est.sharding}`; generation: "
                  f"{gen}; card: " + (f"{c.gpu_memory_gib:g} GiB" if c.gpu_memory_gib else "not named (local)"),
                  "", "| per GPU | GiB |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in est.rows]
        lines.append(f"| **total** | **{est.total_gib:.1f}** |")
        if c.gpu_memory_gib:
            lines.append(f"| card (`cluster.gpu_memory_gib`) | {c.gpu_memory_gib:g} |")
            lines.append(f"| headroom | {c.gpu_memory_gib - est.total_gib:.1f} |")
        lines.append("")
        if est.vllm_need_gib is not None:
            lines.append(f"vLLM must hold {est.vllm_need_gib:.1f} GiB inside its share ({est.vllm_detail})"
                         + (f": share {est.vllm_share_gib:.1f} GiB." if est.vllm_share_gib is not None else "."))
        if t.method == "darling" and t.darling.partitioner in ("classifier", "embedding"):
            lines.append("The partitioner model runs on each rank's GPU as well and is not counted (its size is not "
                         "in the config): `divtune train-partitioner`'s MiniLM adds ~0.1 GiB; a 4B classifier (the "
                         "authors' Qwen3-Embedding-4B choice for math) ~15 GiB in fp32.")
        if est.host_ram_gib:
            lines.append(f"Host RAM per node while loading: every rank reads the whole model before FSDP shards it "
                         f"(~{est.host_ram_gib:.0f} GiB for {max(1, c.train_gpus)} ranks).")
        lines.append("")
    lines += ["## Model sizes", "", "| model | layers | hidden | intermediate | heads / kv | vocab | context | "
              "parameters | source |", "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for a in ARCHITECTURES.values():
        lines.append(f"| {a.name} | {a.layers} | {a.hidden} | {a.intermediate} | {a.heads} / {a.kv_heads} | {a.vocab} "
                     f"| {a.max_positions} | {a.params / 1e9:.2f}B | {a.source} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(render_memory_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
