"""What a KashFlow reply looks like, without what it says: its shape, for the probe.

:func:`describe` reads one raw SOAP reply and keeps only what the product needs to know
about the live service and no client data: the Status and StatusDetail, whether the
result is absent, an empty element or how many records, which fields arrive beyond
KashFlow's published WSDL (by name), whether invoice lines name their type, what the
invoice's ``Customer`` element holds (the code or the name, compared, never copied), and
how many decimal places amounts are written with.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from kashflow.published import DECIMAL_FIELDS, PUBLISHED_FIELDS
from kashflow.soap import NS, SOAP_ENV, XSI_NIL, XSI_TYPE

#: Each operation's result: the record type it holds, and whether it is a list of them.
_RESULTS: Final[dict[str, tuple[str | None, bool]]] = {
    "GetCompanyDetails": ("CompanyDetails", False),
    "GetCustomer": ("Customer", False),
    "GetCustomerByID": ("Customer", False),
    "GetCustomerByEmail": ("Customer", False),
    "GetCustomers": ("Customer", True),
    "GetInvoice": ("Invoice", False),
    "GetInvoicesForCustomer": ("Invoice", True),
    "GetInvoices_Unpaid": ("Invoice", True),
    "PrintInvoice": (None, False),
    "AutoAuthIP": (None, False),
}
#: Fields that are zero on a "zeroed" record (KashFlow's other way of saying not found).
_IDS: Final = {"Invoice": "InvoiceNumber", "Customer": "CustomerID"}
_MAX_DETAIL: Final = 300


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


@dataclass
class ReplyShape:
    """One reply, in shape only. ``text`` (a string result, e.g. PrintInvoice's URL) is
    kept for the caller to inspect and is never part of :meth:`summary`."""

    http_status: int
    status: str = ""
    detail: str = ""
    result: str = ""
    fault: str = ""
    unreadable: str = ""
    records: int = 0
    zeroed: int = 0
    text: str = ""
    seen: dict[str, set[str]] = field(default_factory=dict)
    typed_lines: int = 0
    untyped_lines: int = 0
    customer_element: Counter[str] = field(default_factory=Counter)
    decimal_places: set[int] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.status == "OK" and not self.fault and not self.unreadable

    def new_fields(self, kind: str) -> list[str]:
        """Fields sent beyond the published WSDL, in the order first met."""
        published = set(PUBLISHED_FIELDS.get(kind, ()))
        return sorted(self.seen.get(kind, set()) - published)

    def missing_fields(self, kind: str) -> list[str]:
        """Published fields no record of this reply carried."""
        if kind not in self.seen:
            return []
        return [f for f in PUBLISHED_FIELDS.get(kind, ()) if f not in self.seen[kind]]

    def summary(self) -> list[str]:
        """The shape as ``name: value`` lines."""
        out = [f"HTTP {self.http_status}"]
        if self.unreadable:
            return [*out, f"unreadable: {self.unreadable}"]
        if self.fault:
            return [*out, f"SOAP fault: {self.fault[:_MAX_DETAIL]!r}"]
        out.append(f"Status {self.status or '(none)'}, StatusDetail {self.detail[:_MAX_DETAIL]!r}")
        out.append(f"result: {self.result}")
        if self.zeroed:
            out.append(f"zeroed records (id 0): {self.zeroed}")
        for kind in sorted(self.seen):
            new, missing = self.new_fields(kind), self.missing_fields(kind)
            out.append(f"{kind} fields beyond the published WSDL: {', '.join(new) or 'none'}")
            if missing:
                out.append(f"{kind} published fields not sent: {', '.join(missing)}")
        if self.typed_lines or self.untyped_lines:
            out.append(
                f"invoice lines: {self.typed_lines} with xsi:type, {self.untyped_lines} without"
            )
        if self.customer_element:
            held = ", ".join(f"{k} ({n})" for k, n in sorted(self.customer_element.items()))
            out.append(f"invoice Customer element holds: {held}")
        if self.decimal_places:
            places = ", ".join(str(p) for p in sorted(self.decimal_places))
            out.append(f"decimal places in amounts: {places}")
        return out


def describe(
    operation: str, http_status: int, body: bytes, *, customer_code: str = ""
) -> ReplyShape:
    """The shape of ``operation``'s reply. ``customer_code``, when known, lets invoices
    say whether their ``Customer`` element is that code (compared, never reported)."""
    shape = ReplyShape(http_status)
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError:
        shape.unreadable = "not XML"
        return shape
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        shape.unreadable = "no SOAP body"
        return shape
    payload = soap_body[0]
    if payload.tag == f"{{{SOAP_ENV}}}Fault":
        shape.fault = (payload.findtext("faultstring") or "").strip()
        return shape
    if payload.tag != f"{{{NS}}}{operation}Response":
        shape.unreadable = f"unexpected element {_local(payload)}"
        return shape
    shape.status = (payload.findtext(f"{{{NS}}}Status") or "").strip()
    shape.detail = (payload.findtext(f"{{{NS}}}StatusDetail") or "").strip()
    _result(shape, operation, payload.find(f"{{{NS}}}{operation}Result"), customer_code)
    return shape


def _result(
    shape: ReplyShape, operation: str, result: etree._Element | None, customer_code: str
) -> None:
    kind, listed = _RESULTS.get(operation, (None, False))
    if result is None:
        shape.result = "absent (no result element)"
    elif result.get(XSI_NIL) == "true":
        shape.result = "nil"
    elif kind is None:
        shape.text = (result.text or "").strip()
        if not shape.text:
            shape.result = "empty"
        elif shape.text.startswith(("https://", "http://")):
            shape.result = "a URL"
        else:
            shape.result = "a value" if shape.text.lstrip("-").isdigit() else "text"
    elif not len(result):
        shape.result = f"empty element (<{operation}Result />)"
    else:
        records = [c for c in result if isinstance(c.tag, str)] if listed else [result]
        shape.records = len(records)
        shape.result = f"a list of {len(records)}" if listed else "one record"
        for record in records:
            _record(shape, kind, record, customer_code)


def _record(shape: ReplyShape, kind: str, record: etree._Element, customer_code: str) -> None:
    fields = {_local(c): c for c in record if isinstance(c.tag, str)}
    shape.seen.setdefault(kind, set()).update(fields)
    id_field = _IDS.get(kind, "")
    if id_field in fields and (fields[id_field].text or "").strip() in ("", "0"):
        shape.zeroed += 1
    if kind != "Invoice":
        return
    _places(shape, fields)
    lines = fields.get("Lines")
    for line in [] if lines is None else [c for c in lines if isinstance(c.tag, str)]:
        if line.get(XSI_TYPE):
            shape.typed_lines += 1
        else:
            shape.untyped_lines += 1
        line_fields = {_local(c): c for c in line if isinstance(c.tag, str)}
        shape.seen.setdefault("InvoiceLine", set()).update(line_fields)
        _places(shape, line_fields)
    shape.customer_element[_customer_element(fields, customer_code)] += 1


def _places(shape: ReplyShape, fields: dict[str, etree._Element]) -> None:
    for name in DECIMAL_FIELDS & fields.keys():
        text = (fields[name].text or "").strip()
        if text:
            shape.decimal_places.add(len(text.split(".", 1)[1]) if "." in text else 0)


def _customer_element(fields: dict[str, etree._Element], customer_code: str) -> str:
    held = (fields["Customer"].text or "").strip() if "Customer" in fields else None
    name = (fields["CustomerName"].text or "").strip() if "CustomerName" in fields else ""
    if held is None:
        return "absent"
    if not held:
        return "empty"
    if customer_code and held == customer_code:
        return "the customer's code"
    if name and held == name:
        return "the customer's name"
    return "not the name"
