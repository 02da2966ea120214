"""Small readers for synthesised CloudFormation templates (plain dicts)."""

from __future__ import annotations

from typing import Any


def render(value: Any) -> Any:
    """Intrinsics spelled as text: ``{"Ref": "AWS::Region"}`` -> ``${AWS::Region}``.

    Joins are concatenated, so ARNs read as strings: ``arn:${AWS::Partition}:s3:::name/*``.
    """
    if isinstance(value, list):
        return [render(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        return f"${{{value['Ref']}}}"
    if "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(render(part)) for part in parts)
    if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"]
    return {key: render(item) for key, item in value.items()}


def resources(template: dict, resource_type: str) -> dict[str, dict]:
    """Logical id -> resource, for every resource of one type."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def one(template: dict, resource_type: str, prefix: str = "") -> tuple[str, dict]:
    """The only resource of ``resource_type`` whose logical id starts with ``prefix``."""
    found = {k: v for k, v in resources(template, resource_type).items() if k.startswith(prefix)}
    assert len(found) == 1, f"expected one {resource_type} {prefix!r}*, found {sorted(found)}"
    return next(iter(found.items()))


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def statements(template: dict, role_prefix: str) -> list[dict]:
    """Every policy statement attached to the role whose logical id starts with the prefix,
    rendered, with Action and Resource always lists."""
    role_id, _ = one(template, "AWS::IAM::Role", role_prefix)
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in render(policy["Properties"]["PolicyDocument"]["Statement"]):
            found.append(
                {
                    **statement,
                    "Action": as_list(statement["Action"]),
                    "Resource": as_list(statement["Resource"]),
                }
            )
    return found


def grants(template: dict, role_prefix: str) -> set[tuple[str, str]]:
    """(action, resource) pairs the role's policies allow (conditions ignored)."""
    return {
        (action, resource)
        for statement in statements(template, role_prefix)
        if statement["Effect"] == "Allow"
        for action in statement["Action"]
        for resource in statement["Resource"]
    }
