"""ecs/task-definition.json: the ECS API model (botocore, offline) and the project's rules."""

import pytest

import deploycheck as dc


def test_task_definition_matches_api_model():
    dc.assert_clean(dc.check_task_definition_model())


@pytest.mark.parametrize(
    "old,new,expect",
    [
        pytest.param('"stopTimeout": 30', '"stopTimeout": "30"', "Invalid type", id="wrong-type"),
        pytest.param('"stopTimeout": 30', '"stopTimeOut": 30', "Unknown parameter", id="unknown-key"),
        pytest.param('"networkMode": "awsvpc"', '"networkMode": "awsvpcc"', "Invalid value", id="bad-enum"),
        pytest.param('"containerDefinitions": [', '"containers": [', "Missing required", id="missing-required"),
        pytest.param('"family": "bayeux-edge",', '"family": "bayeux-edge"', "not JSON", id="not-json"),
    ],
)
def test_api_model_validation_fails_on_broken_copy(broken, old, new, expect):
    copy = broken(dc.TASK_DEFINITION, old, new)
    problems = dc.check_task_definition_model(copy)
    assert any(expect in p for p in problems), problems


def test_task_definition_rules_pass():
    dc.assert_clean(dc.check_task_definition_rules())


SECRET_LINE = (
    '        { "name": "STAGING_PUBLISH_SECRET", "valueFrom": '
    '"arn:aws:secretsmanager:${AWS_REGION}:${AWS_ACCOUNT_ID}:secret:bayeux-edge/staging/publish" },\n'
)


@pytest.mark.parametrize(
    "old,new,expect",
    [
        pytest.param('"stopTimeout": 30', '"stopTimeout": 20', "stopTimeout", id="stop-not-longer-than-drain"),
        pytest.param('"stopTimeout": 30', '"stopTimeout": 180', "stopTimeout", id="stop-over-ecs-maximum"),
        pytest.param('"networkMode": "awsvpc"', '"networkMode": "bridge"', "awsvpc", id="not-awsvpc"),
        pytest.param('"memory": "2048"', '"memory": "3000"', "Fargate size", id="not-a-fargate-size"),
        pytest.param(SECRET_LINE, "", "STAGING_PUBLISH_SECRET", id="routes-secret-missing"),
        pytest.param('"name": "STAGING_PUBLISH_SECRET", "valueFrom"', '"name": "STAGING_PUBLISH_SECRT", "valueFrom"',
                     "STAGING_PUBLISH_SECRET", id="routes-secret-misnamed"),
        pytest.param(',\n        { "name": "REDIS_URL", "valueFrom": "arn:aws:secretsmanager:${AWS_REGION}:${AWS_ACCOUNT_ID}:secret:bayeux-edge/redis/url" }',
                     "", "REDIS_URL", id="redis-url-secret-missing"),
        pytest.param("secret:bayeux-edge/redis/url", "secret:shared/redis/url", "may not read",
                     id="redis-url-outside-execution-role"),
        pytest.param("secret:bayeux-edge/production/publish", "secret:bayeux-edge/production/publish-legacy",
                     "partial ARN", id="secret-name-looks-like-suffix"),
        pytest.param("secret:bayeux-edge/production/publish", "secret:other-app/production/publish",
                     "may not read", id="secret-outside-execution-role"),
        pytest.param("secret:bayeux-edge/tls/private-key", "secret:other-app/tls/private-key",
                     "may not read", id="tls-secret-outside-execution-role"),
        pytest.param('"name": "nofile"', '"name": "core"', "nofile", id="no-nofile-ulimit"),
        pytest.param('"command": ["CMD", "/usr/local/bin/bayeux-edge", "health"]',
                     '"command": ["CMD-SHELL", "curl -f http://127.0.0.1:9090/readyz"]', "healthCheck",
                     id="health-check-not-image-probe"),
        pytest.param('"containerPort": 9090', '"containerPort": 9091', "port 9090", id="admin-port-unmapped"),
        pytest.param('"awslogs-stream-prefix": "bayeux-edge",\n', "", "awslogs", id="awslogs-incomplete"),
        pytest.param('"containerPath": "/etc/bayeux-edge/certs", "readOnly": true',
                     '"containerPath": "/etc/bayeux-edge/certs", "readOnly": false', "writable", id="certs-writable"),
        pytest.param('"condition": "SUCCESS"', '"condition": "START"', "does not wait", id="certs-not-awaited"),
        pytest.param('"user": "10001:10001"', '"user": "0"', "root", id="root-user"),
        pytest.param("role/bayeux-edge-execution", "role/ecsTaskExecutionRole", "executionRoleArn",
                     id="role-not-in-template"),
        pytest.param('"image": "${IMAGE}",\n      "essential": true', '"image": "${IMAGE_URI}",\n      "essential": true',
                     "placeholders", id="unknown-placeholder"),
    ],
)
def test_task_definition_rules_fail_on_broken_copy(broken, old, new, expect):
    copy = broken(dc.TASK_DEFINITION, old, new)
    problems = dc.check_task_definition_rules(copy)
    assert any(expect in p for p in problems), problems


def test_every_route_secret_has_a_task_definition_secret():
    """The rule below is not vacuous: the routes file does name publish and token secrets, the
    Redis URL and the admin token."""
    needed = dc.env_names(dc.load_routes())
    envs = ("DEVELOPMENT", "STAGING", "PRODUCTION")
    expected = {f"{env}_{kind}_SECRET" for env in envs for kind in ("PUBLISH", "JWT")}
    expected |= {"REDIS_URL", "ADMIN_TOKEN"}
    assert needed == expected, needed


def test_new_route_without_its_secret_fails(broken):
    """Adding an environment to routes.toml without its secret is caught."""
    routes = broken(
        dc.ROUTES,
        'publish_secret_env = "PRODUCTION_PUBLISH_SECRET"\n',
        'publish_secret_env = "PRODUCTION_PUBLISH_SECRET"\n\n[[route]]\nprefix = "/qa/faye"\n'
        'publish = "secret"\npublish_secret_env = "QA_PUBLISH_SECRET"\n',
    )
    problems = dc.check_task_definition_rules(routes_path=routes)
    assert any("QA_PUBLISH_SECRET" in p for p in problems), problems


def test_secret_from_defaults_is_checked_too(broken):
    """A publish secret set once in [defaults] also needs its task-definition secret."""
    routes = broken(
        dc.ROUTES,
        "[defaults]\n",
        '[defaults]\npublish = "secret"\npublish_secret_env = "SHARED_PUBLISH_SECRET"\n',
    )
    problems = dc.check_task_definition_rules(routes_path=routes)
    assert any("SHARED_PUBLISH_SECRET" in p for p in problems), problems


def test_secret_as_plain_environment_value_fails(broken):
    """A publish secret written into the task definition's environment is refused."""
    copy = broken(
        dc.TASK_DEFINITION,
        '{ "name": "BAYEUX_EDGE_CONFIG", "value": "/etc/bayeux-edge/routes.toml" }',
        '{ "name": "BAYEUX_EDGE_CONFIG", "value": "/etc/bayeux-edge/routes.toml" },\n'
        '        { "name": "PRODUCTION_PUBLISH_SECRET", "value": "not-a-secret" }',
    )
    problems = dc.check_task_definition_rules(copy)
    assert any("plain environment value" in p for p in problems), problems


def test_drain_grace_beyond_stop_timeout_fails(broken):
    routes = broken(dc.ROUTES, "drain_grace_secs = 20", "drain_grace_secs = 45")
    assert any("stopTimeout" in p for p in dc.check_task_definition_rules(routes_path=routes))
    assert any("deregistration_delay" in p for p in dc.check_template_rules(routes_path=routes))
