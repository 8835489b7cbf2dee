"""``divtune synthesize``: write a seeded training dataset of one task to a file, and say what was written."""

from __future__ import annotations

import os


def synthesize_file(task: str, output: str | os.PathLike, *, num: int, seed: int, categories: list[str] | None,
                    min_len: int, max_len: int) -> str:
    """Write ``num`` synthesized records of ``task`` (lists, math, pairs) to ``output``; a one-line report."""
    if task == "pairs":
        from divtune.data.pairs import synthesize_pairs, write_pairs

        pairs = synthesize_pairs(num, seed, categories)
        p = write_pairs(pairs, output)
        same = sum(e.label for e in pairs)
        return f"wrote {len(pairs)} pairs ({same} same, {len(pairs) - same} different) to {p}"
    if task == "math":
        from divtune.data.math import synthesize_arithmetic, write_jsonl

        ex = synthesize_arithmetic(num, seed)
        return f"wrote {len(ex)} records to {write_jsonl(ex, output)}"
    from divtune.data.lists import synthesize_lists
    from divtune.data.lists import write_jsonl  # type: ignore[no-redef]

    ex = synthesize_lists(num, seed, categories, min_len, max_len)
    return f"wrote {len(ex)} records to {write_jsonl(ex, output)}"
