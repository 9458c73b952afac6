"""Errors of the OpenAI-compatible routes in OpenAI's shape, `{error: {message, type, param, code}}`, with
OpenAI's status codes (a bad parameter is a 400, not FastAPI's 422). `OpenAIRoute` converts whatever a
route raises, including request validation, so every answer of these routes has that shape."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from .openai_models import ErrorDetail, ErrorResponse

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
         404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
         429: "rate_limit_exceeded"}
NO_RETRY = {"x-should-retry": "false"}
"""The openai package retries 409, 429 and 5xx by itself; a failed or cancelled generation must not be run again."""


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        detail = ErrorDetail(
            message=self.message, type=TYPES.get(self.status, "server_error"), param=self.param, code=self.code
        )
        return JSONResponse(ErrorResponse(error=detail).model_dump(), status_code=self.status, headers=self.headers)


def validation_error(error: RequestValidationError) -> OpenAIError:
    return validation_error_of(list(error.errors()))


def validation_error_of(errors: list) -> OpenAIError:
    """The first bad parameter of pydantic's `errors()`, named as OpenAI does."""
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = location[0] if location else None
    if first.get("type") == "missing" and param:
        message = f"Missing required parameter: '{param}'."
    elif param:
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
    else:
        message = f"Invalid request body: {first.get('msg', 'invalid')}."
    return OpenAIError(400, message, param=param, code="missing_required_parameter" if "Missing" in message else None)


class OpenAIRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except OpenAIError as error:
                return error.response()
            except RequestValidationError as error:
                return validation_error(error).response()
            except HTTPException as error:
                return OpenAIError(error.status_code, str(error.detail), headers=error.headers).response()

        return answer
