"""The password never shows: not in logs, error messages, reprs or formatted tracebacks."""

from __future__ import annotations

import base64
import logging
import traceback

import pytest
import requests

from pipeline.errors import ApiError
from tests.api.fakes import FakeAdapter, Reply, connect_error, make_client, reset_error

CANARY = "canary-Pw-8f3e1"


def test_canary_password_appears_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    echo = f"<html><title>Denied {CANARY}</title></html>"
    fake = FakeAdapter()
    fake.on("GET /campaigns", Reply(401, {"responseStatus": {"message": f"bad password {CANARY}"}}))
    fake.on("GET /projects", Reply(502, echo, {"Content-Type": "text/html"}))
    fake.on(
        "POST /leads",
        connect_error(),
        reset_error(),
        requests.exceptions.ReadTimeout("t"),
        Reply(400, {"responseStatus": {"errors": [{"fieldName": "x", "message": CANARY}]}}),
        Reply(200, f"garbled {CANARY}"),
    )
    fake.on("GET /myaccount", Reply(403, {}))
    client, _ = make_client(fake, password=CANARY, max_retries=1)
    texts: list[str] = [repr(client), str(client), repr(client.limiter)]
    with caplog.at_level(logging.DEBUG):
        for call in (
            client.campaigns,
            client.projects,
            client.account,
            *[lambda: client.create_lead("C1", {"name": "x"})] * 5,
        ):
            try:
                call()
            except ApiError as exc:
                texts += [str(exc), repr(exc), exc.excerpt, exc.url]
                texts.append("".join(traceback.format_exception(exc)))
    texts.append(caplog.text)
    blob = "\n".join(texts)
    token = base64.b64encode(f"api@x.example:{CANARY}".encode()).decode()
    assert CANARY not in blob
    assert token not in blob
    assert "api@x.example" in repr(client)
    assert len(caplog.records) > 0
