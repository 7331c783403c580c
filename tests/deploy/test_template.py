"""ecs/service.yaml: cfn-lint, and how it fits the routes file and task definition."""

import pytest

import deploycheck as dc


def test_cfn_lint_passes_on_template():
    dc.assert_clean(dc.check_cfn_lint(dc.TEMPLATE))


@pytest.mark.parametrize(
    "old,new,rule",
    [
        pytest.param("      Protocol: TCP\n      Port: 443", "      Protocol: TCPX\n      Port: 443", "E3030",
                     id="bad-listener-protocol"),
        pytest.param("Type: AWS::ECS::Service", "Type: AWS::ECS::Servise", "E3006", id="unknown-resource-type"),
        pytest.param("      HealthCheckGracePeriodSeconds: 30\n", "      HealthCheckGracePeriod: 30\n", "E3002",
                     id="unknown-property"),
        pytest.param("!Ref LoadBalancerSecurityGroup\n      LoadBalancerAttributes",
                     "!Ref LoadBalancerSecurityGroupX\n      LoadBalancerAttributes", "E1020", id="dangling-ref"),
    ],
)
def test_cfn_lint_fails_on_broken_copy(broken, old, new, rule):
    copy = broken(dc.TEMPLATE, old, new)
    problems = dc.check_cfn_lint(copy)
    assert any(rule in p for p in problems), problems


def test_template_rules_pass():
    dc.assert_clean(dc.check_template_rules())


@pytest.mark.parametrize(
    "old,new,expect",
    [
        pytest.param('timeout_seconds\n          Value: "20"', 'timeout_seconds\n          Value: "300"',
                     "deregistration_delay", id="deregistration-delay-not-drain"),
        pytest.param("Rollback: true", "Rollback: false", "circuit breaker", id="no-rollback"),
        pytest.param('preserve_client_ip.enabled\n          Value: "true"', 'preserve_client_ip.enabled\n          Value: "false"',
                     "preserve_client_ip", id="client-address-lost"),
        pytest.param("HealthCheckPath: /readyz", "HealthCheckPath: /healthz", "/readyz", id="health-path"),
        pytest.param('HealthCheckPort: "9090"', 'HealthCheckPort: "8443"', "HealthCheckPort", id="health-port"),
        pytest.param("      Protocol: TCP\n      Port: 443", "      Protocol: TCP\n      Port: 8443",
                     "port 443", id="listener-port"),
        pytest.param("ContainerPort: 8443", "ContainerPort: 9090", "LoadBalancers", id="service-port"),
        pytest.param("DesiredCount: !Ref DesiredCount", "DesiredCount: 1", "at least 2", id="redis-with-one-task"),
        pytest.param("    Default: 2\n    MinValue: 2\n", "    Default: 1\n    MinValue: 1\n", "at least 2",
                     id="redis-count-parameter-allows-one"),
        pytest.param("    MinValue: 2\n", "", "at least 2", id="redis-count-parameter-unbounded"),
        pytest.param("MinimumHealthyPercent: 100", "MinimumHealthyPercent: 0", "MinimumHealthyPercent",
                     id="old-task-stops-first"),
        pytest.param("MaximumPercent: 200", "MaximumPercent: 100", "MaximumPercent", id="no-room-for-new-task"),
    ],
)
def test_template_rules_fail_on_broken_copy(broken, old, new, expect):
    copy = broken(dc.TEMPLATE, old, new)
    problems = dc.check_template_rules(copy)
    assert any(expect in p for p in problems), problems


def test_memory_routes_need_exactly_one_task(broken):
    """A routes file without Redis keeps the old rule: exactly one task."""
    routes = broken(dc.ROUTES, 'engine = "redis"\nredis_url_env = "REDIS_URL"\n', "")
    problems = dc.check_template_rules(routes_path=routes)
    assert any("exactly 1" in p for p in problems), problems


def test_mixed_engines_are_refused(broken):
    """A memory route among Redis routes cannot run on several tasks."""
    routes = broken(dc.ROUTES, 'prefix = "/staging/faye"\n', 'prefix = "/staging/faye"\nengine = "memory"\n')
    problems = dc.check_template_rules(routes_path=routes)
    assert any("mix" in p for p in problems), problems


def test_production_routes_use_redis():
    """The rule above is not vacuous: the production routes do use Redis."""
    assert dc.route_engines(dc.load_routes()) == {"redis"}
