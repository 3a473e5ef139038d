"""KashFlow's wire format: reading SOAP 1.1 requests safely and writing replies as ASMX does.

Replies are built as strings (element order, empty elements and number formats matter to
clients; string building from cached per-record fragments keeps 200 invoices cheap).
Records are written with KashFlow's full, real field order, including fields the project's
trimmed WSDL leaves out and, on some invoices, fields newer than any published WSDL. As on
the live service, an invoice's ``Customer`` element holds the customer's code (the name is
in ``CustomerName``) and amounts carry four decimals (``8.3300``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from lxml import etree

from kashflow.sandbox.records import Company, CustomerRecord, InvoiceRecord, LineRecord
from kashflow.sandbox.texts import STATUS_TEXTS

SOAP_ENV: Final = "http://schemas.xmlsoap.org/soap/envelope/"
TNS: Final = "KashFlow"

# Operation -> (int parameters, string parameters), as the WSDL declares them.
OPERATIONS: Final[Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "GetCompanyDetails": ((), ()),
    "GetCustomer": ((), ("CustomerCode",)),
    "GetCustomerByID": (("CustomerID",), ()),
    "GetCustomerByEmail": ((), ("CustomerEmail",)),
    "GetCustomers": ((), ()),
    "GetInvoice": (("InvoiceNumber",), ()),
    "GetInvoicesForCustomer": (("CustID",), ()),
    "GetInvoices_Unpaid": ((), ()),
    "PrintInvoice": (("InvoiceNumber",), ("InvoiceNumberList",)),
    "AutoAuthIP": ((), ("appName", "AutoAuthKey")),
}

_PARSER: Final = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_pis=True,
)

_HEAD: Final = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<soap:Envelope xmlns:soap="{SOAP_ENV}"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
    "<soap:Body>"
)
_TAIL: Final = "</soap:Body></soap:Envelope>"


class SoapFault(Exception):
    """A request the service cannot read: answered with HTTP 500 and a ``soap:Fault``."""

    def __init__(self, faultstring: str, faultcode: str = "soap:Client") -> None:
        super().__init__(faultstring)
        self.faultstring = faultstring
        self.faultcode = faultcode


@dataclass(frozen=True, slots=True)
class SoapRequest:
    operation: str
    username: str
    password: str
    ints: Mapping[str, int]
    strings: Mapping[str, str]

    def __repr__(self) -> str:
        # The password must never reach a log line or an exception message.
        return f"SoapRequest(operation={self.operation!r}, username={self.username!r})"


def parse_request(body: bytes, soap_action: str | None) -> SoapRequest:
    """Read one SOAP 1.1 request; a ``SoapFault`` for anything ASMX would refuse."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        raise SoapFault(STATUS_TEXTS.fault_unreadable) from None
    docinfo = root.getroottree().docinfo
    doctype: str = getattr(docinfo, "doctype", "")
    if doctype or docinfo.internalDTD is not None:
        raise SoapFault(STATUS_TEXTS.fault_dtd)
    call = _operation_element(root)
    operation = etree.QName(call).localname
    action = (soap_action or "").strip().strip('"')
    if operation not in OPERATIONS or (action and action != f"{TNS}/{operation}"):
        raise SoapFault(STATUS_TEXTS.fault_unknown_action.format(action=action or operation))
    values = {
        etree.QName(child).localname: "".join(str(text) for text in child.itertext())
        for child in call
        if isinstance(child.tag, str) and etree.QName(child).namespace == TNS
    }
    int_names, string_names = OPERATIONS[operation]
    return SoapRequest(
        operation=operation,
        username=values.get("UserName", ""),
        password=values.get("Password", ""),
        ints={name: _int(values, name) for name in int_names},
        strings={name: values.get(name, "") for name in string_names},
    )


def _operation_element(root: etree._Element) -> etree._Element:
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapFault(STATUS_TEXTS.fault_unreadable)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    children = [] if body is None else [c for c in body if isinstance(c.tag, str)]
    if not children or etree.QName(children[0]).namespace != TNS:
        raise SoapFault(STATUS_TEXTS.fault_unreadable)
    return children[0]


def _int(values: Mapping[str, str], name: str) -> int:
    if name not in values:
        raise SoapFault(STATUS_TEXTS.fault_missing_value.format(name=name))
    text = values[name].strip()
    # xsd:int: optional sign and ASCII digits only, within 32 bits.
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise SoapFault(STATUS_TEXTS.fault_not_a_number)
    number = int(text)
    if not -(2**31) <= number < 2**31:
        raise SoapFault(STATUS_TEXTS.fault_not_a_number)
    return number


# --- writing ------------------------------------------------------------------------------


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def el(name: str, value: str) -> str:
    """One element; an empty string becomes ``<Name />`` as .NET writes it."""
    if not value:
        return f"<{name} />"
    return f"<{name}>{esc(value)}</{name}>"


def dt(value: date | datetime) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{value.isoformat()}T00:00:00"


_FOUR_PLACES: Final = Decimal("0.0001")


def dec(value: Decimal) -> str:
    """A decimal as KashFlow writes it: four places (``8.3300``, ``-1.0000``)."""
    return format(value.quantize(_FOUR_PLACES), "f")


def flag(value: bool) -> str:
    return "true" if value else "false"


def envelope(inner: str) -> bytes:
    return (_HEAD + inner + _TAIL).encode("utf-8")


def response(operation: str, result: str | None, status: str = "OK", detail: str = "") -> bytes:
    """``<OpResponse>``: the result (already wrapped, or None for absent), Status, StatusDetail."""
    return envelope(
        f'<{operation}Response xmlns="{TNS}">{result or ""}'
        f"<Status>{status}</Status>{el('StatusDetail', detail)}</{operation}Response>"
    )


def wrap(name: str, inner: str) -> str:
    return f"<{name}>{inner}</{name}>" if inner else f"<{name} />"


def array(name: str, item: str, fragments: Iterable[str], *, absent_if_empty: bool = False) -> str:
    """An array result; empty, it is ``<Name />`` or (``absent_if_empty``) left out."""
    inner = "".join(f"<{item}>{f}</{item}>" for f in fragments)
    if not inner and absent_if_empty:
        return ""
    return wrap(name, inner)


def fault(faultstring: str, faultcode: str = "soap:Client") -> bytes:
    return envelope(
        f"<soap:Fault><faultcode>{faultcode}</faultcode>"
        f"<faultstring>{esc(faultstring)}</faultstring><detail /></soap:Fault>"
    )


def company_fields(company: Company) -> str:
    address = (*company.address, "", "", "", "")[:4]
    return "".join(
        (
            el("CompanyName", company.name),
            *(el(f"Address{n}", line) for n, line in enumerate(address, start=1)),
            el("Postcode", company.postcode),
            el("PrimaryEmail", company.email),
            el("PrimaryContact", company.contact),
            el("Telephone", company.telephone),
            el("Mobile", ""),
            el("VatRegistered", "Yes" if company.vat_number else "No"),
            el("VatRegistrationNumber", company.vat_number),
            el("PaymentTerms", str(company.payment_terms)),
            el("CurrencySymbol", company.currency_symbol),
            el("CurrencyPosition", "Left"),
            el("UsDate", "No"),
            el("CurrencyId", str(company.currency_id)),
            el("CurrencyName", company.currency_name),
            "<BusinessType1>0</BusinessType1><BusinessType2>0</BusinessType2>",
            "<BusinessType3>0</BusinessType3>",
            el("PaymentTermsType", "invoice date"),
            el("BusinessType1Name", "Design services"),
            el("BusinessType2Name", ""),
            el("BusinessType3Name", ""),
            "<BusinessType>1</BusinessType>",
        )
    )


_EXTRA_TEXTS: Final = "".join(f"<ExtraText{n} />" for n in range(1, 21))
_CHECKBOXES: Final = "".join(f"<CheckBox{n}>0</CheckBox{n}>" for n in range(1, 21))


def customer_fields(customer: CustomerRecord) -> str:
    address = (*customer.address, "", "", "", "")[:4]
    created = dt(customer.created)
    return "".join(
        (
            f"<CustomerID>{customer.id}</CustomerID>",
            el("Code", customer.code),
            el("Name", customer.name),
            el("Contact", customer.contact),
            el("Telephone", customer.telephone),
            el("Mobile", ""),
            el("Fax", ""),
            el("Email", customer.email),
            *(el(f"Address{n}", line) for n, line in enumerate(address, start=1)),
            el("CountryName", customer.country_name),
            el("CountryCode", customer.country_code),
            el("Postcode", customer.postcode),
            el("Website", customer.website),
            f"<EC>{int(customer.country_code not in ('GB', ''))}</EC><OutsideEC>0</OutsideEC>",
            el("Notes", customer.notes),
            "<Source>0</Source><Discount>0.0000</Discount><ShowDiscount>false</ShowDiscount>",
            f"<PaymentTerms>{customer.payment_terms}</PaymentTerms>",
            _EXTRA_TEXTS,
            _CHECKBOXES,
            f"<Created>{created}</Created><Updated>{created}</Updated>",
            f"<CurrencyID>{customer.currency_id}</CurrencyID>",
            el("ContactTitle", customer.contact_title),
            el("ContactFirstName", customer.contact_first),
            el("ContactLastName", customer.contact_last),
            "<CustHasDeliveryAddress>0</CustHasDeliveryAddress>",
            "<DeliveryAddress1 /><DeliveryAddress2 /><DeliveryAddress3 /><DeliveryAddress4 />",
            "<DeliveryCountryName /><DeliveryCountryCode /><DeliveryPostcode />",
            el("VATNumber", customer.vat_number),
        )
    )


ZEROED_CUSTOMER: Final = (
    "<CustomerID>0</CustomerID><EC>0</EC><OutsideEC>0</OutsideEC><Source>0</Source>"
    "<Discount>0</Discount><ShowDiscount>false</ShowDiscount><PaymentTerms>0</PaymentTerms>"
    + _CHECKBOXES
    + "<Created>0001-01-01T00:00:00</Created><Updated>0001-01-01T00:00:00</Updated>"
    "<CurrencyID>0</CurrencyID>"
)


def line_fields(line: LineRecord, live: bool) -> str:
    parts = [
        f"<Quantity>{dec(line.quantity)}</Quantity>",
        el("Description", line.description),
        f"<Rate>{dec(line.rate)}</Rate><ChargeType>{line.charge_type}</ChargeType>",
        f"<VatRate>{dec(line.vat_rate)}</VatRate><VatAmount>{dec(line.vat_amount)}</VatAmount>",
        f"<ProductID>{line.product_id}</ProductID><Sort>{line.sort}</Sort>",
        f"<ProjID>0</ProjID><LineID>{line.line_id}</LineID>",
    ]
    if live:
        parts.append(el("ProductName", line.product_name))
    return "".join(parts)


def invoice_fields(
    invoice: InvoiceRecord,
    customer: CustomerRecord,
    permalink: str,
    *,
    untyped_lines: bool = False,
) -> str:
    # KashFlow's own docs show each line as <anyType xsi:type="InvoiceLine">; a line
    # without the attribute is a variant clients must survive.
    opening = "<anyType>" if untyped_lines else '<anyType xsi:type="InvoiceLine">'
    lines = "".join(
        f"{opening}{line_fields(line, invoice.live_fields)}</anyType>" for line in invoice.lines
    )
    customer_name = invoice.customer_name or customer.name
    parts = [
        f"<InvoiceDBID>{invoice.dbid}</InvoiceDBID>",
        f"<InvoiceNumber>{invoice.number}</InvoiceNumber>",
        f"<InvoiceDate>{dt(invoice.issued)}</InvoiceDate><DueDate>{dt(invoice.due)}</DueDate>",
        # The live service writes the customer's code here, the name in CustomerName.
        el("Customer", customer.code),
        f"<CustomerID>{invoice.customer_id}</CustomerID>",
        f"<Paid>{int(invoice.paid)}</Paid>",
        el("CustomerReference", invoice.reference),
        el("EstimateCategory", ""),
        "<SuppressTotal>0</SuppressTotal><ProjectID>0</ProjectID>",
        el("CurrencyCode", invoice.currency),
        f"<ExchangeRate>{dec(invoice.exchange_rate)}</ExchangeRate>",
        el("ReadableString", ""),
        wrap("Lines", lines),
        f"<NetAmount>{dec(invoice.net)}</NetAmount><VATAmount>{dec(invoice.vat)}</VATAmount>",
        f"<AmountPaid>{dec(invoice.amount_paid)}</AmountPaid>",
        el("CustomerName", customer_name),
        el("PermaLink", permalink),
        "<DeliveryAddress><Name /><Line1 /><Line2 /><Line3 /><Line4 /><PostCode />"
        "<CountryName /><CountryCode /></DeliveryAddress>",
        "<UseCustomDeliveryAddress>false</UseCustomDeliveryAddress>",
    ]
    if invoice.live_fields:
        parts.append(
            f"<CISRCNetAmount>{dec(invoice.cis_net)}</CISRCNetAmount>"
            f"<CISRCVatAmount>{dec(invoice.cis_vat)}</CISRCVatAmount>"
            f"<IsCISReverseCharge>{flag(invoice.cis_reverse_charge)}</IsCISReverseCharge>"
        )
    return "".join(parts)


# .NET defaults for the required elements; strings are null and so left out.
ZEROED_INVOICE: Final = (
    "<InvoiceDBID>0</InvoiceDBID><InvoiceNumber>0</InvoiceNumber>"
    "<InvoiceDate>0001-01-01T00:00:00</InvoiceDate><DueDate>0001-01-01T00:00:00</DueDate>"
    "<CustomerID>0</CustomerID><Paid>0</Paid><SuppressTotal>0</SuppressTotal>"
    "<ProjectID>0</ProjectID><ExchangeRate>0</ExchangeRate><Lines />"
    "<NetAmount>0</NetAmount><VATAmount>0</VATAmount><AmountPaid>0</AmountPaid>"
    "<UseCustomDeliveryAddress>false</UseCustomDeliveryAddress>"
)
