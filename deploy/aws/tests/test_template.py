"""Offline checks of deploy/aws/template.yaml: what cfn-lint cannot know about meshcall.

Run with the Python that has cfn-lint (scripts/test-aws-deploy uses .venv-aws):

    .venv-aws/bin/python deploy/aws/tests/test_template.py

The template is read with cfn-lint's own YAML decoder, so `!Ref X` arrives as
{"Ref": "X"}, `!Sub s` as {"Fn::Sub": "s"} and `!GetAtt A.B` as {"Fn::GetAtt": ["A", "B"]}.
Every check is a function of the template that raises AssertionError; `TemplateTest` runs
each on the real template, and `EveryCheckCanFail` runs each on a copy broken on purpose,
so a check that could never fail is itself a failure.
"""

import base64
import copy
import hashlib
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
# What the bootstrap reads (crates/lambda/src/settings.rs, RUST_LOG by tracing). The
# secrets are never among them: only the names of their SSM parameters are.
ENV = {
    "MESHCALL_TABLE", "MESHCALL_CALLBACK_URL", "MESHCALL_MAX_ROOM_SIZE",
    "MESHCALL_MAX_MESSAGE_BYTES", "MESHCALL_STUN", "MESHCALL_TURN",
    "MESHCALL_TURN_SECRET_PARAMETER", "MESHCALL_TURN_TTL", "MESHCALL_ALLOWED_ORIGINS",
    "MESHCALL_RESUME_GRACE", "MESHCALL_RESUME_SECRET_PARAMETER", "MESHCALL_EXPIRY_QUEUE_URL",
    "RUST_LOG",
}
# The SSM SecureString parameters deploy/aws/deploy writes (lib.sh's secret_parameter).
RESUME_PARAMETER = "/meshcall/${AWS::StackName}/resume-secret"
TURN_PARAMETER = "/meshcall/${AWS::StackName}/turn-secret"
PARAMETER_ARN = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter%s"
TABLE_ACTIONS = {
    "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
    "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem",
}
TABLE_ARN = {"Fn::GetAtt": ["Table", "Arn"]}
INDEX_ARNS = [{"Fn::Sub": "${Table.Arn}/index/bySweep"}]
QUEUE_ARN = {"Fn::GetAtt": ["ExpiryQueue", "Arn"]}
CONNECTIONS = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/${StageName}/%s/@connections/*"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
OUTPUTS = {"WebSocketUrl", "AppUrl", "SiteBucket", "DistributionId", "TableName", "FunctionName"}
# The STUN default is written once in Rust (meshcall-core's settings); the template's must
# be the same server.
with open(os.path.join(HERE, "..", "..", "..", "crates", "core", "src", "settings", "mod.rs")) as f:
    DEFAULT_STUN = re.search(r'pub const DEFAULT_STUN: &str = "([^"]+)";', f.read()).group(1)
PARAMETER_DEFAULTS = {
    "StageName": "prod", "Architecture": "x86_64", "MemorySize": 128, "LogRetentionInDays": 14,
    "LogLevel": "info", "MaxRoomSize": 8, "MaxMessageBytes": 131072,
    "StunUrls": DEFAULT_STUN, "TurnUrls": "",
    "TurnTtl": "24h", "AllowedOrigins": "", "ResumeGrace": "30s", "ForceRelay": "false",
    "ThrottlingRateLimit": 200, "ThrottlingBurstLimit": 1000,
    "ReservedConcurrency": 0, "MonthlyBudget": 0, "BudgetEmail": "",
}
# docs/aws.md: a participant sends about 6 signals to each peer while a call starts.
SIGNALS_PER_PEER = 6


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
    _, stage = the(t, "AWS::ApiGatewayV2::Stage")
    props = stage["Properties"]
    assert props["ApiId"] == {"Ref": api_name}
    assert props["StageName"] == {"Ref": "StageName"}
    assert props["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
    assert props["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ThrottlingBurstLimit"}


def check_auto_deploy(t):
    """Route changes reach the stage on every update without renaming a Deployment: the
    stage deploys itself (AutoDeploy), no Deployment resource pins an old snapshot, and the
    stage's first deployment comes after every route."""
    assert not resources(t, "AWS::ApiGatewayV2::Deployment"), "a Deployment resource pins a snapshot"
    _, stage = the(t, "AWS::ApiGatewayV2::Stage")
    assert stage["Properties"].get("AutoDeploy") is True, "no AutoDeploy"
    assert "DeploymentId" not in stage["Properties"], "AutoDeploy takes no DeploymentId"
    routes = resources(t, "AWS::ApiGatewayV2::Route")
    assert set(as_list(stage.get("DependsOn", []))) >= set(routes), "stage before the routes"


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
    # 0 reserves nothing (reserving 0 would stop the function); any other value caps it.
    cond, value, otherwise = p["ReservedConcurrentExecutions"]["Fn::If"]
    assert t["Conditions"][cond] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, "0"]}]}
    assert value == {"Ref": "ReservedConcurrency"} and otherwise == {"Ref": "AWS::NoValue"}
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
                       ("MESHCALL_TURN_TTL", "TurnTtl"), ("MESHCALL_RESUME_GRACE", "ResumeGrace"),
                       ("RUST_LOG", "LogLevel")]:
        assert env[var] == {"Ref": param}, f"{var} = {env[var]}"
    assert env["MESHCALL_EXPIRY_QUEUE_URL"] == {"Ref": "ExpiryQueue"}
    # Secrets: only the names of SSM parameters; the TURN one only with TURN servers.
    assert env["MESHCALL_RESUME_SECRET_PARAMETER"] == {"Fn::Sub": RESUME_PARAMETER}
    cond, name, otherwise = env["MESHCALL_TURN_SECRET_PARAMETER"]["Fn::If"]
    assert t["Conditions"][cond] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TurnUrls"}, ""]}]}
    assert name == {"Fn::Sub": TURN_PARAMETER} and otherwise == {"Ref": "AWS::NoValue"}
    assert not any(v.endswith(("_SECRET", "_PASSWORD", "_KEY")) for v in env), sorted(env)
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
    # Secrets are never template parameters: CloudFormation keeps parameter values in the
    # stack (NoEcho hides them from describe-stacks, not from the API's history).
    assert not [p for p in params if "secret" in p.lower()], "a secret parameter"
    assert int(params["MaxMessageBytes"]["MaxValue"]) == 131072
    assert set(params["ForceRelay"]["AllowedValues"]) == {"false", "true"}
    for name in ("CodeBucket", "CodeKey", "ThrottlingRateLimit", "ThrottlingBurstLimit"):
        assert name in params, f"no parameter {name}"


def check_iam(t):
    found = list(statements(t))
    assert found, "no IAM statements"
    dynamo, connections, logs, sqs, ssm = set(), [], [], set(), []
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
            elif a.startswith("sqs:"):
                assert res == [QUEUE_ARN], f"{where}: {a} on {res}"
                sqs.add(a)
            elif a == "ssm:GetParameter":
                ssm += res
            elif a.startswith("logs:"):
                logs.append(a)
                log_name, _ = the(t, "AWS::Logs::LogGroup")
                assert res == [{"Fn::GetAtt": [log_name, "Arn"]}], f"{where}: logs on {res}"
            else:
                raise AssertionError(f"{where}: unexpected action {a}")
    assert dynamo == TABLE_ACTIONS | {"dynamodb:Query"}, f"dynamodb actions {sorted(dynamo)}"
    assert sorted(json.dumps(c) for c in connections) == sorted(
        json.dumps({"Fn::Sub": CONNECTIONS % m}) for m in ("POST", "GET", "DELETE")), connections
    assert sorted(logs) == ["logs:CreateLogStream", "logs:PutLogEvents"], logs
    assert sqs == {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}, sqs
    assert sorted(json.dumps(r) for r in ssm) == sorted(
        json.dumps({"Fn::Sub": PARAMETER_ARN % n}) for n in (RESUME_PARAMETER, TURN_PARAMETER)), ssm
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
    assert types == {"pk": "S", "sweep": "S", "sweepAt": "N"}, types
    gsis = {g["IndexName"]: g for g in p["GlobalSecondaryIndexes"]}
    assert set(gsis) == {"bySweep"}, sorted(gsis)
    assert gsis["bySweep"]["KeySchema"] == [
        {"AttributeName": "sweep", "KeyType": "HASH"}, {"AttributeName": "sweepAt", "KeyType": "RANGE"}]
    assert gsis["bySweep"]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["socketId"]}


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


def check_expiry_queue(t):
    """The SQS queue of delayed expiries, polled by Lambda in batches of 10 that report
    their failed items; a visibility timeout of at least 6 function timeouts; failures end
    in a dead-letter queue."""
    fn_name, fn = the(t, "AWS::Lambda::Function")
    queues = resources(t, "AWS::SQS::Queue")
    assert "ExpiryQueue" in queues, sorted(queues)
    q = queues["ExpiryQueue"]["Properties"]
    assert int(q["VisibilityTimeout"]) >= 6 * int(fn["Properties"]["Timeout"]), q.get("VisibilityTimeout")
    assert "DelaySeconds" not in q, "the delay is per message"
    assert q.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in q, "unencrypted queue"
    redrive = q["RedrivePolicy"]
    dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dlq in queues and dlq != "ExpiryQueue", redrive
    assert 1 < int(redrive["maxReceiveCount"]) <= 10, redrive
    _, esm = the(t, "AWS::Lambda::EventSourceMapping")
    e = esm["Properties"]
    assert e["FunctionName"] == {"Ref": fn_name}
    assert e["EventSourceArn"] == QUEUE_ARN
    assert e["BatchSize"] == 10
    assert e["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert e.get("Enabled", True) is True
    assert e.get("MaximumBatchingWindowInSeconds", 0) == 0, "a batching window delays every expiry"


def check_budget(t):
    """A monthly cost budget mailing BudgetEmail, only when MonthlyBudget is not 0, and a
    rule that a budget has someone to mail."""
    name, budget = the(t, "AWS::Budgets::Budget")
    assert t["Conditions"][budget["Condition"]] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudget"}, "0"]}]}, budget.get("Condition")
    b = budget["Properties"]["Budget"]
    assert b["BudgetType"] == "COST" and b["TimeUnit"] == "MONTHLY", b
    assert b["BudgetLimit"] == {"Amount": {"Ref": "MonthlyBudget"}, "Unit": "USD"}, b["BudgetLimit"]
    notes = budget["Properties"]["NotificationsWithSubscribers"]
    assert {n["Notification"]["NotificationType"] for n in notes} == {"ACTUAL", "FORECASTED"}, notes
    for n in notes:
        assert n["Subscribers"] == [{"SubscriptionType": "EMAIL", "Address": {"Ref": "BudgetEmail"}}], n
        assert 0 < n["Notification"]["Threshold"] <= 100 and n["Notification"]["ThresholdType"] == "PERCENTAGE"
    rules = [r for r in t.get("Rules", {}).values()
             if r.get("RuleCondition") == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudget"}, "0"]}]}]
    assert [r["Assertions"][0]["Assert"] for r in rules] == [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "BudgetEmail"}, ""]}]}], rules


def check_throttling(t):
    """The stage's default throttling lets full rooms start: a burst holds at least two join
    storms of a full room at the default size (every member signals every other about 6
    times within a second or two) and the rate refills one within 2 seconds."""
    params = t["Parameters"]
    n = int(params["MaxRoomSize"]["Default"])
    storm = SIGNALS_PER_PEER * n * (n - 1)
    burst, rate = int(params["ThrottlingBurstLimit"]["Default"]), int(params["ThrottlingRateLimit"]["Default"])
    assert burst >= 2 * storm, f"burst {burst} < two storms of {storm}"
    assert rate * 2 >= storm, f"rate {rate}/s refills a storm of {storm} in more than 2 s"
    # ...and no more than needed: the docs' worst-case cost is computed at these values.
    assert burst <= 5 * storm and rate <= storm, f"rate {rate}, burst {burst}: larger than rooms need"


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
    assert sec["FrameOptions"]["FrameOption"] == "DENY"
    csp = sec["ContentSecurityPolicy"]
    assert csp["Override"] is True
    policy = csp["ContentSecurityPolicy"]
    assert isinstance(policy, dict) and set(policy) == {"Fn::Sub"}, policy
    directives = {d.strip().split(" ", 1)[0]: d.strip().split(" ", 1)[1] for d in policy["Fn::Sub"].split(";")}
    # Exactly the app's own files, its socket (the stage's wss URL) and, inline, only the
    # page's boot script, by the hash deploy computes from the page it uploads (a parameter:
    # test_scripts.py checks what deploy passes).
    assert directives == {
        "default-src": "'self'", "script-src": "'self' '${BootScriptHash}'",
        "style-src": "'self'",
        "img-src": "'self' data:", "object-src": "'none'", "base-uri": "'none'",
        "form-action": "'self'", "frame-ancestors": "'none'",
        "connect-src": "'self' wss://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}",
    }, directives
    param = t["Parameters"]["BootScriptHash"]
    assert param["Type"] == "String" and "Default" not in param, param
    pattern = re.compile(param["AllowedPattern"])
    assert pattern.match("sha256-" + base64.b64encode(hashlib.sha256(b"x").digest()).decode())
    assert not pattern.match("sha256-x' 'unsafe-inline") and not pattern.match("'unsafe-inline'")
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


CHECKS = [check_routes, check_auto_deploy, check_function, check_environment, check_parameters, check_iam,
          check_table, check_sweep, check_expiry_queue, check_budget, check_throttling, check_site,
          check_tags, check_outputs]


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
    (check_auto_deploy, "no AutoDeploy", lambda t: _res(t, "AWS::ApiGatewayV2::Stage").pop("AutoDeploy")),
    (check_auto_deploy, "a pinned Deployment", lambda t: t["Resources"].update(Deployment={
        "Type": "AWS::ApiGatewayV2::Deployment", "Properties": {"ApiId": {"Ref": "Api"}}})),
    (check_auto_deploy, "stage before a route",
     lambda t: the(t, "AWS::ApiGatewayV2::Stage")[1]["DependsOn"].remove("PingRoute")),
    (check_routes, "no stage throttling",
     lambda t: _res(t, "AWS::ApiGatewayV2::Stage").pop("DefaultRouteSettings")),
    (check_function, "another runtime", lambda t: _res(t, "AWS::Lambda::Function").update(Runtime="provided.al2")),
    (check_function, "fixed architecture",
     lambda t: _res(t, "AWS::Lambda::Function").update(Architectures=["x86_64"])),
    (check_function, "another timeout", lambda t: _res(t, "AWS::Lambda::Function").update(Timeout=30)),
    (check_function, "no reserved concurrency",
     lambda t: _res(t, "AWS::Lambda::Function").pop("ReservedConcurrentExecutions")),
    (check_function, "reserved concurrency 0 stops it", lambda t: _res(t, "AWS::Lambda::Function").update(
        ReservedConcurrentExecutions={"Ref": "ReservedConcurrency"})),
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
    (check_environment, "a plain secret beside the parameter names",
     lambda t: _env(t).update(MESHCALL_TURN_SECRET={"Ref": "TurnUrls"})),
    (check_environment, "another resume parameter",
     lambda t: _env(t).update(MESHCALL_RESUME_SECRET_PARAMETER={"Fn::Sub": "/meshcall/resume-secret"})),
    (check_environment, "TURN parameter without TURN",
     lambda t: _env(t).update(MESHCALL_TURN_SECRET_PARAMETER={"Fn::Sub": TURN_PARAMETER})),
    (check_environment, "no expiry queue", lambda t: _env(t).pop("MESHCALL_EXPIRY_QUEUE_URL")),
    (check_parameters, "another default", lambda t: t["Parameters"]["MaxRoomSize"].update(Default=20)),
    (check_parameters, "arm64 by default", lambda t: t["Parameters"]["Architecture"].update(Default="arm64")),
    (check_parameters, "a secret parameter", lambda t: t["Parameters"].update(
        ResumeSecret={"Type": "String", "NoEcho": True, "MinLength": 32})),
    (check_parameters, "a budget by default", lambda t: t["Parameters"]["MonthlyBudget"].update(Default=10)),
    (check_parameters, "bigger messages", lambda t: t["Parameters"]["MaxMessageBytes"].update(MaxValue=1 << 20)),
    (check_iam, "Scan granted", lambda t: _stmt(t, "TableItems")["Action"].append("dynamodb:Scan")),
    (check_iam, "wildcard action", lambda t: _stmt(t, "TableItems")["Action"].append("dynamodb:*")),
    (check_iam, "Resource *", lambda t: _stmt(t, "Logs").update(Resource="*")),
    (check_iam, "items on the indexes", lambda t: _stmt(t, "TableItems").update(
        Resource=[TABLE_ARN, {"Fn::Sub": "${Table.Arn}/index/*"}])),
    (check_iam, "Query on the table", lambda t: _stmt(t, "TableIndexes").update(Resource=[INDEX_ARNS[0], TABLE_ARN])),
    (check_iam, "an action missing", lambda t: _stmt(t, "TableItems")["Action"].remove("dynamodb:ConditionCheckItem")),
    (check_iam, "connections of any API", lambda t: _stmt(t, "Connections").update(
        Resource={"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*/@connections/*"})),
    (check_iam, "no GET connections", lambda t: _stmt(t, "Connections")["Resource"].pop(1)),
    (check_iam, "PATCH connections", lambda t: _stmt(t, "Connections")["Resource"].append(
        {"Fn::Sub": CONNECTIONS % "PATCH"})),
    (check_iam, "Query on an old index", lambda t: _stmt(t, "TableIndexes").update(
        Resource=[{"Fn::Sub": "${Table.Arn}/index/byRoom"}])),
    (check_iam, "no receive", lambda t: _stmt(t, "ExpiryReceive")["Action"].remove("sqs:DeleteMessage")),
    (check_iam, "send anywhere", lambda t: _stmt(t, "ExpirySend").update(Resource="*")),
    (check_iam, "purge", lambda t: _stmt(t, "ExpiryReceive")["Action"].append("sqs:PurgeQueue")),
    (check_iam, "every parameter", lambda t: _stmt(t, "Secrets").update(Resource=[
        {"Fn::Sub": PARAMETER_ARN % "/meshcall/*"}])),
    (check_iam, "no TURN parameter", lambda t: _stmt(t, "Secrets")["Resource"].pop()),
    (check_iam, "GetParametersByPath", lambda t: _stmt(t, "Secrets").update(Action="ssm:GetParametersByPath")),
    (check_iam, "managed basic execution", lambda t: _res(t, "AWS::IAM::Role").update(ManagedPolicyArns=[
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])),
    (check_iam, "another service", lambda t: _stmt(t, "Logs")["Action"].append("s3:GetObject")),
    (check_table, "provisioned", lambda t: _res(t, "AWS::DynamoDB::Table").update(BillingMode="PROVISIONED")),
    (check_table, "no TTL", lambda t: _res(t, "AWS::DynamoDB::Table").pop("TimeToLiveSpecification")),
    (check_table, "TTL elsewhere", lambda t: _res(t, "AWS::DynamoDB::Table")["TimeToLiveSpecification"].update(
        AttributeName="ttl")),
    (check_table, "no bySweep", lambda t: _res(t, "AWS::DynamoDB::Table")["GlobalSecondaryIndexes"].pop()),
    (check_table, "byRoom back", lambda t: _res(t, "AWS::DynamoDB::Table")["GlobalSecondaryIndexes"].append(
        {"IndexName": "byRoom", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
         "Projection": {"ProjectionType": "KEYS_ONLY"}})),
    (check_table, "bySweep sort key", lambda t: _gsi(t, "bySweep")["KeySchema"].pop()),
    (check_table, "bySweep projects all", lambda t: _gsi(t, "bySweep").update(Projection={"ProjectionType": "ALL"})),
    (check_table, "bySweep keys only",
     lambda t: _gsi(t, "bySweep").update(Projection={"ProjectionType": "KEYS_ONLY"})),
    (check_table, "sweepAt a string", lambda t: _res(t, "AWS::DynamoDB::Table")["AttributeDefinitions"][2].update(
        AttributeType="S")),
    (check_sweep, "another rate", lambda t: _res(t, "AWS::Events::Rule").update(ScheduleExpression="rate(5 minutes)")),
    (check_sweep, "a custom input", lambda t: _res(t, "AWS::Events::Rule")["Targets"][0].update(Input="{}")),
    (check_sweep, "no permission", lambda t: t["Resources"].pop("SweepInvokePermission")),
    (check_expiry_queue, "no queue", lambda t: t["Resources"].pop("ExpiryQueue")),
    (check_expiry_queue, "short visibility", lambda t: t["Resources"]["ExpiryQueue"]["Properties"].update(
        VisibilityTimeout=30)),
    (check_expiry_queue, "no dead letters", lambda t: t["Resources"]["ExpiryQueue"]["Properties"].pop(
        "RedrivePolicy")),
    (check_expiry_queue, "whole-batch retries",
     lambda t: _res(t, "AWS::Lambda::EventSourceMapping").pop("FunctionResponseTypes")),
    (check_expiry_queue, "batches of 100", lambda t: _res(t, "AWS::Lambda::EventSourceMapping").update(
        BatchSize=100)),
    (check_expiry_queue, "a batching window", lambda t: _res(t, "AWS::Lambda::EventSourceMapping").update(
        MaximumBatchingWindowInSeconds=20)),
    (check_expiry_queue, "no mapping", lambda t: t["Resources"].pop("ExpiryEvents")),
    (check_budget, "no budget", lambda t: t["Resources"].pop("MonthlyCostBudget")),
    (check_budget, "always a budget", lambda t: t["Resources"]["MonthlyCostBudget"].pop("Condition")),
    (check_budget, "a fixed amount", lambda t: _res(t, "AWS::Budgets::Budget")["Budget"].update(
        BudgetLimit={"Amount": 100, "Unit": "USD"})),
    (check_budget, "nobody mailed", lambda t: _res(t, "AWS::Budgets::Budget")["NotificationsWithSubscribers"][0]
     .update(Subscribers=[])),
    (check_budget, "no email rule", lambda t: t["Rules"].pop("BudgetNeedsEmail")),
    (check_throttling, "a burst smaller than a room", lambda t: t["Parameters"]["ThrottlingBurstLimit"].update(
        Default=300)),
    (check_throttling, "a slow refill", lambda t: t["Parameters"]["ThrottlingRateLimit"].update(Default=50)),
    (check_throttling, "far above rooms", lambda t: t["Parameters"]["ThrottlingRateLimit"].update(Default=5000)),
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
    (check_site, "no CSP", lambda t: _res(t, "AWS::CloudFront::ResponseHeadersPolicy")
     ["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"].pop("ContentSecurityPolicy")),
    (check_site, "inline scripts allowed", lambda t: _res(t, "AWS::CloudFront::ResponseHeadersPolicy")
     ["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"].update(
         ContentSecurityPolicy={"Fn::Sub": "default-src 'self'; script-src 'self' 'unsafe-inline'"})),
    (check_site, "a boot-script hash written in", lambda t: _res(t, "AWS::CloudFront::ResponseHeadersPolicy")
     ["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"].update(
         ContentSecurityPolicy={"Fn::Sub": _res(t, "AWS::CloudFront::ResponseHeadersPolicy")
                                ["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"]
                                ["ContentSecurityPolicy"]["Fn::Sub"].replace(
                                    "'${BootScriptHash}'", "'sha256-0q+tUqmrr/gQBGr/SCsqzpYtGjQ4DMTZKak5KivzeKY='")})),
    (check_site, "any boot-script hash", lambda t: t["Parameters"]["BootScriptHash"].update(AllowedPattern=".*")),
    (check_site, "sockets anywhere", lambda t: _res(t, "AWS::CloudFront::ResponseHeadersPolicy")
     ["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"].update(
         ContentSecurityPolicy={"Fn::Sub": "default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'; connect-src 'self' wss:"})),
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
