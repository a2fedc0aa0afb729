"""The status page's HTML for states a running test cannot easily reach."""

from __future__ import annotations

from pipeline.service.snapshot import ServiceStatus
from pipeline.service.status import render_html


def test_waiting_for_the_api_and_an_unreachable_inbox_are_said_plainly() -> None:
    html = render_html(
        ServiceStatus.from_json(
            {
                "inbox": "/srv/share/inbox",
                "inbox_ok": False,
                "inbox_problem": "the inbox folder /srv/share/inbox is not reachable (No such file"
                " or directory); waiting for it to come back (a network share outage?)",
                "waiting_for_api": True,
                "api_problem": "waiting for the API: 503 <Service Unavailable>",
                "retry_in": 20.0,
                "campaigns": {
                    "B2B-DK-SPRING": {
                        "folder": "/srv/share/inbox/B2B-DK-SPRING",
                        "known": True,
                        "waiting": [{"name": "a&b.xlsx"}],
                        "settling": [],
                        "in_progress": None,
                    }
                },
                "in_progress": 0,
                "totals": {"processed": 0, "failed": 0},
                "recent": [],
                "exports": [
                    {"name": "daily", "next_run": "2026-11-28T02:00:00+01:00", "state": "ok"}
                ],
            }
        )
    )
    assert (
        '<p class="bad" id="api-state">API: waiting for the API — waiting for the API: 503 '
        "&lt;Service Unavailable&gt; (next try in 20.0 s). Files wait in the inbox and are "
        "taken when it answers again.</p>"
    ) in html
    assert "is not reachable (No such file or directory); waiting for it to come back" in html
    assert "<td>a&amp;b.xlsx</td>" in html
    assert "<b>1</b> waiting" in html
    assert "<td>daily</td><td>2026-11-28T02:00:00+01:00</td><td>ok</td>" in html


def test_a_previewed_file_says_what_would_be_uploaded() -> None:
    html = render_html(
        ServiceStatus.from_json(
            {
                "inbox": "/i",
                "campaigns": {},
                "totals": {},
                "recent": [
                    {
                        "campaign": "B2B-DK-SPRING",
                        "name": "check.xlsx",
                        "preview": True,
                        "outcome": "processed",
                        "at": "2026-11-27T18:00:00+01:00",
                        "counts": {"rows_read": 10, "accepted": 6, "rejected": 4},
                        "rejects": [],
                    }
                ],
            }
        )
    )
    assert (
        "<td>2026-11-27 18:00 (UTC+01:00)</td><td>B2B-DK-SPRING</td><td>check.xlsx</td>"
        "<td>checked (preview): processed</td><td>10 read, 6 would be uploaded, 4 rejected</td>"
    ) in html


def test_stray_files_at_the_top_of_the_inbox_are_pointed_out() -> None:
    html = render_html(
        ServiceStatus.from_json(
            {"inbox": "/i", "campaigns": {}, "totals": {}, "stray": ["<x>.csv"]}
        )
    )
    assert (
        '<p class="bad" id="stray">Not taken: &lt;x&gt;.csv — files at the top of the inbox '
        "belong to no campaign. Move them into the folder named after their campaign.</p>"
    ) in html
