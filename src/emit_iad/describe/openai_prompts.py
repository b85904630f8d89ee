"""Prompts and reply schemas of the GPT backend (EMIT's description synthesis).

As in EMIT, the defect prompt shows a normal image, a defective image and its mask; the normal
prompt shows a normal image; an instance prompt shows the image (and mask) to be described.
Replies are JSON objects validated by pydantic; a reply that fails is asked again, then reported.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, ValidationError

from emit_iad.describe.tasks import DescriptionTask
from emit_iad.describe.template import readable
from emit_iad.llm_api import InvalidReply, is_refusal, parse_json_object
from emit_iad.llm_api.images import image_part

SYSTEM = (
    "You are an expert industrial quality inspector. You describe products and their defects "
    "precisely and factually, from what is visible in the images. Reply with one JSON object."
)


class NormalReply(BaseModel):
    characteristics: str = Field(min_length=20)


class DefectReply(BaseModel):
    visual_traits: str = Field(min_length=20)
    effect: str = Field(min_length=10)


class InstanceReply(BaseModel):
    description: str = Field(min_length=20)


SCHEMAS: dict[str, type[BaseModel]] = {
    "normal": NormalReply,
    "defect": DefectReply,
    "instance": InstanceReply,
}


def parse_reply(kind: str, text: str) -> tuple[str, str]:
    """``(text, effect)`` from a reply; raises :class:`InvalidReply` for anything unusable."""
    raw = parse_json_object(text)
    try:
        reply = SCHEMAS[kind].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "reply"
        raise InvalidReply(f"schema: {where}: {first['msg']}") from None
    values = reply.model_dump()
    if any(is_refusal(v) for v in values.values()):
        raise InvalidReply("refusal inside the JSON reply")
    if kind == "defect":
        return values["visual_traits"].strip(), values["effect"].strip()
    return next(iter(values.values())).strip(), ""


def messages(task: DescriptionTask, max_side: int = 512) -> list[dict]:
    """Chat messages for one task (images as base64 data URLs)."""
    obj = readable(task.object)
    if task.kind == "normal":
        content = [
            {"type": "text", "text": (
                f"This image shows a normal, defect-free {obj} from an industrial inspection "
                "line. Describe the normal visual characteristics an inspector checks: shape, "
                "parts, colour, texture, markings and their usual variation. "
                'Reply as JSON: {"characteristics": "<2-4 sentences>"}'
            )},
            image_part(task.reference_path, max_side),
        ]  # fmt: skip
    elif task.kind == "defect" and task.imagined:
        d = readable(task.defect)
        content = [
            {"type": "text", "text": (
                f"The image shows a normal {obj}. Without a picture of the defect, describe how a "
                f"'{d}' defect typically looks on such a product (appearance, shape, colour, "
                "typical size and place) and its likely effect. Reply as JSON: "
                '{"visual_traits": "<2-3 sentences>", "effect": "<1 sentence>"}'
            )},
            image_part(task.reference_path, max_side),
        ]  # fmt: skip
    elif task.kind == "defect":
        d = readable(task.defect)
        content = [
            {"type": "text", "text": (
                f"Image 1 is a normal {obj}. Image 2 is a {obj} with a '{d}' defect. Image 3 is "
                "the mask of that defect (white = defect pixels). Describe how this type of "
                "defect looks (appearance, shape, colour, typical size and place) and its likely "
                'effect on the product. Reply as JSON: {"visual_traits": "<2-3 sentences>", '
                '"effect": "<1 sentence>"}'
            )},
        ]  # fmt: skip
        if task.reference_path:
            content.append(image_part(task.reference_path, max_side))
        content += [
            image_part(task.image_path, max_side),
            image_part(task.mask_path, max_side, "L"),
        ]
    else:
        if task.defect is None:
            ask = f"This {obj} is normal. Describe this instance so that someone who cannot see it"
        elif task.imagined:
            ask = (
                f"This {obj} is normal. Describe this same instance as if it had a "
                f"'{readable(task.defect)}' defect, mostly in the {task.region} of the image, "
                "naming where the defect is and what it looks like, so that someone who cannot "
                "see it"
            )
        else:
            ask = (
                f"This {obj} has a '{readable(task.defect)}' defect, mostly in the "
                f"{task.region} of the image (the second image is its mask). Describe this "
                "instance, naming where the defect is and what it looks like, so that someone "
                "who cannot see it"
            )
        content = [
            {"type": "text", "text": (
                f"{ask} could picture it. Do not mention images or masks. "
                'Reply as JSON: {"description": "<2-3 sentences>"}'
            )},
            image_part(task.image_path, max_side),
        ]  # fmt: skip
        if task.mask_path:
            content.append(image_part(task.mask_path, max_side, "L"))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
