from __future__ import annotations

from pathlib import Path

import pytest

from storeflow.errors import ConfigError
from storeflow.hallmark.inputs import read_csv_column, read_id_list


def test_orders_csv_with_bom_and_dollar_amounts(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(
        "\ufeffStore Name,Order #,Order Creation Date,Order Total\n"
        'Reston,3076428648,09/01/2025,"$1,234.56"\n'
        'Reston,3076428649,09/02/2025,"$12.00"\n'
        "Reston,3076428648,09/01/2025,$1.00\n"
        ",,,\n".encode()
    )
    assert read_csv_column(path, "Order #") == ["3076428648", "3076428649"]


def test_billing_csv_column(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("\ufeffStore Name,Customer #,Billing Document #,Total\nR,1,5055177281,$1.00\n", encoding="utf-8")
    assert read_csv_column(path, "Billing Document #") == ["5055177281"]


def test_missing_column_names_file_and_headers(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Store Name,Total\nR,1\n")
    with pytest.raises(ConfigError, match=r"x\.csv: no 'Order #' column \(found: Store Name, Total\)"):
        read_csv_column(path, "Order #")


def test_id_list_skips_blank_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("\ufeff3076428648\n\n# a comment\n3076428649  \n3076428648\n")
    assert read_id_list(path) == ["3076428648", "3076428649"]


def test_id_list_reports_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("3076428648\nnot an id!\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_id_list(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        read_id_list(tmp_path / "nope.txt")
