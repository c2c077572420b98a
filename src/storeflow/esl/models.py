"""Store mappings: the API models (their SQL is in `storeflow.esl.store`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storeflow.esl.transform import HIPOINK_OPTIONAL_FIELDS, PC_SOURCES

_EDITABLE = ("source_system", "source_store_id", "hipoink_store_code", "is_active", "pc_fallback", "stock_field")


def _check_pc_fallback(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    cleaned = [v.strip().lower() for v in value if v and v.strip()]
    unknown = [v for v in cleaned if v not in PC_SOURCES]
    if unknown or not cleaned:
        raise ValueError(f"pc_fallback must list some of {', '.join(PC_SOURCES)}; got {value!r}")
    if len(set(cleaned)) != len(cleaned):
        raise ValueError("pc_fallback lists a source twice")
    return cleaned


def _check_stock_field(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value not in HIPOINK_OPTIONAL_FIELDS or value in {"pi", "pim"}:
        raise ValueError(f"stock_field must be an optional Hipoink field such as ps or f1..f16; got {value!r}")
    return value


class StoreMappingIn(BaseModel):
    """``POST /api/store-mappings/`` body (spec 002), plus the transform options."""

    model_config = ConfigDict(extra="forbid")

    source_system: str = Field(default="shopify", pattern="^shopify$")
    source_store_id: str = Field(min_length=1, max_length=255, description="the shop domain, e.g. x.myshopify.com")
    hipoink_store_code: str = Field(min_length=1, max_length=64)
    is_active: bool = True
    pc_fallback: list[str] = Field(
        default_factory=lambda: ["barcode", "sku", "variant_id"],
        description="where the Hipoink product code comes from, first non-empty wins",
    )
    stock_field: str | None = Field(default=None, description="Hipoink field that receives stock (unset: none)")

    @field_validator("source_store_id")
    @classmethod
    def _shop(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("hipoink_store_code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("pc_fallback")
    @classmethod
    def _fallback(cls, value: list[str]) -> list[str]:
        checked = _check_pc_fallback(value)
        assert checked is not None
        return checked

    @field_validator("stock_field")
    @classmethod
    def _stock(cls, value: str | None) -> str | None:
        return _check_stock_field(value)


class StoreMappingUpdate(BaseModel):
    """``PUT /api/store-mappings/{id}``: the fields given are changed, the others kept."""

    model_config = ConfigDict(extra="forbid")

    source_system: str | None = Field(default=None, pattern="^shopify$")
    source_store_id: str | None = Field(default=None, min_length=1, max_length=255)
    hipoink_store_code: str | None = Field(default=None, min_length=1, max_length=64)
    is_active: bool | None = None
    pc_fallback: list[str] | None = None
    stock_field: str | None = None

    @field_validator("source_store_id")
    @classmethod
    def _shop(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value

    @field_validator("pc_fallback")
    @classmethod
    def _fallback(cls, value: list[str] | None) -> list[str] | None:
        return _check_pc_fallback(value)

    @field_validator("stock_field")
    @classmethod
    def _stock(cls, value: str | None) -> str | None:
        return _check_stock_field(value) if value else value

    def changes(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k in _EDITABLE}


class StoreMapping(BaseModel):
    id: int
    source_system: str
    source_store_id: str
    hipoink_store_code: str
    is_active: bool
    pc_fallback: list[str]
    stock_field: str | None
    created_at: datetime
    updated_at: datetime
