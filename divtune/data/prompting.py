"""How a list-selection prompt becomes chat messages: optional system prompt and few-shot turns.

Small instruct models may not follow the ``<answer>`` format from the instruction alone (raw
SmolLM2-135M: 0 % valid at T=1.0 on the held-out lists); a system prompt and worked examples are
"a prompt it can follow".  The same style is used for training and evaluation, so the numbers
compare like with like.  The shots use lists from categories that are neither trained nor
held out, so they leak no answer.
"""

from __future__ import annotations

from divtune.data.templates import TEMPLATES, render_prompt

SHOTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("circle", "square", "triangle", "hexagon"), "triangle"),
    (("iron", "copper", "gold", "silver", "tin"), "silver"),
    (("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"), "Wednesday"),
)
DEFAULT_SYSTEM = ("You answer list-selection requests with exactly one item from the list, written as "
                  "<answer>item</answer> and nothing else.")


def to_messages(prompt: str, system_prompt: str | None = None, few_shot: int = 0) -> list[dict[str, str]]:
    if not 0 <= few_shot <= len(SHOTS):
        raise ValueError(f"few_shot must be in 0..{len(SHOTS)}, got {few_shot}")
    msgs: list[dict[str, str]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for items, answer in SHOTS[:few_shot]:
        msgs.append({"role": "user", "content": render_prompt(TEMPLATES[0], items)})
        msgs.append({"role": "assistant", "content": f"<answer>{answer}</answer>"})
    msgs.append({"role": "user", "content": prompt})
    return msgs
