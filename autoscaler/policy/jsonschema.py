"""The policy format as JSON Schema, generated from the models so editors validate and complete."""

from __future__ import annotations

import json
from typing import Any

from autoscaler.policy import spec

SCHEMA_ID = "https://autoscaler.invalid/schemas/policy.json"


def schema() -> dict[str, Any]:
    """A schema accepting one group per document, or a `groups` list."""
    group = spec.GroupPolicy.model_json_schema(ref_template="#/$defs/{model}")
    many = spec.PolicyFile.model_json_schema(ref_template="#/$defs/{model}")
    definitions = {**group.pop("$defs", {}), **many.pop("$defs", {})}
    definitions["GroupPolicy"] = group
    definitions["PolicyFile"] = many
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "autoscaler policy file",
        "description": "One scaling group, or several under 'groups'. Durations read like 90s, 5m, 1h.",
        "anyOf": [{"$ref": "#/$defs/GroupPolicy"}, {"$ref": "#/$defs/PolicyFile"}],
        "$defs": definitions,
    }


def render() -> str:
    """The schema as the text of policies/schema.json."""
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
