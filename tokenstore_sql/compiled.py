"""Statements compiled once per dialect, with the processors that bind and read their values.

The storages run their statements on the driver's connection (:mod:`tokenstore_sql.direct`
and its async twin), but SQLAlchemy still compiles each one and its column types still
bind and read the values: keys escaped as stored, JSON and timestamps as the dialect
does them. A :class:`CompiledStatement` keeps that work, done once, for every call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Executable, TypeDecorator
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class CompiledStatement:
    """A statement compiled for one dialect, with the processors of its values."""

    sql: str
    # Each bind parameter's name and processor (None: sent as it is), in the order a
    # positional paramstyle sends them; None for a named paramstyle.
    positional: tuple[tuple[str, Processor | None], ...] | None
    bind_processors: Mapping[str, Processor]
    column_names: tuple[str, ...]  # of the rows a SELECT returns
    # The positions of the columns whose values are processed when read (keys unescaped,
    # JSON decoded), with their processors.
    processed_positions: tuple[tuple[int, Processor], ...]
    # Where two or more positional values share one processor (or none), as a key read's
    # do: the values in order, taken at once, and that processor.
    in_order: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None
    each: Processor | None = None

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect) -> CompiledStatement:
        """Compile ``statement`` for ``dialect`` as SQLAlchemy would execute it."""
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        bind_processors = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                bind_processors[name] = _quicker_bind(bind.type, processor)
        columns = list(getattr(statement, "selected_columns", ()))
        processed_positions = []
        for position, column in enumerate(columns):
            column_type = column.type.dialect_impl(dialect)
            processor = column_type.result_processor(dialect, None)
            if processor is not None:
                if isinstance(column.type, JSON):
                    processor = _empty_object_at_once(processor)
                processed_positions.append((position, processor))
        positional = in_order = each = None
        if compiled.positional:
            names = compiled.positiontup or ()
            positional = tuple((name, bind_processors.get(name)) for name in names)
            shared = {processor for _, processor in positional}
            if len(names) >= 2 and len(shared) == 1:
                in_order, each = itemgetter(*names), shared.pop()
        return cls(
            sql=compiled.string,
            positional=positional,
            bind_processors=bind_processors,
            column_names=tuple(str(column.key) for column in columns),
            processed_positions=tuple(processed_positions),
            in_order=in_order,
            each=each,
        )

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """Give the driver's parameters for ``values`` (by bind name)."""
        if self.in_order is not None:
            values_in_order = self.in_order(values)
            return values_in_order if self.each is None else tuple(map(self.each, values_in_order))
        if self.positional is not None:
            bound = []  # a loop, not a comprehension: this runs on every call
            for name, processor in self.positional:
                value = values[name]
                bound.append(value if processor is None else processor(value))
            return tuple(bound)
        processors = self.bind_processors
        return {
            name: processor(value) if (processor := processors.get(name)) else value
            for name, value in values.items()
        }

    def row(self, fetched: Sequence[Any]) -> dict[str, Any]:
        """Give a fetched row as a mapping of column name to processed value."""
        return dict(zip(self.column_names, self.values(fetched), strict=True))

    def values(self, fetched: Sequence[Any]) -> list[Any]:
        """Give a fetched row's processed values, in the order of its columns."""
        values = list(fetched)
        if len(values) != len(self.column_names):
            raise ValueError(f"a row of {len(values)} values for {len(self.column_names)} columns")
        for position, processor in self.processed_positions:
            values[position] = processor(values[position])
        return values


def _empty_object_at_once(decode: Processor) -> Processor:
    """Decode JSON, but give an empty object without the JSON decoder.

    Most rows' ``extra`` is ``{}``: decoding it was a sixth of a get's own work.
    """

    def decode_json(value: Any) -> Any:
        return {} if value == "{}" else decode(value)

    return decode_json


def _quicker_bind(column_type: TypeEngine[Any], process: Processor) -> Processor:
    """Bind the values most rows share without the full work, where that is safe.

    An empty ``extra`` takes the text ``process({})`` gave once (where it gave text: a
    driver may want a wrapper object instead). A timestamp is bound once for a run of the
    same ``datetime``: every row of a write is stamped with one (``codec.stamped``), and
    formatting it was two thirds of binding an imported row on SQLite.
    """
    if isinstance(column_type, JSON):
        empty = process({})
        if not isinstance(empty, str):
            return process

        def bind_json(value: Any) -> Any:
            return empty if type(value) is dict and not value else process(value)

        return bind_json
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if not isinstance(column_type, DateTime):
        return process
    last: tuple[Any, Any] = (None, process(None))  # replaced whole: safe across threads

    def bind_datetime(value: Any) -> Any:
        nonlocal last
        seen = last
        if value is seen[0]:
            return seen[1]
        bound = process(value)
        last = (value, bound)
        return bound

    return bind_datetime


_compiled: weakref.WeakKeyDictionary[Dialect, dict[Executable, CompiledStatement]] = (
    weakref.WeakKeyDictionary()
)


# The statements of the dialect asked for last: every call asks, most often for the same
# dialect, and the weak dictionary's lookup costs more than the rest. Replaced whole, so a
# thread reads one pair or another, never half of each.
_last_dialect: tuple[weakref.ref[Dialect], dict[Executable, CompiledStatement]] | None = None


def compiled_for(statement: Executable, dialect: Dialect) -> CompiledStatement:
    """Give ``statement`` compiled for ``dialect``, compiling it on first use.

    Meant for the storage's statements, which are built once per placement.
    """
    global _last_dialect
    last = _last_dialect
    if last is not None and last[0]() is dialect:
        by_statement = last[1]
    else:
        by_statement = _compiled.setdefault(dialect, {})
        _last_dialect = (weakref.ref(dialect), by_statement)
    found = by_statement.get(statement)
    if found is None:
        found = by_statement[statement] = CompiledStatement.compile(statement, dialect)
    return found
