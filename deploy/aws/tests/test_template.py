"""Offline checks of deploy/aws/template.yaml: what cfn-lint cannot know about meshcall.

Run with the Python that has cfn-lint (scripts/test-aws-deploy uses .venv-aws):

    .venv-aws/bin/python deploy/aws/tests/test_template.py

The template is read with cfn-lint's own YAML decoder, so `!Ref X` arrives as
{"Ref": "X"}, `!Sub s` as {"Fn::Sub": "s"} and `!GetAtt A.B` as {"Fn::GetAtt": ["A", "B"]}.
Every check is a function of the template that raises AssertionError; `TemplateTest` runs
each on the real template, and `EveryCheckCanFail` runs each on a copy broken on purpose,
so a check that could never fail is itself a failure.
"""

import copy
import json
import os
import re
import unittest

import cfnlint.decode
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "template.yaml")

ROUTES = {
    "$connect", "$disconnect", "$default", "joinRoom", "sendMsgToRoom",
    "signal", "leaveRoom", "ping", "resume",
}
# What the bootstrap reads (crates/lambda/src/settings.rs, RUST_LOG by tracing).
ENV = {
    "MESHCALL_TABLE", "MESHCALL_CALLBACK_URL", "MESHCALL_MAX_ROOM_SIZE",
    "MESHCALL_MAX_MESSAGE_BYTES", "MESHCALL_STUN", "MESHCALL_TURN", "MESHCALL_TURN_SECRET",
    "MESHCALL_TURN_TTL", "MESHCALL_ALLOWED_ORIGINS", "MESHCALL_RESUME_GRACE",
    "MESHCALL_RESUME_SECRET", "RUST_LOG",
}
TABLE_ACTIONS = {
    "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
    "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem",
}
TABLE_ARN = {"Fn::GetAtt": ["Table", "Arn"]}
INDEX_ARNS = [{"Fn::Sub": "${Table.Arn}/index/byRoom"}, {"Fn::Sub": "${Table.Arn}/index/bySuspension"}]
CONNECTIONS = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/${StageName}/%s/@connections/*"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
OUTPUTS = {"WebSocketUrl", "AppUrl", "SiteBucket", "DistributionId", "TableName", "FunctionName"}
PARAMETER_DEFAULTS = {
    "StageName": "prod", "Architecture": "arm64", "MemorySize": 128, "LogRetentionInDays": 14,
    "LogLevel": "info", "MaxRoomSize": 8, "MaxMessageBytes": 131072,
    "StunUrls": "stun:stun.l.google.com:19302", "TurnUrls": "", "TurnSecret": "",
    "TurnTtl": "24h", "AllowedOrigins": "", "ResumeGrace": "30s", "ForceRelay": "false",
}


def load():
    template, matches = cfnlint.decode.decode(TEMPLATE)
    assert template is not None, f"template does not parse: {matches}"
    # Plain dicts and strings (cfn-lint's nodes carry line marks that deepcopy need not keep).
    return json.loads(json.dumps(template))


def resources(t, kind):
    return {name: r for name, r in t["Resources"].items() if r["Type"] == kind}


def the(t, kind):
    found = resources(t, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def as_list(x):
    return x if isinstance(x, list) else [x]


def statements(t):
    """Every IAM policy statement in the template, with where it is."""
    for name, r in t["Resources"].items():
        props = r.get("Properties", {})
        docs = []
        if r["Type"] == "AWS::IAM::Role":
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append(props["PolicyDocument"])
        for doc in docs:
            for s in as_list(doc["Statement"]):
                yield name, s


# ------------------------------------------------------------------------------- checks

def check_routes(t):
    api_name, api = the(t, "AWS::ApiGatewayV2::Api")
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.action"
    integ_name, integ = the(t, "AWS::ApiGatewayV2::Integration")
    assert integ["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert integ["Properties"]["ApiId"] == {"Ref": api_name}
    uri = integ["Properties"]["IntegrationUri"]["Fn::Sub"]
    fn_name, _ = the(t, "AWS::Lambda::Function")
    assert f"${{{fn_name}.Arn}}" in uri and uri.endswith("/invocations"), uri
    routes = resources(t, "AWS::ApiGatewayV2::Route")
    keys = [r["Properties"]["RouteKey"] for r in routes.values()]
    assert sorted(keys) == sorted(ROUTES), f"routes {sorted(keys)}"
    for name, r in routes.items():
        assert r["Properties"]["ApiId"] == {"Ref": api_name}, name
        assert r["Properties"]["Target"] == {"Fn::Sub": f"integrations/${{{integ_name}}}"}, name
        assert r["Properties"].get("AuthorizationType", "NONE") == "NONE", name
    deployment_name, deployment = the(t, "AWS::ApiGatewayV2::Deployment")
    assert set(as_list(deployment.get("DependsOn", []))) >= set(routes), "deployment before routes"
    _, stage = the(t, "AWS::ApiGatewayV2::Stage")
    props = stage["Properties"]
    assert props["DeploymentId"] == {"Ref": deployment_name}
    assert props["StageName"] == {"Ref": "StageName"}
    assert props["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
    assert props["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ThrottlingBurstLimit"}


def check_route_key_lines(text):
    """The literal `RouteKey:` lines, as a grep would read them (crates' tests do)."""
    keys = [m.strip().strip("'\"") for m in re.findall(r"^\s*RouteKey:(.*)$", text, re.M)]
    assert sorted(keys) == sorted(ROUTES), f"RouteKey lines {sorted(keys)}"


def check_function(t):
    fn_name, fn = the(t, "AWS::Lambda::Function")
    p = fn["Properties"]
    assert p["Runtime"] == "provided.al2023"
    assert p["Handler"] == "bootstrap"
    assert p["Architectures"] == [{"Ref": "Architecture"}]
    assert set(t["Parameters"]["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    assert p["Code"] == {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}}
    assert p["MemorySize"] == {"Ref": "MemorySize"}
    assert p["Timeout"] == 10
    log_name, log = the(t, "AWS::Logs::LogGroup")
    assert p["LoggingConfig"]["LogGroup"] == {"Ref": log_name}
    assert log["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert log["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + p["FunctionName"]["Fn::Sub"]}
    role_name, _ = the(t, "AWS::IAM::Role")
    assert p["Role"] == {"Fn::GetAtt": [role_name, "Arn"]}
    # API Gateway may invoke it, from this API only.
    perms = [r["Properties"] for r in resources(t, "AWS::Lambda::Permission").values()]
    api = [q for q in perms if q["Principal"] == "apigateway.amazonaws.com"]
    assert len(api) == 1 and api[0]["FunctionName"] == {"Ref": fn_name}
    assert api[0]["SourceArn"]["Fn::Sub"].startswith(
        "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/"), api[0]["SourceArn"]


def check_environment(t):
    _, fn = the(t, "AWS::Lambda::Function")
    env = fn["Properties"]["Environment"]["Variables"]
    assert set(env) == ENV, f"missing {sorted(ENV - set(env))}, unexpected {sorted(set(env) - ENV)}"
    assert env["MESHCALL_TABLE"] == {"Ref": "Table"}
    assert env["MESHCALL_CALLBACK_URL"] == {
        "Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}"}
    for var, param in [("MESHCALL_MAX_ROOM_SIZE", "MaxRoomSize"), ("MESHCALL_MAX_MESSAGE_BYTES", "MaxMessageBytes"),
                       ("MESHCALL_STUN", "StunUrls"), ("MESHCALL_TURN", "TurnUrls"),
                       ("MESHCALL_TURN_SECRET", "TurnSecret"), ("MESHCALL_TURN_TTL", "TurnTtl"),
                       ("MESHCALL_RESUME_GRACE", "ResumeGrace"), ("MESHCALL_RESUME_SECRET", "ResumeSecret"),
                       ("RUST_LOG", "LogLevel")]:
        assert env[var] == {"Ref": param}, f"{var} = {env[var]}"
    # The CloudFront origin always, the AllowedOrigins parameter only when it is not empty.
    cond, with_extra, without = env["MESHCALL_ALLOWED_ORIGINS"]["Fn::If"]
    cloudfront = {"Fn::Sub": "https://${Distribution.DomainName}"}
    assert t["Conditions"][cond] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AllowedOrigins"}, ""]}]}
    assert with_extra == {"Fn::Join": [",", [cloudfront, {"Ref": "AllowedOrigins"}]]}
    assert without == cloudfront


def check_parameters(t):
    params = t["Parameters"]
    for name, default in PARAMETER_DEFAULTS.items():
        assert name in params, f"no parameter {name}"
        assert str(params[name].get("Default")) == str(default), f"{name} default {params[name].get('Default')}"
    assert params["ResumeSecret"].get("NoEcho") is True
    assert params["ResumeSecret"].get("MinLength", 0) >= 32
    assert "Default" not in params["ResumeSecret"], "a default resume secret would be public"
    assert params["TurnSecret"].get("NoEcho") is True
    assert int(params["MaxMessageBytes"]["MaxValue"]) == 131072
    assert set(params["ForceRelay"]["AllowedValues"]) == {"false", "true"}
    for name in ("CodeBucket", "CodeKey", "ThrottlingRateLimit", "ThrottlingBurstLimit"):
        assert name in params, f"no parameter {name}"


def check_iam(t):
    found = list(statements(t))
    assert found, "no IAM statements"
    dynamo, connections, logs = set(), [], []
    for where, s in found:
        actions = as_list(s["Action"])
        assert s["Effect"] == "Allow", where
        assert "NotAction" not in s and "NotResource" not in s, where
        res = as_list(s["Resource"])
        assert "*" not in res, f"{where}: Resource '*'"
        for a in actions:
            assert "*" not in a, f"{where}: wildcard action {a}"
            assert a.lower() != "dynamodb:scan", f"{where}: Scan"
            if a.startswith("dynamodb:"):
                dynamo.add(a)
                if a == "dynamodb:Query":
                    assert res == INDEX_ARNS, f"{where}: Query on {res}"
                else:
                    assert res == [TABLE_ARN], f"{where}: {a} on {res}"
            elif a == "execute-api:ManageConnections":
                connections += res
            elif a.startswith("logs:"):
                logs.append(a)
                log_name, _ = the(t, "AWS::Logs::LogGroup")
                assert res == [{"Fn::GetAtt": [log_name, "Arn"]}], f"{where}: logs on {res}"
            else:
                raise AssertionError(f"{where}: unexpected action {a}")
    assert dynamo == TABLE_ACTIONS | {"dynamodb:Query"}, f"dynamodb actions {sorted(dynamo)}"
    assert sorted(json.dumps(c) for c in connections) == sorted(
        json.dumps({"Fn::Sub": CONNECTIONS % m}) for m in ("POST", "DELETE")), connections
    assert sorted(logs) == ["logs:CreateLogStream", "logs:PutLogEvents"], logs
    for name, role in resources(t, "AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), f"{name}: managed policies"
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}], trust


def check_table(t):
    _, table = the(t, "AWS::DynamoDB::Table")
    p = table["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    types = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    assert types == {"pk": "S", "roomId": "S", "joinedAt": "N", "sweep": "S", "suspendedUntil": "N"}, types
    gsis = {g["IndexName"]: g for g in p["GlobalSecondaryIndexes"]}
    assert set(gsis) == {"byRoom", "bySuspension"}, sorted(gsis)
    assert gsis["byRoom"]["KeySchema"] == [
        {"AttributeName": "roomId", "KeyType": "HASH"}, {"AttributeName": "joinedAt", "KeyType": "RANGE"}]
    assert gsis["byRoom"]["Projection"]["ProjectionType"] == "INCLUDE"
    assert sorted(gsis["byRoom"]["Projection"]["NonKeyAttributes"]) == ["expiresAt", "socketId"]
    assert gsis["bySuspension"]["KeySchema"] == [
        {"AttributeName": "sweep", "KeyType": "HASH"}, {"AttributeName": "suspendedUntil", "KeyType": "RANGE"}]
    assert gsis["bySuspension"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def check_sweep(t):
    fn_name, _ = the(t, "AWS::Lambda::Function")
    rule_name, rule = the(t, "AWS::Events::Rule")
    p = rule["Properties"]
    assert p["ScheduleExpression"] == "rate(1 minute)"
    assert p.get("State", "ENABLED") == "ENABLED"
    assert [x["Arn"] for x in p["Targets"]] == [{"Fn::GetAtt": [fn_name, "Arn"]}]
    assert all("Input" not in x and "InputTransformer" not in x for x in p["Targets"]), \
        "the function recognises the plain Scheduled Event"
    perms = [r["Properties"] for r in resources(t, "AWS::Lambda::Permission").values()
             if r["Properties"]["Principal"] == "events.amazonaws.com"]
    assert perms == [{"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": fn_name},
                      "Principal": "events.amazonaws.com",
                      "SourceArn": {"Fn::GetAtt": [rule_name, "Arn"]}}], perms


def check_site(t):
    bucket_name, bucket = the(t, "AWS::S3::Bucket")
    p = bucket["Properties"]
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    sse = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "AES256"
    assert p["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    for absent in ("VersioningConfiguration", "WebsiteConfiguration", "AccessControl"):
        assert absent not in p, f"bucket has {absent}"
    _, policy = the(t, "AWS::S3::BucketPolicy")
    assert policy["Properties"]["Bucket"] == {"Ref": bucket_name}
    dist_name, dist = the(t, "AWS::CloudFront::Distribution")
    allows = [s for s in as_list(policy["Properties"]["PolicyDocument"]["Statement"]) if s["Effect"] == "Allow"]
    assert len(allows) == 1, allows
    allow = allows[0]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert as_list(allow["Action"]) == ["s3:GetObject"]
    assert allow["Condition"] == {"StringEquals": {"AWS:SourceArn": {
        "Fn::Sub": f"arn:${{AWS::Partition}}:cloudfront::${{AWS::AccountId}}:distribution/${{{dist_name}}}"}}}
    c = dist["Properties"]["DistributionConfig"]
    oac_name, oac = the(t, "AWS::CloudFront::OriginAccessControl")
    assert oac["Properties"]["OriginAccessControlConfig"]["SigningProtocol"] == "sigv4"
    assert oac["Properties"]["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    [origin] = c["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac_name, "Id"]}
    assert origin["DomainName"] == {"Fn::GetAtt": [bucket_name, "RegionalDomainName"]}
    assert c["DefaultRootObject"] == "index.html"
    behaviours = [c["DefaultCacheBehavior"]] + c.get("CacheBehaviors", [])
    assert all(b["ViewerProtocolPolicy"] == "redirect-to-https" for b in behaviours)
    assert c["DefaultCacheBehavior"]["CachePolicyId"] == CACHING_OPTIMIZED
    by_path = {b["PathPattern"]: b for b in c.get("CacheBehaviors", [])}
    assert by_path["/config.json"]["CachePolicyId"] == CACHING_DISABLED
    headers_name, headers = the(t, "AWS::CloudFront::ResponseHeadersPolicy")
    assert all(b.get("ResponseHeadersPolicyId") == {"Ref": headers_name} for b in behaviours)
    sec = headers["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert sec["ContentTypeOptions"]["Override"] is True
    assert sec["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert sec["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    fn_name, _ = the(t, "AWS::CloudFront::Function")
    [assoc] = c["DefaultCacheBehavior"]["FunctionAssociations"]
    assert assoc == {"EventType": "viewer-request",
                     "FunctionARN": {"Fn::GetAtt": [fn_name, "FunctionMetadata.FunctionARN"]}}, assoc


def check_tags(t):
    """Every resource whose type takes tags carries App=meshcall and Stack=<stack name>."""
    want = {"App": "meshcall", "Stack": {"Ref": "AWS::StackName"}}
    taggable = 0
    for name, r in t["Resources"].items():
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", r["Type"]).schema
        if "Tags" not in schema.get("properties", {}):
            continue
        taggable += 1
        tags = r.get("Properties", {}).get("Tags")
        assert tags is not None, f"{name} ({r['Type']}) has no Tags"
        if isinstance(tags, list):
            tags = {tag["Key"]: tag["Value"] for tag in tags}
        for k, v in want.items():
            assert tags.get(k) == v, f"{name} ({r['Type']}): tag {k} = {tags.get(k)}"
    assert taggable >= 10, f"only {taggable} taggable resources"


def check_outputs(t):
    out = t["Outputs"]
    assert set(out) >= OUTPUTS, f"missing outputs {sorted(OUTPUTS - set(out))}"
    assert out["WebSocketUrl"]["Value"] == {
        "Fn::Sub": "wss://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}"}
    assert out["AppUrl"]["Value"] == {"Fn::Sub": "https://${Distribution.DomainName}"}
    assert out["SiteBucket"]["Value"] == {"Ref": "SiteBucket"}
    assert out["DistributionId"]["Value"] == {"Ref": "Distribution"}
    assert out["TableName"]["Value"] == {"Ref": "Table"}
    assert out["FunctionName"]["Value"] == {"Ref": "Function"}
    assert out["ForceRelay"]["Value"] == {"Ref": "ForceRelay"}


CHECKS = [check_routes, check_function, check_environment, check_parameters, check_iam,
          check_table, check_sweep, check_site, check_tags, check_outputs]


class TemplateTest(unittest.TestCase):
    template = load()

    def test_route_key_lines(self):
        with open(TEMPLATE, encoding="utf-8") as f:
            check_route_key_lines(f.read())

    def test_room_path_rewrite_runs(self):
        """The CloudFront Function itself, run by node: /r/<room> becomes /index.html."""
        import shutil
        import subprocess
        if not shutil.which("node"):
            self.skipTest("node is not installed")
        _, fn = the(self.template, "AWS::CloudFront::Function")
        script = fn["Properties"]["FunctionCode"] + """
const cases = {'/r/abc': '/index.html', '/r/a-b_c': '/index.html', '/': '/',
  '/index.html': '/index.html', '/js/main.js': '/js/main.js', '/config.json': '/config.json',
  '/rooms': '/rooms'};
for (const [uri, want] of Object.entries(cases)) {
  const got = handler({request: {uri, method: 'GET', headers: {}}}).uri;
  if (got !== want) { console.error(uri + ' -> ' + got + ', not ' + want); process.exit(1); }
}"""
        run = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
        self.assertEqual(run.returncode, 0, run.stderr)


def _add_check_test(check):
    def test(self):
        check(self.template)
    test.__doc__ = check.__doc__
    setattr(TemplateTest, "test_" + check.__name__.removeprefix("check_"), test)


for _check in CHECKS:
    _add_check_test(_check)


# ---------------------------------------------------------------- each check can fail

def _res(t, kind):
    return the(t, kind)[1]["Properties"]


def _env(t):
    return _res(t, "AWS::Lambda::Function")["Environment"]["Variables"]


def _stmt(t, sid):
    role = _res(t, "AWS::IAM::Role")
    return next(s for s in role["Policies"][0]["PolicyDocument"]["Statement"] if s.get("Sid") == sid)


def _route(t, key):
    return next(r["Properties"] for r in resources(t, "AWS::ApiGatewayV2::Route").values()
                if r["Properties"]["RouteKey"] == key)


def _gsi(t, name):
    return next(g for g in _res(t, "AWS::DynamoDB::Table")["GlobalSecondaryIndexes"] if g["IndexName"] == name)


def _dist(t):
    return _res(t, "AWS::CloudFront::Distribution")["DistributionConfig"]


MUTATIONS = [
    (check_routes, "a route missing", lambda t: t["Resources"].pop("ResumeRoute")),
    (check_routes, "a route renamed", lambda t: _route(t, "ping").update(RouteKey="Ping")),
    (check_routes, "a route to elsewhere", lambda t: _route(t, "signal").update(Target="integrations/other")),
    (check_routes, "HTTP API", lambda t: _res(t, "AWS::ApiGatewayV2::Api").update(ProtocolType="HTTP")),
    (check_routes, "another selection expression",
     lambda t: _res(t, "AWS::ApiGatewayV2::Api").update(RouteSelectionExpression="$request.body.type")),
    (check_routes, "a non-proxy integration",
     lambda t: _res(t, "AWS::ApiGatewayV2::Integration").update(IntegrationType="AWS")),
    (check_routes, "deployment not after the routes",
     lambda t: the(t, "AWS::ApiGatewayV2::Deployment")[1]["DependsOn"].remove("PingRoute")),
    (check_routes, "no stage throttling",
     lambda t: _res(t, "AWS::ApiGatewayV2::Stage").pop("DefaultRouteSettings")),
    (check_function, "another runtime", lambda t: _res(t, "AWS::Lambda::Function").update(Runtime="provided.al2")),
    (check_function, "fixed architecture",
     lambda t: _res(t, "AWS::Lambda::Function").update(Architectures=["x86_64"])),
    (check_function, "another timeout", lambda t: _res(t, "AWS::Lambda::Function").update(Timeout=30)),
    (check_function, "default log group", lambda t: _res(t, "AWS::Lambda::Function").pop("LoggingConfig")),
    (check_function, "log group for another name",
     lambda t: _res(t, "AWS::Logs::LogGroup").update(LogGroupName={"Fn::Sub": "/aws/lambda/x"})),
    (check_function, "any API may invoke",
     lambda t: t["Resources"]["ApiInvokePermission"]["Properties"].update(
         SourceArn={"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*"})),
    (check_environment, "a variable missing", lambda t: _env(t).pop("MESHCALL_RESUME_GRACE")),
    (check_environment, "a misspelt variable", lambda t: _env(t).update(MESHCALL_STUNS=_env(t).pop("MESHCALL_STUN"))),
    (check_environment, "origins without CloudFront",
     lambda t: _env(t).update(MESHCALL_ALLOWED_ORIGINS={"Ref": "AllowedOrigins"})),
    (check_environment, "a hard-coded secret", lambda t: _env(t).update(MESHCALL_RESUME_SECRET="x" * 32)),
    (check_parameters, "another default", lambda t: t["Parameters"]["MaxRoomSize"].update(Default=20)),
    (check_parameters, "echoed secret", lambda t: t["Parameters"]["ResumeSecret"].pop("NoEcho")),
    (check_parameters, "short secret", lambda t: t["Parameters"]["ResumeSecret"].update(MinLength=8)),
    (check_parameters, "bigger messages", lambda t: t["Parameters"]["MaxMessageBytes"].update(MaxValue=1 << 20)),
    (check_iam, "Scan granted", lambda t: _stmt(t, "TableItems")["Action"].append("dynamodb:Scan")),
    (check_iam, "wildcard action", lambda t: _stmt(t, "TableItems")["Action"].append("dynamodb:*")),
    (check_iam, "Resource *", lambda t: _stmt(t, "Logs").update(Resource="*")),
    (check_iam, "items on the indexes", lambda t: _stmt(t, "TableItems").update(
        Resource=[TABLE_ARN, {"Fn::Sub": "${Table.Arn}/index/*"}])),
    (check_iam, "Query on the table", lambda t: _stmt(t, "TableIndexes")["Resource"].append(TABLE_ARN)),
    (check_iam, "an action missing", lambda t: _stmt(t, "TableItems")["Action"].remove("dynamodb:ConditionCheckItem")),
    (check_iam, "connections of any API", lambda t: _stmt(t, "Connections").update(
        Resource={"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*/@connections/*"})),
    (check_iam, "GET connections", lambda t: _stmt(t, "Connections")["Resource"].append(
        {"Fn::Sub": CONNECTIONS % "GET"})),
    (check_iam, "managed basic execution", lambda t: _res(t, "AWS::IAM::Role").update(ManagedPolicyArns=[
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])),
    (check_iam, "another service", lambda t: _stmt(t, "Logs")["Action"].append("s3:GetObject")),
    (check_table, "provisioned", lambda t: _res(t, "AWS::DynamoDB::Table").update(BillingMode="PROVISIONED")),
    (check_table, "no TTL", lambda t: _res(t, "AWS::DynamoDB::Table").pop("TimeToLiveSpecification")),
    (check_table, "TTL elsewhere", lambda t: _res(t, "AWS::DynamoDB::Table")["TimeToLiveSpecification"].update(
        AttributeName="ttl")),
    (check_table, "no bySuspension", lambda t: _res(t, "AWS::DynamoDB::Table")["GlobalSecondaryIndexes"].pop()),
    (check_table, "byRoom sort key", lambda t: _gsi(t, "byRoom")["KeySchema"].pop()),
    (check_table, "byRoom projects all", lambda t: _gsi(t, "byRoom").update(Projection={"ProjectionType": "ALL"})),
    (check_table, "bySuspension projects all",
     lambda t: _gsi(t, "bySuspension").update(Projection={"ProjectionType": "ALL"})),
    (check_table, "joinedAt a string", lambda t: _res(t, "AWS::DynamoDB::Table")["AttributeDefinitions"][2].update(
        AttributeType="S")),
    (check_sweep, "another rate", lambda t: _res(t, "AWS::Events::Rule").update(ScheduleExpression="rate(5 minutes)")),
    (check_sweep, "a custom input", lambda t: _res(t, "AWS::Events::Rule")["Targets"][0].update(Input="{}")),
    (check_sweep, "no permission", lambda t: t["Resources"].pop("SweepInvokePermission")),
    (check_site, "public bucket", lambda t: _res(t, "AWS::S3::Bucket")["PublicAccessBlockConfiguration"].update(
        RestrictPublicBuckets=False)),
    (check_site, "versioned bucket", lambda t: _res(t, "AWS::S3::Bucket").update(
        VersioningConfiguration={"Status": "Enabled"})),
    (check_site, "ACLs on", lambda t: _res(t, "AWS::S3::Bucket").update(
        OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})),
    (check_site, "policy for anyone", lambda t: _res(t, "AWS::S3::BucketPolicy")["PolicyDocument"]["Statement"][0]
     .update(Principal="*")),
    (check_site, "policy for any distribution", lambda t: _res(t, "AWS::S3::BucketPolicy")["PolicyDocument"]
     ["Statement"][0].pop("Condition")),
    (check_site, "plain http allowed",
     lambda t: _dist(t)["DefaultCacheBehavior"].update(ViewerProtocolPolicy="allow-all")),
    (check_site, "config.json cached", lambda t: _dist(t)["CacheBehaviors"][0].update(CachePolicyId=CACHING_OPTIMIZED)),
    (check_site, "no room rewrite", lambda t: _dist(t)["DefaultCacheBehavior"].pop("FunctionAssociations")),
    (check_site, "referrer sent", lambda t: _res(t, "AWS::CloudFront::ResponseHeadersPolicy")
     ["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ReferrerPolicy"].update(ReferrerPolicy="origin")),
    (check_site, "no OAC", lambda t: _dist(t)["Origins"][0].pop("OriginAccessControlId")),
    (check_tags, "untagged table", lambda t: _res(t, "AWS::DynamoDB::Table").pop("Tags")),
    (check_tags, "no Stack tag on the API", lambda t: _res(t, "AWS::ApiGatewayV2::Api")["Tags"].pop("Stack")),
    (check_tags, "wrong App tag on the rule", lambda t: _res(t, "AWS::Events::Rule")["Tags"][0].update(Value="x")),
    (check_tags, "untagged distribution", lambda t: _res(t, "AWS::CloudFront::Distribution").pop("Tags")),
    (check_outputs, "an output missing", lambda t: t["Outputs"].pop("DistributionId")),
    (check_outputs, "ws:// URL", lambda t: t["Outputs"]["WebSocketUrl"].update(
        Value={"Fn::Sub": "ws://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}"})),
]


class EveryCheckCanFail(unittest.TestCase):
    template = TemplateTest.template

    def test_each_check_catches_a_broken_template(self):
        for check, what, mutate in MUTATIONS:
            with self.subTest(check=check.__name__, broken=what):
                broken = copy.deepcopy(self.template)
                mutate(broken)
                with self.assertRaises((AssertionError, KeyError, StopIteration, ValueError)):
                    check(broken)

    def test_every_check_has_a_mutation(self):
        self.assertEqual({c.__name__ for c in CHECKS}, {c.__name__ for c, _, _ in MUTATIONS})

    def test_route_key_lines_can_fail(self):
        with open(TEMPLATE, encoding="utf-8") as f:
            text = f.read()
        with self.assertRaises(AssertionError):
            check_route_key_lines(text.replace("RouteKey: resume", "RouteKey: resumed"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
