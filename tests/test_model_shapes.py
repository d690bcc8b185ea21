"""One shape for every domain: each table declares its fields once, in its ``XBase``; enum
columns hold the StrEnum (stored as the VARCHAR the migrations make); every list workflow
returns ``Page[XPublic]`` from app.core.pagination."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import String
from sqlmodel import SQLModel

from app.core.pagination import Page
from app.models import access_requests as ar
from app.models import audit, breach_reports, disclosures, emergency_grants, records, service_clients, users, webhooks
from app.models import subjects as subject_models
from app.workflows import disclosures as disclosures_flow
from app.workflows import emergency_grants as grants_flow
from app.workflows import service_clients as service_clients_flow
from app.workflows import subjects as subjects_flow
from app.workflows import users as users_flow
from app.workflows.access_requests import read as ar_flow
from app.workflows.audit import access, trail
from app.workflows.breach_reports import reports as breach_flow
from app.workflows.records import read
from app.workflows.webhooks import subscriptions as webhooks_flow


def _base(module: Any, name: str) -> Any:
    return getattr(module, name, type(name, (), {"model_fields": {}}))  # a stand-in that fails the checks


TABLES_AND_BASES = [
    (subject_models.Subject, _base(subject_models, "SubjectBase")),
    (records.Record, _base(records, "RecordBase")),
    (users.User, _base(users, "UserBase")),
    (service_clients.ServiceClient, _base(service_clients, "ServiceClientBase")),
    (audit.AuditEvent, _base(audit, "AuditEventBase")),
    (ar.AccessRequest, _base(ar, "AccessRequestBase")),
    (disclosures.Disclosure, _base(disclosures, "DisclosureBase")),
    (breach_reports.BreachReport, _base(breach_reports, "BreachReportBase")),
    (emergency_grants.EmergencyGrant, _base(emergency_grants, "GrantBase")),
    (webhooks.Webhook, _base(webhooks, "WebhookBase")),
]


@pytest.mark.parametrize(("table", "base"), TABLES_AND_BASES, ids=lambda t: t.__name__)
def test_each_table_inherits_its_base(table, base):
    assert issubclass(table, base)
    assert not getattr(base, "__table__", None), "the base is not itself a table"
    # The base declares at least one column of the table, and the table does not declare it again.
    shared = set(base.model_fields) & set(table.__table__.c.keys())
    assert shared
    again = shared & set(table.__annotations__)
    assert not again, f"{table.__name__} declares again: {again}"


@pytest.mark.parametrize(("public", "base"), [
    (subject_models.SubjectPublic, _base(subject_models, "SubjectBase")), (users.UserPublic, _base(users, "UserBase")),
    (ar.AccessRequestPublic, _base(ar, "AccessRequestBase")),
    (disclosures.DisclosurePublic, _base(disclosures, "DisclosureBase")),
    (emergency_grants.GrantPublic, _base(emergency_grants, "GrantBase")),
    (audit.AuditEventPublic, _base(audit, "AuditEventBase")),
], ids=lambda t: t.__name__)
def test_public_models_inherit_the_same_base(public, base):
    assert issubclass(public, base)


@pytest.mark.parametrize("shape", [records.AccessLogEntry, ar.AccessHistoryEntry], ids=lambda t: t.__name__)
def test_an_access_to_a_record_is_declared_once_and_shown_in_the_shape_of_each_view(shape):
    access = _base(audit, "RecordAccess")
    assert issubclass(shape, access)
    again = set(access.model_fields) & set(shape.__annotations__)
    assert access.model_fields and not again, f"{shape.__name__} declares again: {again}"


ENUM_COLUMNS = [
    (subject_models.Subject, "kind", subject_models.SubjectKind, 16),
    (subject_models.Subject, "category", subject_models.SubjectCategory, 32),
    (records.Record, "classification", records.Classification, 16),
    (records.Record, "purpose", records.Purpose, 40),
    (records.Record, "consent_status", records.ConsentStatus, 16),
    (users.User, "role", users.Role, 16),
    (users.User, "staff_type", users.StaffType, 16),
    (ar.AccessRequest, "kind", ar.AccessRequestKind, 24),
    (ar.AccessRequest, "signatory_capacity", ar.SignatoryCapacity, 24),
    (ar.AccessRequest, "status", ar.AccessRequestStatus, 16),
    (disclosures.Disclosure, "category", disclosures.DisclosureCategory, 32),
    (disclosures.Disclosure, "status", disclosures.DisclosureStatus, 16),
    (disclosures.Disclosure, "subject_informed_method", disclosures.InformMethod, 16),
    (breach_reports.BreachReport, "kind", breach_reports.BreachKind, 32),
    (breach_reports.BreachReport, "status", breach_reports.BreachStatus, 16),
    (breach_reports.BreachReport, "finding", breach_reports.Finding, 16),
    (breach_reports.BreachReport, "outcome", breach_reports.Outcome, 40),
    (breach_reports.BreachReport, "handler_basis", breach_reports.HandlerBasis, 16),
    (webhooks.WebhookEvent, "kind", webhooks.WebhookEventKind, 40),
    (webhooks.WebhookDelivery, "kind", webhooks.WebhookEventKind, 40),
    (webhooks.WebhookDelivery, "status", webhooks.DeliveryStatus, 16),
]


def _enum_of(annotation: Any) -> type[enum.Enum] | None:
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    found = [a for a in args if isinstance(a, type) and issubclass(a, enum.StrEnum)]
    return found[0] if found else None


@pytest.mark.parametrize(("table", "name", "kind", "length"), ENUM_COLUMNS,
                         ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_enum_columns_are_typed_as_their_enum_and_stored_as_a_varchar(table, name, kind, length):
    assert _enum_of(table.model_fields[name].annotation) is kind
    column = table.__table__.c[name]
    assert type(column.type) is String and column.type.length == length  # what the migrations made


def _tables() -> list[type[SQLModel]]:
    found, todo = [], list(SQLModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if getattr(cls, "__table__", None) is not None:
            found.append(cls)
    return found


def test_every_enum_column_is_listed():
    listed = {(t, n) for t, n, _, _ in ENUM_COLUMNS}
    for table in _tables():
        for name, field in table.model_fields.items():
            if _enum_of(field.annotation) is not None:
                assert (table, name) in listed, (table, name)


LIST_WORKFLOWS: list[tuple[Callable[..., Any], Any]] = [
    (read.list_records, records.RecordSummary),
    (subjects_flow.list_subjects, subject_models.SubjectPublic),
    (users_flow.list_users, users.UserPublic),
    (service_clients_flow.list_clients, service_clients.ServiceClientPublic),
    (ar_flow.list_requests, ar.AccessRequestPublic),
    (disclosures_flow.list_disclosures, disclosures.DisclosurePublic),
    (breach_flow.list_reports, breach_reports.BreachReportPublic | breach_reports.BreachReportStatusView),
    (grants_flow.list_grants, emergency_grants.GrantPublic),
    (trail.list_events, audit.AuditEventPublic),
    (access.access_log, records.AccessLogEntry),
    (webhooks_flow.list_webhooks, webhooks.WebhookPublic),
    (webhooks_flow.list_deliveries, webhooks.DeliveryPublic),
]


@pytest.mark.parametrize(("workflow", "item"), LIST_WORKFLOWS, ids=lambda v: getattr(v, "__qualname__", str(v)))
def test_every_list_workflow_returns_a_page_of_public_items(workflow, item):
    returned = typing.get_type_hints(workflow)["return"]
    page = next(c for c in typing.get_args(returned) or (returned,) if c is not type(None))  # noqa: E721
    assert isinstance(page, type) and issubclass(page, Page), page
    got = page.model_fields["items"].annotation
    assert got == list[item], got
    for one in typing.get_args(item) or (item,):
        assert issubclass(one, BaseModel) and not getattr(one, "__table__", None)


def test_page_is_the_only_page_shape():
    # Every model with items and next_cursor is a Page.
    for module in (records, subject_models, ar, users, service_clients, audit, disclosures, breach_reports,
                   emergency_grants, webhooks):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and value is not SQLModel:
                fields = getattr(value, "model_fields", {})
                if "items" in fields and "next_cursor" in fields:
                    assert issubclass(value, Page), value
