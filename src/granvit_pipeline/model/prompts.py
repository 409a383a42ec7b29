"""The paper's three prompt templates, configurable (DESIGN.md section 2)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

GLOBAL_CAPTION = "Describe in detail what is shown in the image in one paragraph"
BBOX2CAPTION = (
    "Describe the content contained within the normalized bounding box coordinates {box} "
    "in no more than 10 words."
)
CAPTION2BBOX = (
    "Please provide the bounding box coordinate of the region this sentence describes: {caption}"
)


class PromptTemplates(BaseModel):
    """Prompt strings; ``{box}`` is a :func:`~granvit_pipeline.model.box_codec.format_box`
    string (normalised xyxy), ``{caption}`` the region text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    global_caption: str = GLOBAL_CAPTION  # -> the image's global caption
    bbox2caption: str = BBOX2CAPTION  # must contain {box}; -> region text
    caption2bbox: str = CAPTION2BBOX  # must contain {caption}; -> box text

    @field_validator("bbox2caption")
    @classmethod
    def _has_box(cls, value: str) -> str:
        if "{box}" not in value:
            raise ValueError("bbox2caption template must contain '{box}'")
        return value

    @field_validator("caption2bbox")
    @classmethod
    def _has_caption(cls, value: str) -> str:
        if "{caption}" not in value:
            raise ValueError("caption2bbox template must contain '{caption}'")
        return value

    def global_prompt(self) -> str:
        """Prompt for the global-caption task."""
        return self.global_caption

    def bbox2caption_prompt(self, box_text: str) -> str:
        """Prompt asking for the text of the region written as ``box_text``."""
        return self.bbox2caption.replace("{box}", box_text)

    def caption2bbox_prompt(self, caption: str) -> str:
        """Prompt asking for the box of the region described by ``caption``."""
        return self.caption2bbox.replace("{caption}", caption)
