"""deploy/aws/deploy and deploy/aws/destroy, end to end against stand-ins (offline).

`fakebin/` holds bash stand-ins for `aws`, `cargo`, `rustup` and `openssl`, put first on
PATH. The fake `aws` records every call and keeps a little state (buckets and their
objects, the stack's status), so the tests can look at the calls the scripts made, in
order, and at what ended up "in S3" (the zip, config.json, the web app).

    python3 deploy/aws/tests/test_scripts.py
"""

import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy", "aws", "deploy")
DESTROY = os.path.join(ROOT, "deploy", "aws", "destroy")
SMOKE = os.path.join(ROOT, "deploy", "aws", "smoke")
TEMPLATE = os.path.join(ROOT, "deploy", "aws", "template.yaml")

REGION = "eu-west-1"
ARTIFACTS = f"meshcall-test-stack-123456789012-{REGION}"
SITE = "test-stack-sitebucket-1a2b3c4d"
WS_URL = f"wss://abc123defg.execute-api.{REGION}.amazonaws.com/prod"
# The app moves to a fresh socket 5 minutes before API Gateway's 2-hour connection limit.
SOCKET_MAX_AGE_MS = 115 * 60 * 1000
APP_URL = "https://d111111abcdef8.cloudfront.net"
SECRET = "5eed" * 16
TURN_SECRET = "turn-\"shared\\secret-7c1d"
RESUME_PARAMETER = "/meshcall/test-stack/resume-secret"
TURN_PARAMETER = "/meshcall/test-stack/turn-secret"


def template_parameters():
    import re
    with open(TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    block = text.split("\nParameters:\n", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^  ([A-Za-z0-9]+):$", block, re.M))


class Scripts(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="meshcall-deploy-test-")
        self.addCleanup(shutil.rmtree, self.tmp)
        self.state = os.path.join(self.tmp, "state")
        os.mkdir(self.state)
        self.zip = os.path.join(self.tmp, "bootstrap.zip")
        with open(self.zip, "wb") as f:
            f.write(b"PK\x05\x06 not really a zip, but the scripts only upload it")
        self.env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "FAKE_", "CARGO_TARGET_DIR"))
        }
        self.env.update(PATH=os.path.join(HERE, "fakebin") + os.pathsep + os.environ["PATH"],
                        FAKE_STATE=self.state, FAKE_PYTHON=sys.executable,
                        TMPDIR=os.path.join(self.tmp, "tmpdir"))
        os.mkdir(self.env["TMPDIR"])
        # deploy/aws/deploy writes config.json with `meshcall app-config`: the real one.
        binary = meshcall_binary()
        if binary is None:
            self.skipTest("no target/debug/meshcall (deploy runs `meshcall app-config`): "
                          "build it with cargo build -p meshcall, or run scripts/test-aws-deploy")
        self.env["MESHCALL_BIN"] = binary

    # -------------------------------------------------------------------- helpers

    def run_script(self, script, *args, env=None, ok=True):
        """Runs a script from an unrelated directory (paths must not depend on the cwd)."""
        e = dict(self.env, **(env or {}))
        r = subprocess.run([script, *args], cwd=self.tmp, env=e, capture_output=True, text=True, timeout=60)
        if ok:
            self.assertEqual(r.returncode, 0, f"{script} {args}: rc {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def calls(self, tool="aws"):
        path = os.path.join(self.state, "calls.jsonl")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [c for c in map(json.loads, f) if c["tool"] == tool]

    def clear_calls(self):
        path = os.path.join(self.state, "calls.jsonl")
        if os.path.exists(path):
            os.remove(path)

    def find(self, *words, calls=None):
        """Indexes of the aws calls whose argv starts with `words`."""
        calls = self.calls() if calls is None else calls
        return [i for i, c in enumerate(calls) if c["argv"][:len(words)] == list(words)]

    def one(self, *words):
        found = self.find(*words)
        self.assertEqual(len(found), 1, f"expected one call {words}, got {len(found)}: {self.calls()}")
        return found[0], self.calls()[found[0]]["argv"]

    def parameter(self, name):
        """An SSM parameter as the fake stored it (the put-parameter input, plus fileMode)."""
        path = os.path.join(self.state, "ssm", name.replace("/", "_") + ".json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def assert_no_secret_in_argv(self, *secrets, output=()):
        """No recorded call of any stand-in (aws, cargo, openssl) had a secret in its argv,
        and the scripts did not print one."""
        path = os.path.join(self.state, "calls.jsonl")
        with open(path, encoding="utf-8") as f:
            calls = [json.loads(line) for line in f]
        self.assertTrue(calls)
        for secret in secrets:
            for c in calls:
                for a in c["argv"]:
                    self.assertNotIn(secret, a, f"a secret on the command line of {c['tool']}: {c['argv']}")
            for text in output:
                self.assertNotIn(secret, text, "a secret in the scripts' output")

    def s3(self, bucket, key):
        with open(os.path.join(self.state, "buckets", bucket, key), "rb") as f:
            return f.read()

    def page_settings(self):
        """The settings written into the uploaded index.html (its meshcall-config meta), parsed
        as the browser would: the attribute unescaped, then JSON; the rest of the page as in web/
        but for the boot script written in (page_parts)."""
        return self.page_parts()[0]

    def page_parts(self):
        """The uploaded index.html's settings (as page_settings), the text of its one inline
        script (web/js/boot.js in place of the page's placeholder; Smoke compares the whole
        page with the one meshcall serves), and the page without its settings."""
        page = self.s3(SITE, "index.html").decode()
        m = re.search(r'<meta name="meshcall-config" content="([^"]*)">', page)
        self.assertIsNotNone(m, "index.html has the settings meta")
        page = page.replace(m.group(0), '<meta name="meshcall-config" content="">')
        start = page.index("<script>")
        end = page.index("</script>", start)
        script = page[start + len("<script>"):end]
        with open(os.path.join(ROOT, "web", "index.html"), encoding="utf-8") as f:
            self.assertEqual(page[:start] + '<script data-inline="js/boot.js"></script>'
                             + page[end + len("</script>"):], f.read())
        self.assertTrue(script.startswith("(() => {\n") and script.endswith("})();\n"), script[:100])
        self.assertIn("\nfunction start()", script, "boot.js")
        self.assertNotIn("\nexport ", script, "module syntax left")
        return json.loads(html.unescape(m.group(1))), script, page

    @staticmethod
    def csp_source(script):
        """The Content-Security-Policy source that allows an inline script of this text."""
        return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()

    @staticmethod
    def opt(argv, name):
        return argv[argv.index(name) + 1]

    @staticmethod
    def overrides(argv):
        i = argv.index("--parameter-overrides") + 1
        out = []
        while i < len(argv) and not argv[i].startswith("--"):
            out.append(argv[i])
            i += 1
        return dict(o.split("=", 1) for o in out)

    # -------------------------------------------------------------------- tests

    def test_help(self):
        for script, words in [(DEPLOY, ["Usage: deploy/aws/deploy", "--param", "--zip", "cargo lambda build"]),
                              (DESTROY, ["Usage: deploy/aws/destroy", "artifacts bucket", "DynamoDB table",
                                         "CloudFront distribution", "site bucket"])]:
            for flag in ("--help", "-h"):
                r = self.run_script(script, flag)
                for w in words:
                    self.assertIn(w, r.stdout)
        self.assertEqual(self.calls(), [], "--help must not call AWS")

    def test_missing_or_bad_arguments(self):
        cases = [
            (DEPLOY, [], "--stack NAME is required"),
            (DESTROY, [], "--stack NAME is required"),
            (DEPLOY, ["--stack"], "--stack needs a value"),
            (DEPLOY, ["--stack", "bad_name"], "bad stack name"),
            (DESTROY, ["--stack", "1abc"], "bad stack name"),
            (DEPLOY, ["--stack", "s", "--arch", "sparc"], "--arch is x86_64 or arm64"),
            (DEPLOY, ["--stack", "s", "--param", "TurnSecret=x"], "--turn-secret-file"),
            (DEPLOY, ["--stack", "s", "--param", "ResumeSecret=" + "x" * 32], "keeps it in SSM"),
            (DEPLOY, ["--stack", "s", "--turn-secret-file", "/nonexistent/secret"], "no such file"),
            (DEPLOY, ["--stack", "s", "--param", "MaxRoomSise=4"], "no parameter 'MaxRoomSise'"),
            (DEPLOY, ["--stack", "s", "--param", "CodeKey=x"], "set by this script"),
            (DEPLOY, ["--stack", "s", "--param", "BootScriptHash=sha256-x"], "computed by this script"),
            (DEPLOY, ["--stack", "s", "--param", "novalue"], "Key=Value"),
            (DEPLOY, ["--stack", "s", "--zip", "/nonexistent/bootstrap.zip"], "no such zip"),
            (DEPLOY, ["--stack", "s", "--frobnicate"], "unknown argument"),
        ]
        for script, args, message in cases:
            with self.subTest(script=os.path.basename(script), args=args):
                r = self.run_script(script, *args, ok=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(message, r.stderr)
        self.assertEqual(self.calls(), [], "bad arguments must not reach AWS")

    def test_needs_cli_v2_credentials_and_region(self):
        cases = [
            ({"FAKE_AWS_VERSION": "1.45.11"}, ["--region", REGION], "AWS CLI v2 is needed"),
            ({"FAKE_NO_CREDENTIALS": "1"}, ["--region", REGION], "no working AWS credentials"),
            ({}, [], "no AWS region"),
        ]
        for script in (DEPLOY, DESTROY):
            for env, args, message in cases:
                with self.subTest(script=os.path.basename(script), message=message):
                    r = self.run_script(script, "--stack", "test-stack", "--zip", self.zip, *args, env=env, ok=False) \
                        if script == DEPLOY else \
                        self.run_script(script, "--stack", "test-stack", *args, env=env, ok=False)
                    self.assertNotEqual(r.returncode, 0)
                    self.assertIn(message, r.stderr)
        self.assertEqual(self.find("cloudformation"), [])

    def test_deploy_update_destroy(self):
        # ---- first deploy: new stack, prebuilt zip, region from --region, relay forced, the
        # TURN secret from the environment
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip,
                            "--param", "MaxRoomSize=4", "--param", "ForceRelay=true",
                            "--param", "TurnUrls=turn:turn.example.com:3478,turns:turn.example.com:5349",
                            env={"MESHCALL_TURN_SECRET": TURN_SECRET})
        first_output = (r.stdout, r.stderr)
        calls = self.calls()
        self.assertTrue(all(c["region"] == REGION for c in calls if c["argv"] != ["--version"]),
                        "every call in the chosen region")
        self.assertEqual(self.calls("cargo"), [], "--zip skips the build")
        self.one("sts", "get-caller-identity")
        # the artifacts bucket: missing, so created in the region, private and tagged
        head = self.find("s3api", "head-bucket")[0]
        create, argv = self.one("s3api", "create-bucket")
        self.assertEqual(self.opt(argv, "--bucket"), ARTIFACTS)
        self.assertEqual(self.opt(argv, "--create-bucket-configuration"), f"LocationConstraint={REGION}")
        _, argv = self.one("s3api", "put-public-access-block")
        self.assertEqual(self.opt(argv, "--public-access-block-configuration"),
                         "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true")
        _, argv = self.one("s3api", "put-bucket-tagging")
        self.assertEqual(self.opt(argv, "--tagging"), "TagSet=[{Key=App,Value=meshcall},{Key=Stack,Value=test-stack}]")
        # the zip, under a key holding its sha256
        with open(self.zip, "rb") as f:
            zip_bytes = f.read()
        sha = hashlib.sha256(zip_bytes).hexdigest()
        key = f"lambda/bootstrap-x86_64-{sha}.zip"
        uploads = [i for i in self.find("s3", "cp") if calls[i]["argv"][3] == f"s3://{ARTIFACTS}/{key}"]
        self.assertEqual(len(uploads), 1, "the zip is uploaded once")
        self.assertEqual(self.s3(ARTIFACTS, key), zip_bytes)
        # the stack
        deploy, argv = self.one("cloudformation", "deploy")
        self.assertTrue(head < create < uploads[0] < deploy)
        self.assertEqual(self.opt(argv, "--template-file"), TEMPLATE)
        self.assertEqual(self.opt(argv, "--stack-name"), "test-stack")
        self.assertEqual(self.opt(argv, "--capabilities"), "CAPABILITY_IAM")
        self.assertEqual(self.opt(argv, "--s3-bucket"), ARTIFACTS)
        self.assertIn("--no-fail-on-empty-changeset", argv)
        tags_at = argv.index("--tags")
        self.assertEqual(argv[tags_at + 1:tags_at + 3], ["App=meshcall", "Stack=test-stack"])
        overrides = self.overrides(argv)
        boot_hash = overrides.pop("BootScriptHash", None)
        self.assertEqual(overrides, {
            "CodeBucket": ARTIFACTS, "CodeKey": key, "Architecture": "x86_64", "MaxRoomSize": "4",
            "ForceRelay": "true", "TurnUrls": "turn:turn.example.com:3478,turns:turn.example.com:5349"})
        self.assertLessEqual(set(self.overrides(argv)), template_parameters(), "every override is a parameter")
        self.assertEqual([c["argv"] for c in self.calls("openssl")], [["rand", "-hex", "32"]])
        # the secrets: SecureStrings in SSM (default key), stored before the stack, from a
        # 0600 file, tagged when created; never in argv, parameters or output
        puts = self.find("ssm", "put-parameter")
        self.assertEqual(len(puts), 2)
        self.assertTrue(all(p < deploy for p in puts), "secrets before the stack")
        resume = self.parameter(RESUME_PARAMETER)
        turn = self.parameter(TURN_PARAMETER)
        for stored, value in ((resume, SECRET), (turn, TURN_SECRET)):
            self.assertEqual(stored["Value"], value)
            self.assertEqual(stored["Type"], "SecureString")
            self.assertNotIn("KeyId", stored, "the AWS-managed key alias/aws/ssm")
            self.assertEqual(stored["fileMode"], "0o600")
            self.assertEqual(stored["Tags"], [{"Key": "App", "Value": "meshcall"},
                                              {"Key": "Stack", "Value": "test-stack"}])
        self.assert_no_secret_in_argv(SECRET, TURN_SECRET, output=first_output)
        self.assertEqual(os.listdir(self.env["TMPDIR"]), [], "no temporary file (a secret) left behind")
        # the web app, then config.json, then the invalidation
        sync, argv = self.one("s3", "sync")
        self.assertEqual(argv[2:4], [os.path.join(ROOT, "web") + "/", f"s3://{SITE}/"])
        self.assertIn("--delete", argv)
        excluded = [argv[i + 1] for i, a in enumerate(argv) if a == "--exclude"]
        self.assertIn("tsconfig.json", excluded)
        self.assertIn("config.json", excluded, "--delete must not remove config.json")
        with open(os.path.join(ROOT, "web", "js", "main.js"), "rb") as f:
            self.assertEqual(self.s3(SITE, "js/main.js"), f.read())
        self.assertFalse(os.path.exists(os.path.join(self.state, "buckets", SITE, "tsconfig.json")))
        site_cps = {c["argv"][3]: (i, c["argv"]) for i, c in enumerate(calls)
                    if c["argv"][:2] == ["s3", "cp"] and c["argv"][3].startswith(f"s3://{SITE}/")}
        index_at, argv = site_cps[f"s3://{SITE}/index.html"]
        self.assertEqual(self.opt(argv, "--cache-control"), "no-cache")
        config_at, argv = site_cps[f"s3://{SITE}/config.json"]
        self.assertEqual(self.opt(argv, "--cache-control"), "no-cache")
        self.assertEqual(self.opt(argv, "--content-type"), "application/json")
        self.assertEqual(json.loads(self.s3(SITE, "config.json")), {"wsUrl": WS_URL, "socketMaxAgeMs": SOCKET_MAX_AGE_MS, "iceTransportPolicy": "relay"})
        self.assertEqual(self.page_settings(), json.loads(self.s3(SITE, "config.json")),
                         "index.html carries config.json's settings")
        self.assertEqual(boot_hash, self.csp_source(self.page_parts()[1]),
                         "the stack's policy allows the uploaded page's boot script")
        inval, argv = self.one("cloudfront", "create-invalidation")
        self.assertEqual(self.opt(argv, "--distribution-id"), "E2QWRUHAPOMQZL")
        self.assertEqual(self.opt(argv, "--paths"), "/*")
        self.assertTrue(deploy < sync < index_at < config_at < inval)
        self.assertIn(f"App: {APP_URL}\n", r.stdout)
        self.assertIn(f"WebSocket: {WS_URL}\n", r.stdout)

        # ---- update: stack exists, build with cargo lambda (x86_64), region from the env
        self.clear_calls()
        target = os.path.join(self.tmp, "target")
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--arch", "x86_64",
                            env={"AWS_REGION": REGION, "CARGO_TARGET_DIR": target})
        [build] = [c for c in self.calls("cargo") if c["argv"][:2] == ["lambda", "build"]]
        self.assertEqual(build["argv"], ["lambda", "build", "--release", "-p", "meshcall-lambda",
                                         "--output-format", "zip", "--x86-64"])
        self.assertEqual(build["cwd"], ROOT)
        with open(os.path.join(target, "lambda/bootstrap/bootstrap.zip"), "rb") as f:
            built = f.read()
        key = f"lambda/bootstrap-x86_64-{hashlib.sha256(built).hexdigest()}.zip"
        self.assertEqual(self.s3(ARTIFACTS, key), built)
        self.assertEqual(self.find("s3api", "create-bucket"), [], "the artifacts bucket exists already")
        _, argv = self.one("cloudformation", "deploy")
        self.assertEqual(self.overrides(argv), {"CodeBucket": ARTIFACTS, "CodeKey": key, "Architecture": "x86_64",
                                                "BootScriptHash": boot_hash},
                         "an update keeps the other settings (UsePreviousValue)")
        self.assertEqual(self.calls("openssl"), [], "no new secret on update")
        self.assertEqual(self.find("ssm", "put-parameter"), [], "both secrets kept")
        self.assertIn(f"keeping the resume secret {RESUME_PARAMETER}", r.stdout)
        self.assertEqual(self.parameter(RESUME_PARAMETER)["Value"], SECRET)
        self.assertEqual(self.parameter(TURN_PARAMETER)["Value"], TURN_SECRET)
        self.assertEqual(json.loads(self.s3(SITE, "config.json")), {"wsUrl": WS_URL, "socketMaxAgeMs": SOCKET_MAX_AGE_MS, "iceTransportPolicy": "relay"},
                         "ForceRelay is read back from the stack")

        # ---- relay off again
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip,
                        "--param", "ForceRelay=false")
        self.assertEqual(json.loads(self.s3(SITE, "config.json")), {"wsUrl": WS_URL, "socketMaxAgeMs": SOCKET_MAX_AGE_MS})
        self.assertEqual(self.page_settings(), {"wsUrl": WS_URL, "socketMaxAgeMs": SOCKET_MAX_AGE_MS})

        # ---- destroy: site bucket emptied, stack deleted and waited for, artifacts removed
        self.clear_calls()
        r = self.run_script(DESTROY, "--stack", "test-stack", "--region", REGION)
        calls = self.calls()
        empty_site = [i for i in self.find("s3", "rm") if calls[i]["argv"][2] == f"s3://{SITE}"]
        empty_artifacts = [i for i in self.find("s3", "rm") if calls[i]["argv"][2] == f"s3://{ARTIFACTS}"]
        delete, _ = self.one("cloudformation", "delete-stack")
        wait, argv = self.one("cloudformation", "wait")
        self.assertEqual(argv[2], "stack-delete-complete")
        drop, argv = self.one("s3api", "delete-bucket")
        self.assertEqual(self.opt(argv, "--bucket"), ARTIFACTS)
        self.assertEqual(len(empty_site), 1)
        self.assertEqual(len(empty_artifacts), 1)
        self.assertIn("--recursive", calls[empty_site[0]]["argv"])
        self.assertTrue(empty_site[0] < delete < wait < empty_artifacts[0] < drop)
        secrets_gone, argv = self.one("ssm", "delete-parameters")
        self.assertEqual(argv[argv.index("--names") + 1:argv.index("--names") + 3], [RESUME_PARAMETER, TURN_PARAMETER])
        self.assertTrue(wait < secrets_gone, "secrets deleted after the stack")
        self.assertIsNone(self.parameter(RESUME_PARAMETER))
        self.assertIsNone(self.parameter(TURN_PARAMETER))
        self.assertEqual(os.listdir(os.path.join(self.state, "buckets")), [], "no bucket left")
        self.assertFalse(os.path.exists(os.path.join(self.state, "stack")), "no stack left")

        # ---- destroy again: nothing there, nothing to do, still rc 0
        self.clear_calls()
        r = self.run_script(DESTROY, "--stack", "test-stack", "--region", REGION)
        self.assertIn("no stack test-stack", r.stdout)
        self.assertEqual(self.find("cloudformation", "delete-stack"), [])
        self.assertEqual(self.find("s3api", "delete-bucket"), [])

    def test_build_needs_cargo_lambda_and_the_arm64_target(self):
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION,
                            env={"FAKE_NO_CARGO_LAMBDA": "1"}, ok=False)
        self.assertNotEqual(r.returncode, 0)
        for hint in ("pip install cargo-lambda ziglang", "cargo install cargo-lambda",
                     "rustup target add aarch64-unknown-linux-gnu", "--zip"):
            self.assertIn(hint, r.stderr)
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--arch", "arm64", ok=False)
        self.assertIn("rustup target add aarch64-unknown-linux-gnu", r.stderr)
        self.assertEqual(self.find("cloudformation", "deploy"), [])
        # with the target installed, arm64 builds with --arm64 (not yet exercised for real)
        target = os.path.join(self.tmp, "target")
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--arch", "arm64",
                        env={"FAKE_RUSTUP_ARM64": "1", "CARGO_TARGET_DIR": target})
        [build] = [c for c in self.calls("cargo") if c["argv"][:2] == ["lambda", "build"]]
        self.assertEqual(build["argv"][-1], "--arm64")

    def test_x86_64_is_the_default_build(self):
        target = os.path.join(self.tmp, "target")
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, env={"CARGO_TARGET_DIR": target})
        [build] = [c for c in self.calls("cargo") if c["argv"][:2] == ["lambda", "build"]]
        self.assertEqual(build["argv"][-1], "--x86-64")
        _, argv = self.one("cloudformation", "deploy")
        self.assertEqual(self.overrides(argv)["Architecture"], "x86_64")
        r = self.run_script(DEPLOY, "--help")
        self.assertIn("not yet exercised", r.stdout)

    def test_turn_secret_from_a_file_or_stdin_and_required_with_turn_urls(self):
        # TurnUrls without a secret: refused before anything is built or deployed
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION,
                            "--param", "TurnUrls=turn:turn.example.com:3478", ok=False)
        self.assertIn("TurnUrls needs the TURN server's shared secret", r.stderr)
        self.assertEqual(self.calls("cargo"), [])
        self.assertEqual(self.find("cloudformation", "deploy"), [])
        # from a file
        path = os.path.join(self.tmp, "turn-secret")
        with open(path, "w") as f:
            f.write(TURN_SECRET + "\n")
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip,
                            "--param", "TurnUrls=turn:turn.example.com:3478", "--turn-secret-file", path)
        self.assertEqual(self.parameter(TURN_PARAMETER)["Value"], TURN_SECRET)
        self.assertNotIn("Overwrite", self.parameter(TURN_PARAMETER))
        # a new one on stdin overwrites it (and, as AWS requires, without tags)
        new = "rotated-" + TURN_SECRET
        self.clear_calls()
        r2 = subprocess.run([DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip,
                             "--turn-secret-file", "-"], input=new + "\n", cwd=self.tmp, env=self.env,
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        stored = self.parameter(TURN_PARAMETER)
        self.assertEqual(stored["Value"], new)
        self.assertIs(stored["Overwrite"], True)
        self.assertNotIn("Tags", stored)
        self.assert_no_secret_in_argv(SECRET, TURN_SECRET, new, output=(r.stdout, r.stderr, r2.stdout, r2.stderr))

    def test_the_argv_check_can_fail(self):
        """The check above sees a secret passed the way it must never be (--value)."""
        subprocess.run(["aws", "ssm", "put-parameter", "--name", RESUME_PARAMETER, "--value", SECRET],
                       env=self.env, capture_output=True)
        with self.assertRaises(AssertionError):
            self.assert_no_secret_in_argv(SECRET)
        self.assertIsNone(self.parameter(RESUME_PARAMETER), "the fake takes no value from argv")

    def test_us_east_1_and_versioned_buckets(self):
        """us-east-1 takes no LocationConstraint; destroy also deletes old object versions."""
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", "us-east-1", "--zip", self.zip)
        _, argv = self.one("s3api", "create-bucket")
        self.assertNotIn("--create-bucket-configuration", argv)
        os.mkdir(os.path.join(self.state, "versions"))
        with open(os.path.join(self.state, "versions", SITE), "w") as f:
            f.write("3\n")
        self.clear_calls()
        self.run_script(DESTROY, "--stack", "test-stack", "--region", "us-east-1")
        deletes = self.find("s3api", "delete-objects")
        self.assertEqual(len(deletes), 2, "3 old versions, 2 per page in the fake")
        self.assertLess(deletes[-1], self.find("cloudformation", "delete-stack")[0])
        with open(os.path.join(self.state, "versions", SITE)) as f:
            self.assertEqual(f.read().strip(), "0")

    def test_artifacts_bucket_names(self):
        """Lower case, at most 63 characters, distinct for long names that share a prefix."""
        lib = os.path.join(ROOT, "deploy", "aws", "lib.sh")

        def name(stack, region="ap-southeast-4"):
            r = subprocess.run(["bash", "-c", f'. "{lib}"; artifacts_bucket "$@"', "-", stack, "123456789012", region],
                               capture_output=True, text=True, check=True)
            return r.stdout.strip()

        self.assertEqual(name("Test-Stack", "eu-west-1"), "meshcall-test-stack-123456789012-eu-west-1")
        long_a, long_b = "A" + "b" * 38 + "c", "A" + "b" * 38 + "d"
        for stack in ("x", "Short", long_a, long_b):
            n = name(stack)
            self.assertLessEqual(len(n), 63, n)
            self.assertRegex(n, r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
            self.assertEqual(n, name(stack), "the same name every time")
        self.assertNotEqual(name(long_a), name(long_b))

    def test_a_failed_first_creation_asks_for_destroy(self):
        os.makedirs(os.path.join(self.state, "stack"))
        with open(os.path.join(self.state, "stack", "status"), "w") as f:
            f.write("ROLLBACK_COMPLETE\n")
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("deploy/aws/destroy --stack test-stack", r.stderr)
        self.assertEqual(self.find("cloudformation", "deploy"), [])

    def test_destroy_refuses_to_leave_a_half_deleted_stack_silently(self):
        """If the stack cannot be deleted, destroy fails and keeps the artifacts bucket."""
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip)
        self.clear_calls()
        # An object that appears after the bucket was emptied makes the deletion fail.
        fake_aws = os.path.join(self.tmp, "bin")
        os.mkdir(fake_aws)
        with open(os.path.join(fake_aws, "aws"), "w") as f:
            f.write(f"""#!/usr/bin/env bash
if [ "$1 $2" = "cloudformation wait" ]; then touch "$FAKE_STATE/buckets/{SITE}/late-object"; fi
exec "{os.path.join(HERE, 'fakebin', 'aws')}" "$@"
""")
        os.chmod(os.path.join(fake_aws, "aws"), 0o755)
        r = self.run_script(DESTROY, "--stack", "test-stack", "--region", REGION, ok=False,
                            env={"PATH": fake_aws + os.pathsep + self.env["PATH"]})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("describe-stack-events", r.stderr)
        self.assertEqual(self.find("s3api", "delete-bucket"), [])


def meshcall_binary():
    """The self-hosted server (scripts/test-aws-deploy builds it), standing in for the
    deployed API in the smoke test's test."""
    path = os.environ.get("MESHCALL_SERVER_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "debug", "meshcall")
    return path if os.access(path, os.X_OK) else None


class Smoke(Scripts):
    """deploy/aws/smoke against stand-ins: the fake `aws` for the stack, and the real
    self-hosted `meshcall` server on 127.0.0.1 for the deployed WebSocket API (it accepts
    only the stack's app URL as Origin, as the function does). What this cannot show:
    API Gateway's close codes (1003 for a binary frame, the code after DeleteConnection, the
    $disconnect status of a killed TCP connection); SmokeClientOnGateway below asserts them
    as meshcall-gateway emulates them, and only a run on a real account shows AWS's."""

    def setUp(self):
        super().setUp()
        try:
            import websockets.asyncio.client  # noqa: F401
        except ImportError:
            self.fail("the smoke clients need websockets in this python (scripts/test-aws-deploy installs it)")
        binary = meshcall_binary()
        if binary is None and os.environ.get("MESHCALL_SERVER_BIN"):
            self.fail(f"MESHCALL_SERVER_BIN={os.environ['MESHCALL_SERVER_BIN']} is not an executable")
        if binary is None:
            self.skipTest("no target/debug/meshcall: build it with cargo build -p meshcall "
                          "(scripts/test-aws-deploy does)")
        self.binary = binary

    def serve(self, allowed_origin):
        """Starts meshcall on a free port; its ws:// URL."""
        log_path = os.path.join(self.tmp, "meshcall.log")
        log = open(log_path, "w")
        self.addCleanup(log.close)
        server = subprocess.Popen([self.binary, "--listen", "127.0.0.1:0", "--allowed-origin", allowed_origin,
                                   "--resume-grace", "30s"], stdout=log, stderr=subprocess.STDOUT,
                                  env=dict(self.env, RUST_LOG="info", NO_COLOR="1"))

        def stop():
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self.addCleanup(stop)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                m = re.search(r"listening.*?addr=(127\.0\.0\.1:\d+)", f.read())
            if m:
                return f"ws://{m.group(1)}/ws"
            self.assertIsNone(server.poll(), "meshcall exited")
            time.sleep(0.05)
        self.fail("meshcall did not say where it listens")

    def smoke(self, url, *args, env=None, ok=True):
        e = dict(MESHCALL_SMOKE_WS_URL=url, MESHCALL_SMOKE_PYTHON=sys.executable,
                 MESHCALL_SMOKE_LOG_WAIT="0", **(env or {}))
        return self.run_script(SMOKE, "--region", REGION, "--zip", self.zip, *args, env=e, ok=ok)

    def assert_destroyed(self, stack):
        calls = self.calls()
        [deploy] = [c["argv"] for c in calls if c["argv"][:2] == ["cloudformation", "deploy"]]
        self.assertEqual(self.opt(deploy, "--stack-name"), stack)
        [delete] = [c["argv"] for c in calls if c["argv"][:2] == ["cloudformation", "delete-stack"]]
        self.assertEqual(self.opt(delete, "--stack-name"), stack)
        self.assertEqual(len(self.find("ssm", "delete-parameters")), 1)
        self.assertFalse(os.path.exists(os.path.join(self.state, "stack")), "the stack is gone")
        self.assertEqual(os.listdir(os.path.join(self.state, "buckets")), [], "no bucket left")
        self.assertEqual(os.listdir(os.path.join(self.state, "ssm")), [], "no secret left")

    def test_deploy_uploads_the_page_meshcall_serves(self):
        """deploy/aws/deploy and crates/server/src/web.rs each write web/js/boot.js into the
        page: the two pages are the same (but for the settings), so is the hash."""
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip)
        _, script, uploaded = self.page_parts()
        ws = self.serve(APP_URL)
        http_url = ws.replace("ws://", "http://", 1).removesuffix("/ws")
        with urllib.request.urlopen(http_url + "/index.html", timeout=10) as res:
            served = res.read().decode()
            csp = res.headers["Content-Security-Policy"]
        self.assertEqual(uploaded, served)
        self.assertIn(f"script-src 'self' '{self.csp_source(script)}'", csp)
        _, argv = self.one("cloudformation", "deploy")
        self.assertEqual(self.overrides(argv)["BootScriptHash"], self.csp_source(script))

    def test_smoke_help(self):
        r = self.run_script(SMOKE, "--help")
        for w in ("Usage: deploy/aws/smoke", "throwaway", "1003", "DeleteConnection", "MESHCALL_SMOKE_WS_URL"):
            self.assertIn(w, r.stdout)
        self.assertEqual(self.calls(), [])

    def test_the_flow_against_the_self_hosted_server(self):
        url = self.serve(APP_URL)
        with open(os.path.join(self.state, "log-messages.json"), "w") as f:
            json.dump(['{"level":"INFO","message":"disconnected","status":1006}',
                       "INFO meshcall_lambda: disconnected status=1000"], f)
        out = os.path.join(self.tmp, "codes.json")
        r = self.smoke(url, "--out", out, "--stack", "smoke-test-1")
        with open(out, encoding="utf-8") as f:
            report = json.load(f)
        self.assertTrue(report["ok"], report["failures"])
        self.assertEqual(report["url"], url)
        self.assertEqual(report["origin"], APP_URL, "the stack's app URL is the Origin")
        self.assertEqual(report["expect"], "standin")
        codes = report["closeCodes"]
        self.assertEqual(codes["killedTcpClientSide"], 1006)
        self.assertEqual(codes["takeover"], 1013, "the self-hosted server's takeover (AWS: DeleteConnection)")
        self.assertEqual(codes["cleanClose"], {"A": 1000, "B3": 1000})
        self.assertIn("binaryFrame", codes, "recorded, whatever the stand-in does")
        steps = [s["step"] for s in report["steps"]]
        for want in ("A joined", "B joined; A told", "signals relayed both ways",
                     "B's TCP connection killed (RST, no close frame)", "B resumed on B2",
                     "B2 closed by the takeover", "signal delivered to B3", "B left; A told", "binary frame sent"):
            self.assertIn(want, steps)
        self.assertEqual(report["disconnectLog"]["statuses"], [1006, 1000])
        # the log read covers the function's log group
        _, argv = self.one("logs", "filter-log-events")
        self.assertEqual(self.opt(argv, "--log-group-name"), "/aws/lambda/smoke-test-1-signalling")
        self.assert_destroyed("smoke-test-1")
        self.assertIn("smoke test passed", r.stdout)

    def test_a_failure_still_destroys_the_stack(self):
        """The server refuses the Origin (as the function does for any but the app's): the
        clients fail, the smoke fails, and the stack is destroyed all the same."""
        url = self.serve("https://other.example")
        out = os.path.join(self.tmp, "codes.json")
        r = self.smoke(url, "--out", out, env={"MESHCALL_SMOKE_CONNECT_WAIT": "0"}, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("smoke checks failed", r.stderr)
        with open(out, encoding="utf-8") as f:
            report = json.load(f)
        self.assertFalse(report["ok"])
        self.assertIn("A could not connect", report["failures"][0])
        [deploy] = [c["argv"] for c in self.calls() if c["argv"][:2] == ["cloudformation", "deploy"]]
        self.assertRegex(self.opt(deploy, "--stack-name"), r"^meshcall-smoke-\d{14}-[0-9a-f]{4}$", "a unique name")
        self.assert_destroyed(self.opt(deploy, "--stack-name"))

    def test_a_failed_deploy_still_destroys_and_an_existing_stack_is_refused(self):
        os.makedirs(os.path.join(self.state, "stack"))
        with open(os.path.join(self.state, "stack", "status"), "w") as f:
            f.write("CREATE_COMPLETE\n")
        r = self.smoke("ws://127.0.0.1:9/ws", "--stack", "test-stack", ok=False)
        self.assertIn("exists already", r.stderr)
        self.assertEqual(self.find("cloudformation", "deploy"), [])
        self.assertEqual(self.find("cloudformation", "delete-stack"), [], "never someone else's stack")
        shutil.rmtree(os.path.join(self.state, "stack"))
        self.clear_calls()
        r = self.smoke("ws://127.0.0.1:9/ws", "--stack", "test-stack", env={"FAKE_AWS_FAIL_DEPLOY": "1"}, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Failed to create/update the stack", r.stderr)
        self.assertEqual(self.find("logs", "filter-log-events"), [], "no clients after a failed deploy")
        self.assertEqual(len(self.find("cloudformation", "delete-stack")), 1)
        self.assertFalse(os.path.exists(os.path.join(self.state, "stack")), "the stack is gone")
        self.assertEqual(os.listdir(os.path.join(self.state, "ssm")), [], "no secret left")


def built(name):
    """target/debug/NAME (scripts/test-aws-deploy builds the workspace), or None."""
    path = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "debug", name)
    return path if os.access(path, os.X_OK) else None


class SmokeClientOnGateway(unittest.TestCase):
    """deploy/aws/smoke_client.py with --expect aws against meshcall-gateway (API Gateway
    and Lambda on one machine: real bootstrap processes, moto's DynamoDB, SQS and SSM),
    where the close codes the self-hosted stand-in above cannot give are API Gateway's as
    the gateway emulates them from AWS's documentation: 1003 for a binary frame (the
    function never invoked), the code on the socket the function closes with
    DeleteConnection (1000 here), and the $disconnect status of each socket in the
    function's own "disconnected" log lines, read by `annotate` as the smoke reads them from
    CloudWatch. That the emulation matches AWS only a run on a real account shows.

    Needs the DynamoDB emulator (AWS_ENDPOINT_URL; scripts/test runs this step with moto
    up; skipped without it unless MESHCALL_MOTO is set) and target/debug/meshcall-gateway
    and target/debug/bootstrap. About 8 s."""

    CLIENT = os.path.join(ROOT, "deploy", "aws", "smoke_client.py")

    def setUp(self):
        try:
            import websockets.asyncio.client  # noqa: F401
        except ImportError:
            self.fail("the smoke clients need websockets in this python (scripts/test-aws-deploy installs it)")
        if not os.environ.get("AWS_ENDPOINT_URL"):
            if os.environ.get("MESHCALL_MOTO"):
                self.fail("MESHCALL_MOTO is set but AWS_ENDPOINT_URL names no emulator")
            self.skipTest("no DynamoDB emulator (AWS_ENDPOINT_URL): scripts/test runs this with moto")
        self.gateway, self.bootstrap = built("meshcall-gateway"), built("bootstrap")
        if self.gateway is None or self.bootstrap is None:
            self.skipTest("no target/debug/meshcall-gateway or bootstrap: cargo build --workspace "
                          "(scripts/test-aws-deploy does)")
        self.tmp = tempfile.mkdtemp(prefix="meshcall-smoke-gateway-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def serve(self):
        """Starts the gateway on a fresh table; its address and the path of its log."""
        log_path = os.path.join(self.tmp, "gateway.log")
        log = open(log_path, "w")
        self.addCleanup(log.close)
        table = f"smoke-client-{os.getpid()}-{time.monotonic_ns()}"
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        env.setdefault("AWS_REGION", REGION)
        gateway = subprocess.Popen(
            [self.gateway, "--listen", "127.0.0.1:0", "--create-table", "--table", table,
             "--bootstrap", self.bootstrap, "--stage", "prod", "--allowed-origin", APP_URL,
             "--resume-grace", "30s"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env, text=True)

        def stop():
            if gateway.poll() is None:
                gateway.terminate()
                try:
                    gateway.wait(10)
                except subprocess.TimeoutExpired:
                    gateway.kill()
                    gateway.wait()
            gateway.stdout.close()
        self.addCleanup(stop)
        import selectors
        with selectors.DefaultSelector() as sel:
            sel.register(gateway.stdout, selectors.EVENT_READ)
            if not sel.select(30):
                self.fail(f"the gateway did not say where it listens within 30 s; see {log_path}")
        line = gateway.stdout.readline()
        m = re.match(r"listening on http://(127\.0\.0\.1:\d+)$", line.strip())
        if not m:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                self.fail(f"unexpected first line {line!r}; the gateway's log:\n{f.read()[-3000:]}")
        return m.group(1), stop, log_path

    def wait_idle(self, addr):
        """Until every invocation, $disconnect included, has returned."""
        import urllib.request
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}/_gateway/idle", timeout=5) as r:
                    if r.read().decode().strip() == "idle":
                        return
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, "the gateway never went idle")
            time.sleep(0.05)

    def test_the_flow_records_api_gateways_close_codes(self):
        addr, stop, log_path = self.serve()
        out = os.path.join(self.tmp, "codes.json")
        r = subprocess.run(
            [sys.executable, self.CLIENT, "run", "--url", f"ws://{addr}/prod", "--origin", APP_URL,
             "--out", out, "--expect", "aws", "--connect-wait", "10"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_idle(addr)
        stop()
        with open(log_path, encoding="utf-8", errors="replace") as f:
            # The function's log lines (JSON, as in CloudWatch) that the smoke's filter
            # pattern '"disconnected"' would return.
            lines = [line.strip() for line in f if line.startswith("{") and "disconnected" in line]
        messages = os.path.join(self.tmp, "log-messages.json")
        with open(messages, "w", encoding="utf-8") as f:
            json.dump(lines, f)
        subprocess.run([sys.executable, self.CLIENT, "annotate", "--out", out, "--log-messages", messages],
                       check=True, timeout=30)
        with open(out, encoding="utf-8") as f:
            report = json.load(f)
        self.assertTrue(report["ok"], report["failures"])
        self.assertEqual(report["expect"], "aws")
        self.assertEqual(report["closeCodes"], {
            "killedTcpClientSide": 1006,
            "takeover": 1000,
            "cleanClose": {"A": 1000, "B3": 1000},
            "binaryFrame": 1003,
        })
        # One $disconnect per socket: B killed (1006), B2 deleted by the takeover (1000),
        # A and B3 closed (1000), C closed for its binary frame (1003).
        statuses = report["disconnectLog"]["statuses"]
        self.assertEqual(sorted(statuses), [1000, 1000, 1000, 1003, 1006], report["disconnectLog"])
        ids = {s["step"]: s.get("connectionId") for s in report["steps"]}
        by_socket = {}
        for line, status in zip(report["disconnectLog"]["lines"], statuses):
            by_socket[json.loads(line)["span"]["conn_id"]] = status
        self.assertEqual(by_socket[ids["B joined; A told"]], 1006, "B's socket, killed with an RST")
        self.assertEqual(by_socket[ids["A joined"]], 1000, "A's clean close")


# Smoke reuses Scripts' set-up and helpers, not its tests.
for _name in [n for n in vars(Scripts) if n.startswith("test_")]:
    setattr(Smoke, _name, None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
