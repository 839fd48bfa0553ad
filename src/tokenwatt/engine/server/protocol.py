"""OpenAI request bodies (validated with pydantic) and the response/error bodies we send.

Only ``n=1`` is supported. Unknown fields are ignored, like OpenAI's own server does for
fields it does not know. Extension fields: ``ignore_eos`` (bool) in requests, and
``usage.energy`` in responses (see ``EnergyShare.to_dict``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from tokenwatt.errors import ConfigError

from ..engine import Completion
from ..request import FinishReason, InvalidRequestError
from ..sampling import SamplingParams

__all__ = [
    "ApiError",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "StreamOptions",
    "error_body",
    "parse_body",
    "usage_body",
]


class ApiError(Exception):
    """An error to return as an OpenAI-style body with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_ = type_
        self.param = param
        self.code = code
        self.headers = headers or {}


def error_body(err: ApiError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {
        "error": {"message": err.message, "type": err.type_, "param": err.param, "code": err.code}
    }


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` matters."""

    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # ``null`` means "the default" for every optional field, as in OpenAI's API.
    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    # the range torch.Generator.manual_seed accepts; beyond it is a 400, not a failed generation
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    user: str | None = None
    ignore_eos: StrictBool | None = None

    def sampling(self, max_tokens: int) -> SamplingParams:
        """The engine's parameters (raises ApiError 400 on bad values)."""
        if self.n not in (None, 1):
            raise ApiError(400, "only n=1 is supported", param="n")
        for param, value in self._unsupported().items():
            if value is not None and value is not False:
                # ignoring them would hand back a result the client did not ask for
                raise ApiError(
                    400,
                    f"{param}={value!r} is not supported by this server; leave it out",
                    param=param,
                )
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        try:
            return SamplingParams(
                max_tokens=max_tokens,
                temperature=1.0 if self.temperature is None else self.temperature,
                top_p=1.0 if self.top_p is None else self.top_p,
                seed=self.seed,
                stop=stop,
                ignore_eos=bool(self.ignore_eos),
            )
        except ConfigError as exc:
            param = str(exc).split(" ", 1)[0]
            raise ApiError(400, str(exc), param=param) from exc

    def _unsupported(self) -> dict[str, object]:
        """OpenAI options this server accepts only at their off value."""
        return {}

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Common):
    """``POST /v1/completions``."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16
    echo: StrictBool | None = None
    logprobs: int | None = None

    def _unsupported(self) -> dict[str, object]:
        return {"echo": self.echo, "logprobs": self.logprobs}

    def prompt_value(self) -> str | list[int]:
        """The single prompt as text or token ids (batched prompts are refused)."""
        p = self.prompt
        if isinstance(p, str):
            return p
        if not p:
            raise ApiError(400, "prompt is empty", param="prompt")
        if len(p) != 1 and not all(isinstance(x, int) for x in p):
            raise ApiError(
                400,
                "send one prompt per request (batched prompts are not supported)",
                param="prompt",
            )
        first = p[0]
        if isinstance(first, str):
            return first
        if isinstance(first, list):
            return [int(t) for t in first]
        return [int(t) for t in p if isinstance(t, int)]


class ChatMessage(BaseModel):
    """One chat message; content as a string or a list of text parts."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, "only text content parts are supported", param="messages")
            parts.append(part["text"])
        return "".join(parts)


class ChatCompletionRequest(_Common):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = None

    def _unsupported(self) -> dict[str, object]:
        return {"logprobs": self.logprobs, "top_logprobs": self.top_logprobs}


def parse_body(raw: bytes, model_cls: type[_Common]) -> Any:
    """Parse JSON ``raw`` into ``model_cls``; ApiError 400 naming the bad field otherwise."""
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        return model_cls.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()) if not _is_union_tag(p))
        if first.get("type") == "json_invalid":
            raise ApiError(400, f"the request body is not valid JSON: {first['msg']}") from exc
        if first.get("type") == "model_type":
            raise ApiError(400, "the request body must be a JSON object") from exc
        raise ApiError(400, f"{loc or 'body'}: {first['msg']}", param=loc or None) from exc


_TYPE_TAGS = frozenset({"str", "int", "float", "bool"})


def _is_union_tag(part: object) -> bool:
    """pydantic names the union member tried (``str``, ``list[int]``) in an error's location;
    the client only needs the field path."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part)


def check_max_tokens(value: int | None, param: str) -> None:
    """max_tokens must be a positive integer when given."""
    if value is not None and value < 1:
        raise ApiError(400, f"{param} must be >= 1, got {value}", param=param)


def invalid(exc: InvalidRequestError, param: str) -> ApiError:
    """The 400 for a request the engine refused."""
    code = "context_length_exceeded" if "context" in str(exc) else None
    return ApiError(400, str(exc), param=param, code=code)


def usage_body(c: Completion | None, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """OpenAI ``usage`` plus ``prompt_tokens_details.cached_tokens`` and ``energy``."""
    body: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": c.cached_tokens if c else 0},
    }
    if c is not None and c.energy is not None:
        body["energy"] = c.energy.to_dict()
    return body


def api_finish_reason(reason: FinishReason | None) -> str | None:
    """stop/length pass through; abort and error never reach a successful body."""
    return reason if reason in ("stop", "length") else None
