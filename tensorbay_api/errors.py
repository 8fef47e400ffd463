"""TensorBay's error answer: `{"code": ..., "message": ...}`, the SDK raising by `code`."""

from __future__ import annotations

from fastapi.responses import JSONResponse

# The SDK maps these codes to its exceptions (tensorbay/exception.py); it ignores the
# status, but each code goes with TensorBay's own.
STATUS_CODES = {
    400: "InvalidParamsValue",
    401: "Unauthorized",
    403: "Forbidden",
    404: "ResourceNotExist",
    409: "NameConflict",
    422: "InvalidParamsValue",
    500: "InternalServerError",
}


class TensorBayError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "InvalidParamsValue")
        self.message = message
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse(
            status_code=self.status,
            content={"code": self.code, "message": self.message},
            headers=headers,
        )


def not_found(what: str) -> TensorBayError:
    return TensorBayError(404, f"{what} does not exist")


def invalid(message: str) -> TensorBayError:
    return TensorBayError(400, message)


def conflict(message: str) -> TensorBayError:
    return TensorBayError(409, message)
