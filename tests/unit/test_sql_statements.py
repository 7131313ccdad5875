"""Statements written with :name parameters reach asyncpg with $n ones, casts untouched."""

from __future__ import annotations

import pytest

from fechatter_core.db.sql import Sql


def test_named_parameters_become_numbered_in_order_of_first_use() -> None:
    statement = Sql("SELECT :b, :a FROM t WHERE x = :b AND y = CAST(:a AS bigint[]) AND z = :c::text")
    assert statement.text == "SELECT $1, $2 FROM t WHERE x = $1 AND y = CAST($2 AS bigint[]) AND z = $3::text"
    assert statement.names == ("b", "a", "c")
    assert statement.args({"a": 1, "b": 2, "c": "x"}) == [2, 1, "x"]


def test_casts_and_words_after_colons_are_not_parameters() -> None:
    statement = Sql("SELECT now()::timestamptz, '{}'::jsonb, x::int FROM t WHERE id = :id")
    assert statement.names == ("id",)
    assert "::timestamptz" in statement.text and "::jsonb" in statement.text and "x::int" in statement.text


@pytest.mark.parametrize("params", [{}, {"id": 1, "other": 2}, {"other": 2}])
def test_a_missing_or_unknown_parameter_is_refused_before_the_database(params: dict[str, int]) -> None:
    with pytest.raises(TypeError):
        Sql("SELECT * FROM t WHERE id = :id").args(params)
