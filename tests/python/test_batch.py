"""Batched delivery seen from Python: an `otlp_logs` batch parsed by the OpenTelemetry
project's own protobuf classes (`opentelemetry-proto`), and per-event counts with `batches`."""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData

from cpex_webhook_notification import Notifier


def test_an_otlp_logs_batch_is_a_logs_data_the_opentelemetry_classes_read(receiver):
    config = {
        "webhooks": [{"url": receiver.url("/v1/logs"), "events": ["tool_success", "tool_error"],
                      "format": "otlp_logs", "batch": {"max_events": 10, "max_wait": "60s"}}],
    }
    n = Notifier(config, "gateway-eu")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    context = {"request_id": "r-1", "user": "ada", "tenant_id": "acme",
               "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    assert n.invoke("tool_post_invoke", {"name": "search", "result": {}}, context) == "tool_success"
    failed = {"name": "search", "result": {"isError": True, "content": [{"type": "text", "text": "down"}]}}
    assert n.invoke("tool_post_invoke", failed, {"request_id": "r-2"}) == "tool_error"
    assert n.flush(10)
    [request] = receiver.requests
    body = json.loads(request.body)
    # OTLP/JSON writes trace and span ids as hex, where protobuf's own JSON mapping would
    # use base64: read them from the JSON, and parse the rest with the OpenTelemetry classes
    # (unknown fields or wrong types fail the parse).
    records = body["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert records[0]["traceId"] == trace_id and len(records[0]["spanId"]) == 16
    for record in records:
        record.pop("traceId", None)
        record.pop("spanId", None)
    logs = json_format.Parse(json.dumps(body), LogsData())
    [resource_logs] = logs.resource_logs
    assert [(a.key, a.value.string_value) for a in resource_logs.resource.attributes] == [("service.name", "gateway-eu")]
    [scope_logs] = resource_logs.scope_logs
    assert scope_logs.scope.name == "webhook-notification"
    assert [(r.severity_number, r.severity_text) for r in scope_logs.log_records] == [(9, "info"), (17, "error")]
    first = scope_logs.log_records[0]
    assert {a.key: a.value.string_value for a in first.attributes} == {
        "event": "tool_success", "request_id": "r-1", "user": "ada", "tenant_id": "acme"}
    assert json.loads(first.body.string_value)["request_id"] == "r-1"
    assert first.time_unix_nano > 1_700_000_000 * 10**9
    webhook = n.stats()["webhooks"][0]
    assert (webhook["delivered"], webhook["batches"]) == (2, 1)
    n.close()
