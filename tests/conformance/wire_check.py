"""Every AgentCore response the suites receive is checked member by member against botocore's model.

boto3 parses leniently (an ISO string where the model says epoch seconds, a float where it says
integer, `null` for an absent member), so a wire drift passes every boto3 test and then breaks
the strict SDKs (the AWS SDK for JavaScript v3 throws "Expected real number"). This module hooks
every botocore client the test process creates, for the AgentCore services, and fails the call
that received a response whose JSON does not match the operation's output shape:

- a member's JSON type must match its shape: string, integer (not float, not bool), number,
  boolean, list, map, structure; a blob is a base64 string;
- a timestamp in a body is a JSON number (epoch seconds) unless the member or its shape says
  `timestampFormat: iso8601` (then a string), as restJson1 defines;
- absent members are absent, never `null` (required output members are not enforced: AWS
  itself leaves `payload` out of ListEvents when `includePayloads` is false);
- a union has exactly one member set.

Unknown members are allowed (AWS adds members; clients ignore them). Event-stream and blob
payloads (InvokeAgentRuntime's body) are not JSON documents and are skipped.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session

# The services whose JSON bodies are checked (S3 speaks XML and is checked by its own tests;
# `logs` is the CloudWatch Logs API Berth serves over its trace store).
SERVICES = {"bedrock-agentcore", "bedrock-agentcore-control", "logs"}


class WireMismatch(AssertionError):
    """A response member whose JSON does not match the service model."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_value(shape, value: Any, path: str, errors: list[str]) -> None:
    """Appends to `errors` every way `value` fails `shape`."""
    t = shape.type_name
    if value is None:
        errors.append(f"{path}: null (absent members must be left out)")
        return
    if shape.metadata.get("document"):
        # A document member (PayloadType.blob) holds any JSON value.
        return
    if t == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: {_kind(value)}, expected an object")
            return
        check_structure(shape, value, path, errors)
    elif t == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: {_kind(value)}, expected a list")
            return
        for i, item in enumerate(value):
            check_value(shape.member, item, f"{path}[{i}]", errors)
    elif t == "map":
        if not isinstance(value, dict):
            errors.append(f"{path}: {_kind(value)}, expected a map")
            return
        for k, item in value.items():
            check_value(shape.value, item, f"{path}{{{k}}}", errors)
    elif t in ("string", "blob"):
        if not isinstance(value, str):
            errors.append(f"{path}: {_kind(value)}, expected a string")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: {_kind(value)} {value!r}, expected an integer")
    elif t in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: {_kind(value)}, expected a number")
    elif t == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: {_kind(value)}, expected a boolean")
    elif t == "timestamp":
        fmt = shape.serialization.get("timestampFormat") or "unixtimestamp"
        if fmt == "iso8601":
            if not isinstance(value, str):
                errors.append(f"{path}: {_kind(value)}, expected an ISO 8601 string")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: {_kind(value)} {value!r}, expected epoch seconds (a number)")
    elif t == "document":
        pass


def check_structure(shape, value: dict, path: str, errors: list[str]) -> None:
    members = shape.members
    body_members = {
        name: m for name, m in members.items() if m.serialization.get("location") is None
    }
    if shape.metadata.get("union"):
        if len([k for k in value if k in body_members]) != 1:
            errors.append(f"{path}: a union must have exactly one member set, got {sorted(value)}")
    wire_names = {m.serialization.get("name", n): m for n, m in body_members.items()}
    for key, item in value.items():
        member = wire_names.get(key)
        if member is not None:
            check_value(member, item, f"{path}.{key}", errors)


def check_response(operation_model, response_dict: dict) -> None:
    """Raises [`WireMismatch`] when a 2xx JSON response does not match the operation's output."""
    status = response_dict.get("status_code", 0)
    if not 200 <= status < 300:
        return
    output = operation_model.output_shape
    if output is None or operation_model.has_event_stream_output:
        return
    payload = output.serialization.get("payload")
    if payload is not None:
        # The body is the payload member itself (a blob for InvokeAgentRuntime): not JSON members.
        return
    body = response_dict.get("body") or b""
    if not body.strip():
        return
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise WireMismatch(f"{operation_model.name}: body is not JSON: {e}") from None
    errors: list[str] = []
    check_value(output, doc, operation_model.name, errors)
    if errors:
        raise WireMismatch(
            f"{operation_model.name} response does not match the service model:\n  "
            + "\n  ".join(errors)
        )


#: (service name, operation name) of every 2xx response checked in this process.
checked: set[tuple[str, str]] = set()


def _before_parse(operation_model, response_dict, **_):
    check_response(operation_model, response_dict)
    if 200 <= response_dict.get("status_code", 0) < 300:
        checked.add((operation_model.service_model.service_name, operation_model.name))


_installed = False


def install() -> None:
    """Hooks every botocore client created from now on in this process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    original = botocore.session.Session.create_client

    def create_client(self, service_name, *args, **kwargs):
        client = original(self, service_name, *args, **kwargs)
        if service_name in SERVICES:
            client.meta.events.register("before-parse", _before_parse)
        return client

    botocore.session.Session.create_client = create_client
