"""JSON errors: every error response is ``{"error": "<what and which field>"}``, never a trace."""

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error the client should see, with its HTTP status (400 unless told)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=message), status


def _handle_api_error(exc: APIError) -> tuple[Response, int]:
    return _error(exc.message, exc.status)


def _handle_http_exception(exc: HTTPException) -> Response | tuple[Response, int]:
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.max_content_length
        return _error(f"body: larger than the limit of {limit} bytes", 400)
    response = exc.get_response()  # keeps headers such as Allow on a 405
    if exc.code == 405:
        allowed = ", ".join(sorted(m.strip() for m in response.headers.get("Allow", "").split(",")))
        message = (
            f"method {request.method} not allowed on {request.path[:200]} (allowed: {allowed})"
        )
    elif exc.code == 404:
        message = f"no such path: {request.path[:200]}"
    else:
        message = f"{exc.name.lower()}: {exc.description}"
    response.set_data(jsonify(error=message).get_data())
    response.content_type = "application/json"
    return response


def _handle_unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("Unhandled error on %s %s", request.method, request.path)
    return _error("internal server error", 500)


def register_error_handlers(app: Flask) -> None:
    """Answer every error of ``app`` in JSON; log unexpected ones with their traceback."""
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
