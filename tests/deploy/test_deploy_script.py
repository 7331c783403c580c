"""scripts/fargate-deploy.sh: the dry run's command list, and the failure paths.

Nothing here reaches AWS or Docker: the dry run is checked with stand-ins that
record any call, and the failure paths run the script against stand-ins that
answer like the real commands would.
"""

import os
import subprocess

import pytest

import deploycheck as dc


def test_dry_run_prints_expected_commands():
    dc.assert_clean(dc.check_dry_run())


def test_dry_run_register_only():
    dc.assert_clean(dc.check_dry_run(register_only=True))


def test_dry_run_tags_image_with_commit(tmp_path):
    run = dc.dry_run(dc.DEPLOY_SCRIPT, tmp_path)
    assert run.status == 0, run.stderr
    assert len(run.commit) == 12
    pushed = [c for c in run.commands if c[:2] == ["docker", "push"]]
    assert pushed and pushed[0][2].endswith(":" + run.commit)
    assert run.calls == []
    assert "roll" in run.stdout  # says how to roll back


@pytest.mark.parametrize(
    "old,new,expect",
    [
        pytest.param(
            'if run aws ecs wait services-stable --region "$region" --cluster "$cluster" --services "$service"; then',
            "if true; then", "expected 8", id="no-wait",
        ),
        pytest.param('run docker push "$image"', 'docker push "$image"', "really ran", id="push-not-dry"),
        pytest.param('--task-definition "$new_arn" --query', '--task-definition "$previous_arn" --query',
                     "--task-definition should be", id="updates-to-old-revision"),
        pytest.param('run docker build --platform "$platform" --pull', 'run docker build --pull',
                     "--platform should be", id="no-platform"),
        pytest.param('-e "s|\\${IMAGE}|$image|g"', '-e "s|\\${IMAGE}|latest|g"', "rendered images",
                     id="image-not-rendered"),
        pytest.param("\nrun docker push", "\nrun docker image ls\nrun docker push", "expected 8",
                     id="extra-command"),
    ],
)
def test_dry_run_check_fails_on_broken_copy(broken, old, new, expect):
    copy = broken(dc.DEPLOY_SCRIPT, old, new)
    problems = dc.check_dry_run(copy)
    assert any(expect in p for p in problems), problems


def test_dry_run_check_fails_when_task_definition_breaks_the_model(broken):
    copy = broken(dc.TASK_DEFINITION, '"stopTimeout": 30', '"stopTimeout": "30"')
    problems = dc.check_dry_run(task_definition=copy)
    assert any("Invalid type" in p for p in problems), problems


# --- real runs against stand-ins ------------------------------------------------------

FAKE_AWS = """#!/usr/bin/env bash
printf '%s\\n' "aws $*" >>"$DEPLOY_CALL_LOG"
base=arn:aws:ecs:eu-west-1:123456789012:task-definition/bayeux-edge
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "ecr get-login-password") echo not-a-password ;;
  "ecs register-task-definition")
    input=""
    while [ "$#" -gt 0 ]; do
      if [ "$1" = --cli-input-json ]; then input=${2#file://}; fi
      shift
    done
    grep -q '"image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/' "$input" || exit 90
    echo "$base:8" ;;
  "ecs describe-services")
    if [[ "$*" == *deployments* ]]; then echo "${FAKE_PRIMARY:-$base:8	COMPLETED}"; else echo "$base:7"; fi ;;
  "ecs update-service") echo ecs-svc/123 ;;
  "ecs wait") exit "${FAKE_WAIT_STATUS:-0}" ;;
  *) echo "unexpected aws call: $*" >&2; exit 98 ;;
esac
"""

FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "docker $*" >>"$DEPLOY_CALL_LOG"
if [ "$1" = login ]; then cat >/dev/null; fi
"""


def deploy(tmp_path, *args, env=None):
    repo = tmp_path / "repo"
    dc.scratch_repo(repo, dc.DEPLOY_SCRIPT)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", FAKE_AWS), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "ECR_"))}
    full_env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", DEPLOY_CALL_LOG=str(log),
                    TMPDIR=str(tmp_path))
    full_env.update(env or {})
    proc = subprocess.run(["bash", str(repo / "scripts" / "fargate-deploy.sh"), *args], cwd=tmp_path,
                          env=full_env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls, repo


def test_deploy_succeeds_against_stand_ins(tmp_path):
    proc, calls, _ = deploy(tmp_path, env={"AWS_REGION": "eu-west-1"})
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == "aws sts get-caller-identity --query Account --output text"
    assert any(c.startswith("aws ecs update-service") and c.endswith(":8 --query service.deployments[0].id --output text")
               for c in calls), calls
    assert "deployed" in proc.stdout
    assert "roll back" not in proc.stderr
    assert not list(tmp_path.glob("bayeux-edge-task-definition.*")), "rendered file left behind"


def test_failed_wait_prints_rollback(tmp_path):
    proc, calls, _ = deploy(tmp_path, "--region", "eu-west-1", "--wait-minutes", "1",
                            env={"FAKE_WAIT_STATUS": "255"})
    assert proc.returncode != 0
    assert "did not become stable" in proc.stderr
    assert ("aws ecs update-service --region eu-west-1 --cluster bayeux-edge --service bayeux-edge "
            "--task-definition arn:aws:ecs:eu-west-1:123456789012:task-definition/bayeux-edge:7") in proc.stderr


def test_circuit_breaker_rollback_is_a_failure(tmp_path):
    old = "arn:aws:ecs:eu-west-1:123456789012:task-definition/bayeux-edge:7"
    proc, _, _ = deploy(tmp_path, "--region", "eu-west-1", env={"FAKE_PRIMARY": f"{old}\tCOMPLETED"})
    assert proc.returncode != 0
    assert "circuit breaker rolled back" in proc.stderr
    assert "--task-definition " + old in proc.stderr


def test_uncommitted_changes_are_refused(tmp_path):
    repo = tmp_path / "probe"
    dc.scratch_repo(repo, dc.DEPLOY_SCRIPT)
    (repo / "Dockerfile").write_text("FROM scratch\n")
    proc = subprocess.run(["bash", str(repo / "scripts" / "fargate-deploy.sh"), "--dry-run", "--region",
                           "eu-west-1", "--account", "123456789012"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "uncommitted changes" in proc.stderr


def test_region_is_required(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    proc = subprocess.run(["bash", str(dc.DEPLOY_SCRIPT), "--dry-run", "--account", "123456789012", "--tag", "t1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no region" in proc.stderr
