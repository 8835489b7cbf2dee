"""The toy base model: a 2-layer Qwen2 with its own byte-level BPE tokenizer, built on CPU.

Why a *constructed* start.  A pretrained LM copies a listed item into its answer with induction
heads; a 2-layer transformer trained from scratch on 2 CPU cores needs far more steps than a
demo affords to grow them (measured here: no usable copying after 3,500 steps, ~15 minutes).  So
the bootstrap first *sets* the weights of a small, interpretable copy circuit — standing in for
what pretraining gives a real model — and then trains the model on CPU to be capable but biased:

* layer 0, two positional heads (query/key biases only, RoPE phase-shifted): head 0 writes the
  previous token into subspace B, head 1 the token before that into subspace C;
* layer 1, head 0 — a 2-gram induction head: the current token (A) and its predecessor (B) are
  matched against the keys' B and C; it copies the following token of the list item;
* layer 1, head 1 — the item picker: only the ``<answer>`` token queries it, and it attends to
  every item start (tokens preceded by ``[`` or ``, ``), so the first answer token is a mixture
  of item starts;
* both layer-1 heads fall back to a ``<|bos|>`` attention sink whose value is zero;
* the (untied) output embedding starts as the input embedding, except that copying the list
  separator emits ``</answer>``, copying the suffix's ``.`` emits end-of-text and the prompt's
  final newline emits ``<answer>``.

Training then runs in two stages with answer-only loss, as the lessons of this project demand:
stage 1 (uniform target over the listed items) makes the picker choose any item; stage 2
(target weight ``position_bias**k`` for the k-th item) skews it towards early items.  Only the
picker and the output layer are trained, with SGD, so the constructed copy circuit stays exact.

The result is cached under ``$DIVTUNE_HOME/models/toy-<hash>``, the hash covering the config and
this recipe; a second build is a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import string
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from divtune import paths
from divtune.config import ToyModelConfig

RECIPE_VERSION = "toy-v1"
BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)
_PRETOKENIZE = r"\s|[^\w\s]|\d"


# --------------------------------------------------------------------------------------
# Data for the bootstrap
# --------------------------------------------------------------------------------------

_CONS = "bcdfghjklmnprstvwz"
_VOW = "aeiou"


def pseudo_word(rng: random.Random) -> str:
    n = rng.randint(1, 3)
    w = "".join(rng.choice(_CONS) + rng.choice(_VOW) + ("" if rng.random() < 0.5 else rng.choice(_CONS)) for _ in range(n))
    w = w.capitalize()
    return w + " " + pseudo_word(rng) if rng.random() < 0.1 else w


def bootstrap_item(rng: random.Random, bank: list[str]) -> str:
    x = rng.random()
    if x < 0.45:
        return rng.choice(bank)
    if x < 0.55:
        return str(rng.randint(0, 9999))
    if x < 0.6:
        return rng.choice(string.ascii_uppercase)
    return pseudo_word(rng)


def bootstrap_list(rng: random.Random, bank: list[str], lo: int = 2, hi: int = 12) -> list[str]:
    n = rng.randint(lo, hi)
    out, seen = [], set()
    while len(out) < n:
        it = bootstrap_item(rng, bank)
        if it.casefold() not in seen:
            seen.add(it.casefold())
            out.append(it)
    return out


def _bank() -> list[str]:
    from divtune.data.banks import TRAIN_CATEGORIES

    return sorted({x for items in TRAIN_CATEGORIES.values() for x in items})


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------


def build_tokenizer(vocab_size: int, seed: int):
    """A byte-level BPE ``Qwen2Tokenizer`` (any text encodes; no unknown tokens).

    transformers 5 reloads every ``qwen2`` checkpoint's tokenizer as ``Qwen2Tokenizer`` with its
    own pre-tokenizer, so the toy's tokenizer *is* one: only its merges are ours.  They are
    learned with whitespace and punctuation isolated, so a space never fuses with a word and an
    item is tokenized the same inside the list and inside ``<answer>...</answer>``.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    from divtune.data.templates import TEMPLATES, render_prompt

    rng = random.Random(seed)
    bank = _bank()
    corpus = [render_prompt(rng.choice(TEMPLATES), bootstrap_list(rng, bank, 4, 12)) for _ in range(3000)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD, BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                         unk_token=None)
    tok.add_tokens([AddedToken(ANSWER_OPEN, special=False, normalized=False),
                    AddedToken(ANSWER_CLOSE, special=False, normalized=False)])
    tok.chat_template = CHAT_TEMPLATE
    return tok


# --------------------------------------------------------------------------------------
# Model: constructed copy circuit
# --------------------------------------------------------------------------------------


def model_config(cfg: ToyModelConfig, tok):
    from transformers import Qwen2Config

    a = cfg.embed_dim
    hidden = 3 * a + cfg.flag_dim
    return Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=max(128, a),
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def construct_model(cfg: ToyModelConfig, tok):
    """A Qwen2ForCausalLM whose weights implement the copy circuit described in the module doc."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(cfg.seed)
    conf = model_config(cfg, tok)
    model = Qwen2ForCausalLM(conf)
    A, D, HD = cfg.embed_dim, cfg.flag_dim, conf.head_dim
    H = conf.hidden_size
    half = HD // 2
    norm = cfg.embed_scale * math.sqrt(A)
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, HD, 2).float() / HD))
    low = [j for j in range(half) if inv_freq[j] <= 1.2e-3]  # position-independent pairs
    if len(low) < 32:
        raise ValueError("rope_theta too small for the toy's content matching")
    p1, p2, psink = low[:14], low[14:28], low[28:32]

    def dims(pairs):
        return list(pairs) + [j + half for j in pairs]

    tid = tok.convert_tokens_to_ids
    i_bos, i_ans, i_end, i_eos = tid(BOS), tid(ANSWER_OPEN), tid(ANSWER_CLOSE), tid(EOS)
    i_nl, i_comma, i_sp, i_lb, i_rb, i_dot = tid("Ċ"), tid(","), tid("Ġ"), tid("["), tid("]"), tid(".")

    with torch.no_grad():
        E = model.model.embed_tokens.weight
        E.zero_()
        E[:, :A] = torch.randn(E.shape[0], A)
        P1 = torch.linalg.qr(torch.randn(A, 28))[0].T
        P2 = torch.linalg.qr(torch.randn(A, 28))[0].T
        E[i_nl, :A] -= P2.T @ (P2 @ E[i_nl, :A])
        # the separators that mark an item start are made mutually orthogonal
        E[[i_lb, i_sp, i_comma], :A] = torch.linalg.qr(E[[i_lb, i_sp, i_comma], :A].T)[0].T
        E[:, :A] *= norm / E[:, :A].norm(dim=1, keepdim=True)
        E[i_bos].zero_()
        E[i_bos, 3 * A : 3 * A + 4] = norm / 2  # BOS: sink flag only (its value is zero)
        E[i_ans].zero_()
        E[i_ans, 3 * A + 4] = norm * cfg.answer_flag  # <answer>: picker trigger only
        unit = E[:, :A] / norm
        sink_key = torch.zeros(D)
        sink_key[:4] = 0.5

        l0, l1 = model.model.layers[0].self_attn, model.model.layers[1].self_attn
        for att in (l0, l1):
            for p in (att.q_proj.weight, att.k_proj.weight, att.v_proj.weight, att.o_proj.weight,
                      att.q_proj.bias, att.k_proj.bias, att.v_proj.bias):
                p.zero_()
        for layer in model.model.layers:
            layer.mlp.down_proj.weight.zero_()

        # layer 0: positional heads (offset 1 -> B, offset 2 -> C)
        for h, off in ((0, 1), (1, 2)):
            base = h * HD
            for j in range(24):
                th = inv_freq[j].item()
                l0.q_proj.bias[base + j] = cfg.positional_sharpness
                l0.k_proj.bias[base + j] = cfg.positional_sharpness * math.cos(off * th)
                l0.k_proj.bias[base + j + half] = cfg.positional_sharpness * math.sin(off * th)
            for i in range(A):
                l0.v_proj.weight[base + i, i] = 1.0
                l0.o_proj.weight[(1 + h) * A + i, base + i] = cfg.embed_scale * math.sqrt(A / H)

        # layer 1, head 0: 2-gram induction with a BOS sink
        for r, d in enumerate(dims(p1)):
            l1.q_proj.weight[d, :A] = cfg.match_sharpness * P1[r]
            l1.k_proj.weight[d, A : 2 * A] = P1[r]
        for r, d in enumerate(dims(p2)):
            l1.q_proj.weight[d, A : 2 * A] = cfg.match_sharpness * cfg.bigram_weight * P2[r]
            l1.k_proj.weight[d, 2 * A : 3 * A] = P2[r]
        for d in dims(psink):
            l1.q_proj.bias[d] = cfg.copy_sink
            l1.k_proj.weight[d, 3 * A :] = 8 * sink_key
        for i in range(A):
            l1.v_proj.weight[i, i] = 1.0
            l1.o_proj.weight[i, i] = cfg.copy_gain

        # layer 1, head 1: the item picker (triggered by <answer>) with a BOS sink
        b = HD
        start = dims(low[:28])
        # item start: previous token "[" (first item), or "Ġ" preceded by "," (later items);
        # a space inside an item or the template scores half and loses the softmax
        key_b = cfg.first_item_weight * unit[i_lb] + 0.5 * unit[i_sp]
        key_c = 0.5 * unit[i_comma]
        for d in start:
            l1.q_proj.weight[b + d, 3 * A + 4] = cfg.pick_sharpness / math.sqrt(len(start))
            l1.k_proj.weight[b + d, A : 2 * A] = 8 * key_b / math.sqrt(len(start))
            l1.k_proj.weight[b + d, 2 * A : 3 * A] = 8 * key_c / math.sqrt(len(start))
        for d in dims(psink):
            l1.q_proj.bias[b + d] = cfg.pick_sink
            l1.k_proj.weight[b + d, 3 * A :] = 8 * sink_key
        for i in range(A):
            l1.v_proj.weight[b + i, i] = 1.0
            l1.o_proj.weight[i, b + i] = cfg.pick_gain

        # output embedding: a copy of the input one, plus the answer-format remaps
        U = model.lm_head.weight
        U.copy_(E)
        U[:, A:] = 0
        close = unit[i_comma] + unit[i_rb]
        U[i_end].zero_()
        U[i_end, :A] = cfg.format_gain * norm * close / close.norm()
        U[i_eos].zero_()
        U[i_eos, :A] = cfg.format_gain * E[i_dot, :A]
        U[i_ans].zero_()
        U[i_ans, :A] = cfg.format_gain * E[i_nl, :A]
        U[i_bos].zero_()
        U[tid(PAD)].zero_()
        model.model.norm.weight[:A] *= cfg.output_scale
    return model


# --------------------------------------------------------------------------------------
# Training (SFT, answer-only loss)
# --------------------------------------------------------------------------------------


def trainable_parameters(model) -> list:
    """The picker head's query/key rows and the output layer; the copy circuit stays fixed."""
    names = ("model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "lm_head")
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith(names))
        if p.requires_grad:
            params.append(p)
    return params


def _encode_example(tok, items: list[str], choice: str, template: str) -> tuple[list[int], list[int]]:
    from divtune.data.templates import render_prompt

    prompt = tok.apply_chat_template([{"role": "user", "content": render_prompt(template, items)}], tokenize=False)
    answer = f"{ANSWER_OPEN}{choice}{ANSWER_CLOSE}{EOS}"
    return tok(prompt, add_special_tokens=False)["input_ids"], tok(answer, add_special_tokens=False)["input_ids"]


def _batch(tok, rows: list[tuple[list[int], list[int]]]):
    import torch

    T = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), T), tok.pad_token_id)
    att = torch.zeros((len(rows), T), dtype=torch.long)
    lab = torch.full((len(rows), T), -100)
    for i, (p, a) in enumerate(rows):
        s = p + a
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
        lab[i, len(p) : len(s)] = torch.tensor(a)  # loss on answer tokens only
    return ids, att, lab


def sft_stage(model, tok, cfg: ToyModelConfig, *, steps: int, bias: float | None, seed: int, desc: str,
              progress: bool = True) -> list[float]:
    """``steps`` SGD steps on sampled lists; target item uniform (``bias=None``) or ∝ bias**position."""
    import torch
    from tqdm.auto import tqdm

    from divtune.data.templates import TEMPLATES

    rng = random.Random(seed)
    bank = _bank()
    params = trainable_parameters(model)
    opt = torch.optim.SGD(params, lr=cfg.learning_rate, momentum=0.9)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress or os.environ.get("DIVTUNE_NO_PROGRESS") == "1")
    for _ in bar:
        rows = []
        for _ in range(cfg.batch_size):
            items = bootstrap_list(rng, bank, 2, 12)
            weights = None if bias is None else [bias**k for k in range(len(items))]
            choice = rng.choices(items, weights)[0] if weights else rng.choice(items)
            rows.append(_encode_example(tok, items, choice, rng.choice(TEMPLATES)))
        ids, att, lab = _batch(tok, rows)
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    return losses


# --------------------------------------------------------------------------------------
# Build + cache
# --------------------------------------------------------------------------------------


def config_hash(cfg: ToyModelConfig) -> str:
    from divtune.data import banks

    payload = json.dumps({"recipe": RECIPE_VERSION, "cfg": asdict(cfg),
                          "banks": sorted((k, list(v)) for k, v in banks.TRAIN_CATEGORIES.items())}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_dir(cfg: ToyModelConfig) -> Path:
    return paths.model_cache() / f"toy-{config_hash(cfg)}"


def build_toy_model(cfg: ToyModelConfig, out_dir: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """Build tokenizer + model, train both stages, save to ``out_dir``; return a build report."""
    import torch

    torch.manual_seed(cfg.seed)
    t0 = time.time()
    tok = build_tokenizer(cfg.vocab_size, cfg.seed)
    model = construct_model(cfg, tok)
    pick = sft_stage(model, tok, cfg, steps=cfg.pick_steps, bias=None, seed=cfg.seed + 1,
                     desc="toy stage 1: pick any item", progress=progress)
    skew = sft_stage(model, tok, cfg, steps=cfg.bias_steps, bias=cfg.position_bias, seed=cfg.seed + 2,
                     desc="toy stage 2: skew towards early items", progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.do_sample = True
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    report = {
        "recipe": RECIPE_VERSION,
        "config": asdict(cfg),
        "hash": config_hash(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "stage1_final_loss": sum(pick[-20:]) / max(1, len(pick[-20:])) if pick else None,
        "stage2_final_loss": sum(skew[-20:]) / max(1, len(skew[-20:])) if skew else None,
        "build_seconds": round(time.time() - t0, 1),
    }
    (out / "divtune_toy.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def ensure_toy_model(cfg: ToyModelConfig, *, progress: bool = True, force: bool = False) -> Path:
    """The cached toy model for ``cfg``, building it (atomically) on a miss."""
    target = cache_dir(cfg)
    if target.is_dir() and (target / "divtune_toy.json").is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build_toy_model(cfg, tmp, progress=progress)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
