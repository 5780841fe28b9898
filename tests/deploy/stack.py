#!/usr/bin/env python3
"""template.yaml deployed as `sam deploy` would, against moto; the Rust
tests drive it (tests/rehearsal.rs, and the emulator fixture's tables).

Subcommands, each printing one JSON document on stdout:

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
      policies, tables, queues) and assumes each function's role (before
      IAM is enforced: moto answers 500 to an AssumeRole it must check
      against a trust policy naming a service).

  enforce-iam --endpoint URL
      From now on moto checks every request against IAM.
"""

import argparse
import ast
import io
import json
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import sam

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


def tables(_args):
    template = sam.load(str(TEMPLATE))
    out = {}
    for name, table in sam.resources_of_type(template, "AWS::DynamoDB::Table").items():
        props = table["Properties"]
        out[name] = {
            key: props[key]
            for key in (
                "AttributeDefinitions",
                "KeySchema",
                "GlobalSecondaryIndexes",
                "BillingMode",
            )
            if key in props
        }
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
        if r["Type"] != "AWS::IAM::Role":
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
        functions[name] = {
            "name": config["FunctionName"],
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

    return {
        "stack": args.stack,
        "left_out": left_out,
        "functions": functions,
        "roles": roles,
        "tables": tables_out,
        "queues": queues,
    }


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
    for name in ("admin", "enforce-iam"):
        sub.add_parser(name).add_argument("--endpoint", required=True)
    d = sub.add_parser("deploy")
    d.add_argument("--endpoint", required=True)
    d.add_argument("--stack", required=True)
    d.add_argument("--code", required=True)
    d.add_argument("--param", action="append", default=[])
    args = parser.parse_args()
    handler = {"tables": tables, "admin": admin, "deploy": deploy, "enforce-iam": enforce_iam}
    json.dump(handler[args.command](args), sys.stdout, indent=1, default=str)
    print()


if __name__ == "__main__":
    main()
