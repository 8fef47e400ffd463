"""The failures a flaky network or provider causes, as the SDKs raise them, map onto transient
StorageErrors (the retry layer's business); an error answer stays what its status says.

The same faults, sent for real through tests/faultproxy.py, are in
tests/integration/test_storage_faults.py; these are the error values no proxy produces.
"""

from __future__ import annotations

import http.client

import oss2.exceptions
import pytest
import requests
import urllib3.exceptions
from azure.core.exceptions import (
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpRequest, RequestsTransportResponse

from storage_adapters import azure_blob, oss
from storage_adapters.errors import ErrorKind


def _azure_answer(status: int, code: str) -> RequestsTransportResponse:
    raw = requests.Response()
    raw.status_code = status
    raw.headers["x-ms-error-code"] = code
    raw._content = b"not xml"
    return RequestsTransportResponse(HttpRequest("GET", "http://127.0.0.1/a/c/k"), raw)


def _cut() -> requests.exceptions.ChunkedEncodingError:
    cut = urllib3.exceptions.ProtocolError(
        "Connection broken: IncompleteRead", http.client.IncompleteRead(b"x", 10)
    )
    return requests.exceptions.ChunkedEncodingError(cut, cut)


@pytest.mark.parametrize(
    "error",
    [
        IncompleteReadError("cut short", error=_cut()),
        DecodeError("the body did not parse"),
        HttpResponseError(_cut(), error=_cut()),  # azure-core's "Unable to stream download."
        ServiceResponseError("Connection aborted", error=ConnectionResetError(104, "reset")),
        _cut(),
        http.client.IncompleteRead(b"", 5),
    ],
    ids=["incomplete", "decode", "stream", "aborted", "chunked", "http.client"],
)
def test_azure_network_failures_are_transient(error: BaseException) -> None:
    mapped = azure_blob._translate(error, "k")
    assert (mapped.kind, mapped.transient) == (ErrorKind.UNAVAILABLE, True)


def test_an_azure_error_answer_that_does_not_parse_is_judged_by_its_status() -> None:
    error = DecodeError("Cannot deserialize", response=_azure_answer(404, "BlobNotFound"))
    mapped = azure_blob._translate(error, "k")
    assert (mapped.kind, mapped.transient, mapped.status) == (ErrorKind.NOT_FOUND, False, 404)
    busy = azure_blob._translate(
        DecodeError("Cannot deserialize", response=_azure_answer(503, "ServerBusy")), "k"
    )
    assert (busy.kind, busy.transient) == (ErrorKind.RATE_LIMITED, True)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            oss2.exceptions.ServerError(503, {}, b"", {"Code": "ServerBusy", "Message": "busy"}),
            ErrorKind.RATE_LIMITED,
        ),
        (
            oss2.exceptions.ServerError(500, {}, b"", {"Code": "InternalError", "Message": "x"}),
            ErrorKind.UNAVAILABLE,
        ),
        (
            oss2.exceptions.RequestError(requests.exceptions.ConnectionError("reset")),
            ErrorKind.UNAVAILABLE,
        ),
        (
            oss2.exceptions.RequestError(requests.exceptions.ReadTimeout("slow")),
            ErrorKind.UNAVAILABLE,
        ),
        (_cut(), ErrorKind.UNAVAILABLE),
    ],
    ids=["server-busy", "internal-error", "reset", "read-timeout", "cut-short"],
)
def test_oss_faults_are_transient(error: BaseException, kind: ErrorKind) -> None:
    mapped = oss._translate(error, "k")
    assert (mapped.kind, mapped.transient) == (kind, True)
