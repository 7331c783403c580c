"""Dockerfile: hadolint, and the project's rules for the image."""

import pytest

import deploycheck as dc


def test_hadolint_passes_on_dockerfile():
    dc.assert_clean(dc.check_hadolint(dc.DOCKERFILE))


@pytest.mark.parametrize(
    "old,new,rule",
    [
        pytest.param('ENTRYPOINT ["/usr/local/bin/bayeux-edge"]', "ENTRYPOINT /usr/local/bin/bayeux-edge", "DL3025",
                     id="shell-form-entrypoint"),
        pytest.param("FROM debian:${DEBIAN_RELEASE}-slim AS runtime", "FROM debian:latest AS runtime", "DL3007",
                     id="latest-base-image"),
        pytest.param("WORKDIR /faye\n", "RUN cd /faye\n", "DL3003", id="cd-instead-of-workdir"),
    ],
)
def test_hadolint_fails_on_broken_copy(broken, old, new, rule):
    copy = broken(dc.DOCKERFILE, old, new)
    problems = dc.check_hadolint(copy)
    assert any(rule in p for p in problems), problems


def test_dockerfile_rules_pass():
    dc.assert_clean(dc.check_dockerfile_rules())


@pytest.mark.parametrize(
    "old,new,expect",
    [
        pytest.param("USER 10001:10001", "USER 0:0", "root", id="root-user"),
        pytest.param("USER 10001:10001\n", "", "no USER", id="no-user"),
        pytest.param("cargo build --release --locked", "cargo build --release", "--locked", id="unlocked-build"),
        pytest.param("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGKILL", "STOPSIGNAL", id="stop-signal"),
        pytest.param("ARG FAYE_VERSION=1.4.3", "ARG FAYE_VERSION=1.4.2", "FAYE_VERSION", id="faye-pin-drift"),
        pytest.param('CMD ["/usr/local/bin/bayeux-edge", "health"]', "CMD curl -f http://127.0.0.1:9090/readyz",
                     "HEALTHCHECK", id="healthcheck-not-own-probe"),
        pytest.param('CMD ["serve"]', "CMD serve", "CMD", id="shell-form-cmd"),
        pytest.param("COPY ${ROUTES_FILE} /etc/bayeux-edge/routes.toml", "COPY ${ROUTES_FILE} /etc/routes.toml",
                     "BAYEUX_EDGE_CONFIG", id="config-not-baked-where-env-points"),
    ],
)
def test_dockerfile_rules_fail_on_broken_copy(broken, old, new, expect):
    copy = broken(dc.DOCKERFILE, old, new)
    problems = dc.check_dockerfile_rules(copy)
    assert any(expect in p for p in problems), problems


def test_runtime_spec_is_what_the_image_runs():
    spec = dc.runtime_spec()
    assert spec.entrypoint == ["/usr/local/bin/bayeux-edge"]
    assert spec.cmd == ["serve"]
    assert spec.env["BAYEUX_EDGE_CONFIG"] == "/etc/bayeux-edge/routes.toml"
    assert spec.user == "10001:10001"
    assert spec.stopsignal == "SIGTERM"
    assert spec.healthcheck == ["/usr/local/bin/bayeux-edge", "health"]
