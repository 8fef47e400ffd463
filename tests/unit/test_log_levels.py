"""What the log holds at each level: the SDKs' per-request records only when debugging."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from bayport.logs import configure_logging
from tests.conftest import make_settings

AZURE_HTTP = "azure.core.pipeline.policies.http_logging_policy"


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("WARNING", False), ("DEBUG", True)])
def test_the_azure_sdks_request_records_are_left_out_unless_debugging(
    level: str, shown: bool, tmp_path: Path
) -> None:
    out = io.StringIO()
    root = logging.getLogger()
    before = root.level
    handler = configure_logging(make_settings(tmp_path, log_level=level), stream=out)
    try:
        logging.getLogger(AZURE_HTTP).info("Request URL: 'http://example/block'")
        logging.getLogger(AZURE_HTTP).warning("a warning of the SDK")
        logging.getLogger("bayport.importer").info("job x succeeded")
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
        logging.getLogger(AZURE_HTTP).setLevel(logging.NOTSET)
    text = out.getvalue()
    assert ("Request URL" in text) is shown
    assert "a warning of the SDK" in text
    assert ("job x succeeded" in text) is (level != "WARNING")
