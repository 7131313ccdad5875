"""Response envelope types shared by every service (see API.md "Conventions")."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class Success(msgspec.Struct, Generic[T]):
    data: T
    success: bool = True
    # UNSET fields are left out of the JSON: "meta" appears only on paged answers.
    meta: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class Failure(msgspec.Struct):
    error: ErrorDetail
    success: bool = False


def ok(data: T, meta: dict[str, Any] | None = None) -> Success[T]:
    return Success(data=data, meta=msgspec.UNSET if meta is None else meta)
