"""Creative-writing prompts: the eight tasks of GAPO Table 1 (section 6.3).

Wording as in Table 1; the trailing period is the one the paper's Appendix C tables show
("Write a haiku in English.", "Tell a joke.", ...).  The haiku prompt is also the one of Figure 6
(t-SNE of 1500 haikus).  The paper samples 100 outputs per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CreativePrompt:
    id: str
    prompt: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "prompt": self.prompt}


CREATIVE_PROMPTS: tuple[CreativePrompt, ...] = (
    CreativePrompt("story", "Write a story with no more than 100 words."),
    CreativePrompt("poem", "Write a poem with no more than 100 words."),
    CreativePrompt("haiku", "Write a haiku in English."),
    CreativePrompt("mystery_opening", "Craft a one-sentence mystery opening."),
    CreativePrompt("dialogue", "Compose a two-line dialogue between two characters."),
    CreativePrompt("fruit_pitch", "Pitch an idea for a new fruit in one sentence."),
    CreativePrompt("joke", "Tell a joke."),
    CreativePrompt("pop_chorus", "Write only the chorus for a pop song."),
)

HAIKU = CREATIVE_PROMPTS[2]


def default_prompts() -> list[CreativePrompt]:
    return list(CREATIVE_PROMPTS)
