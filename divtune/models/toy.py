"""The toy base model: a 2-layer Qwen2 with its own byte-level BPE tokenizer, built on CPU in seconds.

A *test fixture for the plumbing*, not a target to tune: it answers the list-selection format, so
GRPO/GAPO groups have reward variance and every stage of the pipeline has something real to move,
in a hub-less CI.  Claims about the methods come from real models (see ``docs/results.md``).

Why a *constructed* model: a 2-layer transformer trained from scratch on 2 CPU cores does not grow
induction heads in a demo's budget, so the bootstrap *sets* the weights of a small, interpretable
circuit -- standing in for what pretraining gives a real model:

* token subspace A is as wide as the vocabulary: every token has its own orthonormal direction, so
  "junk" tokens get exactly zero logit instead of random cross-talk;
* layer 0, four positional heads (query/key biases only) write compact features of the tokens
  1, 2, 3 and 4 back (a unit-norm random code per token, plus separator indicators), and a flag
  "the token before me is ``<answer>``";
* layer 1, head 0 -- an n-gram induction head: the current token and the three before it are matched
  against the keys' 1/2/3/4-back features (weights falling with distance) and it copies the following
  token of the item; a BOS attention sink sits between a 1-gram match and a lone 2-gram match; after an
  answer's first token a start term prefers keys that continue an item *start* (2 back ``[`` or 3 back ``,``);
* layer 1, head 1 -- the item picker: only ``<answer>`` queries it; it attends to item starts
  (tokens after ``[`` or ``, ``); the first item's key weighs ``first_item_weight``;
* layer 1 MLP -- a set clamp, live only at ``<answer>``: every token present among the item starts
  gets the same output, so first tokens shared by two items are not double-counted;
* the direct picker path (``pick_gain``) turns the picker's attention preference into a logit bias:
  the base model is *capable but biased* towards the first listed item -- the positional bias the
  GAPO paper describes, learnable away through the layer-1 attention;
* the output layer is the token directions, except that copying the list separator emits
  ``</answer>``, copying the suffix's ``.`` emits end-of-text and the prompt's final newline emits
  ``<answer>``.

The recipe (:data:`RECIPE`) is frozen and versioned (:data:`RECIPE_VERSION`); its history is in
``CHANGELOG.md``.  The result is cached under ``$DIVTUNE_HOME/models/toy-<hash>``, the hash covering
the recipe and the training categories; a second build is a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from divtune import outputs, paths

RECIPE_VERSION = "toy-v5"


@dataclass(frozen=True)
class ToyRecipe:
    """The circuit's weights and sizes.  Frozen: a change is a new :data:`RECIPE_VERSION` and CHANGELOG entry."""

    vocab_size: int = 512  # BPE vocabulary; the token subspace is this wide, so token directions are orthogonal
    match_features: int = 32  # dims per previous-token feature block used by the induction head
    max_position_embeddings: int = 1024
    rope_theta: float = 1_000_000.0
    positional_sharpness: float = 8.0  # layer-0 heads: attend to the token 1/2/3 back
    match_sharpness: float = 8.0  # induction head: current token vs key's previous token
    bigram_weight: float = 0.5  # ... plus previous vs key's previous-previous
    trigram_weight: float = 0.3  # ... plus previous-previous vs key's 3-back
    fourgram_weight: float = 0.2  # ... plus the token 3 back vs key's 4-back
    start_weight: float = 0.5  # ... plus, after an answer's first token, the key continues an item start
    match_scale: float = 2.0  # overall scale of the induction head's scores
    separator_scale: float = 0.3  # how much separators count in a match
    copy_gain: float = 3.0  # induction head output -> logit of the copied token
    copy_sink: float = 0.13  # attention-sink level: below a 1-gram match, above a lone bigram match
    pick_sharpness: float = 0.1  # item picker (at <answer>): attention to item starts
    pick_sink: float = 0.1  # the picker's attention sink
    pick_gain: float = 1.3  # direct picker path: turns attention preferences into logit bias
    first_item_weight: float = 1.11  # > 1: the picker prefers the first listed item (the base's bias)
    clamp_gain: float = 3.0  # set clamp: every listed first token gets the same logit
    clamp_low: float = 0.1  # clamp MLP: activation below which a token counts as absent
    clamp_high: float = 0.25  # ... and above which present
    clamp_slope: float = 200.0  # steepness of the clamp's step between low and high
    flag_gate: float = 2000.0  # gates MLP units on the <answer> flag (off elsewhere)
    format_gain: float = 2.0  # logit of the format tokens (<answer>, </answer>, end of text) where they are due
    separator_output: float = 0.3  # logit of a copied separator (emitted as </answer>)
    output_scale: float = 1.0  # final norm scale of the token subspace
    seed: int = 0  # random codes, tokenizer corpus, initialisation


#: The one recipe divtune builds.  Tests that probe the circuit may build variants with ``dataclasses.replace``.
RECIPE = ToyRecipe()
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
# Model: a constructed circuit
# --------------------------------------------------------------------------------------


def model_config(cfg: ToyRecipe, tok):
    """Qwen2 config: hidden = token subspace (>= vocab) + four feature blocks + 8 flags."""
    from transformers import Qwen2Config

    a = (len(tok) + 7) // 8 * 8
    blk = cfg.match_features + 3
    return Qwen2Config(
        vocab_size=len(tok),
        hidden_size=a + 4 * blk + 8,
        intermediate_size=2 * len(tok),
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=a,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def construct_model(cfg: ToyRecipe, tok):
    """A Qwen2ForCausalLM whose weights implement the circuit described in the module doc."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(cfg.seed)
    conf = model_config(cfg, tok)
    model = Qwen2ForCausalLM(conf)
    V, H, HD = len(tok), conf.hidden_size, conf.head_dim
    A, k, S = HD, cfg.match_features, 3
    B0, C0, T0, F0 = A, A + k + S, A + 2 * (k + S), A + 3 * (k + S)
    D0 = A + 4 * (k + S)
    FLAG, CONST, AFTER = D0 + 4, D0 + 5, D0 + 6
    half = HD // 2
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, HD, 2).float() / HD))
    low = [j for j in range(half) if inv[j] <= 1.2e-3]  # rotary pairs that barely rotate: content matching
    k4 = (k + 1) // 2  # the 4-gram term needs k dims: half as many rotary pairs (both dims of a pair used)
    if len(low) < 3 * k + 21 + k4:
        raise ValueError("rope_theta too small for the toy's content matching")
    p1, p2, p3 = low[:k], low[k:2 * k], low[2 * k:3 * k]
    psink, ppick = low[3 * k:3 * k + 4], low[3 * k + 4:3 * k + 20]
    p4 = low[3 * k + 20:3 * k + 20 + k4]
    pstart = low[3 * k + 20 + k4:3 * k + 21 + k4]

    def dims(pairs):
        return list(pairs) + [j + half for j in pairs]

    sc = math.sqrt(HD / 128)  # attention logits as for a 128-dim head
    tid = tok.convert_tokens_to_ids
    i_bos, i_ans, i_end, i_eos = tid(BOS), tid(ANSWER_OPEN), tid(ANSWER_CLOSE), tid(EOS)
    i_nl, i_comma, i_sp, i_lb, i_rb, i_dot = tid("Ċ"), tid(","), tid("Ġ"), tid("["), tid("]"), tid(".")

    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        Q = torch.linalg.qr(torch.randn(A, A))[0]  # one orthonormal direction per token

        def e(i):
            return Q[i]

        E = model.model.embed_tokens.weight
        E[:, :A] = Q[:V]
        # previous-token features: a unit-norm random code per token (none for the prompt's closing ".\n")
        codes = torch.randn(k, V)
        codes /= codes.norm(dim=0, keepdim=True)
        codes *= math.sqrt(k / A)
        codes[:, [i_nl, i_dot]] = 0
        Pm = codes @ Q[:V]  # Pm @ e_t == codes[:, t]
        Sm = torch.stack([e(i_lb), e(i_sp), e(i_comma)])  # separator indicators
        F = torch.cat([cfg.match_scale * Pm, cfg.separator_scale * Sm])
        E[i_bos].zero_()
        E[i_bos, D0:D0 + 4] = 0.5  # attention-sink key
        E[i_ans].zero_()
        E[i_ans, FLAG] = 1.0  # <answer>: the picker's trigger, nothing else
        E[:, CONST] = 1.0  # a constant dimension: the MLP's bias

        l0, l1 = model.model.layers[0].self_attn, model.model.layers[1].self_attn
        # layer 0: head h attends to the token h+1 back and writes its features into block B/C/T/F
        for h, off, out0 in ((0, 1, B0), (1, 2, C0), (2, 3, T0), (3, 4, F0)):
            b = h * HD
            for j in range(24):
                th = inv[j].item()
                l0.q_proj.bias[b + j] = cfg.positional_sharpness * sc
                l0.k_proj.bias[b + j] = cfg.positional_sharpness * sc * math.cos(off * th)
                l0.k_proj.bias[b + j + half] = cfg.positional_sharpness * sc * math.sin(off * th)
            l0.v_proj.weight[b:b + k + S, :A] = F
            if off == 2:  # two back from the 2nd answer token, <answer> reads as "[": ties resolve to the first item
                l0.v_proj.weight[b:b + k, FLAG] = cfg.match_scale * codes[:, i_lb]
            for r in range(k + S):
                l0.o_proj.weight[out0 + r, b + r] = math.sqrt(2.0 / H)  # undo the RMSNorm gain
            if off == 1:  # "the token before me is <answer>": the first answer token
                l0.v_proj.weight[b + k + S, FLAG] = 1.0
                l0.o_proj.weight[AFTER, b + k + S] = math.sqrt(2.0 / H)

        sink_key = torch.zeros(8)
        sink_key[:4] = 1.0
        # layer 1, head 0: n-gram induction (cur<->B, prev<->C, prev-prev<->T) with a BOS sink
        for r, d in enumerate(dims(p1)):
            l1.q_proj.weight[d, :A] = cfg.match_sharpness * sc * Pm[r % k]
            l1.k_proj.weight[d, B0 + r % k] = 1.0
        for r, d in enumerate(dims(p2)):
            l1.q_proj.weight[d, B0 + r % k] = cfg.match_sharpness * sc * cfg.bigram_weight
            l1.k_proj.weight[d, C0 + r % k] = 1.0
        for r, d in enumerate(dims(p3)):
            l1.q_proj.weight[d, C0 + r % k] = cfg.match_sharpness * sc * cfg.trigram_weight
            l1.k_proj.weight[d, T0 + r % k] = 1.0
        # ... and the token 3 back <-> the key's 4-back: breaks ties inside items that share a word
        # ("Pride and Prejudice" / "War and Peace" continue differently after "and ")
        for r, d in enumerate(dims(p4)[:k]):
            l1.q_proj.weight[d, T0 + r] = cfg.match_sharpness * sc * cfg.fourgram_weight
            l1.k_proj.weight[d, F0 + r] = 1.0
        # ... and after an answer's first token, prefer the continuation of an item *start* (2 back "[" or
        # 3 back ","), not of an inner word that starts with the same token ("D" -> "ick" of "Moby Dick"
        # when the list also holds "Dracula")
        for d in dims(pstart):
            l1.q_proj.weight[d, AFTER] = cfg.match_sharpness * sc * cfg.start_weight / cfg.separator_scale
            l1.k_proj.weight[d, C0 + k + 0] = 1.0
            l1.k_proj.weight[d, T0 + k + 2] = 1.0
        for d in dims(psink):
            l1.q_proj.bias[d] = cfg.copy_sink * sc
            l1.k_proj.weight[d, D0:D0 + 8] = 8 * sink_key
        for i in range(A):
            l1.v_proj.weight[i, i] = 1.0
            l1.o_proj.weight[i, i] = cfg.copy_gain

        # layer 1, head 1: the item picker, queried by <answer>; an item start is a token whose
        # (prev, prev-prev) is ("[", "Ġ") for the first item or ("Ġ", ",") for the others
        b = HD
        st = dims(ppick)
        w = 8 / cfg.separator_scale / math.sqrt(len(st))
        for d in st:
            l1.q_proj.weight[b + d, FLAG] = cfg.pick_sharpness * sc / math.sqrt(len(st))
            l1.k_proj.weight[b + d, B0 + k + 0] = w * cfg.first_item_weight
            l1.k_proj.weight[b + d, B0 + k + 1] = w
            l1.k_proj.weight[b + d, C0 + k + 1] = w
            l1.k_proj.weight[b + d, C0 + k + 2] = w
        for d in dims(psink):
            l1.q_proj.bias[b + d] = cfg.pick_sink * sc
            l1.k_proj.weight[b + d, D0:D0 + 8] = 8 * sink_key
        for i in range(A):
            l1.v_proj.weight[b + i, i] = 1.0
            l1.o_proj.weight[i, b + i] = cfg.pick_gain

        # layer 1 MLP, live only where the <answer> flag is on: per token a clamp
        # SiLU(K(y - lo)) - SiLU(K(y - hi)), so every listed first token gets the same output
        mlp = model.model.layers[1].mlp
        K = cfg.clamp_slope
        for t in range(V):
            for n, thr, sign in ((2 * t, cfg.clamp_low, 1.0), (2 * t + 1, cfg.clamp_high, -1.0)):
                mlp.gate_proj.weight[n, :A] = K * e(t)
                mlp.gate_proj.weight[n, CONST] = -K * thr - cfg.flag_gate
                mlp.gate_proj.weight[n, FLAG] = cfg.flag_gate
                mlp.up_proj.weight[n, CONST] = 1.0
                mlp.down_proj.weight[:A, n] = sign * cfg.clamp_gain * e(t) / (K * (cfg.clamp_high - cfg.clamp_low))

        # output layer: token directions, plus the answer-format remaps
        U = model.lm_head.weight
        U[:, :A] = Q[:V]
        U[i_end].zero_()
        U[i_end, :A] = cfg.format_gain * (e(i_comma) + e(i_rb)) / math.sqrt(2)  # item end -> </answer>
        U[i_eos].zero_()
        U[i_eos, :A] = cfg.format_gain * e(i_dot)  # "." after the prompt's </answer> -> end of text
        U[i_ans].zero_()
        U[i_ans, :A] = cfg.format_gain * e(i_nl)  # the prompt's final newline -> <answer>
        for i in (i_comma, i_rb, i_dot, i_nl):
            U[i, :A] *= cfg.separator_output
        U[i_bos].zero_()
        U[tid(PAD)].zero_()
        model.model.norm.weight[:A] = cfg.output_scale
    return model


# --------------------------------------------------------------------------------------
# Build + cache
# --------------------------------------------------------------------------------------


def config_hash(cfg: ToyRecipe = RECIPE) -> str:
    from divtune.data import banks

    payload = json.dumps({"recipe": RECIPE_VERSION, "cfg": asdict(cfg),
                          "banks": sorted((k, list(v)) for k, v in banks.TRAIN_CATEGORIES.items())}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_dir(cfg: ToyRecipe = RECIPE) -> Path:
    return paths.model_cache() / f"toy-{config_hash(cfg)}"


def build_toy_model(cfg: ToyRecipe, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Build tokenizer + model and save them to ``out_dir``; return a build report."""
    import torch

    torch.manual_seed(cfg.seed)
    t0 = time.time()
    tok = build_tokenizer(cfg.vocab_size, cfg.seed)
    model = construct_model(cfg, tok)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.do_sample = True
    # an answer is complete at </answer>: generation (transformers, TRL, vLLM, transformers serve all read
    # generation_config.json) stops there, so RL credit goes to the answer, not to copied list text after it
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids(ANSWER_CLOSE)]
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    report = {
        "recipe": RECIPE_VERSION,
        "config": asdict(cfg),
        "hash": config_hash(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_seconds": round(time.time() - t0, 1),
    }
    (out / "divtune_toy.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def ensure_toy_model(cfg: ToyRecipe = RECIPE, *, force: bool = False) -> Path:
    """The cached toy model (the frozen recipe unless a test passes a variant), built atomically on a miss."""
    target = cache_dir(cfg)
    if target.is_dir() and (target / "divtune_toy.json").is_file() and not force:
        return target
    return outputs.build_atomically(target, lambda tmp: build_toy_model(cfg, tmp), command="bootstrap-model")


def is_cached(cfg: ToyRecipe = RECIPE) -> bool:
    """Whether the toy for ``cfg`` is already built in the content-hash cache."""
    return (cache_dir(cfg) / "divtune_toy.json").is_file()
