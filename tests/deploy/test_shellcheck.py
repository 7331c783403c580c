"""shellcheck on every shell script under scripts/ (and .ci/run)."""

import deploycheck as dc


def test_shell_scripts_are_found():
    names = {p.name for p in dc.shell_scripts()}
    assert {"fargate-deploy.sh", "check-deploy", "fetch-client"} <= names, names


def test_shellcheck_passes_on_scripts():
    dc.assert_clean(dc.check_shellcheck(dc.shell_scripts()))


def test_shellcheck_fails_on_broken_copy(broken):
    copy = broken(dc.DEPLOY_SCRIPT, '[ -f "$task_definition" ] ||', "[ -f $task_definition ] ||")
    assert any("SC2086" in p for p in dc.check_shellcheck([copy]))


def test_shellcheck_fails_on_broken_script_found_by_shebang(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "no-extension").write_text("#!/usr/bin/env bash\nfor f in $(ls); do echo $f; done\n")
    found = dc.shell_scripts(tmp_path)
    assert [p.name for p in found] == ["no-extension"]
    assert dc.check_shellcheck(found) != []
