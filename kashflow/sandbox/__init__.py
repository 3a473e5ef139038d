"""The KashFlow sandbox: a faithful KashFlow SOAP server over real HTTP.

It speaks the project's WSDL with KashFlow's Status / StatusDetail behaviour, serves the
PDFs PrintInvoice links to, holds seeded accounts (``DEMO``, ``SECOND``, ``NOAPI``,
``IPLOCKED``) and lets tests inject latency and faults. It is the embedded KashFlow of
the demo, the tests and the benchmarks.
"""

from kashflow.sandbox.faults import PDF_FETCH, Call, Faults
from kashflow.sandbox.ledger import NewLine
from kashflow.sandbox.records import Company, CustomerRecord, InvoiceRecord, LineRecord
from kashflow.sandbox.seed import DEMO, IPLOCKED, NOAPI, SECOND
from kashflow.sandbox.server import SOAP_PATH, Sandbox, create_app, pdf_hosts_for
from kashflow.sandbox.texts import STATUS_TEXTS, StatusTexts

__all__ = [
    "DEMO",
    "IPLOCKED",
    "NOAPI",
    "PDF_FETCH",
    "SECOND",
    "SOAP_PATH",
    "STATUS_TEXTS",
    "Call",
    "Company",
    "CustomerRecord",
    "Faults",
    "InvoiceRecord",
    "LineRecord",
    "NewLine",
    "Sandbox",
    "StatusTexts",
    "create_app",
    "pdf_hosts_for",
]
