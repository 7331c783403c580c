#!/usr/bin/env bash
# Deploys the working tree's commit to the bayeux-edge service on ECS Fargate:
# builds the image, tags it with the git commit, pushes it to ECR, registers
# ecs/task-definition.json with that image, moves the service to the new revision
# and waits until the deployment is stable. On a failure after the service was
# touched it prints how to roll back.
#
# Usage: scripts/fargate-deploy.sh [options]
#   --dry-run              print every docker and aws command instead of running it
#                          (nothing is sent to AWS; the rendered task definition is kept)
#   --region REGION        default: $AWS_REGION, then $AWS_DEFAULT_REGION
#   --account ID           default: $AWS_ACCOUNT_ID, else asked from STS
#   --cluster NAME         default: $ECS_CLUSTER, else bayeux-edge
#   --service NAME         default: $ECS_SERVICE, else bayeux-edge
#   --repository NAME      ECR repository; default: $ECR_REPOSITORY, else bayeux-edge
#   --task-definition FILE default: ecs/task-definition.json
#   --platform PLATFORM    image platform; default linux/amd64 (runtimePlatform X86_64)
#   --tag TAG              image tag; default: the commit, 12 hex digits
#   --allow-dirty          build a tree with uncommitted changes (tag gets -dirty-TIME)
#   --register-only        build, push and register; leave the service alone
#                          (the first deploy, before the service exists)
#   --wait-minutes N       how long to wait for a stable service; default 15
#   -h, --help
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

dry_run=0
register_only=0
allow_dirty=0
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
account="${AWS_ACCOUNT_ID:-}"
cluster="${ECS_CLUSTER:-bayeux-edge}"
service="${ECS_SERVICE:-bayeux-edge}"
repository="${ECR_REPOSITORY:-bayeux-edge}"
task_definition="$root/ecs/task-definition.json"
platform=linux/amd64
tag=""
wait_minutes=15

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
  echo "fargate-deploy: $*" >&2
  exit 2
}

need_value() {
  [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --register-only) register_only=1 ;;
    --allow-dirty) allow_dirty=1 ;;
    --region) need_value "$@"; region=$2; shift ;;
    --account) need_value "$@"; account=$2; shift ;;
    --cluster) need_value "$@"; cluster=$2; shift ;;
    --service) need_value "$@"; service=$2; shift ;;
    --repository) need_value "$@"; repository=$2; shift ;;
    --task-definition) need_value "$@"; task_definition=$2; shift ;;
    --platform) need_value "$@"; platform=$2; shift ;;
    --tag) need_value "$@"; tag=$2; shift ;;
    --wait-minutes) need_value "$@"; wait_minutes=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

# Dry-run output goes to the original stdout even from inside $(...).
exec 3>&1

# Quotes words so that a shell reads them back as they are.
quote() {
  local word out=""
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=" $word"
    else
      out+=" '${word//\'/\'\\\'\'}'"
    fi
  done
  printf '%s' "${out# }"
}

# Prints a command, prefixed with "+ " like `set -x` does.
show() {
  printf '+ %s\n' "$(quote "$@")" >&3
}

# Runs a command, or only prints it in a dry run.
run() {
  show "$@"
  if [ "$dry_run" = 0 ]; then
    "$@"
  fi
}

# Runs a command and prints its output; in a dry run prints the command and
# the placeholder given first instead.
query() {
  local placeholder=$1
  shift
  show "$@"
  if [ "$dry_run" = 1 ]; then
    printf '%s\n' "$placeholder"
  else
    "$@"
  fi
}

log() {
  printf 'fargate-deploy: %s\n' "$*" >&3
}

# --- inputs --------------------------------------------------------------------

[ -n "$region" ] || die "no region: pass --region or set AWS_REGION"
[[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "not a region name: $region"
[[ "$cluster" =~ ^[A-Za-z0-9_-]{1,255}$ ]] || die "not a cluster name: $cluster"
[[ "$service" =~ ^[A-Za-z0-9_-]{1,255}$ ]] || die "not a service name: $service"
[[ "$repository" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || die "not a repository name: $repository"
[[ "$wait_minutes" =~ ^[1-9][0-9]*$ ]] || die "--wait-minutes needs a positive number"
[ -f "$task_definition" ] || die "no task definition at $task_definition"
[ -f "$root/Dockerfile" ] || die "no Dockerfile in $root"

if [ -z "$tag" ]; then
  commit=$(git -C "$root" rev-parse --verify --short=12 HEAD 2>/dev/null) ||
    die "no git commit to tag the image with (pass --tag)"
  tag=$commit
  if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
    [ "$allow_dirty" = 1 ] || die "uncommitted changes: commit them, or pass --allow-dirty"
    tag="$commit-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "not an image tag: $tag"

if [ -z "$account" ]; then
  account=$(query '<account-id>' aws sts get-caller-identity --query Account --output text)
fi
if [ "$dry_run" = 0 ] || [ "$account" != '<account-id>' ]; then
  [[ "$account" =~ ^[0-9]{12}$ ]] || die "not an account id: $account"
fi

registry="$account.dkr.ecr.$region.amazonaws.com"
image="$registry/$repository:$tag"
log "image $image"
log "service $service in cluster $cluster ($region)"

# --- image ---------------------------------------------------------------------

printf '+ %s | %s\n' "$(quote aws ecr get-login-password --region "$region")" \
  "$(quote docker login --username AWS --password-stdin "$registry")" >&3
if [ "$dry_run" = 0 ]; then
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
fi
run docker build --platform "$platform" --pull \
  --label "org.opencontainers.image.revision=$tag" \
  --tag "$image" --file "$root/Dockerfile" "$root"
run docker push "$image"

# --- task definition -----------------------------------------------------------

rendered=$(mktemp "${TMPDIR:-/tmp}/bayeux-edge-task-definition.XXXXXX")
if [ "$dry_run" = 0 ]; then
  trap 'rm -f "$rendered"' EXIT
fi
sed -e "s|\${AWS_ACCOUNT_ID}|$account|g" \
  -e "s|\${AWS_REGION}|$region|g" \
  -e "s|\${IMAGE}|$image|g" \
  "$task_definition" >"$rendered"
if grep -nF -e "\${" "$rendered" >&2; then
  die "placeholders left in the task definition (only \${AWS_ACCOUNT_ID}, \${AWS_REGION} and \${IMAGE} are filled)"
fi
[ "$dry_run" = 0 ] || log "task definition rendered to $rendered"

family=$(sed -n 's/^ *"family": *"\([^"]*\)".*/\1/p' "$task_definition" | head -n 1)
[ -n "$family" ] || die "no family in $task_definition"
new_arn=$(query "arn:aws:ecs:$region:$account:task-definition/$family:NEW" \
  aws ecs register-task-definition --region "$region" \
  --cli-input-json "file://$rendered" \
  --query taskDefinition.taskDefinitionArn --output text)
log "registered $new_arn"

if [ "$register_only" = 1 ]; then
  log "--register-only: the service was not changed."
  log "first deploy: create or update the CloudFormation stack with TaskDefinition=$family (docs/deploy.md)"
  exit 0
fi

# --- service -------------------------------------------------------------------

previous_arn=$(query "arn:aws:ecs:$region:$account:task-definition/$family:PREVIOUS" \
  aws ecs describe-services --region "$region" --cluster "$cluster" --services "$service" \
  --query 'services[0].taskDefinition' --output text)
if [ -z "$previous_arn" ] || [ "$previous_arn" = None ]; then
  die "service $service not found in cluster $cluster ($region): create the stack first (docs/deploy.md)"
fi
log "the service runs $previous_arn"

rollback_help() {
  cat >&2 <<EOF

fargate-deploy: the deployment of $new_arn did not finish well.
The service's deployment circuit breaker rolls back by itself when new tasks keep
failing to start or to pass health checks. To go back by hand to the revision that
ran before this deploy:

  aws ecs update-service --region $region --cluster $cluster --service $service --task-definition $previous_arn
  aws ecs wait services-stable --region $region --cluster $cluster --services $service

What happened (service events, newest first):

  aws ecs describe-services --region $region --cluster $cluster --services $service --query 'services[0].events[:15].[createdAt,message]' --output text

Stopped tasks and why:

  aws ecs list-tasks --region $region --cluster $cluster --service-name $service --desired-status STOPPED
EOF
}

on_exit() {
  local status=$?
  if [ "$dry_run" = 0 ]; then
    rm -f "$rendered"
  fi
  if [ "$status" -ne 0 ]; then
    rollback_help
  fi
  return "$status"
}
trap on_exit EXIT

run aws ecs update-service --region "$region" --cluster "$cluster" --service "$service" \
  --task-definition "$new_arn" --query 'service.deployments[0].id' --output text

# `wait services-stable` polls every 15 s for 40 tries; repeat it for longer waits.
tries=$(((wait_minutes + 9) / 10))
stable=0
for ((i = 1; i <= tries; i++)); do
  if run aws ecs wait services-stable --region "$region" --cluster "$cluster" --services "$service"; then
    stable=1
    break
  fi
  log "not stable yet ($i/$tries)"
done
if [ "$stable" = 0 ]; then
  echo "fargate-deploy: the service did not become stable" >&2
  exit 1
fi

# A circuit breaker rollback also ends in a stable service, on the old revision.
# shellcheck disable=SC2016 # the backticks are JMESPath literals, not a command
primary=$(query "$new_arn COMPLETED" \
  aws ecs describe-services --region "$region" --cluster "$cluster" --services "$service" \
  --query 'services[0].deployments[?status==`PRIMARY`] | [0].[taskDefinition,rolloutState]' \
  --output text)
read -r primary_arn rollout_state <<<"$primary"
if [ "$primary_arn" != "$new_arn" ] || [ "$rollout_state" != COMPLETED ]; then
  echo "fargate-deploy: the service is stable on $primary_arn (rollout ${rollout_state:-unknown}), not on $new_arn: the circuit breaker rolled back" >&2
  exit 1
fi

if [ "$dry_run" = 1 ]; then
  log "dry run: nothing was built, pushed or sent to AWS."
  log "rollback, if a real deployment fails: aws ecs update-service --region $region --cluster $cluster --service $service --task-definition <the revision that ran before>"
else
  log "deployed $image as $new_arn"
fi
