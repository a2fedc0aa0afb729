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


def test_canary_password_appears_nowhere_against_the_sandbox(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import random
    import tomllib

    from pipeline.api import HeroBaseClient, RetryPolicy
    from pipeline.clock import FakeClock
    from pipeline.config import ApiSettings
    from pipeline.sandbox import DEMO_SEED_PATH, DEMO_USER, Fault, Sandbox

    seed = tomllib.loads(DEMO_SEED_PATH.read_text(encoding="utf-8"))
    for account in seed["accounts"]:
        if account["username"] == DEMO_USER:
            account["password"] = CANARY
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG), Sandbox(seed=seed) as sb:
        settings = ApiSettings(
            url=sb.url, user=DEMO_USER, password=CANARY, read_timeout=0.3, max_retries=1
        )
        client = HeroBaseClient(
            settings, clock=FakeClock(), retry=RetryPolicy.from_settings(settings, random.Random(1))
        )
        texts += [repr(client), repr(settings), str(settings), repr(client.account())]
        faults = ["drop_after", "drop_before", "html", "garbled", "status_after", "delay"]
        for kind in faults:
            sb.add_fault(Fault(kind, route="*", delay=1.0, times=2))
            for call in (
                lambda: client.create_lead("B2B-DK-SPRING", {"name": "x", "phone": "+4512345678"}),
                client.campaigns,
            ):
                try:
                    call()
                except ApiError as exc:
                    texts += [str(exc), repr(exc), exc.excerpt]
                    texts.append("".join(traceback.format_exception(exc)))
            sb.clear_faults()
        for call in (
            lambda: client.import_example("INTERNAL-TEST"),  # 403
            lambda: client.create_lead("B2B-DK-SPRING", {"phone": CANARY}),  # 400 echoing it
            lambda: HeroBaseClient(
                ApiSettings(url=sb.url, user="nobody@x", password=CANARY)
            ).campaigns(),  # 401
        ):
            try:
                call()
            except ApiError as exc:
                texts += [str(exc), repr(exc), exc.excerpt]
                texts.append("".join(traceback.format_exception(exc)))
        client.close()
    texts.append(caplog.text)
    blob = "\n".join(texts)
    token = base64.b64encode(f"{DEMO_USER}:{CANARY}".encode()).decode()
    assert CANARY not in blob
    assert token not in blob
    assert "RateLimited" not in blob
    assert blob.count("Uncertain") >= len(faults)


def test_credentials_in_the_url_never_show_and_messages_stay_readable() -> None:
    fake = FakeAdapter()
    fake.on("GET /projects", connect_error())
    client, _ = make_client(fake, password="pw", max_retries=0)
    with pytest.raises(ApiError) as info:
        client.projects()
    assert info.value.url == "https://tenant.example/api/projects"
    from pipeline.api.transport import safe_url

    assert safe_url("https://u:secret@h.example/api?x=1") == "https://h.example/api?x=1"
