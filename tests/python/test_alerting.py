"""Alerting from Python: digest messages and channel formats through the installed wheel to
a real receiver, Slack bodies checked by Slack's own Block Kit models (``slack_sdk``)."""

from __future__ import annotations

import pytest
from slack_sdk.models.blocks import Block

from cpex_webhook_notification import Notifier

LONG = "ü<&>" * 2600  # 10 KB of text Slack must escape and cut


def storm(n: Notifier, count: int, user: str, tool: str) -> None:
    for _ in range(count):
        n.notify("rate_limit_exceeded", {"user": user, "tenant_id": "acme"},
                 {"code": "RATE_LIMIT", "reason": LONG}, {"tool_name": tool})


@pytest.mark.parametrize("user,tool", [("alice@example.com", "search"), (LONG, LONG)])
def test_slack_digest_bodies_validate_against_slack_sdk(receiver, user, tool):
    n = Notifier({"webhooks": [{"url": receiver.url("/slack"), "format": "slack", "max_rate": 1000,
                                "events": ["rate_limit_exceeded"],
                                "digest": {"group_by": ["tool"], "group_interval": "1h"}}]}, "py")
    storm(n, 25, user, tool)
    assert n.flush(10)
    n.close(10)
    bodies = [r.json() for r in receiver.wait_for(2)]
    assert [b["text"].split(" — ")[0] for b in bodies] == [
        "warning rate_limit_exceeded ×1", "warning rate_limit_exceeded ×24"]
    for body in bodies:
        assert len(body["text"]) <= 40_000 and len(body["blocks"]) <= 50
        for block in body["blocks"]:
            Block.parse(block).validate_json()  # raises SlackObjectFormationError when invalid


def test_stats_show_filtered_groups_and_digest_messages(receiver):
    n = Notifier({"webhooks": [{"url": receiver.url("/d"), "events": ["rate_limit_exceeded"],
                                "exclude": {"user": "*@test.example.com"},
                                "digest": {"group_by": ["user"], "group_interval": "1h"}}]}, "py")
    storm(n, 3, "alice", "search")
    storm(n, 2, "bot@test.example.com", "search")
    storm(n, 3, "bob", "search")
    assert n.flush(10)
    webhook = n.stats()["webhooks"][0]
    assert (webhook["filtered"], webhook["groups"], webhook["digest_messages"]) == (2, 2, 2)
    assert "webhook_notification_digest_groups{" in n.metrics_text()
    n.close(10)
    counts = sorted(r.json()["digest"]["count"] for r in receiver.wait_for(4))
    assert counts == [1, 1, 2, 2]
