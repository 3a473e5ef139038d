"""The SOAP layer: envelopes built by zeep from the project's WSDL, replies read fast.

The WSDL (``kashflow/wsdl/kashflow.wsdl``) is parsed once per process. zeep builds and
validates every request envelope (ASMX wants every int present: zeep refuses a request
without one). Replies are decoded by readers compiled once from the same WSDL types and
run over a hardened lxml tree: zeep's own object mapping costs ~10x more CPU on a
200-invoice reply, which would dominate page latency. Elements the WSDL does not declare
(KashFlow adds fields over time) are skipped, which is what zeep's ``strict=False`` means.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import zeep
from lxml import etree
from zeep.xsd.types.any import AnyType
from zeep.xsd.types.complex import ComplexType

WSDL_PATH = Path(__file__).resolve().parent / "wsdl" / "kashflow.wsdl"
NS = "KashFlow"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
XSD = "http://www.w3.org/2001/XMLSchema"
_NS_PREFIX = len(NS) + 2
#: The type of an ``anyType`` element that names none: KashFlow's only untyped array is an
#: invoice's ``Lines``.
UNTYPED_RECORD = "InvoiceLine"

Reader = Callable[[etree._Element], Any]


class UnreadableReply(Exception):
    """The body is not a SOAP reply we can read (not XML, a DTD, no Body, ...)."""


class SoapFault(Exception):
    """The service answered a ``soap:Fault`` (ASMX does for malformed requests)."""

    def __init__(self, faultstring: str) -> None:
        super().__init__(faultstring)
        self.faultstring = faultstring


@dataclass(frozen=True, slots=True)
class Reply:
    status: str
    detail: str
    result: Any  # dict for a record, list for an array, str for a string, None if absent


def _parser() -> etree.XMLParser:
    # No DTD, no entities, no network: a reply is data, never instructions to the parser.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1")


def _datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.strip()) if text.strip() else datetime.min


# Simple types are converted straight from the element text (builtins where possible:
# this loop runs ~10 000 times for a 200-invoice reply).
_SIMPLE: dict[str, tuple[Callable[[str], Any], str]] = {
    "string": (str, ""),
    "int": (int, "0"),
    "integer": (int, "0"),
    "long": (int, "0"),
    "decimal": (Decimal, "0"),
    "dateTime": (_datetime, ""),
    "boolean": (_bool, ""),
}


class Service:
    """The KashFlow service as the WSDL describes it: build requests, read replies."""

    def __init__(self, wsdl: Path = WSDL_PATH) -> None:
        settings = zeep.Settings(strict=False, forbid_dtd=True, forbid_entities=True)
        self._zeep = zeep.Client(str(wsdl), settings=settings)
        # Readers per (operation or type, fields left out): compiled once, on first use.
        self._readers: dict[tuple[str, frozenset[str]], Reader] = {}
        self._types: dict[tuple[str, frozenset[str]], Reader] = {}

    def envelope(self, operation: str, params: dict[str, Any]) -> bytes:
        """A complete SOAP 1.1 request for ``operation`` (raises on missing required ints)."""
        message = self._zeep.create_message(self._zeep.service, operation, **params)
        return bytes(etree.tostring(message, xml_declaration=True, encoding="utf-8"))

    def read(self, operation: str, body: bytes, *, skip: frozenset[str] = frozenset()) -> Reply:
        """Read ``operation``'s reply body; raises SoapFault or UnreadableReply.

        Fields named in ``skip`` (e.g. an invoice's ``Lines``) are passed over unread: a
        list page needs none of an invoice's lines, which are half of a long reply.
        """
        try:
            root = etree.fromstring(body, _parser())
        except etree.XMLSyntaxError as exc:
            raise UnreadableReply("not XML") from exc
        docinfo: Any = root.getroottree().docinfo
        if docinfo.doctype:
            raise UnreadableReply("a DTD in the reply")
        soap_body = root.find(f"{{{SOAP_ENV}}}Body")
        if soap_body is None or len(soap_body) == 0:
            raise UnreadableReply("no SOAP body")
        payload = soap_body[0]
        if payload.tag == f"{{{SOAP_ENV}}}Fault":
            raise SoapFault((payload.findtext("faultstring") or "").strip())
        if payload.tag != f"{{{NS}}}{operation}Response":
            raise UnreadableReply("unexpected reply element")
        status = payload.findtext(f"{{{NS}}}Status") or ""
        detail = (payload.findtext(f"{{{NS}}}StatusDetail") or "").strip()
        result_el = payload.find(f"{{{NS}}}{operation}Result")
        result = None if result_el is None else self._reader(operation, skip)(result_el)
        return Reply(status=status.strip(), detail=detail, result=result)

    def _reader(self, operation: str, skip: frozenset[str]) -> Reader:
        reader = self._readers.get((operation, skip))
        if reader is None:
            response = self._zeep.get_element(f"{{{NS}}}{operation}Response")
            result_type = dict(response.type.elements)[f"{operation}Result"].type
            reader = self._readers[(operation, skip)] = self._compile(result_type, skip)
        return reader

    def _compile(self, xsd_type: Any, skip: frozenset[str]) -> Reader:
        qname = xsd_type.qname.text if xsd_type.qname is not None else None
        if qname is not None and (qname, skip) in self._types:
            return self._types[(qname, skip)]
        if not isinstance(xsd_type, ComplexType):
            # zeep's ComplexType derives from AnyType, so test for it first.
            if type(xsd_type) is AnyType:
                return lambda el: self._read_any(el, skip)
            convert, empty = _SIMPLE.get(xsd_type.qname.localname, (str, ""))
            return _simple_reader(convert, empty)
        fields: dict[str, _Field] = {}
        reader = _record_reader(fields)
        if qname is not None:
            self._types[(qname, skip)] = reader  # before the children: types may nest
        for name, element in xsd_type.elements:
            if name in skip:
                continue
            repeated = element.max_occurs == "unbounded" or element.max_occurs > 1
            child = self._compile(element.type, skip)
            simple = getattr(child, "simple", None)
            fields[f"{{{NS}}}{name}"] = (name, simple, child, repeated)
        if len(fields) == 1 and next(iter(fields.values()))[3]:
            # ArrayOfX wraps one repeated element: read it as a plain list.
            item_reader = next(iter(fields.values()))[2]
            array_reader = _array_reader(item_reader)
            if qname is not None:
                self._types[(qname, skip)] = array_reader
            return array_reader
        return reader

    def _read_any(self, el: etree._Element, skip: frozenset[str]) -> Any:
        # Invoice lines arrive as <anyType xsi:type="InvoiceLine">: resolve the named type.
        xsi_type = el.get(XSI_TYPE)
        if xsi_type:
            local = xsi_type.rsplit(":", 1)[-1]
        elif len(el):
            # A line without xsi:type is still a line: Lines (ArrayOfAnyType) holds nothing
            # else, and dropping it would show a client an invoice missing a line.
            local = UNTYPED_RECORD
        else:
            return None
        key = (f"{{{NS}}}{local}", skip)
        if key not in self._types:
            try:
                self._compile(self._zeep.get_type(key[0]), skip)
            except (LookupError, zeep.exceptions.LookupError):
                return None
        return self._types[key](el)


# (field name, (convert, empty text) for a simple type or None, reader, repeated)
_Field = tuple[str, tuple[Callable[[str], Any], str] | None, Reader, bool]


def _simple_reader(convert: Callable[[str], Any], empty: str) -> Reader:
    def read(el: etree._Element) -> Any:
        try:
            return convert(el.text or empty)
        except (ValueError, InvalidOperation) as exc:
            raise UnreadableReply("a value of the wrong type") from exc

    read.simple = (convert, empty)  # type: ignore[attr-defined]
    return read


def _record_reader(fields: dict[str, _Field]) -> Reader:
    def read(el: etree._Element) -> dict[str, Any] | None:
        if el.get(XSI_NIL) == "true":
            return None
        out: dict[str, Any] = {}
        try:
            for child in el:
                # Keyed by the full tag; comments and unknown (newer) fields simply miss,
                # as zeep's strict=False would skip them.
                field = fields.get(child.tag)
                if field is None:
                    continue
                name, simple, reader, repeated = field
                value = simple[0](child.text or simple[1]) if simple else reader(child)
                if repeated:
                    out.setdefault(name, []).append(value)
                else:
                    out[name] = value
        except (ValueError, InvalidOperation) as exc:
            raise UnreadableReply("a value of the wrong type") from exc
        return out

    return read


def _array_reader(item: Reader) -> Reader:
    def read(el: etree._Element) -> list[Any]:
        return [
            value
            for child in el
            if isinstance(child.tag, str) and (value := item(child)) is not None
        ]

    return read


@functools.cache
def service() -> Service:
    """The process-wide service description (the WSDL is parsed on first use only)."""
    return Service()
