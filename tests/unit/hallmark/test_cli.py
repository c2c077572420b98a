"""Flag validation of `storeflow hallmark` (raised before any settings, browser or database are touched)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from storeflow.cli import app
from storeflow.errors import ConfigError


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--order-id", "1", "--bulk-orders"], "choose one selector, not several: --order-id, --bulk-orders"),
        (["--billing-doc-id", "5", "--orders-csv", "x.csv"], "--orders-csv, --billing-doc-id"),
        (["--bulk-orders", "--bulk-billing-documents"], "--bulk-orders, --bulk-billing-documents"),
        (["--bulk-orders", "--start-date", "2025-01-01"], "need --start-date and --end-date"),
        (["--bulk-orders", "--start-date", "2025-02-01", "--end-date", "2025-01-01"], "is after --end-date"),
        (["--bulk-orders", "--start-date", "01/02/2025", "--end-date", "2025-01-01"], "expected YYYY-MM-DD"),
        (["--order-id", "1", "--search-only"], "--search-only goes with --bulk-orders"),
        (["--order-id", "1", "--log-level", "LOUD"], "--log-level 'LOUD'"),
    ],
)
def test_bad_flag_combinations(args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["hallmark", *args])
    assert isinstance(result.exception, ConfigError), result.output
    assert message in str(result.exception)


def test_bare_hallmark_prints_help(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["hallmark"])
    assert result.exit_code == 0 and "--bulk-orders" in result.output and "auth-test" in result.output


def test_orders_csv_without_the_column_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.csv").write_text("Store Name,Total\nR,1\n")
    result = CliRunner().invoke(app, ["hallmark", "--orders-csv", "o.csv"])
    assert isinstance(result.exception, ConfigError) and "no 'Order #' column" in str(result.exception)
