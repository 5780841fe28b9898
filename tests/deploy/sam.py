"""template.yaml as `sam package` + CloudFormation's SAM transform see it,
offline: the shared first step of the template checks and the rehearsal.

- `load(path)`: the template as plain JSON data, read with cfn-lint's own
  decoder (so !Ref, !GetAtt and !Sub parse as they do for the linter).
- `package(template, code_uri)`: what `sam package` does to it: every
  function's local `CodeUri` (its own or the template's Globals') becomes
  an S3 URI.
- `transform(template)`: the SAM transform (PyPI aws-sam-translator), with a
  managed-policy loader that knows no policies: the template must not need
  any (least privilege is written out in full).
"""

import copy
import json
import os

from cfnlint.decode import decode
from samtranslator.translator.transform import transform as sam_transform

DEFAULT_CODE_URI = "s3://rehearsal-artefacts/bootstrap.zip"


class _NoManagedPolicies:
    def load(self):
        return {}


def load(path):
    template, errors = decode(path)
    if errors:
        raise SystemExit("\n".join(str(e) for e in errors))
    # cfn-lint's node types -> plain dicts, lists and strings.
    return json.loads(json.dumps(template))


def package(template, code_uri=DEFAULT_CODE_URI):
    out = copy.deepcopy(template)
    functions = [
        resource.get("Properties", {})
        for resource in out.get("Resources", {}).values()
        if resource.get("Type") == "AWS::Serverless::Function"
    ]
    # A CodeUri in Globals is the default of every function.
    functions.append(out.get("Globals", {}).get("Function", {}))
    for props in functions:
        if isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = code_uri
    return out


def transform(template):
    # The translator reads the region for pseudo parameters; any will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return sam_transform(copy.deepcopy(template), {}, _NoManagedPolicies())


def transformed(path, code_uri=DEFAULT_CODE_URI):
    return transform(package(load(path), code_uri))


def resources_of_type(template, type_name):
    return {
        name: r
        for name, r in template.get("Resources", {}).items()
        if r.get("Type") == type_name
    }
