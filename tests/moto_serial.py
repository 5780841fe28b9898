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
  (InvalidParameterValue), as the SendMessage reference says; and
  SendMessageBatch fails such an entry alone (SenderFault, the same code)
  and sends the rest, as SQS does (moto failed the whole batch); and it
  keeps each entry's MessageSystemAttributes (`AWSTraceHeader`), as
  SendMessage does (moto dropped them).
- CloudFormation's `AWS::Lambda::Version` answers `Ref` with the version's
  ARN and `GetAtt Version` with its number, and `AWS::Lambda::Alias` is
  created (moto had no model for it), as SAM's `AutoPublishAlias` needs;
  an event source mapping created for an alias reports the alias's ARN as
  its FunctionArn, as AWS does (moto reported the version's); a mapping
  is recorded but never run (moto would run the function in Docker on
  every SendMessage; the tests play Lambda's poller themselves); and a
  version has a resource policy of its own (moto shared $LATEST's, so a
  permission granted on the alias showed on the function itself).
- SQS's batch calls (SendMessageBatch, DeleteMessageBatch,
  ChangeMessageVisibilityBatch) are authorised as their single forms, as
  in AWS, where IAM has no batch actions (moto asked for sqs:...Batch).
- moto ignores most of a statement's `Condition` (and denies, rather than
  skips, a statement whose condition does not hold); here the condition
  keys of DynamoDB requests are evaluated as AWS documents them
  ("Using IAM policy conditions for fine-grained access control"):
  `dynamodb:Attributes` (the key's attributes and every attribute an
  expression names), `dynamodb:ReturnValues` (NONE unless given) and
  `dynamodb:LeadingKeys` (the partition key's value), with the operators
  `StringEquals`, `StringLike` and `StringNotLike`, their `ForAllValues:`
  and `ForAnyValue:` forms and `IfExists`; a statement whose condition does
  not hold does not apply. Any other operator or key fails the request
  loudly rather than being ignored.
- With MOTO_IAM_AUDIT=<file>, every decision is appended to that file as a
  JSON line: principal, action, resource, allowed, the Sids of the
  statements that allowed it, and the request's condition keys.

Usage: moto_serial.py PORT   (0: a free port, chosen when it binds; the
port it listens on is printed as the first line on stdout either way, so a
caller never races another process for a port it picked beforehand)
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
from werkzeug.serving import make_server


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


# The condition keys of the request being authorised (one at a time: the
# server is serial).
_CONTEXT = {}
_EXPRESSIONS = ("UpdateExpression", "ConditionExpression", "KeyConditionExpression",
                "FilterExpression", "ProjectionExpression")
_EXPRESSION_WORDS = {"set", "remove", "add", "delete", "and", "or", "not", "in", "between",
                     "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with",
                     "contains", "size", "if_not_exists", "list_append"}


def _dynamodb_context(body):
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        return {}
    names = set(params.get("Key", {})) | set(params.get("Item", {}))
    placeholders = params.get("ExpressionAttributeNames", {})
    for field in _EXPRESSIONS:
        text = re.sub(r"\[[0-9]+\]", "", params.get(field) or "")
        for token in re.findall(r"#?[A-Za-z_][A-Za-z0-9_]*|:[A-Za-z0-9_]+", text):
            if token.startswith(":") or token.lower() in _EXPRESSION_WORDS:
                continue
            # A top-level name: a placeholder's value, or a literal (paths
            # `a.b` name `a`, which the regular expression stops at).
            names.add(placeholders.get(token, token) if token.startswith("#") else token)
    context = {"dynamodb:Attributes": sorted(names),
               "dynamodb:ReturnValues": params.get("ReturnValues", "NONE")}
    key = params.get("Key", {})
    if key:
        # The partition key is the first one of the table's schema; ours
        # are `uid` and `login`.
        for name in ("uid", "login"):
            if name in key:
                context["dynamodb:LeadingKeys"] = [next(iter(key[name].values()))]
    return context


def _matches(operator, value, expected):
    if operator == "StringEquals":
        return value == expected
    if operator == "StringLike":
        return _iam_match(expected, value) is not None
    raise ValueError(f"condition operator {operator} is not evaluated here")


def _condition_holds(conditions, context):
    for operator, entries in conditions.items():
        base = operator
        if_exists = base.endswith("IfExists")
        base = base[: -len("IfExists")] if if_exists else base
        qualifier, _, base = base.rpartition(":")
        negated = base == "StringNotLike"
        base = "StringLike" if negated else base
        for key, expected in entries.items():
            if not key.startswith("dynamodb:"):
                raise ValueError(f"condition key {key} is not evaluated here")
            expected = expected if isinstance(expected, list) else [expected]
            actual = context.get(key)
            if actual is None:
                # Absent: IfExists and ForAllValues hold, the rest do not.
                if if_exists or qualifier == "ForAllValues":
                    continue
                return False
            values = actual if isinstance(actual, list) else [actual]
            hit = lambda v: any(_matches(base, v, e) for e in expected) != negated
            if qualifier == "ForAllValues":
                ok = all(hit(v) for v in values)
            elif qualifier == "ForAnyValue":
                ok = any(hit(v) for v in values)
            elif qualifier == "":
                ok = len(values) == 1 and hit(values[0])
            else:
                raise ValueError(f"condition qualifier {qualifier} is not evaluated here")
            if not ok:
                return False
    return True


def _with_conditions(is_action_permitted):
    def permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
        conditions = self._statement.get("Condition")
        if not conditions or principal is not None or incoming_condition_values is not None:
            return is_action_permitted(self, action, resource, principal, incoming_condition_values)
        bare = access_control.IAMPolicyStatement(
            {k: v for k, v in self._statement.items() if k != "Condition"})
        result = is_action_permitted(bare, action, resource)
        if result == access_control.PermissionResult.NEUTRAL:
            return result
        if _condition_holds(conditions, _CONTEXT):
            return result
        return access_control.PermissionResult.NEUTRAL

    return permitted


# SQS's batch calls are authorised as their single forms: IAM has no
# sqs:SendMessageBatch action (the SQS API reference: "the permission for
# the batch actions is the same as for the non-batch action").
_SQS_BATCH_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _with_request_context(check_action_permitted):
    def check(self, resource):
        self._action = _SQS_BATCH_ACTIONS.get(self._action, self._action)
        _CONTEXT.clear()
        if self._action.startswith("dynamodb:"):
            _CONTEXT.update(_dynamodb_context(self._body))
        return check_action_permitted(self, resource)

    return check


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
                            "context": dict(_CONTEXT),
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


def _strict_batches(send_message_batch):
    """SendMessageBatch answers per entry, as SQS does: an entry whose body,
    String attribute, group id or deduplication id SQS would refuse fails
    alone (SenderFault, with SendMessage's code), and the rest are sent.
    moto validated every entry first and failed the whole call."""
    def refusal(entry, fifo):
        body = entry.get("MessageBody") or ""
        if not _SQS_CHARS.match(body):
            return ("InvalidMessageContents", "Invalid binary character in the message body")
        for name, value in (entry.get("MessageAttributes") or {}).items():
            text = value.get("StringValue") if isinstance(value, dict) else None
            if text is not None and not _SQS_CHARS.match(text):
                return ("InvalidParameterValue", f"Message attribute {name} has invalid characters.")
        if fifo:
            for name in ("MessageGroupId", "MessageDeduplicationId"):
                value = entry.get(name)
                if value is not None and not _SQS_ID.match(value):
                    return ("InvalidParameterValue", f"Value {value!r} for parameter {name} is invalid.")
        return None

    def send(self):
        entries = self._get_param("Entries", [])
        queue = self.sqs_backend.get_queue(self._get_queue_name())
        refused = []
        kept = []
        for entry in entries:
            why = refusal(entry, queue.fifo_queue)
            if why is None:
                kept.append(entry)
            else:
                refused.append({"Id": entry.get("Id"), "SenderFault": True,
                                "Code": why[0], "Message": why[1]})
        if not refused:
            return send_message_batch(self)
        if kept:
            original = self._get_param
            self._get_param = lambda name, default=None: kept if name == "Entries" else original(name, default)
            try:
                result = send_message_batch(self)
            finally:
                self._get_param = original
            result.result["Failed"].extend(refused)
            return result
        from moto.core.responses import ActionResult
        return ActionResult({"Successful": [], "Failed": refused})

    return send


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


def _lambda_versions_and_aliases():
    from moto.awslambda.models import LambdaBackend, LambdaVersion, lambda_backends
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel
    from moto.sqs.models import sqs_backends

    def create_version(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        name = cloudformation_json["Properties"]["FunctionName"]
        published = lambda_backends[account_id][region_name].publish_version(name)
        # A version is a shallow copy of $LATEST in moto, sharing its
        # resource policy: in AWS each qualifier has its own.
        published.policy = type(published.policy)(published)
        version = LambdaVersion({"Version": published.version})
        version.arn = published.function_arn
        return version

    def version_attribute(self, name):
        if name == "Version":
            return str(self.version)
        raise NotImplementedError(f"AWS::Lambda::Version has no attribute {name}")

    LambdaVersion.create_from_cloudformation_json = classmethod(create_version)
    LambdaVersion.physical_resource_id = property(lambda self: self.arn)
    LambdaVersion.has_cfn_attr = classmethod(lambda cls, name: name == "Version")
    LambdaVersion.get_cfn_attribute = version_attribute

    class CfnLambdaAlias(CloudFormationModel):
        # moto's model registry files a model under its module's service.
        __module__ = "moto.awslambda.models"

        def __init__(self, arn):
            self.arn = arn

        @staticmethod
        def cloudformation_type():
            return "AWS::Lambda::Alias"

        @staticmethod
        def cloudformation_name_type():
            return "Name"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            p = cloudformation_json["Properties"]
            alias = lambda_backends[account_id][region_name].create_alias(
                name=p["Name"],
                function_name=p["FunctionName"],
                function_version=str(p["FunctionVersion"]),
                description=p.get("Description", ""),
                routing_config=p.get("RoutingConfig"),
            )
            return cls(alias.arn)

        @property
        def physical_resource_id(self):
            return self.arn

    # The model lists are cached on first use.
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()

    create_mapping = LambdaBackend.create_event_source_mapping
    qualified = re.compile(r"arn:[^:]+:lambda:[^:]+:\d+:function:[^:]+:[A-Za-z_][A-Za-z0-9_-]*")

    def mapping_names_its_alias(self, spec):
        asked = spec.get("FunctionName", "")
        esm = create_mapping(self, spec)
        if qualified.fullmatch(asked):
            esm.function_arn = asked
        # Recorded, not run: moto's SQS would run the mapped function in
        # Docker on every send (a version's copy even fails the send with a
        # 500); the tests play Lambda's poller themselves.
        for queue in sqs_backends[self.account_id][self.region_name].queues.values():
            for key, mapped in list(queue.lambda_event_source_mappings.items()):
                if mapped is esm:
                    del queue.lambda_event_source_mappings[key]
        return esm

    LambdaBackend.create_event_source_mapping = mapping_names_its_alias


def _batch_system_attributes(send_message_batch):
    """A batch entry's MessageSystemAttributes stay with its message."""

    def patched(self, queue_name, entries):
        messages, failed = send_message_batch(self, queue_name, entries)
        by_id = {e["Id"]: e for e in entries.values()}
        for message in messages:
            entry = by_id.get(getattr(message, "user_id", None), {})
            if entry.get("MessageSystemAttributes"):
                message.system_attributes = entry["MessageSystemAttributes"]
        return messages, failed

    return patched


def patch():
    from moto.events.models import EventBus, EventTemplateParser, Rule
    from moto.sqs import models as sqs_models
    from moto.sqs import responses as sqs_responses

    sqs_models.SQSBackend._validate_message = _strict_sqs(sqs_models.SQSBackend._validate_message)
    sqs_models.SQSBackend.send_message_batch = _batch_system_attributes(
        sqs_models.SQSBackend.send_message_batch
    )
    sqs_responses.SQSResponse.send_message_batch = _strict_batches(
        sqs_responses.SQSResponse.send_message_batch
    )
    sqs_responses.validate_message_attributes = _strict_attributes(
        sqs_responses.validate_message_attributes
    )

    if not hasattr(EventBus, "physical_resource_id"):
        EventBus.physical_resource_id = property(lambda self: self.name)
    Rule.send_to_targets = _with_rule_variables(Rule.send_to_targets)
    EventTemplateParser.parse = _iso_time(EventTemplateParser.parse)
    _lambda_versions_and_aliases()
    DynamoHandler._determine_resource = _dynamodb_resource
    SecretsManagerResponse._determine_resource = _secret_resource
    access_control.IAMPolicy.__init__ = _iam_policy_init
    access_control.IAMPolicyStatement._match = staticmethod(_iam_match)
    statement = access_control.IAMPolicyStatement
    statement.is_action_permitted = _with_conditions(statement.is_action_permitted)
    base = access_control.IAMRequestBase
    audit_path = os.environ.get("MOTO_IAM_AUDIT")
    if audit_path:
        base.check_action_permitted = _audited(base.check_action_permitted, audit_path)
    base.check_action_permitted = _with_request_context(base.check_action_permitted)


if __name__ == "__main__":
    patch()
    server = make_server(
        "127.0.0.1",
        int(sys.argv[1]),
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
    )
    print(server.server_port, flush=True)
    server.serve_forever()
