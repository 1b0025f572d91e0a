# shellcheck shell=bash
# Shared by deploy/aws/deploy and deploy/aws/destroy (sourced, not run). Needs $prog set.

say() { printf '==> %s\n' "$*"; }
die() {
  printf '%s: %s\n' "${prog:-meshcall}" "$*" >&2
  exit 1
}

# Stack names: CloudFormation's rule, and at most 40 characters so that the names derived
# from it (function, log group, CloudFront function, ...) stay within their limits.
check_stack_name() {
  [ -n "$1" ] || die "--stack NAME is required (see --help)"
  [[ $1 =~ ^[A-Za-z][A-Za-z0-9-]{0,39}$ ]] \
    || die "bad stack name '$1': a letter, then letters, digits or '-', 40 characters at most"
}

# The AWS CLI v2 and working credentials. Sets $account; exports the region for every call.
need_aws() {
  command -v aws >/dev/null 2>&1 \
    || die "the AWS CLI v2 is needed: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
  local version
  version=$(aws --version 2>&1 || true)
  case $version in
    aws-cli/2.*) ;;
    *) die "the AWS CLI v2 is needed (found: ${version:-nothing})" ;;
  esac
  export AWS_PAGER=""
  if [ -z "${region:-}" ]; then
    region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}
  fi
  [ -n "$region" ] || die "no AWS region: pass --region, or set AWS_REGION, or run 'aws configure'"
  [[ $region =~ ^[a-z0-9-]+$ ]] || die "bad region '$region'"
  export AWS_REGION=$region AWS_DEFAULT_REGION=$region
  local err
  err=$(mktemp)
  if ! account=$(aws sts get-caller-identity --query Account --output text 2>"$err"); then
    die "no working AWS credentials (aws configure, AWS_PROFILE, or aws sso login): $(cat "$err"; rm -f "$err")"
  fi
  rm -f "$err"
  [[ $account =~ ^[0-9]{12}$ ]] || die "unexpected account id from 'aws sts get-caller-identity': $account"
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# The bucket for the function's zips and the uploaded template, one per stack, account and
# region: meshcall-<stack>-<account>-<region>, lower case; a long stack name is shortened
# and given a hash of the whole name so that the result stays within S3's 63 characters.
artifacts_bucket() { # stack account region
  local stack tail room
  stack=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
  tail="-$2-$3"
  room=$((63 - 9 - ${#tail}))
  if [ "${#stack}" -gt "$room" ]; then
    stack="${stack:0:$((room - 9))}-$(printf '%s' "$1" | cksum | cut -d' ' -f1 | cut -c1-8)"
  fi
  printf 'meshcall-%s%s\n' "$stack" "$tail"
}

# The stack's status, or NONE when there is no such stack. Exits on any other error.
stack_status() {
  local out err errfile
  errfile=$(mktemp)
  if out=$(aws cloudformation describe-stacks --stack-name "$1" \
    --query 'Stacks[0].StackStatus' --output text 2>"$errfile"); then
    rm -f "$errfile"
    printf '%s\n' "$out"
    return 0
  fi
  err=$(cat "$errfile")
  rm -f "$errfile"
  [[ $err == *"does not exist"* ]] || die "cannot read stack $1: $err"
  echo NONE
}

bucket_exists() {
  aws s3api head-bucket --bucket "$1" >/dev/null 2>&1
}

# Deletes every object of a bucket, and every version and delete marker should versioning
# ever have been turned on.
empty_bucket() {
  local bucket=$1 versioning batch
  aws s3 rm "s3://$bucket" --recursive --only-show-errors
  versioning=$(aws s3api get-bucket-versioning --bucket "$bucket" --query Status --output text)
  case $versioning in
    Enabled | Suspended) ;;
    *) return 0 ;;
  esac
  while :; do
    # shellcheck disable=SC2016 # the backticks are JMESPath's literal, not a command
    batch=$(aws s3api list-object-versions --bucket "$bucket" --max-items 500 --output json \
      --query '{Objects: [Versions, DeleteMarkers][][].{Key: Key, VersionId: VersionId}, Quiet: `true`}')
    [[ $batch == *'"Key"'* ]] || break
    aws s3api delete-objects --bucket "$bucket" --delete "$batch" >/dev/null
  done
}

# The SSM parameter holding one of a stack's secrets (resume-secret, turn-secret). The
# template names the same ones (MESHCALL_*_SECRET_PARAMETER and the role's ssm statement).
secret_parameter() { # stack kind
  printf '/meshcall/%s/%s\n' "$1" "$2"
}

# Whether an SSM parameter exists (its value is not read). Exits on any other error.
parameter_exists() {
  local err errfile
  errfile=$(mktemp)
  if aws ssm get-parameter --name "$1" --query Parameter.Version --output text >/dev/null 2>"$errfile"; then
    rm -f "$errfile"
    return 0
  fi
  err=$(cat "$errfile")
  rm -f "$errfile"
  [[ $err == *ParameterNotFound* ]] || die "cannot read the SSM parameter $1: $err"
  return 1
}

# A JSON string literal of $1, with bash alone (no process sees the value in its argv).
json_string() {
  local v=$1
  v=${v//\\/\\\\}
  v=${v//\"/\\\"}
  printf '"%s"' "$v"
}

# Creates or overwrites the SecureString parameter $1 with the value $2 (key alias/aws/ssm).
# The value reaches the AWS CLI in a 0600 file (--cli-input-json file://), never in argv:
# printf is a bash builtin, so no process is started with the value either.
put_secret() { # name value stack description tmpdir
  local name=$1 value=$2 stack=$3 description=$4 dir=$5 file overwrite tags
  file="$dir/parameter.json"
  if parameter_exists "$name"; then
    overwrite=', "Overwrite": true' tags=""
  else
    overwrite="" tags=", \"Tags\": [{\"Key\": \"App\", \"Value\": \"meshcall\"}, {\"Key\": \"Stack\", \"Value\": $(json_string "$stack")}]"
  fi
  (
    umask 077
    printf '{"Name": %s, "Type": "SecureString", "Description": %s, "Value": %s%s%s}\n' \
      "$(json_string "$name")" "$(json_string "$description")" "$(json_string "$value")" \
      "$overwrite" "$tags" >"$file"
  )
  if ! aws ssm put-parameter --cli-input-json "file://$file" --query Version --output text >/dev/null; then
    rm -f "$file"
    die "could not store the SSM parameter $name"
  fi
  rm -f "$file"
}
