"""Fine-tune a same/different pair classifier for DARLING's classifier partitioner.

``divtune train-partitioner --data pairs.jsonl -o DIR``: a ``*ForSequenceClassification`` model (by default
two labels on top of the packaged all-MiniLM-L6-v2 encoder) is trained with the transformers ``Trainer`` on
labelled pairs (``{"text1", "text2", "label"}``, 1 = same answer), encoded exactly as the partitioner
encodes them (:func:`divtune.rewards.partition.encode_pairs`; P(same) = the last class).  A stratified
held-out split gives accuracy and F1 (and the F1-best threshold); the model, tokenizer and
``divtune_partitioner.json`` (metrics, settings, data digest) are written to ``DIR`` atomically, so ``DIR``
works as ``train.darling.partitioner: classifier`` + ``partitioner_path: DIR``.  With
``MLFLOW_TRACKING_URI`` set (or inside an active run) params and metrics go to MLflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from divtune.data.pairs import Pair, read_pairs
from divtune.digests import file_digest
from divtune.errors import DataError, DivtuneError, one_line

INFO_FILE = "divtune_partitioner.json"


@dataclass
class PartitionerTrainConfig:
    epochs: float = 3.0
    eval_fraction: float = 0.2
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_length: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 0

    def check(self) -> None:
        if not 0.0 < self.eval_fraction < 1.0:
            raise DivtuneError(f"--eval-fraction must be in (0, 1), got {self.eval_fraction}")
        if self.epochs <= 0:
            raise DivtuneError(f"--epochs must be > 0, got {self.epochs}")
        if self.learning_rate <= 0 or self.batch_size < 1 or self.max_length < 8:
            raise DivtuneError("learning rate must be > 0, batch size >= 1, max length >= 8")


@dataclass
class PartitionerTrainResult:
    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    train_pairs: int = 0
    eval_pairs: int = 0


def split_pairs(pairs: Sequence[Pair], eval_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Stratified by label; both parts hold both labels."""
    from sklearn.model_selection import train_test_split

    labels = [p.label for p in pairs]
    counts = {lab: labels.count(lab) for lab in (0, 1)}
    if min(counts.values()) < 2:
        raise DataError(f"pairs need at least 2 examples of each label to split off an evaluation set, "
                        f"got {counts[1]} same and {counts[0]} different")
    n_eval = max(2, round(len(pairs) * eval_fraction))
    if len(pairs) - n_eval < 2:
        raise DataError(f"{len(pairs)} pairs are too few for a held-out split of {eval_fraction}")
    tr, ev = train_test_split(list(pairs), test_size=n_eval, random_state=seed, stratify=labels)
    return tr, ev


def pair_metrics(labels: Sequence[int], p_same: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Accuracy / precision / recall / F1 of ``P(same) > threshold`` (the partitioner's rule), plus the
    threshold with the best held-out F1."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    y = np.asarray(labels)
    p = np.asarray(p_same, dtype=float)
    pred = (p > threshold).astype(int)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "positive_rate": float(y.mean()),
    }
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    f1s = [f1_score(y, (p > t).astype(int), zero_division=0) for t in grid]
    best = int(np.argmax(f1s))
    out["best_threshold"] = float(grid[best])
    out["best_threshold_f1"] = float(f1s[best])
    return out


def _load_base(base: str | os.PathLike | None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from divtune.models.loading import local_model_path

    path = local_model_path(base, "base model")
    if not (path / "config.json").is_file():
        raise DivtuneError(f"base model {path} has no config.json (not a transformers checkpoint)")
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, id2label={0: "different", 1: "same"}, label2id={"different": 0, "same": 1},
            ignore_mismatched_sizes=True, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - not loadable as a sequence classifier
        raise DivtuneError(f"cannot build a pair classifier from {path}: {one_line(exc, 200)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return path, tok, model


def _mlflow_wanted() -> bool:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return True
    try:
        import mlflow

        return mlflow.active_run() is not None
    except ImportError:
        return False


def _log_mlflow(params: dict[str, Any], metrics: dict[str, float], info_path: Path) -> None:
    import mlflow

    from divtune.registry import tracking

    if mlflow.active_run() is not None:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({f"partitioner_{k}": v for k, v in metrics.items()})
        mlflow.log_artifact(str(info_path))
        return
    tracking.setup()
    with mlflow.start_run(experiment_id=tracking.experiment_id("divtune"), run_name="train-partitioner",
                          tags={tracking.STAGE_TAG: "train_partitioner"}):
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(info_path))


def train_partitioner(data: str | os.PathLike, output_dir: str | os.PathLike, *, base: str | os.PathLike | None = None,
                      config: PartitionerTrainConfig | None = None, log_to_mlflow: bool | None = None
                      ) -> PartitionerTrainResult:
    """Train a pair classifier on ``data`` (pairs JSONL) and write it to ``output_dir`` (atomically)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from divtune import outputs, paths
    from divtune.rewards.partition import encode_pairs

    cfg = config or PartitionerTrainConfig()
    cfg.check()
    data_path = Path(data)
    pairs = read_pairs(data_path)
    train_pairs, eval_pairs = split_pairs(pairs, cfg.eval_fraction, cfg.seed)
    set_seed(cfg.seed)
    base_path, tok, model = _load_base(base)

    def dataset(ps: Sequence[Pair]):
        enc = encode_pairs(tok, [(p.text1, p.text2) for p in ps], cfg.max_length, padding=False)
        return Dataset.from_dict({**enc, "labels": [p.label for p in ps]})

    train_ds, eval_ds = dataset(train_pairs), dataset(eval_pairs)
    out = Path(output_dir)
    metrics: dict[str, float] = {}

    def build(tmp: Path) -> None:
        args = TrainingArguments(
            output_dir=str(tmp / "_trainer"), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=max(cfg.batch_size, 64),
            weight_decay=cfg.weight_decay, warmup_steps=int(cfg.warmup_ratio * cfg.epochs * len(train_ds) / cfg.batch_size),
            eval_strategy="no", save_strategy="no", logging_steps=max(1, len(train_ds) // cfg.batch_size // 4),
            report_to="none", seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=os.environ.get("DIVTUNE_NO_PROGRESS") == "1",
            use_cpu=not torch.cuda.is_available(), bf16=False, dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, processing_class=tok,
                          data_collator=DataCollatorWithPadding(tok))
        train_out = trainer.train()
        pred = trainer.predict(eval_ds)
        logits = torch.as_tensor(np.asarray(pred.predictions), dtype=torch.float32)
        p_same = logits.softmax(-1)[:, -1].tolist()  # the partitioner's P(similar): the last class
        metrics.update(pair_metrics([p.label for p in eval_pairs], p_same))
        metrics["train_loss"] = float(train_out.training_loss)
        metrics["train_seconds"] = float(train_out.metrics.get("train_runtime", 0.0))
        import shutil

        shutil.rmtree(tmp / "_trainer", ignore_errors=True)
        trainer.model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        info = {"base": str(base_path), "data": str(data_path), "data_digest": file_digest(data_path),
                "train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs), "settings": asdict(cfg),
                "metrics": metrics, "input": "[CLS] text1 [SEP] text2 [SEP] (rewards.partition.encode_pairs); P(same) = softmax(logits)[-1]",
                "suggested_threshold": metrics["best_threshold"]}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))

    outputs.build_atomically(out, build, command="train-partitioner")
    if log_to_mlflow if log_to_mlflow is not None else _mlflow_wanted():
        params = {"base": str(base_path), "data": str(data_path), "data_digest": file_digest(data_path),
                  "train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs), "output_dir": str(out), **asdict(cfg)}
        _log_mlflow(params, metrics, out / INFO_FILE)
    return PartitionerTrainResult(output_dir=out, metrics=metrics, train_pairs=len(train_pairs),
                                  eval_pairs=len(eval_pairs))
