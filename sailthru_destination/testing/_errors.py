"""The error a fake endpoint raises to answer ``{"error": code, "errormsg": text}``."""

from __future__ import annotations

from typing import Any

from ..transport._protocol import ErrorCode

__all__ = ["ApiError", "error_body"]


def error_body(code: int, message: str) -> dict[str, Any]:
    """Sailthru's error body: exactly these two keys (sailthru-client depends on that shape)."""
    return {"error": int(code), "errormsg": message}


class ApiError(Exception):
    """An API refusal: the HTTP status, Sailthru's error code and its message."""

    def __init__(self, status: int, code: ErrorCode | int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = int(code)
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body Sailthru sends for this error."""
        return error_body(self.code, self.message)


def invalid_parameter(message: str) -> ApiError:
    """HTTP 400, error 2: a missing or invalid parameter."""
    return ApiError(400, ErrorCode.INVALID_PARAMETER, message)
