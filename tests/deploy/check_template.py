#!/usr/bin/env python3
"""Checks template.yaml *after* the SAM transform, where cfn-lint does not
look: what CloudFormation would actually be asked to build.

- The REST API routes each of the cancel function's Api events (the
  routes of the code's path table: `--routes` prints them for the suite's
  comparison) and every other path and method (ANY /{proxy+}) to the
  function through Lambda proxy integrations, for exactly their methods,
  and API Gateway may invoke the function for each.
  (An inline DefinitionBody with `paths: {}` once made SAM drop every route:
  the API deployed with no methods.)
- API Gateway's own errors are complete uforgeError documents, in schema
  order, with the status they are sent with.
- The functions are what `sam build` produces: provided.al2023 `bootstrap`
  on arm64.
- The automation function is reached only by its rule (cancel requests on
  the automation bus), its command queue (reporting partial batch
  failures) and direct invokes, never through API Gateway; its failed
  asynchronous invocations land on a queue.
- "Publish Cancelled" announcements go to their own bus, which only the
  pipe may write, as a fixed projection; AutomationPrincipals refuses
  wildcards.
- Every output and parameter description says what the template does:
  events named on the buses they travel on, outputs that exist.
- The IAM statements of the transformed template have no wildcard either.

Exits non-zero on the first failed check, printing what was found.
"""

import json
import re
import sys
from pathlib import Path
import xml.etree.ElementTree as ET

import sam
import template_iam

CATCH_ALL = "/{proxy+}"
UFORGE_NS = "http://www.usharesoft.com/uforge"
ERROR_CHILDREN = ["localizedErrorMsg", "requestMethod", "requestUri", "statusCode", "timestamp"]
# Gateway responses every deployment must have (API Gateway's own errors
# that a UForge client can meet on a route that exists).
REQUIRED_GATEWAY_RESPONSES = {
    "THROTTLED",
    "REQUEST_TOO_LARGE",
    "DEFAULT_5XX",
    "WAF_FILTERED",
    "MISSING_AUTHENTICATION_TOKEN",
}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


# The API invokes the cancel function's alias `live` (its gradual
# deployment shifts that alias), never the function's $LATEST.
CANCEL_TARGET = "CancelFunctionAliaslive"


def integration_targets_cancel_function(operation):
    integration = operation.get("x-amazon-apigateway-integration", {})
    uri = integration.get("uri", {})
    text = uri.get("Fn::Sub", "") if isinstance(uri, dict) else str(uri)
    return (
        integration.get("type") == "aws_proxy"
        and integration.get("httpMethod") == "POST"
        and "${%s}" % CANCEL_TARGET in text
    )


def api_routes(template):
    """CancelFunction's Api events as {path: [METHOD, ...]} (before the SAM
    transform, as the template states them)."""
    events = template["Resources"]["CancelFunction"]["Properties"].get("Events", {})
    routes = {}
    for event in events.values():
        if event.get("Type") == "Api":
            props = event["Properties"]
            routes.setdefault(props["Path"], []).append(props["Method"].upper())
    return routes


def check_routes(template, routes):
    apis = sam.resources_of_type(template, "AWS::ApiGateway::RestApi")
    if not check(len(apis) == 1, f"expected one REST API, found {sorted(apis)}"):
        return
    (api_name, api), = apis.items()
    props = api["Properties"]
    check("Name" in props, "the REST API has no Name (moto and the console need one)")
    paths = props.get("Body", {}).get("paths", {})
    check(paths, "the REST API body has no paths: the API would route nothing")
    # Each route of CancelFunction's Api events (the same list the suite
    # compares with the code's path table) is a proxy integration with it
    # for exactly its methods.
    check(routes, "CancelFunction has no Api routes")
    for path, methods in routes.items():
        if path == CATCH_ALL:
            continue
        operations = paths.get(path, {})
        for method in methods:
            check(
                integration_targets_cancel_function(operations.get(method.lower(), {})),
                f"{method} {path} is not a proxy integration with CancelFunction: {operations}",
            )
        check(
            set(operations) <= {m.lower() for m in methods},
            f"{path} routes more than {methods}: {sorted(operations)}",
        )
    proxy = paths.get("/{proxy+}", {})
    check(
        integration_targets_cancel_function(proxy.get("x-amazon-apigateway-any-method", {})),
        f"ANY /{{proxy+}} is not a proxy integration with CancelFunction: {proxy}",
    )
    deployments = [
        d
        for d in sam.resources_of_type(template, "AWS::ApiGateway::Deployment").values()
        if d["Properties"].get("RestApiId") == {"Ref": api_name}
    ]
    check(len(deployments) == 1, "the REST API has no Deployment")
    stages = [
        s
        for s in sam.resources_of_type(template, "AWS::ApiGateway::Stage").values()
        if s["Properties"].get("RestApiId") == {"Ref": api_name}
    ]
    check(
        len(stages) == 1 and stages[0]["Properties"].get("StageName") == {"Ref": "StageName"},
        f"the REST API's stage is not the StageName parameter: {stages}",
    )
    # API Gateway must be allowed to invoke the function for both routes.
    source_arns = []
    for p in sam.resources_of_type(template, "AWS::Lambda::Permission").values():
        perm = p["Properties"]
        sub = perm.get("SourceArn", {}).get("Fn::Sub")
        if (
            perm.get("Principal") == "apigateway.amazonaws.com"
            and perm.get("FunctionName") == {"Ref": CANCEL_TARGET}
            and isinstance(sub, list)
            and sub[1].get("__ApiId__") == {"Ref": api_name}
        ):
            source_arns.append(sub[0])
    wanted = [
        f"/{method}" + re.sub(r"\{[a-z]+\}", "*", path)
        for path, methods in routes.items()
        if path != CATCH_ALL
        for method in methods
    ] + ["/*/*"]
    for suffix in wanted:
        check(
            any(s.endswith("${__Stage__}" + suffix) for s in source_arns),
            f"API Gateway may not invoke CancelFunction for {suffix}: {source_arns}",
        )
    return props.get("Body", {})


def check_gateway_responses(body):
    responses = (body or {}).get("x-amazon-apigateway-gateway-responses", {})
    missing = REQUIRED_GATEWAY_RESPONSES - set(responses)
    check(not missing, f"gateway responses missing: {sorted(missing)}")
    for name, response in responses.items():
        status = response.get("statusCode")
        templates = response.get("responseTemplates", {})
        xml = templates.get("application/xml")
        if not check(xml, f"{name}: no application/xml template"):
            continue
        # What API Gateway substitutes, roughly, so the XML can be parsed.
        sample = (
            xml.replace("$context.httpMethod", "DELETE")
            .replace("$context.path", "/prod/api/users/alice/x")
            .replace("$context.requestTime", "27/Nov/2026:05:20:12 +0000")
        )
        check("$" not in sample, f"{name}: unknown template variable left in {sample}")
        try:
            root = ET.fromstring(sample)
        except ET.ParseError as e:
            check(False, f"{name}: not XML ({e}): {xml}")
            continue
        check(root.tag == f"{{{UFORGE_NS}}}uforgeError", f"{name}: root is {root.tag}")
        check(
            xml.startswith("<ns0:uforgeError xmlns:ns0="),
            f"{name}: the root must be prefixed (the UForge SDK)",
        )
        children = [c.tag for c in root]
        check(children == ERROR_CHILDREN, f"{name}: children {children}")
        message = root.find("localizedErrorMsg/message")
        check(message is not None and message.text, f"{name}: no localizedErrorMsg/message")
        code = root.findtext("statusCode")
        check(
            status is not None and code == str(status),
            f"{name}: sent as {status} but says statusCode {code}",
        )


def check_functions(template):
    functions = sam.resources_of_type(template, "AWS::Lambda::Function")
    check(
        {"CancelFunction", "ReconcilerFunction", "AutomationFunction"} <= set(functions),
        f"functions: {sorted(functions)}",
    )
    for name, f in functions.items():
        p = f["Properties"]
        check(p.get("Runtime") == "provided.al2023", f"{name}: runtime {p.get('Runtime')}")
        check(p.get("Handler") == "bootstrap", f"{name}: handler {p.get('Handler')}")
        check(p.get("Architectures") == ["arm64"], f"{name}: architectures {p.get('Architectures')}")
        check(
            "S3Bucket" in p.get("Code", {}),
            f"{name}: code is not the packaged artefact: {p.get('Code')}",
        )


def check_gradual_deployment(template):
    """The cancel function's alias `live` is moved by CodeDeploy in a
    gradual deployment, rolled back by the alarms that watch what users
    feel, with a role that can do only that."""
    resources = template["Resources"]
    alias = resources.get(CANCEL_TARGET, {})
    check(alias.get("Type") == "AWS::Lambda::Alias", f"no alias {CANCEL_TARGET}")
    update = alias.get("UpdatePolicy", {}).get("CodeDeployLambdaAliasUpdate", {})
    check(update, f"{CANCEL_TARGET} is not updated by CodeDeploy: {alias.get('UpdatePolicy')}")
    group_name = update.get("DeploymentGroupName", {}).get("Ref")
    group = resources.get(group_name, {})
    check(group.get("Type") == "AWS::CodeDeploy::DeploymentGroup", f"no deployment group {group_name}")
    app = update.get("ApplicationName", {}).get("Ref")
    check(resources.get(app, {}).get("Type") == "AWS::CodeDeploy::Application", f"no application {app}")
    props = group.get("Properties", {})
    alarms = sorted(a.get("Name", {}).get("Ref", "?") for a in props.get("AlarmConfiguration", {}).get("Alarms", []))
    check(
        alarms == ["Api5xxAlarm", "ApiLatencyAlarm", "FunctionErrorsAlarm"],
        f"rollback alarms: {alarms}",
    )
    check(props.get("AlarmConfiguration", {}).get("Enabled") is True, "rollback alarms not enabled")
    events = props.get("AutoRollbackConfiguration", {}).get("Events", [])
    check("DEPLOYMENT_STOP_ON_ALARM" in events, f"no rollback on alarm: {events}")
    # The transform resolves the parameter (here to its default).
    config = json.dumps(props.get("DeploymentConfigName", {}))
    default = template["Parameters"].get("DeploymentType", {}).get("Default", "?")
    check(
        "CodeDeployDefault.Lambda" in config and default in config,
        f"the deployment type is not DeploymentType's: {config}",
    )
    check(
        props.get("ServiceRoleArn") == {"Fn::GetAtt": ["CancelDeploymentRole", "Arn"]},
        f"CodeDeploy's role is not CancelDeploymentRole: {props.get('ServiceRoleArn')}",
    )
    check("CodeDeployServiceRole" not in resources, "SAM's default CodeDeploy role (a managed policy on *) is there")


def check_samconfig(template, path):
    """Each environment of samconfig.toml deploys with parameters the
    template has, and values it allows."""
    import tomllib

    with open(path, "rb") as f:
        config = tomllib.load(f)
    params = template["Parameters"]
    envs = [e for e in config if isinstance(config[e], dict) and "deploy" in config[e]]
    check({"test", "prod"} <= set(envs), f"samconfig environments: {envs}")
    for env in envs:
        deploy = config[env]["deploy"]["parameters"]
        check(config.get(env, {}).get("build"), f"samconfig {env}: no build parameters")
        for pair in deploy.get("parameter_overrides", "").split():
            name, _, value = pair.partition("=")
            check(name in params, f"samconfig {env}: no parameter {name}")
            allowed = params.get(name, {}).get("AllowedValues")
            if allowed:
                check(value in [str(a) for a in allowed], f"samconfig {env}: {name}={value} not in {allowed}")


def check_tracing_and_access_logs(template):
    """X-Ray on every function and the stage; a JSON access log, kept as
    long as the functions' logs."""
    for name, f in sam.resources_of_type(template, "AWS::Lambda::Function").items():
        check(
            f["Properties"].get("TracingConfig", {}).get("Mode") == "Active",
            f"{name}: tracing is not active",
        )
    for name, stage in sam.resources_of_type(template, "AWS::ApiGateway::Stage").items():
        props = stage["Properties"]
        check(props.get("TracingEnabled") is True, f"{name}: tracing is not enabled")
        log = props.get("AccessLogSetting", {})
        check("ApiAccessLogGroup" in json.dumps(log.get("DestinationArn")), f"{name}: access log goes to {log}")
        try:
            # `messageString` is already quoted by API Gateway.
            fields = json.loads(log.get("Format", "").replace("$context.error.messageString", '""'))
        except ValueError:
            fields = {}
        for field in ("requestId", "ip", "route", "status", "latencyMs", "integrationLatencyMs", "error", "traceId"):
            check(field in fields, f"{name}: the access log has no {field}: {log.get('Format')}")
    group = template["Resources"].get("ApiAccessLogGroup", {}).get("Properties", {})
    check(group.get("RetentionInDays") == {"Ref": "LogRetentionDays"}, f"access log retention: {group}")


def properties_for(template, type_name, function):
    """The properties of every `type_name` resource naming `function`."""
    return [
        r["Properties"]
        for r in sam.resources_of_type(template, type_name).values()
        if r["Properties"].get("FunctionName") == {"Ref": function}
    ]


def check_automation(template):
    """The automation function is reached by its rule and its command
    queue through its `events` alias, which nobody else is granted, and by
    direct invokes of the function itself: never through API Gateway; its
    asynchronous failures (alias and function) land on a queue; its queue
    reports partial batch failures."""
    api_text = json.dumps(sam.resources_of_type(template, "AWS::ApiGateway::RestApi"))
    check("AutomationFunction" not in api_text, "the REST API routes to AutomationFunction")
    aliases = {
        name: r["Properties"]
        for name, r in sam.resources_of_type(template, "AWS::Lambda::Alias").items()
        if r["Properties"].get("FunctionName") == {"Ref": "AutomationFunction"}
    }
    check(
        [a.get("Name") for a in aliases.values()] == ["events"],
        f"AutomationFunction has no single `events` alias: {aliases}",
    )
    alias = next(iter(aliases), None)
    check(
        properties_for(template, "AWS::Lambda::Permission", "AutomationFunction") == [],
        "the function itself grants an invoke: direct invokers could reach the events door",
    )
    permissions = properties_for(template, "AWS::Lambda::Permission", alias)
    rules = sam.resources_of_type(template, "AWS::Events::Rule")
    check(
        len(permissions) == 1
        and permissions[0].get("Principal") == "events.amazonaws.com"
        and permissions[0].get("SourceArn", {}).get("Fn::GetAtt", [None])[0] in rules,
        f"the events alias may be invoked by more than its rule: {permissions}",
    )
    (rule,) = [
        r["Properties"]
        for r in rules.values()
        if any(t.get("Arn") == {"Ref": alias} for t in r["Properties"].get("Targets", []))
    ] or [{}]
    check(rule.get("EventBusName") == {"Ref": "AutomationBus"}, f"the automation rule is not on the bus: {rule}")
    check(
        rule.get("EventPattern") == {"detail-type": ["Publish Cancel Requested"]},
        f"the automation rule matches more than cancel requests: {rule.get('EventPattern')}",
    )
    check(
        not any(
            "AutomationFunction" in json.dumps(t.get("Arn"))
            for r in rules.values()
            for t in r["Properties"].get("Targets", [])
            if t.get("Arn") != {"Ref": alias}
        ),
        "a rule targets the automation function itself, not its events alias",
    )
    check(
        properties_for(template, "AWS::Lambda::EventSourceMapping", "AutomationFunction") == [],
        "an event source mapping invokes the function itself, not its events alias",
    )
    mappings = properties_for(template, "AWS::Lambda::EventSourceMapping", alias)
    check(
        len(mappings) == 1
        and mappings[0].get("EventSourceArn") == {"Fn::GetAtt": ["CommandQueue", "Arn"]}
        and mappings[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
        f"the command queue's mapping: {mappings}",
    )
    configs = properties_for(template, "AWS::Lambda::EventInvokeConfig", "AutomationFunction")
    check(
        sorted(c.get("Qualifier") for c in configs) == ["$LATEST", "events"]
        and all(
            c.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            == {"Fn::GetAtt": ["AutomationFailureQueue", "Arn"]}
            for c in configs
        ),
        f"failed asynchronous invocations go nowhere: {configs}",
    )


def check_announcements(template):
    """"Publish Cancelled" goes to a bus of its own that only the pipe may
    put events on, as a fixed projection; requesters are granted the
    automation bus only, and AutomationPrincipals takes no wildcard."""
    (pipe,) = sam.resources_of_type(template, "AWS::Pipes::Pipe").values()
    props = pipe["Properties"]
    check(props["Target"] == {"Fn::GetAtt": ["AnnouncementBus", "Arn"]}, f"the pipe announces on {props['Target']}")
    rendered = props["TargetParameters"]["InputTemplate"]
    check("<$.dynamodb.NewImage>" not in rendered and '"record"' not in rendered,
          "the pipe forwards the whole new image, not a fixed projection")
    (policy,) = [p["Properties"] for p in sam.resources_of_type(template, "AWS::Events::EventBusPolicy").values()
                 if p["Properties"].get("EventBusName") == {"Ref": "AnnouncementBus"}] or [{}]
    st = policy.get("Statement", {})
    check(
        st.get("Effect") == "Deny" and st.get("Principal") == "*" and st.get("Action") == "events:PutEvents"
        and st.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn")
        == {"Fn::GetAtt": ["PublishCancelledPipeRole", "Arn"]},
        f"the announcement bus is not the pipe's alone: {policy}",
    )
    for name, p in sam.resources_of_type(template, "AWS::Events::EventBusPolicy").items():
        if p["Properties"].get("Statement", {}).get("Effect") == "Allow":
            check(p["Properties"].get("EventBusName") == {"Ref": "AutomationBus"},
                  f"{name} lets requesters put events on {p['Properties'].get('EventBusName')}")
    allowed = template["Parameters"]["AutomationPrincipals"].get("AllowedPattern")
    if not check(allowed, "AutomationPrincipals takes any string"):
        return
    pattern = re.compile(allowed)
    for ok in ["", "123456789012", "arn:aws:iam::123456789012:root",
               "arn:aws:iam::123456789012:role/watchdog", "arn:aws:iam::123456789012:user/ops/alice"]:
        check(pattern.fullmatch(ok), f"AutomationPrincipals refuses {ok!r}")
    for bad in ["*", "arn:aws:iam::*:root", "arn:aws:iam::123456789012:role/*", "12345678901",
                "arn:aws:iam::123456789012:*", "o-abc123", "arn:aws:sts::123456789012:assumed-role/x/y"]:
        check(not pattern.fullmatch(bad), f"AutomationPrincipals accepts {bad!r}")


def check_dashboards(template):
    """Each dashboard body is JSON once CloudFormation has substituted it."""
    for name, d in sam.resources_of_type(template, "AWS::CloudWatch::Dashboard").items():
        body = d["Properties"]["DashboardBody"]
        text, variables = body["Fn::Sub"] if isinstance(body, dict) else (body, {})
        for var in list(variables) + ["AWS::Region"]:
            text = text.replace("${" + var + "}", "sample")
        try:
            widgets = json.loads(text)["widgets"]
        except (ValueError, KeyError) as e:
            check(False, f"{name}: not a dashboard body ({e})")
            continue
        check(len(widgets) >= 4, f"{name}: {len(widgets)} widgets")


def check_waf(template):
    """The optional web ACL is attached to the API's stage, rate-limits per
    IP with a Block (answered by the WAF_FILTERED gateway response)."""
    acl = template["Resources"].get("ApiWebAcl")
    assoc = template["Resources"].get("ApiWebAclAssociation")
    if not check(acl and assoc, "no optional web ACL"):
        return
    check(acl.get("Condition") == "HasWaf" and assoc.get("Condition") == "HasWaf", "WAF not optional")
    rule = acl["Properties"]["Rules"][0]
    check("RateBasedStatement" in rule["Statement"], f"not a rate rule: {rule}")
    check(rule["Action"] == {"Block": {}}, f"a WAF block must use API Gateway's WAF_FILTERED: {rule['Action']}")
    arn = assoc["Properties"]["ResourceArn"].get("Fn::Sub", "")
    check("/restapis/${Api}/stages/${ApiStage}" in arn, f"web ACL not on the API's stage: {arn}")


def check_waf_limit(template):
    """WafRateLimit takes exactly what AWS WAF accepts: 0 (no ACL) or 10 to
    2,000,000,000."""
    param = template["Parameters"]["WafRateLimit"]
    pattern = re.compile(param["AllowedPattern"])
    for ok in ["0", "10", "99", "100", "2000000000", "1999999999"]:
        check(pattern.fullmatch(ok), f"WafRateLimit refuses {ok}")
    for bad in ["", "1", "9", "09", "-1", "2000000001", "9999999999", "1e3", " 10"]:
        check(not pattern.fullmatch(bad), f"WafRateLimit accepts {bad!r}")


BUS_NAMES = {"AutomationBus": "automation bus", "AnnouncementBus": "announcement bus"}


def event_buses(template):
    """Each event this stack names, and the bus it travels on: a cancel
    request on the bus of the rule that takes it, an announcement on the
    bus the pipe puts it on."""
    buses = {}
    for rule in sam.resources_of_type(template, "AWS::Events::Rule").values():
        props = rule["Properties"]
        bus = props.get("EventBusName", {}).get("Ref")
        for detail_type in props.get("EventPattern", {}).get("detail-type", []):
            buses[detail_type] = bus
    for pipe in sam.resources_of_type(template, "AWS::Pipes::Pipe").values():
        props = pipe["Properties"]
        bus = props["Target"].get("Fn::GetAtt", [None])[0]
        detail_type = props.get("TargetParameters", {}).get("EventBridgeEventBusParameters", {}).get("DetailType")
        if detail_type:
            buses[detail_type] = bus
    return buses


def referenced(value):
    """The logical id an output's value names (`Ref` or `GetAtt`)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def check_events_alias_guard(template):
    """What an operator attaches (or puts in an SCP) to keep principals with
    a broad lambda:InvokeFunction off the `events` alias: one Deny, of that
    action, on that alias, for everyone it is attached to."""
    (policy,) = [
        r["Properties"] for r in sam.resources_of_type(template, "AWS::IAM::ManagedPolicy").values()
        if "events" in json.dumps(r["Properties"].get("PolicyDocument", {}))
    ] or [{}]
    (statement,) = policy.get("PolicyDocument", {}).get("Statement", [{}])
    check(
        statement.get("Effect") == "Deny"
        and statement.get("Action") == "lambda:InvokeFunction"
        and statement.get("Resource") == {"Fn::Sub": "${AutomationFunction.Arn}:events"}
        and "Condition" not in statement and "Principal" not in statement,
        f"the events alias guard is not a plain Deny of invoking the alias: {policy}",
    )
    scp = template.get("Outputs", {}).get("EventsAliasGuardScp", {}).get("Value", {}).get("Fn::Sub", "")
    try:
        check(json.loads(scp.replace("${AutomationFunction.Arn}", "arn")) ==
              {"Sid": statement.get("Sid"), "Effect": "Deny", "Action": "lambda:InvokeFunction",
               "Resource": "arn:events"},
              f"output EventsAliasGuardScp is not the guard's statement: {scp}")
    except ValueError as e:
        check(False, f"output EventsAliasGuardScp is not JSON: {e}")


def check_descriptions(template):
    """What the template says of itself is what it does: every output says
    what it is; an output's description names only events that travel on
    the resource it gives; a description that puts an event on a bus by
    name ("the automation bus") puts it on the bus it travels on; an output
    a description points to exists. (The announcement bus's description
    once still said announcements went on the automation bus.)"""
    buses = event_buses(template)
    check({"Publish Cancel Requested", "Publish Cancelled"} <= set(buses),
          f"events and their buses not found: {buses}")
    outputs = template.get("Outputs", {})
    texts = [(f"output {n}", o.get("Description", ""), referenced(o.get("Value"))) for n, o in outputs.items()]
    texts += [(f"parameter {n}", p.get("Description", ""), None) for n, p in template.get("Parameters", {}).items()]
    for name, output in outputs.items():
        check(output.get("Description"), f"output {name} has no Description")
    for where, text, resource in texts:
        text = " ".join(text.split())
        events = set(re.findall(r'"([^"]+)"', text)) & set(buses)
        if resource in BUS_NAMES:
            for event in events:
                check(buses[event] == resource,
                      f"{where} speaks of \"{event}\" events, which travel on {buses[event]}, not {resource}")
        for sentence in re.split(r"(?<=[.;])\s", text):
            for bus, bus_name in BUS_NAMES.items():
                if bus_name in sentence:
                    for event in set(re.findall(r'"([^"]+)"', sentence)) & set(buses):
                        check(buses[event] == bus,
                              f"{where} puts \"{event}\" on the {bus_name}; it travels on {buses[event]}")
        for named in re.findall(r"\b([A-Z][A-Za-z]+(?:Name|Url|Arn))\b", text):
            check(named in outputs, f"{where} points to an output {named} that does not exist")


def check_local_env(path, env_path):
    """`sam local invoke/start-api --env-vars events/local-env.json`: the
    file names functions of the template, and gives each the embedded
    in-memory backend (tests/sam_local.py then runs sam local with it)."""
    # After the transform: what the template's Globals give each function too.
    functions = sam.resources_of_type(sam.transformed(path), "AWS::Lambda::Function")
    try:
        env = json.loads(open(env_path).read())
    except (OSError, ValueError) as e:
        check(False, f"{env_path}: {e}")
        return
    check(set(env) == set(functions), f"{env_path} names {sorted(env)}, the template {sorted(functions)}")
    for name, variables in env.items():
        check(
            isinstance(variables, dict) and all(isinstance(v, str) for v in variables.values()),
            f"{env_path}: {name}'s variables must be strings",
        )
        check(variables.get("UFORGE_BACKEND") == "memory", f"{env_path}: {name} is not on the memory backend")
        declared = functions.get(name, {}).get("Properties", {}).get("Environment", {}).get("Variables", {})
        # sam local only overrides variables the template declares.
        check("UFORGE_BACKEND" in declared, f"template: {name} does not declare UFORGE_BACKEND")


def main(path):
    routes = api_routes(sam.load(path))
    if sys.argv[2:3] == ["--routes"]:
        json.dump(routes, sys.stdout)
        print()
        return 0
    check_local_env(path, str(Path(path).resolve().parent / "events" / "local-env.json"))
    template = sam.transformed(path)
    body = check_routes(template, routes)
    check_gateway_responses(body)
    check_functions(template)
    check_gradual_deployment(template)
    check_tracing_and_access_logs(template)
    check_samconfig(template, str(Path(path).resolve().parent / "samconfig.toml"))
    check_automation(template)
    check_announcements(template)
    check_descriptions(template)
    check_events_alias_guard(template)
    check_dashboards(template)
    check_waf_limit(template)
    check_waf(template)
    iam_violations = template_iam.violations(template)
    for v in iam_violations:
        check(False, f"transformed template IAM: {v}")
    for f in failures:
        print("transformed template:", f)
    print(f"transformed template: {len(failures)} failed checks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
