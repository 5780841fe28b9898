#!/usr/bin/env python3
"""Asserts least privilege in template.yaml: every IAM policy statement names
its actions and resources, with no '*' in either (no "s3:*", no "arn:...:*").

Uses cfn-lint's own template decoder, so CloudFormation tags (!Ref, !GetAtt,
!Sub) parse as they do for the linter. Exits non-zero on any violation."""

import sys

from cfnlint.decode import decode


def statements(node):
    """Yields every dict under a 'Statement' key, anywhere in the template."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Statement":
                # IAM statements have an Effect (WAF rules, say, have a
                # "Statement" of another kind).
                for st in value if isinstance(value, list) else [value]:
                    for branch in conditional_branches(st):
                        if "Effect" in branch:
                            yield branch
            else:
                yield from statements(value)
    elif isinstance(node, list):
        for item in node:
            yield from statements(item)


def conditional_branches(statement):
    """A statement, or both branches of an `Fn::If` that chooses one (an
    `AWS::NoValue` branch is no statement)."""
    if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
        _, yes, no = statement["Fn::If"]
        for branch in (yes, no):
            yield from conditional_branches(branch)
    elif isinstance(statement, dict) and statement != {"Ref": "AWS::NoValue"}:
        yield statement


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


# Actions that take no resource but "*" (the Service Authorization
# Reference lists no resource type for them): X-Ray's segment writes.
# A statement of only these may name "*" as its resource.
RESOURCELESS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def resourceless(st):
    actions = st.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    return bool(actions) and set(actions) <= RESOURCELESS and st.get("Resource") == "*"


def violations(template):
    """Every wildcard or missing Action/Resource in the template's IAM
    statements (an empty list when there is none)."""
    bad = []
    count = 0
    for st in statements(template.get("Resources", {})):
        count += 1
        for field in ("NotAction", "NotResource"):
            if field in st:
                bad.append(f"{st.get('Sid', '?')}: uses {field}")
        for field in ("Action", "Resource"):
            if field not in st and st.get("Principal") is None:
                bad.append(f"{st.get('Sid', '?')}: no {field}")
            if field == "Resource" and resourceless(st):
                continue
            for s in strings(st.get(field, [])):
                if "*" in s:
                    bad.append(f"{st.get('Sid', '?')}: {field} {s!r} has a wildcard")
    if count == 0:
        bad.append("no IAM statements found: the check would prove nothing")
    return bad


def main(path):
    template, errors = decode(path)
    if errors:
        for e in errors:
            print(e)
        return 1
    bad = violations(template)
    for b in bad:
        print("template IAM:", b)
    print(f"template IAM: {len(bad)} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
