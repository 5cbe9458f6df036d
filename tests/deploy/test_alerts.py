"""deploy/k8s/components/monitoring/prometheusrule.yaml evaluated by Prometheus itself: `promtool
check rules` and `promtool test rules` on alerts-test.yaml's series (a Redis outage is its own
alert, not shedding; overload is shedding). Skips without promtool (Debian's `prometheus`
package, scripts/ci-deps.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, load_yaml_documents, run, tool

MONITORING = ROOT / "deploy" / "k8s" / "components" / "monitoring"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """rules.yaml (the PrometheusRule's spec, which is a plain rule file) and the tests beside it."""
    yaml = pytest.importorskip("yaml")
    (rule,) = load_yaml_documents(MONITORING / "prometheusrule.yaml")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(MONITORING / "alerts-test.yaml", tmp_path / "alerts-test.yaml")
    return tmp_path


def test_promtool_checks_the_rules(rules_dir: Path) -> None:
    promtool = tool("promtool", "apt-get install prometheus, scripts/ci-deps.sh")
    result = run(promtool, "check", "rules", str(rules_dir / "rules.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass(rules_dir: Path) -> None:
    promtool = tool("promtool", "apt-get install prometheus, scripts/ci-deps.sh")
    result = run(promtool, "test", "rules", str(rules_dir / "alerts-test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_store_alert_says_what_clients_see_and_blames_no_autoscaler() -> None:
    (rule,) = load_yaml_documents(MONITORING / "prometheusrule.yaml")
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    store = rules["NinserveResultStoreUnavailable"]["annotations"]["description"]
    for fact in ("503", "store-unavailable", "Retry-After: 1", "backlog", "Classification still answers 200"):
        assert fact in store, fact
    assert "autoscaler" not in store and "do not scale" in store
    assert 'endpoint!~"/v1/predictions.*"' in rules["NinserveShedding"]["expr"]
    assert "ninserve_store_writes_dropped_total" in rules["NinserveResultsDropped"]["expr"]
