"""The FastMCP middleware through a real FastMCP server and its in-memory client, with
FastMCP's own RateLimitingMiddleware behind it. tests/run.sh runs this in the venv without
cpex, where fastmcp is installed."""

from __future__ import annotations

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware.rate_limiting import RateLimitingMiddleware

from cpex_webhook_notification.fastmcp import WebhookMiddleware

EVENTS = ["tool_success", "tool_error", "rate_limit_exceeded", "prompt_success", "resource_success"]


def server(receiver, limit: RateLimitingMiddleware | None = None) -> tuple[FastMCP, WebhookMiddleware]:
    mcp = FastMCP("tools")

    @mcp.tool
    def search(query: str) -> str:
        return f"found {query}"

    @mcp.tool
    def broken() -> str:
        raise ValueError("backend down")

    @mcp.prompt
    def greeting(name: str) -> str:
        return f"hello {name}"

    @mcp.resource("data://config")
    def settings() -> str:
        return "{}"

    middleware = WebhookMiddleware({"webhooks": [{"url": receiver.url("/hook"), "events": EVENTS}]})
    mcp.add_middleware(middleware)
    if limit is not None:
        mcp.add_middleware(limit)
    return mcp, middleware


async def test_tools_prompts_and_resources_raise_their_events(receiver):
    mcp, middleware = server(receiver)
    async with Client(mcp) as client:
        await client.call_tool("search", {"query": "x"})
        with pytest.raises(ToolError):
            await client.call_tool("broken", {})
        await client.get_prompt("greeting", {"name": "ada"})
        await client.read_resource("data://config")
    assert middleware.notifier.flush(10)
    got = {r.headers["x-webhook-event"]: r.json() for r in receiver.requests}
    assert sorted(got) == sorted(["tool_success", "tool_error", "prompt_success", "resource_success"])
    assert got["tool_success"]["metadata"] == {"tool_name": "search"}
    assert got["tool_error"]["metadata"]["tool_name"] == "broken"
    assert "backend down" in got["tool_error"]["metadata"]["error"]
    assert got["prompt_success"]["metadata"] == {"prompt_id": "greeting"}
    assert got["resource_success"]["metadata"] == {"resource_uri": "data://config"}
    assert got["tool_success"]["plugin"] == "FastMCP"
    middleware.notifier.close()


async def test_fastmcp_rate_limit_rejections_raise_rate_limit_exceeded(receiver):
    limit = RateLimitingMiddleware(max_requests_per_second=0.001, burst_capacity=4)
    mcp, middleware = server(receiver, limit)
    rejected = 0
    async with Client(mcp) as client:
        for _ in range(8):
            try:
                await client.call_tool("search", {"query": "x"})
            except Exception as e:  # the client sees FastMCP's rate-limit error
                assert "Rate limit exceeded" in str(e)
                rejected += 1
    assert rejected > 0, "the limiter rejected some calls"
    assert middleware.notifier.flush(10)
    limited = [r.json() for r in receiver.requests if r.headers["x-webhook-event"] == "rate_limit_exceeded"]
    assert len(limited) == rejected
    assert limited[0]["violation"]["code"] == "RATE_LIMIT"
    assert "Rate limit exceeded" in limited[0]["violation"]["reason"]
    assert limited[0]["metadata"] == {"tool_name": "search"}
    middleware.notifier.close()
