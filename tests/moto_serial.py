#!/usr/bin/env python3
"""moto's server for the test suite: one request at a time, and IAM as AWS
evaluates it for the calls our code makes.

One request at a time: `moto_server` runs Werkzeug with threaded=True, and
moto's DynamoDB backend does not lock: two concurrent conditional UpdateItems
on one item can both pass their condition (seen in CI: two transitions from
100 concurrent cancels). Real DynamoDB makes each conditional write atomic;
serving one request at a time gives the emulator that same guarantee, so the
concurrency tests test our code and not moto's races.

IAM (only matters once a test turns enforcement on, see tests/deploy/):
- moto authorises every DynamoDB and Secrets Manager call against resource
  "*", so a statement scoped to a table or secret ARN never matches; here
  the resource is the table's ARN (`<table ARN>/index/<name>` when the call
  names an index) or the secret's, as in AWS.
- Inline role policies created through CloudFormation are stored as dicts,
  which moto's policy evaluator cannot read (KeyError 'policy_document');
  here they are read as the documents they are.
- moto turns a policy's `*` into a regular expression and leaves the rest
  of the pattern as one, so `?` (one character, as in Secrets Manager ARNs'
  `-??????` suffix) and `.` are misread; here both wildcards mean what
  they mean in IAM and every other character is literal.
- CloudFormation's `Ref` of an `AWS::Events::EventBus` is its name, as in
  AWS (moto handed the bus object to whatever referenced it, and a rule on
  a custom bus failed to create).
- An EventBridge input template's `<aws.events.rule-arn>` and
  `<aws.events.rule-name>` are the delivering rule's, as in AWS (moto left
  them as they were), and an event's `time` is the ISO 8601 string AWS
  sends (moto delivered epoch seconds as a number).
- SQS SendMessage refuses what SQS refuses and moto accepts: a body (or a
  String message attribute) with a character outside `#x9 | #xA | #xD |
  #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF` (InvalidMessageContents),
  and a FIFO MessageGroupId or MessageDeduplicationId that is not 1-128
  characters of letters, digits and ASCII punctuation
  (InvalidParameterValue), as the SendMessage reference says.
- With MOTO_IAM_AUDIT=<file>, every decision is appended to that file as a
  JSON line: principal, action, resource, allowed, and the Sids of the
  statements that allowed it.

Usage: moto_serial.py PORT
"""

import copy
import datetime
import json
import os
import re
import sys

from moto.dynamodb.responses import DynamoHandler
from moto.iam import access_control
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def _dynamodb_resource(self):
    params = getattr(self, "params", None) or {}
    table = params.get("TableName")
    if not table:
        return "*"
    arn = f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}"
    index = params.get("IndexName")
    return f"{arn}/index/{index}" if index else arn


def _secret_resource(self):
    secret_id = self._get_param("SecretId")
    if not secret_id:
        return "*"
    try:
        return self.backend.describe_secret(secret_id).arn
    except Exception:  # no such secret: an ARN no policy of ours names
        return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"


_IAMPolicy_init = access_control.IAMPolicy.__init__


def _iam_policy_init(self, policy):
    if isinstance(policy, dict) and "Statement" in policy:
        policy = json.dumps(policy)
    _IAMPolicy_init(self, policy)


def _iam_match(pattern, string):
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    return re.match(f"^{regex}$", string, re.DOTALL)


def _audited(original, audit_path):
    def check_action_permitted(self, resource):
        allowed = True
        try:
            original(self, resource)
        except Exception:
            allowed = False
            raise
        finally:
            sids = []
            try:
                for policy in self._access_key.collect_policies():
                    doc = access_control.IAMPolicy(policy)._policy_json
                    statements = doc["Statement"]
                    for st in statements if isinstance(statements, list) else [statements]:
                        result = access_control.IAMPolicyStatement(st).is_action_permitted(
                            self._action, resource
                        )
                        if result == access_control.PermissionResult.PERMITTED:
                            sids.append(st.get("Sid", "?"))
            except Exception as e:  # the audit must never change a decision
                sids.append(f"audit-error: {e}")
            with open(audit_path, "a", encoding="utf-8") as f:
                f.write(
                    json.dumps(
                        {
                            "principal": self._access_key.arn,
                            "action": self._action,
                            "resource": resource,
                            "allowed": allowed,
                            "sids": sids,
                        }
                    )
                    + "\n"
                )

    return check_action_permitted


def _with_rule_variables(send_to_targets):
    def send(self, original_event, transform_input=True):
        targets = self.targets
        self.targets = copy.deepcopy(targets)
        for target in self.targets:
            transformer = target.get("InputTransformer") or {}
            if "InputTemplate" in transformer:
                transformer["InputTemplate"] = (
                    transformer["InputTemplate"]
                    .replace("<aws.events.rule-arn>", self.arn)
                    .replace("<aws.events.rule-name>", self.name)
                )
        try:
            return send_to_targets(self, original_event, transform_input)
        finally:
            self.targets = targets

    return send


_SQS_CHARS = re.compile(
    "^[\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$"
)
_SQS_ID = re.compile("^[!-~]{1,128}$")


def _strict_sqs(validate):
    from moto.sqs.exceptions import InvalidParameterValue, SQSException

    class InvalidMessageContents(SQSException):
        def __init__(self, message):
            super().__init__("InvalidMessageContents", message)

    def check(self, queue, message_body, delay_seconds, deduplication_id=None,
              group_id=None, validate_group_id=True):
        if not _SQS_CHARS.match(message_body or ""):
            raise InvalidMessageContents("Invalid binary character in the message body")
        for name, value in (("MessageGroupId", group_id),
                            ("MessageDeduplicationId", deduplication_id)):
            if value is not None and not _SQS_ID.match(value):
                raise InvalidParameterValue(f"Value {value!r} for parameter {name} is invalid.")
        return validate(self, queue, message_body, delay_seconds,
                        deduplication_id=deduplication_id, group_id=group_id,
                        validate_group_id=validate_group_id)

    return check


def _strict_attributes(validate):
    from moto.sqs.exceptions import InvalidParameterValue

    def check(attributes):
        for name, value in (attributes or {}).items():
            text = value.get("StringValue") if isinstance(value, dict) else None
            if text is not None and not _SQS_CHARS.match(text):
                raise InvalidParameterValue(f"Message attribute {name} has invalid characters.")
        return validate(attributes)

    return check


def _iso_time(parse):
    """An input template sees the event's `time` as the ISO 8601 string AWS
    sends, not moto's epoch seconds (moto's own SQS and logs targets
    convert it themselves, from the number: left as it was for them)."""

    def with_iso_time(input_template, input_paths_map, event):
        custom = input_template is not None  # moto's default template wants the number
        if custom and isinstance(event, dict) and isinstance(event.get("time"), (int, float)):
            event = dict(event)
            event["time"] = datetime.datetime.fromtimestamp(
                event["time"], datetime.timezone.utc
            ).strftime("%Y-%m-%dT%H:%M:%SZ")
        return parse(input_template=input_template, input_paths_map=input_paths_map, event=event)

    return staticmethod(with_iso_time)


def patch():
    from moto.events.models import EventBus, EventTemplateParser, Rule
    from moto.sqs import models as sqs_models
    from moto.sqs import responses as sqs_responses

    sqs_models.SQSBackend._validate_message = _strict_sqs(sqs_models.SQSBackend._validate_message)
    sqs_responses.validate_message_attributes = _strict_attributes(
        sqs_responses.validate_message_attributes
    )

    if not hasattr(EventBus, "physical_resource_id"):
        EventBus.physical_resource_id = property(lambda self: self.name)
    Rule.send_to_targets = _with_rule_variables(Rule.send_to_targets)
    EventTemplateParser.parse = _iso_time(EventTemplateParser.parse)
    DynamoHandler._determine_resource = _dynamodb_resource
    SecretsManagerResponse._determine_resource = _secret_resource
    access_control.IAMPolicy.__init__ = _iam_policy_init
    access_control.IAMPolicyStatement._match = staticmethod(_iam_match)
    audit_path = os.environ.get("MOTO_IAM_AUDIT")
    if audit_path:
        base = access_control.IAMRequestBase
        base.check_action_permitted = _audited(base.check_action_permitted, audit_path)


if __name__ == "__main__":
    patch()
    run_simple(
        "127.0.0.1",
        int(sys.argv[1]),
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
    )
