"""Instruction templates for list selection (GAPO paper, Appendix E, plus variants)."""

from __future__ import annotations

from collections.abc import Sequence

FORMAT_SUFFIX = "Format your response as follows: <answer>selected_item</answer>."

TEMPLATES: tuple[str, ...] = (
    "Please select one from these options:",  # the held-out evaluation template (template_id 0)
    "Pick exactly one option, ensuring uniform selection:",
    "Instruction: Please pick one from the following list:",
    "Take one from these choices:",
    "Please randomly select one option with equal probability:",
    "Pick one option from the list:",
    "Please choose one option from the list:",
    "Instruction: Select one from these choices:",
    "Select exactly one option at random:",
    "Please choose just one from the list",
    "Choose one item from this list:",
    "Select a single option from the following:",
    "From the list below, pick one item:",
    "Randomly choose one of these options:",
)


def render_prompt(template: str, items: Sequence[str]) -> str:
    """``'{template} [{a}, {b}, ...]. Format your response as follows: <answer>selected_item</answer>.'``"""
    return f"{template} [{', '.join(items)}]. {FORMAT_SUFFIX}"
