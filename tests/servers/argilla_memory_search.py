"""An in-memory search engine for ``argilla-server``, registered under the name ``memory``.

Argilla's server keeps datasets, records, suggestions and responses in its database, and mirrors each
record into a search engine (Elasticsearch or OpenSearch) for search, filters, sorting, metadata
statistics and progress. Neither can be installed on a test machine, so this module gives the server a
search engine that keeps one document per record in a dict, built the same way as the server's own
Elasticsearch documents, and answers queries by scanning them. It is for tests of one server process
only: nothing is persisted, and similarity (vector) search returns nothing.

It runs inside the server's virtual environment (``tests/servers/argilla_server.py`` imports it before
the server starts, and sets ``ARGILLA_SEARCH_ENGINE=memory``); it is never imported by mapgen.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from argilla_server.enums import MetadataPropertyType, SortOrder
from argilla_server.models import Dataset, MetadataProperty, Record, Response, Suggestion, User
from argilla_server.search_engine.base import (
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)

_INDEXES: dict[str, dict[str, dict[str, Any]]] = {}
"""Dataset id -> record id -> document. Module level: the server builds an engine per request."""


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _document(record: Record) -> dict[str, Any]:
    """A record as the server's Elasticsearch engine would index it (``_map_record_to_es_document``)."""
    dataset = record.dataset
    names = {prop.name for prop in dataset.metadata_properties}
    return {
        "id": str(record.id),
        "external_id": record.external_id,
        "fields": dict(record.fields or {}),
        "status": _plain(record.status),
        "inserted_at": record.inserted_at,
        "updated_at": record.updated_at,
        "metadata": {k: v for k, v in (record.metadata_ or {}).items() if k in names and v is not None},
        "responses": [_response(response) for response in record.responses],
        "suggestions": {
            suggestion.question.name: _suggestion(suggestion) for suggestion in record.suggestions
        },
    }


def _response(response: Response) -> dict[str, Any]:
    return {
        "id": str(response.id),
        "status": _plain(response.status),
        "user_id": str(response.user_id),
        "values": {question: value.get("value") for question, value in (response.values or {}).items()},
    }


def _suggestion(suggestion: Suggestion) -> dict[str, Any]:
    return {
        "type": _plain(suggestion.type),
        "agent": suggestion.agent,
        "score": suggestion.score,
        "value": suggestion.value,
    }


def _values(document: dict[str, Any], scope: Any) -> list[Any]:
    """The values a filter or a sort on ``scope`` sees in ``document`` (several for responses)."""
    if isinstance(scope, MetadataFilterScope):
        found = [document["metadata"].get(scope.metadata_property)]
    elif isinstance(scope, RecordFilterScope):
        found = [document.get(scope.property)]
    elif isinstance(scope, SuggestionFilterScope):
        suggestion = document["suggestions"].get(scope.question) or {}
        found = [suggestion.get(scope.property or "value")]
    elif isinstance(scope, ResponseFilterScope):
        responses = [
            r for r in document["responses"] if scope.user is None or r["user_id"] == str(scope.user.id)
        ]
        if scope.question:
            found = [r["values"].get(scope.question) for r in responses]
        else:
            found = [r.get(scope.property or "status") for r in responses]
    else:
        raise ValueError(f"unknown filter scope {scope!r}")
    flat: list[Any] = []
    for value in found:
        flat.extend(value if isinstance(value, list) else [value])
    return [_plain(v) for v in flat if v is not None]


def _matches(document: dict[str, Any], condition: Any) -> bool:
    if condition is None:
        return True
    if isinstance(condition, AndFilter):
        return all(_matches(document, part) for part in condition.filters)
    if isinstance(condition, TermsFilter):
        wanted = {str(_plain(v)) for v in condition.values}
        scope = condition.scope
        pending = isinstance(scope, ResponseFilterScope) and not scope.question and "pending" in wanted
        # "pending": the user (or anyone, without a user) has not responded.
        if pending and not _values(document, ResponseFilterScope(user=scope.user, property="status")):
            return True
        return any(str(v) in wanted for v in _values(document, scope))
    if isinstance(condition, RangeFilter):
        return any(
            (condition.ge is None or v >= condition.ge) and (condition.le is None or v <= condition.le)
            for v in _values(document, condition.scope)
        )
    raise ValueError(f"unknown filter {condition!r}")


def _text_matches(document: dict[str, Any], query: TextQuery | str | None) -> bool:
    if query is None:
        return True
    text, field = (query, None) if isinstance(query, str) else (query.q, query.field)
    if text.strip() in ("", "*"):
        return True
    fields = document["fields"]
    haystack = " ".join(str(v) for name, v in fields.items() if field is None or name == field).lower()
    return all(word in haystack for word in text.lower().split())


@SearchEngine.register(engine_name="memory")
class MemorySearchEngine(SearchEngine):
    """Records in a dict, queries by scanning: see the module docs."""

    @classmethod
    async def new_instance(cls) -> MemorySearchEngine:
        return cls()

    async def close(self) -> None:
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"distribution": "memory", "version": "1"}

    async def create_index(self, dataset: Dataset) -> None:
        _INDEXES.setdefault(str(dataset.id), {})

    async def delete_index(self, dataset: Dataset) -> None:
        _INDEXES.pop(str(dataset.id), None)

    async def configure_metadata_property(
        self, dataset: Dataset, metadata_property: MetadataProperty
    ) -> None:
        pass

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        index = _INDEXES.setdefault(str(dataset.id), {})
        for record in records:
            index[str(record.id)] = _document(record)

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        document = _INDEXES.get(str(record.dataset_id), {}).get(str(record.id))
        if document is not None:
            document.update({key: _plain(value) for key, value in update.items()})

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        index = _INDEXES.get(str(dataset.id), {})
        for record in records:
            index.pop(str(record.id), None)

    def _document_of(self, record: Record) -> dict[str, Any] | None:
        return _INDEXES.get(str(record.dataset_id), {}).get(str(record.id))

    async def update_record_response(self, response: Response) -> None:
        document = self._document_of(response.record)
        if document is not None:
            kept = [r for r in document["responses"] if r["id"] != str(response.id)]
            document["responses"] = [*kept, _response(response)]

    async def delete_record_response(self, response: Response) -> None:
        document = self._document_of(response.record)
        if document is not None:
            document["responses"] = [r for r in document["responses"] if r["id"] != str(response.id)]

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        document = self._document_of(suggestion.record)
        if document is not None:
            document["suggestions"][suggestion.question.name] = _suggestion(suggestion)

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        document = self._document_of(suggestion.record)
        if document is not None:
            document["suggestions"].pop(suggestion.question.name, None)

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        documents = _INDEXES.get(str(dataset.id), {}).values()
        counts = Counter(document["status"] for document in documents)
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        counts: Counter[str] = Counter()
        for document in _INDEXES.get(str(dataset.id), {}).values():
            counts.update(r["status"] for r in document["responses"] if r["user_id"] == str(user.id))
        return {"total": sum(counts.values()), **counts}

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Any = None,
        sort: list[Any] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: str | None = None,
    ) -> SearchResponses:
        documents = [
            document
            for document in _INDEXES.get(str(dataset.id), {}).values()
            if _text_matches(document, query) and _matches(document, filter)
        ]
        documents.sort(key=lambda d: (str(d["inserted_at"]), d["id"]))
        for order in reversed(sort or []):
            present = [d for d in documents if _values(d, order.scope)]
            absent = [d for d in documents if not _values(d, order.scope)]
            present.sort(key=lambda d: min(_values(d, order.scope)), reverse=order.order == SortOrder.desc)
            documents = present + absent
        page = documents[offset : offset + limit]
        return SearchResponses(
            items=[SearchResponseItem(record_id=uuid.UUID(d["id"]), score=1.0) for d in page],
            total=len(documents),
        )

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> Any:
        name = metadata_property.name
        values: list[Any] = []
        for document in _INDEXES.get(str(metadata_property.dataset_id), {}).values():
            value = document["metadata"].get(name)
            if value is not None:
                values.extend(value if isinstance(value, list) else [value])
        if metadata_property.type == MetadataPropertyType.terms:
            counts = Counter(str(v) for v in values)
            return TermsMetrics(
                total=len(values),
                values=[
                    TermsMetrics.TermCount(term=term, count=count) for term, count in counts.most_common()
                ],
            )
        metrics = (
            IntegerMetadataMetrics
            if metadata_property.type == MetadataPropertyType.integer
            else FloatMetadataMetrics
        )
        return metrics(min=min(values, default=None), max=max(values, default=None))

    async def similarity_search(self, *args: Any, **kwargs: Any) -> SearchResponses:
        return SearchResponses(items=[], total=0)
