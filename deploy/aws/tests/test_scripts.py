"""deploy/aws/deploy and deploy/aws/destroy, end to end against stand-ins (offline).

`fakebin/` holds bash stand-ins for `aws`, `cargo`, `rustup` and `openssl`, put first on
PATH. The fake `aws` records every call and keeps a little state (buckets and their
objects, the stack's status), so the tests can look at the calls the scripts made, in
order, and at what ended up "in S3" (the zip, config.json, the web app).

    python3 deploy/aws/tests/test_scripts.py
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy", "aws", "deploy")
DESTROY = os.path.join(ROOT, "deploy", "aws", "destroy")
TEMPLATE = os.path.join(ROOT, "deploy", "aws", "template.yaml")

REGION = "eu-west-1"
ARTIFACTS = f"meshcall-test-stack-123456789012-{REGION}"
SITE = "test-stack-sitebucket-1a2b3c4d"
WS_URL = f"wss://abc123defg.execute-api.{REGION}.amazonaws.com/prod"
# The app moves to a fresh socket 5 minutes before API Gateway's 2-hour connection limit.
SOCKET_MAX_AGE_MS = 115 * 60 * 1000
APP_URL = "https://d111111abcdef8.cloudfront.net"
SECRET = "5eed" * 16


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
                        FAKE_STATE=self.state, FAKE_PYTHON=sys.executable)

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

    def s3(self, bucket, key):
        with open(os.path.join(self.state, "buckets", bucket, key), "rb") as f:
            return f.read()

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
            (DEPLOY, ["--stack", "s", "--arch", "sparc"], "--arch is arm64 or x86_64"),
            (DEPLOY, ["--stack", "s", "--param", "MaxRoomSise=4"], "no parameter 'MaxRoomSise'"),
            (DEPLOY, ["--stack", "s", "--param", "CodeKey=x"], "set by this script"),
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
        # ---- first deploy: new stack, prebuilt zip, region from --region, relay forced
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip,
                            "--param", "MaxRoomSize=4", "--param", "ForceRelay=true",
                            "--param", "TurnUrls=turn:turn.example.com:3478,turns:turn.example.com:5349",
                            "--param", "TurnSecret=s3cret")
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
        key = f"lambda/bootstrap-arm64-{sha}.zip"
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
        self.assertEqual(self.overrides(argv), {
            "CodeBucket": ARTIFACTS, "CodeKey": key, "Architecture": "arm64", "MaxRoomSize": "4",
            "ForceRelay": "true", "TurnUrls": "turn:turn.example.com:3478,turns:turn.example.com:5349",
            "TurnSecret": "s3cret", "ResumeSecret": SECRET})
        self.assertEqual([c["argv"] for c in self.calls("openssl")], [["rand", "-hex", "32"]])
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
        self.assertEqual(self.overrides(argv), {"CodeBucket": ARTIFACTS, "CodeKey": key, "Architecture": "x86_64"},
                         "an update keeps ResumeSecret and the other settings (UsePreviousValue)")
        self.assertEqual(self.calls("openssl"), [], "no new secret on update")
        self.assertIn("keeping the stack's ResumeSecret", r.stdout)
        self.assertEqual(json.loads(self.s3(SITE, "config.json")), {"wsUrl": WS_URL, "socketMaxAgeMs": SOCKET_MAX_AGE_MS, "iceTransportPolicy": "relay"},
                         "ForceRelay is read back from the stack")

        # ---- relay off again
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, "--zip", self.zip,
                        "--param", "ForceRelay=false")
        self.assertEqual(json.loads(self.s3(SITE, "config.json")), {"wsUrl": WS_URL, "socketMaxAgeMs": SOCKET_MAX_AGE_MS})

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
        r = self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION, ok=False)
        self.assertIn("rustup target add aarch64-unknown-linux-gnu", r.stderr)
        self.assertEqual(self.find("cloudformation", "deploy"), [])
        # with the target installed, arm64 builds with --arm64
        target = os.path.join(self.tmp, "target")
        self.run_script(DEPLOY, "--stack", "test-stack", "--region", REGION,
                        env={"FAKE_RUSTUP_ARM64": "1", "CARGO_TARGET_DIR": target})
        [build] = [c for c in self.calls("cargo") if c["argv"][:2] == ["lambda", "build"]]
        self.assertEqual(build["argv"][-1], "--arm64")

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
