#!/usr/bin/env python3
"""template.yaml deployed as `sam deploy` would, against moto; the Rust
tests drive it (tests/suite/rehearsal.rs, and the emulator fixture's tables).

Subcommands, each printing one JSON document on stdout:

  alarms
      Every CloudWatch alarm as CloudWatch evaluates it (tests/suite/alarms.rs).

  parameters
      Each parameter's default and each output's name (tests/suite/references.rs).

  grants
      What each IAM role of template.yaml may do, as "action resource"
      pairs by logical name: what the rehearsal's refusals are the
      complement of.

  tables
      The DynamoDB tables of template.yaml, as CreateTable would take them
      (attribute definitions, key schema, indexes, billing mode): the one
      statement of the schema that the emulator tests build from.

  admin --endpoint URL
      An IAM user with every permission, for the test to seed and inspect
      the stack once IAM is enforced. Its access key.

  deploy --endpoint URL --stack NAME --code FILE [--param KEY=VALUE ...]
      `sam package` + `sam deploy`: FILE (the bootstrap binary) is zipped
      and uploaded to S3, the template is transformed (SAM) and created as
      a CloudFormation stack in moto. API Gateway resources are left out:
      moto ignores a RestApi's Body and refuses its Deployment ("no
      methods"); tests/deploy/check_template.py checks the routes on the
      transformed template instead. Then it reads back what was created
      (functions with their resolved environment, roles and their
      policies, tables, queues, event buses with their rules and targets,
      outputs; each function's aliases, event source mappings and resource
      policy grants) and assumes each function's role (before
      IAM is enforced: moto answers 500 to an AssumeRole it must check
      against a trust policy naming a service).

  enforce-iam --endpoint URL
      From now on moto checks every request against IAM.

  rule-deliver --endpoint URL --key ID --secret KEY --bus NAME
               --detail-type T --detail JSON
      What each rule on the bus hands its Lambda target for one event put
      there: moto cannot invoke Lambda, so each Lambda target is swapped,
      for the call, for a scratch queue with the same input transformer;
      the event is put (with the given credentials) and what reached the
      queue is printed per rule, with the rule's ARN.

  pipe-check --endpoint URL --table NAME
      What the "Publish Cancelled" pipe (PublishCancelledPipe) would emit
      for the table's stream so far, without EventBridge Pipes (moto has
      none): every record on the table's DynamoDB stream is put as an
      event's `detail` on a scratch EventBridge bus whose rule's pattern is
      the pipe's FilterCriteria under `detail` (moto's matcher, the same
      pattern language); each record the rule routed to its SQS target is
      rendered through the pipe's InputTemplate. Prints every record with
      `matched` and, when matched, the rendered `event` (or `missing`, the
      template paths the record lacked).
"""

import argparse
import ast
import io
import json
import re
import sys
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import sam
import template_iam

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent.parent / "template.yaml"
REGION = "us-east-1"
BUCKET = "rehearsal-artefacts"
# moto can create neither (see the module's doc); their routes are checked
# on the transformed template.
NOT_DEPLOYABLE = ("AWS::ApiGateway::",)


def client(service, endpoint, key="testing", secret="testing", token=None):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def condition_holds(template, condition):
    """A condition of the form `Fn::Equals [Ref P, x]` or `Fn::Not` of one,
    as the parameters' defaults decide it."""
    if set(condition) == {"Fn::Not"}:
        return not condition_holds(template, condition["Fn::Not"][0])
    (left, right) = condition["Fn::Equals"]
    default = template["Parameters"][left["Ref"]]["Default"]
    return str(default) == str(right)


def with_defaults(template, value):
    """`value` with every `Fn::If` decided as the template's parameter
    defaults decide it (`condition_holds`), and `AWS::NoValue` branches
    dropped."""
    if isinstance(value, list):
        return [with_defaults(template, v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"}:
        condition, yes, no = value["Fn::If"]
        holds = condition_holds(template, template["Conditions"][condition])
        return with_defaults(template, yes if holds else no)
    out = {}
    for k, v in value.items():
        v = with_defaults(template, v)
        if v != {"Ref": "AWS::NoValue"}:
            out[k] = v
    return out


def tables(_args):
    template = sam.load(str(TEMPLATE))
    out = {}
    for name, table in sam.resources_of_type(template, "AWS::DynamoDB::Table").items():
        props = with_defaults(template, table["Properties"])
        out[name] = {
            key: props[key]
            for key in (
                "AttributeDefinitions",
                "KeySchema",
                "GlobalSecondaryIndexes",
                "BillingMode",
                "StreamSpecification",
            )
            if key in props
        }
    return out


def alarm_metrics(_args):
    """Every metric a CloudWatch alarm of the template watches: alarm,
    namespace, metric name, dimension names (sorted)."""
    template = sam.load(str(TEMPLATE))
    out = []
    for name, alarm in sam.resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        metrics = [props] if "MetricName" in props else [
            m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        for m in metrics:
            # The function a `Function` dimension names (its logical id).
            function = next((d["Value"].get("Ref") for d in m.get("Dimensions", [])
                             if d["Name"] == "Function" and isinstance(d["Value"], dict)), None)
            out.append({"alarm": name, "namespace": m.get("Namespace"), "metric": m.get("MetricName"),
                        "dimensions": sorted(d["Name"] for d in m.get("Dimensions", [])),
                        "function": function})
    return out


def alarms(_args):
    """Every CloudWatch alarm as CloudWatch would evaluate it, the
    template's parameter defaults decided: name, its metric queries (id,
    namespace, metric, dimensions as {name: value}, stat, period; or the
    expression), evaluation periods, datapoints to alarm, threshold,
    comparison, missing-data treatment, and whether it notifies the alarm
    topic. Values still intrinsic (`Ref`, `Fn::Sub`) are left for the
    caller to resolve against the stack it rehearses."""
    template = sam.load(str(TEMPLATE))
    out = []
    for name, alarm in sam.resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = with_defaults(template, alarm["Properties"])
        def value(v):
            # A parameter's default; anything else as the template says it.
            if isinstance(v, dict) and v.get("Ref") in template.get("Parameters", {}):
                return template["Parameters"][v["Ref"]]["Default"]
            return v

        dims = lambda ds: {d["Name"]: value(d["Value"]) for d in ds or []}
        if "MetricName" in props:
            queries = [{"id": "m", "namespace": props["Namespace"], "metric": props["MetricName"],
                        "dimensions": dims(props.get("Dimensions")),
                        "stat": props.get("Statistic") or props.get("ExtendedStatistic"),
                        "period": props["Period"], "returnData": True}]
        else:
            queries = []
            for m in props["Metrics"]:
                if "Expression" in m:
                    queries.append({"id": m["Id"], "expression": m["Expression"],
                                    "returnData": m.get("ReturnData", True)})
                else:
                    stat = m["MetricStat"]
                    queries.append({"id": m["Id"], "namespace": stat["Metric"]["Namespace"],
                                    "metric": stat["Metric"]["MetricName"],
                                    "dimensions": dims(stat["Metric"].get("Dimensions")),
                                    "stat": stat["Stat"], "period": stat["Period"],
                                    "returnData": m.get("ReturnData", True)})
        threshold = props["Threshold"]
        if isinstance(threshold, dict):
            threshold = template["Parameters"][threshold["Ref"]]["Default"]
        out.append({
            "alarm": name,
            "queries": queries,
            "evaluationPeriods": int(props["EvaluationPeriods"]),
            "datapointsToAlarm": int(props.get("DatapointsToAlarm", props["EvaluationPeriods"])),
            "threshold": float(threshold),
            "thresholdParameter": props["Threshold"].get("Ref") if isinstance(props["Threshold"], dict) else None,
            "comparison": props["ComparisonOperator"],
            "treatMissingData": props.get("TreatMissingData", "missing"),
            "notifies": alarm["Properties"].get("AlarmActions") == {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]},
        })
    return out


def parameters(_args):
    """Each parameter's default, and each output's name."""
    template = sam.load(str(TEMPLATE))
    return {"defaults": {k: v.get("Default") for k, v in template["Parameters"].items()},
            "outputs": sorted(template.get("Outputs", {}))}


def functions(_args):
    """Each function's settings that the code's own bounds must fit in
    (after the transform: with what the template's Globals give it)."""
    template = sam.transformed(str(TEMPLATE))
    out = {}
    for name, fn in sam.resources_of_type(template, "AWS::Lambda::Function").items():
        props = fn["Properties"]
        out[name] = {k: props.get(k) for k in ("Timeout", "MemorySize", "Architectures", "Runtime")}
    return out


def attribute_grants(_args):
    """Each role's statements narrowed by `dynamodb:Attributes`: role ->
    Sid -> the attributes it may name."""
    template = sam.load(str(TEMPLATE))
    out = {}
    for name, role in sam.resources_of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                if not isinstance(st, dict):
                    continue
                attrs = st.get("Condition", {}).get("ForAllValues:StringEquals", {}).get("dynamodb:Attributes")
                if attrs:
                    out.setdefault(name, {})[st["Sid"]] = attrs
    return out


def resource_name(resource):
    """A statement's resource as the logical name of what it names:
    `!GetAtt T.Arn` -> `T`, `!GetAtt T.StreamArn` -> `T/stream`,
    `!Sub ${T.Arn}/index/i` -> `T/index/i`, the KEK secret -> `ApiKeyKekSecret`."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        target = resource["Fn::GetAtt"]
        name, attribute = target if isinstance(target, list) else target.split(".", 1)
        return name if attribute == "Arn" else f"{name}/{attribute.removesuffix('Arn').lower()}"
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"]
        text = text[0] if isinstance(text, list) else text
        if "${ApiKeyKekSecretName}" in text:
            return "ApiKeyKekSecret"
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", text)
    return json.dumps(resource)


def grants(_args):
    """What each function role may do: role -> ["action resource", ...],
    the resource by logical name (`resource_name`), whatever conditions the
    statement adds (a statement a parameter can switch off counts as
    granted). Logs statements are left out."""
    template = sam.load(str(TEMPLATE))
    out = {}
    for name, role in sam.resources_of_type(template, "AWS::IAM::Role").items():
        granted = out.setdefault(name, [])
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                for branch in template_iam.conditional_branches(st):
                    actions = branch.get("Action", [])
                    resources = branch.get("Resource", [])
                    for action in actions if isinstance(actions, list) else [actions]:
                        if action.startswith("logs:"):
                            continue
                        for r in resources if isinstance(resources, list) else [resources]:
                            granted.append(f"{action} {resource_name(r)}")
    return out


def stream_records(endpoint, table):
    """Every record on `table`'s stream, oldest first, as Pipes reads them."""
    arn = client("dynamodb", endpoint).describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = client("dynamodbstreams", endpoint)
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            records += page["Records"]
            iterator = page.get("NextShardIterator")
    # As JSON: the stream's timestamps are numbers of seconds.
    return json.loads(json.dumps(records, default=lambda t: t.timestamp()))


PLACEHOLDER = re.compile(r'("?)<\$\.([A-Za-z0-9_.-]+)>("?)')


def render(input_template, record):
    """The pipe's InputTemplate applied to `record`: a quoted placeholder
    takes the value as a string, an unquoted one as JSON. Returns the event
    and the paths the record lacked."""
    missing = []

    def value(match):
        node = record
        for part in match.group(2).split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(match.group(2))
                return "null"
            node = node[part]
        before, after = match.group(1), match.group(3)
        text = node if isinstance(node, str) else json.dumps(node)
        if before and after:
            return json.dumps(text)
        if before or after:  # at one end of a longer string
            return before + json.dumps(text)[1:-1] + after
        return json.dumps(node)

    text = PLACEHOLDER.sub(value, input_template)
    return json.loads(text), missing


def scratch_queue(sqs, name):
    """A queue for the call to collect what EventBridge delivers: URL, ARN."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def drain(sqs, url):
    """Every message body on the queue, parsed, deleting them."""
    bodies = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in got:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def rule_deliver(args):
    events = client("events", args.endpoint, args.key, args.secret)
    sqs = client("sqs", args.endpoint, args.key, args.secret)
    rules = events.list_rules(EventBusName=args.bus)["Rules"]
    swapped = []
    out = {}
    try:
        for rule in rules:
            queue, arn = scratch_queue(sqs, f"rule-deliver-{uuid.uuid4().hex[:12]}")
            for target in events.list_targets_by_rule(Rule=rule["Name"], EventBusName=args.bus)["Targets"]:
                if ":lambda:" not in target["Arn"]:
                    continue
                events.remove_targets(Rule=rule["Name"], EventBusName=args.bus, Ids=[target["Id"]])
                stand_in = {**target, "Arn": arn}
                events.put_targets(Rule=rule["Name"], EventBusName=args.bus, Targets=[stand_in])
                swapped.append((rule["Name"], target))
            out[rule["Name"]] = {"arn": rule["Arn"], "pattern": json.loads(rule["EventPattern"]), "queue": queue}
        answer = events.put_events(
            Entries=[
                {
                    "EventBusName": args.bus,
                    "Source": "rehearsal.automation",
                    "DetailType": args.detail_type,
                    "Detail": args.detail,
                }
            ]
        )
        assert answer["FailedEntryCount"] == 0, answer
        for rule in out.values():
            rule["delivered"] = drain(sqs, rule.pop("queue"))
    finally:
        for name, target in swapped:
            ids = [t["Id"] for t in events.list_targets_by_rule(Rule=name, EventBusName=args.bus)["Targets"]]
            events.remove_targets(Rule=name, EventBusName=args.bus, Ids=ids)
            events.put_targets(Rule=name, EventBusName=args.bus, Targets=[target])
    return out


def pipe_check(args):
    template = sam.load(str(TEMPLATE))
    (pipe,) = sam.resources_of_type(template, "AWS::Pipes::Pipe").values()
    props = pipe["Properties"]
    patterns = [json.loads(f["Pattern"]) for f in props["SourceParameters"]["FilterCriteria"]["Filters"]]
    input_template = props["TargetParameters"]["InputTemplate"]
    records = stream_records(args.endpoint, args.table)

    events = client("events", args.endpoint)
    sqs = client("sqs", args.endpoint)
    name = f"pipe-check-{uuid.uuid4().hex[:12]}"
    events.create_event_bus(Name=name)
    queue, queue_arn = scratch_queue(sqs, name)
    # Pipes' filters are alternatives: one rule each, one target.
    for i, pattern in enumerate(patterns):
        rule = f"{name}-{i}"
        events.put_rule(Name=rule, EventBusName=name, EventPattern=json.dumps({"detail": pattern}))
        events.put_targets(Rule=rule, EventBusName=name, Targets=[{"Id": "records", "Arn": queue_arn}])
    for start in range(0, len(records), 10):
        answer = events.put_events(
            Entries=[
                {"EventBusName": name, "Source": "pipe-check", "DetailType": "stream record", "Detail": json.dumps(r)}
                for r in records[start : start + 10]
            ]
        )
        assert answer["FailedEntryCount"] == 0, answer
    matched = {event["detail"]["eventID"] for event in drain(sqs, queue)}
    out = []
    for r in records:
        row = {"eventName": r["eventName"], "keys": r["dynamodb"]["Keys"], "matched": r["eventID"] in matched}
        if row["matched"]:
            row["event"], row["missing"] = render(input_template, r)
        out.append(row)
    return out


def admin(args):
    iam = client("iam", args.endpoint)
    name = "rehearsal-admin"
    try:
        iam.create_user(UserName=name)
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    iam.put_user_policy(
        UserName=name,
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def deployable(template):
    """The transformed template without what moto cannot create."""
    resources = template["Resources"]
    left_out = sorted(
        name
        for name, r in resources.items()
        if r["Type"].startswith(NOT_DEPLOYABLE)
        or (
            r["Type"] == "AWS::Lambda::Permission"
            and r["Properties"].get("Principal") == "apigateway.amazonaws.com"
        )
    )
    for name in left_out:
        del resources[name]
    # moto creates no CloudWatch alarm (it has no model for them) and so
    # resolves no `Fn::GetAtt [alarm, Arn]`: the ARN AWS would give.
    alarms = {n for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    def alarm_arns(value):
        if isinstance(value, list):
            return [alarm_arns(v) for v in value]
        if not isinstance(value, dict):
            return value
        got = value.get("Fn::GetAtt")
        if set(value) == {"Fn::GetAtt"} and got[0] in alarms and got[1] == "Arn":
            return {"Fn::Sub": f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{got[0]}"}
        return {k: alarm_arns(v) for k, v in value.items()}

    template["Resources"] = resources = alarm_arns(resources)
    outputs = template.get("Outputs", {})
    for name in [n for n, o in outputs.items() if any(ref in json.dumps(o) for ref in left_out)]:
        del outputs[name]
    return template, left_out


def wait_for(cfn, stack):
    for _ in range(600):
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            break
        time.sleep(0.1)
    if status != "CREATE_COMPLETE":
        events = [
            f"{e['LogicalResourceId']} {e['ResourceStatus']} {e.get('ResourceStatusReason', '')}"
            for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]
        ]
        raise SystemExit(f"stack {stack}: {status}\n" + "\n".join(events))


def deploy(args):
    endpoint = args.endpoint
    code_key = f"{args.stack}/bootstrap.zip"
    template = sam.transform(sam.package(sam.load(str(TEMPLATE)), f"s3://{BUCKET}/{code_key}"))
    logging = {
        name: f["Properties"].get("LoggingConfig", {})
        for name, f in sam.resources_of_type(template, "AWS::Lambda::Function").items()
    }
    template, left_out = deployable(template)

    s3 = client("s3", endpoint)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, Path(args.code).read_bytes())
    s3.put_object(Bucket=BUCKET, Key=code_key, Body=zipped.getvalue())

    cfn = client("cloudformation", endpoint)
    parameters = [
        {"ParameterKey": k, "ParameterValue": v}
        for k, v in (p.split("=", 1) for p in args.param)
    ]
    cfn.create_stack(
        StackName=args.stack,
        TemplateBody=json.dumps(template),
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM"],
    )
    wait_for(cfn, args.stack)

    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName=args.stack)["StackResourceSummaries"]
    }
    lam, iam, sts = client("lambda", endpoint), client("iam", endpoint), client("sts", endpoint)
    ddb, sqs = client("dynamodb", endpoint), client("sqs", endpoint)

    roles = {}
    for name, r in template["Resources"].items():
        # A role whose condition is false (ApiGatewayLogsRole) is not created.
        if r["Type"] != "AWS::IAM::Role" or name not in physical:
            continue
        role_name = physical[name]
        role = iam.get_role(RoleName=role_name)["Role"]
        policies = {
            p: policy_document(iam.get_role_policy(RoleName=role_name, PolicyName=p))
            for p in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        }
        attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
        roles[name] = {
            "name": role_name,
            "arn": role["Arn"],
            "trust": role["AssumeRolePolicyDocument"],
            "policies": policies,
            "attached": [a["PolicyArn"] for a in attached],
        }

    functions = {}
    for name, r in template["Resources"].items():
        if r["Type"] != "AWS::Lambda::Function":
            continue
        config = lam.get_function_configuration(FunctionName=physical[name])
        role_logical = next(n for n, role in roles.items() if role["arn"] == config["Role"])
        creds = sts.assume_role(RoleArn=config["Role"], RoleSessionName=physical[name][:64])[
            "Credentials"
        ]
        aliases = {
            a["Name"]: a["AliasArn"] for a in lam.list_aliases(FunctionName=physical[name])["Aliases"]
        }
        functions[name] = {
            "name": config["FunctionName"],
            "arn": config["FunctionArn"],
            # Alias name -> ARN, and who may invoke the function itself and
            # each alias (their resource policies' statements).
            "aliases": aliases,
            "grants": {
                qualifier: invoke_grants(lam, physical[name], qualifier)
                for qualifier in [None, *aliases]
            },
            "mappings": [
                {k: m.get(k) for k in ("FunctionArn", "EventSourceArn", "FunctionResponseTypes", "BatchSize")}
                for m in lam.list_event_source_mappings()["EventSourceMappings"]
                if m["FunctionArn"].split(":")[6] == config["FunctionName"]
            ],
            "role": role_logical,
            "environment": config.get("Environment", {}).get("Variables", {}),
            "memory_size": config["MemorySize"],
            "timeout": config["Timeout"],
            "runtime": config["Runtime"],
            "handler": config["Handler"],
            "logging": logging[name],
            "credentials": {
                "access_key_id": creds["AccessKeyId"],
                "secret_access_key": creds["SecretAccessKey"],
                "session_token": creds["SessionToken"],
            },
        }

    tables_out = {}
    for name, r in template["Resources"].items():
        if r["Type"] == "AWS::DynamoDB::Table":
            t = ddb.describe_table(TableName=physical[name])["Table"]
            tables_out[name] = {
                "name": t["TableName"],
                "arn": t["TableArn"],
                "key_schema": t["KeySchema"],
                "attribute_definitions": t["AttributeDefinitions"],
                "stream": t.get("StreamSpecification"),
                "indexes": [
                    {
                        "name": i["IndexName"],
                        "key_schema": i["KeySchema"],
                        "projection": i["Projection"],
                    }
                    for i in t.get("GlobalSecondaryIndexes", [])
                ],
            }

    queues = {}
    for name, r in template["Resources"].items():
        if r["Type"] == "AWS::SQS::Queue":
            url = physical[name]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            queues[name] = {"url": url, "attributes": attrs}

    events = client("events", endpoint)
    buses = {}
    for name, r in template["Resources"].items():
        if r["Type"] == "AWS::Events::EventBus":
            bus = physical[name]
            rules = events.list_rules(EventBusName=bus)["Rules"]
            buses[name] = {
                "name": bus,
                "rules": [
                    {
                        "name": rule["Name"],
                        "arn": rule["Arn"],
                        "pattern": json.loads(rule["EventPattern"]),
                        "targets": events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"],
                    }
                    for rule in rules
                ],
            }
    # Schedules live on the default bus: their expressions, targets and inputs.
    schedules = [
        {
            "name": rule["Name"],
            "schedule": rule.get("ScheduleExpression"),
            "state": rule.get("State"),
            "targets": events.list_targets_by_rule(Rule=rule["Name"])["Targets"],
        }
        for rule in events.list_rules()["Rules"]
        if rule.get("ScheduleExpression") and rule["Name"].startswith(args.stack)
    ]
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cfn.describe_stacks(StackName=args.stack)["Stacks"][0].get("Outputs", [])
    }

    return {
        "stack": args.stack,
        "left_out": left_out,
        "functions": functions,
        "alarm-metrics": alarm_metrics,
        "alarms": alarms,
        "parameters": parameters,
        "roles": roles,
        "tables": tables_out,
        "queues": queues,
        "buses": buses,
        "schedules": schedules,
        "outputs": outputs,
    }


def invoke_grants(lam, function, qualifier):
    """The statements of a function's (or alias's) resource policy, as
    (principal, source ARN) pairs; [] when it has none."""
    args = {"FunctionName": function, **({"Qualifier": qualifier} if qualifier else {})}
    try:
        policy = json.loads(lam.get_policy(**args)["Policy"])
    except lam.exceptions.ResourceNotFoundException:
        return []
    return [
        {
            "principal": st.get("Principal"),
            "source_arn": st.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn"),
        }
        for st in policy.get("Statement", [])
    ]


def policy_document(answer):
    """A GetRolePolicy document as data. moto stores CloudFormation's inline
    policies as dicts and answers their Python repr; AWS answers JSON."""
    doc = answer["PolicyDocument"]
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            doc = ast.literal_eval(doc)
    return doc


def enforce_iam(args):
    request = urllib.request.Request(
        f"{args.endpoint}/moto-api/reset-auth",
        data=b"0",
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    with urllib.request.urlopen(request) as r:
        return json.loads(r.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tables")
    sub.add_parser("attribute-grants")
    sub.add_parser("grants")
    sub.add_parser("functions")
    sub.add_parser("alarm-metrics")
    sub.add_parser("alarms")
    sub.add_parser("parameters")
    for name in ("admin", "enforce-iam"):
        sub.add_parser(name).add_argument("--endpoint", required=True)
    d = sub.add_parser("deploy")
    d.add_argument("--endpoint", required=True)
    d.add_argument("--stack", required=True)
    d.add_argument("--code", required=True)
    d.add_argument("--param", action="append", default=[])
    r = sub.add_parser("rule-deliver")
    for name in ("--endpoint", "--key", "--secret", "--bus", "--detail-type", "--detail"):
        r.add_argument(name, required=True)
    p = sub.add_parser("pipe-check")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--table", required=True)
    args = parser.parse_args()
    handler = {
        "tables": tables,
        "attribute-grants": attribute_grants,
        "grants": grants,
        "functions": functions,
        "alarm-metrics": alarm_metrics,
        "alarms": alarms,
        "parameters": parameters,
        "admin": admin,
        "deploy": deploy,
        "enforce-iam": enforce_iam,
        "pipe-check": pipe_check,
        "rule-deliver": rule_deliver,
    }
    json.dump(handler[args.command](args), sys.stdout, indent=1, default=str)
    print()


if __name__ == "__main__":
    main()
