"""KashFlow: the typed async gateway to KashFlow's SOAP API, its models and errors.

The sandbox (a faithful KashFlow SOAP server for the demo and the tests) lives in
``kashflow.sandbox``; invoice documents (fetch PDFs, merge them) in ``kashflow.documents``.
"""

from kashflow.errors import (
    ApiDisabled,
    BadCredentials,
    BadDocument,
    IpNotAuthorised,
    KashFlowError,
    NotFound,
    Rejected,
    Unavailable,
)
from kashflow.models import CompanyDetails, Credentials, Customer, Invoice, InvoiceLine

__all__ = [
    "ApiDisabled",
    "BadCredentials",
    "BadDocument",
    "CompanyDetails",
    "Credentials",
    "Customer",
    "Invoice",
    "InvoiceLine",
    "IpNotAuthorised",
    "KashFlowError",
    "NotFound",
    "Rejected",
    "Unavailable",
]
