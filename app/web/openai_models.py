"""Bodies of the OpenAI-compatible images API (`/v1/images/*`, `/v1/models`), with OpenAI's field names and
shapes. Requests accept and ignore fields they do not know (OpenAI adds new ones often)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ImageGenerationRequest(BaseModel):
    """`POST /v1/images/generations`."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    prompt: str
    model: str | None = Field(None, description="A model from GET /v1/models, or an OpenAI name (the loaded model).")
    n: int | None = Field(1, description="Images, 1 to 8.")
    size: str | None = Field(None, description="WIDTHxHEIGHT within the model's sizes, or auto (its native size).")
    response_format: Literal["url", "b64_json"] | None = "url"
    quality: str | None = Field(None, description="Accepted and ignored.")
    style: str | None = Field(None, description="Accepted and ignored.")
    user: str | None = Field(None, description="Accepted and ignored.")
    output_format: Literal["png"] | None = Field(None, description="Only png.")
    stream: Literal[False] | None = Field(None, description="Streaming is not supported.")


class ImageEditRequest(ImageGenerationRequest):
    """The form fields of `POST /v1/images/edits` (multipart, beside the `image` and `mask` files)."""


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = Field(None, description="The prompt as given (it is not rewritten here).")


class ImagesResponse(BaseModel):
    created: int = Field(description="Unix time, seconds.")
    data: list[ImageData]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error of the OpenAI-compatible routes, in OpenAI's shape."""

    error: ErrorDetail


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "ai-artist"


class ModelsList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]
