//! Lenient, namespace-aware SOAP envelope reader.
//!
//! [`decode_body`] turns the raw HTTP body into text (BOM, `charset`, XML
//! declaration, UTF-8 fallback). [`parse_incoming`] reads what a CPE sends;
//! [`parse_outgoing`] reads what the ACS sends (CPE simulators, round-trip
//! tests).
//!
//! The reader is a single streaming pass over quick-xml events (no document
//! tree), so a whole-tree GetParameterValuesResponse of tens of thousands of
//! parameters costs one allocation per string it keeps. The long lists of
//! parameters, in the form nearly every CPE writes them, are read straight
//! from the message without the event reader (`lists`), four times faster;
//! anything else in them goes to the event reader.
//!
//! What is accepted, because real CPEs send it:
//! * any prefixes: `Envelope`, `Header`, `Body` are matched by SOAP namespace
//!   and local name (also accepted without a namespace), everything else by
//!   local name only; element order is never assumed;
//! * a missing Header or `cwmp:ID`, `encodingStyle` on the Envelope, an
//!   Envelope whose Body is empty (treated like an empty POST);
//! * booleans `1`/`0`/`true`/`false` in any case, empty meaning false;
//! * numbers with surrounding whitespace, empty numbers meaning 0;
//! * missing or wrong `arrayType` counts (ignored), array items of any name;
//! * a missing `xsi:type` (→ `xsd:string`), `xsi:type` with any prefix bound to
//!   the XML Schema namespace (→ `xsd:<type>`), with an undeclared prefix
//!   (kept verbatim) or without prefix (→ `xsd:<type>`);
//! * a missing `Value` element (→ empty `xsd:string`);
//! * dateTime values in any shape: kept verbatim; missing or empty ones
//!   become [`UNKNOWN_TIME`];
//! * predefined entities, character references and CDATA in text; unknown
//!   entity references are kept literally, a bare `&` is kept as text;
//! * characters XML 1.0 forbids (e.g. U+0002 written as `&#2;` or raw) are
//!   dropped from text.
//!
//! What is refused: any DOCTYPE (no entity expansion of any kind), nesting
//! deeper than [`MAX_DEPTH`], more than [`MAX_ELEMENTS`] elements, malformed
//! XML, a root that is not a SOAP 1.1 Envelope, and a `cwmp` namespace this
//! module does not know ([`DecodeError::UnsupportedCwmpVersion`], answer HTTP
//! 400 "Unrecognized CWMP version"). Unknown RPC elements from a CPE are not
//! an error: they parse to [`IncomingBody::UnknownMethod`] so the caller can
//! answer fault 8000 with the right `cwmp:ID`.

use std::borrow::Cow;

use encoding_rs::Encoding;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{NamespaceResolver, QName, ResolveResult};
use quick_xml::NsReader;

use super::encode::{SOAP_ENC_URI, SOAP_ENV_URI, XSD_URI, XSI_URI};
use super::fault::{CwmpFault, SpvFault};
use super::types::*;

mod lists;

/// Deepest element nesting accepted (CWMP needs about 8).
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one message (a 100,000-parameter
/// GetParameterValuesResponse has about 300,000).
pub const MAX_ELEMENTS: usize = 4_000_000;

/// Why a message could not be decoded. The `Display` text is meant for logs
/// and for the body of an HTTP 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The charset named by Content-Type or the XML declaration is unknown.
    #[error("unknown character encoding \"{0}\" in the Content-Type charset or XML declaration; the CPE should send UTF-8")]
    UnknownCharset(String),
    /// The XML is not well-formed.
    #[error("malformed XML near byte {position}: {message}")]
    Malformed {
        /// Byte offset in the decoded text.
        position: u64,
        /// Parser message.
        message: String,
    },
    /// A DOCTYPE was present (refused to rule out entity expansion attacks).
    #[error("DOCTYPE declarations are not allowed in CWMP messages")]
    DoctypeForbidden,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("XML nesting deeper than {0} levels")]
    TooDeep(usize),
    /// More than [`MAX_ELEMENTS`] elements.
    #[error("more than {0} XML elements in one message")]
    TooManyElements(usize),
    /// The root element is not `Envelope` in the SOAP 1.1 namespace.
    #[error("the root element <{0}> is not a SOAP 1.1 Envelope (namespace http://schemas.xmlsoap.org/soap/envelope/)")]
    NotSoapEnvelope(String),
    /// The Envelope has no Body element.
    #[error("the SOAP Envelope has no Body")]
    MissingBody,
    /// The `cwmp` namespace is not one of cwmp-1-0 .. cwmp-1-4.
    #[error("Unrecognized CWMP version: namespace \"{0}\"")]
    UnsupportedCwmpVersion(String),
    /// No `urn:dslforum-org:cwmp-*` namespace anywhere in the envelope.
    #[error("no CWMP namespace (urn:dslforum-org:cwmp-1-x) found in the envelope")]
    MissingCwmpNamespace,
    /// A number, boolean or similar could not be read.
    #[error("invalid {expected} \"{value}\" in element <{element}>")]
    InvalidValue {
        /// Local name of the element.
        element: String,
        /// The text found (truncated to 64 characters).
        value: String,
        /// What was expected, e.g. "unsigned integer".
        expected: &'static str,
    },
    /// A mandatory element is missing.
    #[error("<{method}> has no <{element}> element")]
    MissingElement {
        /// The RPC.
        method: &'static str,
        /// The missing child.
        element: &'static str,
    },
    /// An unknown RPC element ([`parse_outgoing`] only; [`parse_incoming`]
    /// returns [`IncomingBody::UnknownMethod`] instead).
    #[error("unknown RPC method <{0}>")]
    UnknownMethod(String),
}

type Result<T> = std::result::Result<T, DecodeError>;

// ---------------------------------------------------------------------------
// Bytes -> text
// ---------------------------------------------------------------------------

/// The `charset` parameter of a Content-Type value, without quotes.
fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("charset") {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            (!value.is_empty()).then_some(value)
        } else {
            None
        }
    })
}

/// The `encoding` pseudo-attribute of an ASCII XML declaration at the start
/// of `raw`.
fn xml_declaration_encoding(raw: &[u8]) -> Option<&str> {
    let start = raw.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = raw.get(start..)?;
    if !rest.starts_with(b"<?xml") {
        return None;
    }
    let end = rest.windows(2).take(512).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(rest.get(5..end)?).ok()?;
    let pos = decl.find("encoding")?;
    let after = decl.get(pos + "encoding".len()..)?.trim_start();
    let after = after.strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = after.get(1..)?;
    let close = value.find(quote)?;
    value.get(..close)
}

fn is_utf16(enc: &'static Encoding) -> bool {
    enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE
}

/// Decodes an HTTP request body to text.
///
/// Order: a byte-order mark wins; then the Content-Type `charset`; then the
/// XML declaration's `encoding`; then UTF-8. A declared UTF-16 on a body
/// that is visibly ASCII-compatible (a common CPE bug) is ignored. Invalid
/// byte sequences in a declared encoding become U+FFFD. An undeclared body
/// that is not valid UTF-8 is read as windows-1252 (ISO-8859-1 superset),
/// which is what such CPEs send in practice.
///
/// The text borrows `raw` when it is already what the parser reads (UTF-8 that
/// needs no decoding, the usual case): a message is not copied before it is
/// parsed.
pub fn decode_body<'a>(raw: &'a [u8], content_type: Option<&str>) -> Result<Cow<'a, str>> {
    if let Some((enc, bom_len)) = Encoding::for_bom(raw) {
        let body = raw.get(bom_len..).unwrap_or_default();
        let (text, _) = enc.decode_without_bom_handling(body);
        return Ok(text);
    }
    let label = content_type
        .and_then(charset_param)
        .or_else(|| xml_declaration_encoding(raw));
    let declared = match label {
        Some(label) => Some(
            Encoding::for_label(label.trim().as_bytes())
                .ok_or_else(|| DecodeError::UnknownCharset(label.to_owned()))?,
        ),
        None => None,
    };
    let ascii_compatible = raw.first().is_some_and(|b| *b != 0) && raw.get(1) != Some(&0);
    match declared {
        Some(enc) if !(is_utf16(enc) && ascii_compatible) => {
            let (text, _) = enc.decode_without_bom_handling(raw);
            Ok(text)
        }
        _ => match std::str::from_utf8(raw) {
            Ok(text) => Ok(Cow::Borrowed(text)),
            Err(_) => {
                let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(raw);
                Ok(text)
            }
        },
    }
}

// ---------------------------------------------------------------------------
// Streaming cursor
// ---------------------------------------------------------------------------

/// Namespace class of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ElemNs {
    /// No namespace (unprefixed, no default namespace).
    None,
    /// SOAP 1.1 envelope namespace.
    SoapEnv,
    /// A `urn:dslforum-org:cwmp-*` namespace (the URI).
    Cwmp(String),
    /// Anything else, including undeclared prefixes.
    Other,
}

/// An element the cursor stopped at. Its local name is borrowed from the
/// message (elements are matched by name, never kept).
#[derive(Debug)]
struct Elem<'i> {
    local: Cow<'i, str>,
    ns: ElemNs,
    /// `<x/>`: has no content and no end event.
    empty: bool,
    /// Normalised `xsi:type`, if the element has one.
    xsi_type: Option<Cow<'static, str>>,
}

impl Elem<'_> {
    fn name(&self) -> &str {
        &self.local
    }
}

struct Cursor<'i> {
    /// The whole message: text and names the reader hands out point into it.
    xml: &'i str,
    reader: NsReader<&'i [u8]>,
    depth: usize,
    elements: usize,
    first_cwmp_uri: Option<String>,
    /// Bytes read past the reader by [`lists`] (its positions leave them out).
    skipped: u64,
    /// Whether [`lists`] may read lists.
    fast_lists: bool,
}

/// Whether XML 1.0 allows `c` in a document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Appends `s`, dropping characters XML 1.0 cannot carry.
fn push_clean(out: &mut String, s: &str) {
    if is_clean(s) {
        out.push_str(s);
    } else {
        out.extend(s.chars().filter(|c| is_xml_char(*c)));
    }
}

/// Whether XML 1.0 allows every character of `s` (a byte scan first: only
/// control characters and U+FFFE / U+FFFF, which start with 0xEF, are not).
fn is_clean(s: &str) -> bool {
    s.bytes()
        .all(|b| (b >= 0x20 && b != 0xEF) || matches!(b, b'\t' | b'\n' | b'\r'))
        || s.chars().all(is_xml_char)
}

/// Appends a piece of text to what [`Cursor::text_cow`] collected, keeping it
/// borrowed while it is the only piece.
fn push_text<'i>(out: &mut Cow<'i, str>, piece: Cow<'i, str>) {
    if out.is_empty() && is_clean(&piece) {
        *out = piece;
    } else {
        push_clean(out.to_mut(), &piece);
    }
}

fn push_reference(out: &mut String, r: &BytesRef<'_>) {
    if r.is_char_ref() {
        if let Ok(Some(c)) = r.resolve_char_ref() {
            if is_xml_char(c) {
                out.push(c);
            }
        }
        return;
    }
    match &**r {
        "lt" => out.push('<'),
        "gt" => out.push('>'),
        "amp" => out.push('&'),
        "apos" => out.push('\''),
        "quot" => out.push('"'),
        other => {
            out.push('&');
            out.push_str(other);
            out.push(';');
        }
    }
}

/// `xsd:<local>`, without allocating for the types CWMP defines.
fn xsd_type(local: &str) -> Cow<'static, str> {
    Cow::Borrowed(match local {
        "string" => "xsd:string",
        "int" => "xsd:int",
        "unsignedInt" => "xsd:unsignedInt",
        "boolean" => "xsd:boolean",
        "dateTime" => "xsd:dateTime",
        "base64" => "xsd:base64",
        "long" => "xsd:long",
        "unsignedLong" => "xsd:unsignedLong",
        "hexBinary" => "xsd:hexBinary",
        other => return Cow::Owned(format!("xsd:{other}")),
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Whether an attribute named `key` is `xsi:type` (an undeclared prefix is
/// taken for `xsi`).
fn is_xsi_type(resolver: &NamespaceResolver, key: QName<'_>) -> bool {
    let (resolved, local) = resolver.resolve_attribute(key);
    if local.as_ref() != "type" {
        return false;
    }
    match resolved {
        ResolveResult::Bound(ns) => ns.as_ref() == XSI_URI,
        ResolveResult::Unknown(_) => true,
        ResolveResult::Unbound => false,
    }
}

/// The type an `xsi:type` value names, normalised (`xsd:<type>` for the XML
/// Schema namespace under any prefix or none); `None` when empty.
fn normalize_xsi_type(resolver: &NamespaceResolver, value: &str) -> Option<Cow<'static, str>> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let qname = QName(value);
    let (type_local, prefix) = qname.decompose();
    let type_local = type_local.as_ref();
    Some(match resolver.resolve_prefix(prefix, true) {
        ResolveResult::Bound(ns) => {
            let ns = ns.as_ref();
            // 2001 plus the 1999 / 2000/10 drafts some old stacks still bind.
            if ns == XSD_URI || (ns.starts_with("http://www.w3.org/") && ns.ends_with("/XMLSchema"))
            {
                xsd_type(type_local)
            } else if ns == SOAP_ENC_URI {
                Cow::Owned(format!("soap-enc:{type_local}"))
            } else if CwmpNs::looks_like_cwmp(ns) {
                Cow::Owned(format!("cwmp:{type_local}"))
            } else {
                Cow::Owned(value.to_owned())
            }
        }
        ResolveResult::Unbound => xsd_type(type_local),
        ResolveResult::Unknown(_) => Cow::Owned(value.to_owned()),
    })
}

impl<'i> Cursor<'i> {
    fn new(xml: &'i str) -> Cursor<'i> {
        let mut reader = NsReader::from_str(xml);
        let config = reader.config_mut();
        config.trim_text(false);
        config.allow_dangling_amp = true;
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Cursor {
            xml,
            reader,
            depth: 0,
            elements: 0,
            first_cwmp_uri: None,
            skipped: 0,
            fast_lists: true,
        }
    }

    fn read(&mut self) -> Result<Event<'i>> {
        match self.reader.read_event() {
            Ok(Event::DocType(_)) => Err(DecodeError::DoctypeForbidden),
            Ok(event) => Ok(event),
            Err(e) => Err(DecodeError::Malformed {
                position: self.reader.error_position() + self.skipped,
                message: e.to_string(),
            }),
        }
    }

    fn unexpected_eof(&self) -> DecodeError {
        DecodeError::Malformed {
            position: self.reader.buffer_position() + self.skipped,
            message: "unexpected end of document".to_owned(),
        }
    }

    /// Where the reader is in the message: what it has not read yet starts
    /// there.
    fn offset(&self) -> Option<usize> {
        let rest: &[u8] = self.reader.get_ref();
        let at = (rest.as_ptr() as usize).checked_sub(self.xml.as_ptr() as usize)?;
        (at.checked_add(rest.len())? == self.xml.len()).then_some(at)
    }

    /// Moves the reader `bytes` further, over `elements` elements read without
    /// it, whose starts and ends balance (so its stack of open elements and
    /// its namespace scopes stay right). `false`, with nothing moved, when
    /// that would pass [`MAX_ELEMENTS`].
    fn advance(&mut self, bytes: usize, elements: usize) -> bool {
        let total = self.elements.saturating_add(elements);
        if total > MAX_ELEMENTS {
            return false;
        }
        let rest: &mut &[u8] = self.reader.get_mut();
        let Some(after) = rest.get(bytes..) else {
            return false;
        };
        *rest = after;
        self.elements = total;
        self.skipped += bytes as u64;
        true
    }

    fn count_element(&mut self) -> Result<()> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(DecodeError::TooManyElements(MAX_ELEMENTS));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<()> {
        self.count_element()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// `s` as a slice of the message when it is one (names and text the
    /// reader did not have to rewrite), so it can outlive the event.
    fn in_message(&self, s: &str) -> Option<&'i str> {
        let base = self.xml.as_ptr() as usize;
        let start = (s.as_ptr() as usize).checked_sub(base)?;
        self.xml.get(start..start.checked_add(s.len())?)
    }

    fn elem(&mut self, e: &BytesStart<'_>, empty: bool) -> Elem<'i> {
        let (resolved, local) = self.reader.resolver().resolve_element(e.name());
        let ns = match resolved {
            ResolveResult::Bound(ns) if ns.as_ref() == SOAP_ENV_URI => ElemNs::SoapEnv,
            ResolveResult::Bound(ns) if CwmpNs::looks_like_cwmp(ns.as_ref()) => {
                ElemNs::Cwmp(ns.as_ref().to_owned())
            }
            ResolveResult::Bound(_) | ResolveResult::Unknown(_) => ElemNs::Other,
            ResolveResult::Unbound => ElemNs::None,
        };
        let local = match self.in_message(local.as_ref()) {
            Some(borrowed) => Cow::Borrowed(borrowed),
            None => Cow::Owned(local.as_ref().to_owned()),
        };
        if let ElemNs::Cwmp(uri) = &ns {
            if self.first_cwmp_uri.is_none() {
                self.first_cwmp_uri = Some(uri.clone());
            }
        }
        let xsi_type = if e.attributes_raw().trim().is_empty() {
            None
        } else {
            self.xsi_type(e)
        };
        Elem {
            local,
            ns,
            empty,
            xsi_type,
        }
    }

    /// Finds `xsi:type` (also accepted with an undeclared prefix) and
    /// normalises its QName value.
    fn xsi_type(&self, e: &BytesStart<'_>) -> Option<Cow<'static, str>> {
        let resolver = self.reader.resolver();
        for attr in e.attributes().with_checks(false).flatten() {
            if !is_xsi_type(resolver, attr.key) {
                continue;
            }
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .unwrap_or(Cow::Borrowed(""));
            return normalize_xsi_type(resolver, &value);
        }
        None
    }

    /// The next child element of `parent`, or `None` after its end tag. Text,
    /// comments and processing instructions between elements are skipped.
    fn next_child(&mut self, parent: &Elem) -> Result<Option<Elem<'i>>> {
        if parent.empty {
            return Ok(None);
        }
        loop {
            match self.read()? {
                Event::Start(e) => {
                    self.enter()?;
                    return Ok(Some(self.elem(&e, false)));
                }
                Event::Empty(e) => {
                    self.count_element()?;
                    return Ok(Some(self.elem(&e, true)));
                }
                Event::End(_) => {
                    self.leave();
                    return Ok(None);
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// Skips the content of `el` up to and including its end tag.
    fn skip(&mut self, el: &Elem) -> Result<()> {
        if el.empty {
            return Ok(());
        }
        let mut nested = 0usize;
        loop {
            match self.read()? {
                Event::Start(_) => {
                    self.enter()?;
                    nested += 1;
                }
                Event::Empty(_) => self.count_element()?,
                Event::End(_) => {
                    self.leave();
                    if nested == 0 {
                        return Ok(());
                    }
                    nested -= 1;
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// The text content of `el` (entities resolved, CDATA included, nested
    /// elements ignored), consuming its end tag: borrowed from the message
    /// when it is one piece of text the reader did not rewrite, which is the
    /// usual case.
    fn text_cow(&mut self, el: &Elem) -> Result<Cow<'i, str>> {
        let mut out = Cow::Borrowed("");
        if el.empty {
            return Ok(out);
        }
        let mut nested = 0usize;
        loop {
            match self.read()? {
                Event::Text(t) if nested == 0 => push_text(&mut out, t.xml10_content()),
                Event::CData(t) if nested == 0 => push_text(&mut out, t.xml10_content()),
                Event::GeneralRef(r) if nested == 0 => push_reference(out.to_mut(), &r),
                Event::Start(_) => {
                    self.enter()?;
                    nested += 1;
                }
                Event::Empty(_) => self.count_element()?,
                Event::End(_) => {
                    self.leave();
                    if nested == 0 {
                        return Ok(out);
                    }
                    nested -= 1;
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// [`text_cow`](Self::text_cow) without surrounding whitespace.
    fn text_trimmed_cow(&mut self, el: &Elem) -> Result<Cow<'i, str>> {
        Ok(match self.text_cow(el)? {
            Cow::Borrowed(t) => Cow::Borrowed(t.trim()),
            Cow::Owned(t) => {
                let trimmed = t.trim();
                Cow::Owned(if trimmed.len() == t.len() {
                    t
                } else {
                    trimmed.to_owned()
                })
            }
        })
    }

    fn text(&mut self, el: &Elem) -> Result<String> {
        self.text_cow(el).map(Cow::into_owned)
    }

    fn text_trimmed(&mut self, el: &Elem) -> Result<String> {
        self.text_trimmed_cow(el).map(Cow::into_owned)
    }

    fn u32(&mut self, el: &Elem) -> Result<u32> {
        let text = self.text_trimmed_cow(el)?;
        let t: &str = &text;
        if t.is_empty() {
            return Ok(0);
        }
        t.strip_prefix('+')
            .unwrap_or(t)
            .parse::<u32>()
            .map_err(|_| invalid(el, t, "unsigned integer"))
    }

    fn i32(&mut self, el: &Elem) -> Result<i32> {
        let text = self.text_trimmed_cow(el)?;
        let t: &str = &text;
        if t.is_empty() {
            return Ok(0);
        }
        t.strip_prefix('+')
            .unwrap_or(t)
            .parse::<i32>()
            .map_err(|_| invalid(el, t, "integer"))
    }

    fn bool(&mut self, el: &Elem) -> Result<bool> {
        let text = self.text_trimmed_cow(el)?;
        let t: &str = &text;
        if t.is_empty() || t == "0" || t.eq_ignore_ascii_case("false") {
            Ok(false)
        } else if t == "1" || t.eq_ignore_ascii_case("true") {
            Ok(true)
        } else {
            Err(invalid(el, t, "boolean"))
        }
    }

    /// A dateTime, verbatim apart from surrounding whitespace;
    /// [`UNKNOWN_TIME`] when empty.
    fn datetime(&mut self, el: &Elem) -> Result<String> {
        let text = self.text_trimmed(el)?;
        Ok(if text.is_empty() {
            UNKNOWN_TIME.to_owned()
        } else {
            text
        })
    }

    /// Reads every child of an array element with `item`.
    fn array<T>(
        &mut self,
        el: &Elem,
        mut item: impl FnMut(&mut Self, &Elem) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while let Some(child) = self.next_child(el)? {
            out.push(item(self, &child)?);
        }
        Ok(out)
    }

    fn string_array(&mut self, el: &Elem) -> Result<Vec<String>> {
        self.array(el, |c, item| c.text_trimmed(item))
    }
}

fn invalid(el: &Elem, value: &str, expected: &'static str) -> DecodeError {
    DecodeError::InvalidValue {
        element: el.local.to_string(),
        value: truncate(value),
        expected,
    }
}

// ---------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------

struct RawEnvelope<B> {
    ns: CwmpNs,
    header: Header,
    body: B,
}

fn is_envelope_part(el: &Elem, name: &str) -> bool {
    el.local == name && matches!(el.ns, ElemNs::SoapEnv | ElemNs::None)
}

fn parse_header(c: &mut Cursor<'_>, el: &Elem) -> Result<Header> {
    let mut header = Header::default();
    while let Some(child) = c.next_child(el)? {
        match child.name() {
            "ID" => header.id = Some(c.text(&child)?),
            "HoldRequests" => header.hold_requests = c.bool(&child).ok(),
            "SessionTimeout" => header.session_timeout = c.u32(&child).ok(),
            "SupportedCWMPVersions" => {
                header.supported_cwmp_versions = Some(c.text_trimmed(&child)?);
            }
            "UseCWMPVersion" => header.use_cwmp_version = Some(c.text_trimmed(&child)?),
            "NoMoreRequests" => header.no_more_requests = c.bool(&child).ok(),
            _ => c.skip(&child)?,
        }
    }
    Ok(header)
}

/// Parses an envelope, handing the first Body child to `body`. `Ok(None)`
/// for an empty message.
fn parse_envelope<B>(
    xml: &str,
    fast_lists: bool,
    mut body: impl FnMut(&mut Cursor<'_>, &Elem) -> Result<B>,
) -> Result<Option<RawEnvelope<B>>> {
    let xml = xml.strip_prefix('\u{FEFF}').unwrap_or(xml);
    if xml.trim().is_empty() {
        return Ok(None);
    }
    let mut c = Cursor::new(xml);
    c.fast_lists = fast_lists;
    let mut declared_cwmp_uri: Option<String> = None;
    let root = loop {
        match c.read()? {
            Event::Start(e) => {
                c.enter()?;
                declared_cwmp_uri = declared_cwmp_namespace(&e);
                break c.elem(&e, false);
            }
            Event::Empty(e) => {
                c.count_element()?;
                break c.elem(&e, true);
            }
            Event::Eof => return Ok(None),
            Event::Text(t) if t.trim().is_empty() => {}
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                return Err(DecodeError::Malformed {
                    position: c.reader.buffer_position(),
                    message: "text before the root element".to_owned(),
                });
            }
            _ => {}
        }
    };
    if root.local != "Envelope" || root.ns != ElemNs::SoapEnv {
        return Err(DecodeError::NotSoapEnvelope(root.local.into_owned()));
    }

    let mut header = Header::default();
    let mut found_body = false;
    let mut parsed: Option<(B, Option<String>)> = None;
    while let Some(child) = c.next_child(&root)? {
        if is_envelope_part(&child, "Header") {
            header = parse_header(&mut c, &child)?;
        } else if is_envelope_part(&child, "Body") && !found_body {
            found_body = true;
            while let Some(rpc) = c.next_child(&child)? {
                if parsed.is_none() {
                    let rpc_uri = match &rpc.ns {
                        ElemNs::Cwmp(uri) => Some(uri.clone()),
                        _ => None,
                    };
                    parsed = Some((body(&mut c, &rpc)?, rpc_uri));
                } else {
                    c.skip(&rpc)?;
                }
            }
        } else {
            c.skip(&child)?;
        }
    }
    if !found_body {
        return Err(DecodeError::MissingBody);
    }
    let Some((body, rpc_uri)) = parsed else {
        return Ok(None);
    };
    let uri = rpc_uri
        .or_else(|| c.first_cwmp_uri.take())
        .or(declared_cwmp_uri)
        .ok_or(DecodeError::MissingCwmpNamespace)?;
    let ns = CwmpNs::from_uri(&uri).ok_or(DecodeError::UnsupportedCwmpVersion(uri))?;
    Ok(Some(RawEnvelope { ns, header, body }))
}

/// The first `urn:dslforum-org:cwmp-*` URI declared with `xmlns:*` on `e`.
fn declared_cwmp_namespace(e: &BytesStart<'_>) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find_map(|attr| {
            attr.key.as_namespace_binding()?;
            let value = attr.value.trim();
            CwmpNs::looks_like_cwmp(value).then(|| value.to_owned())
        })
}

/// Parses what a CPE sends. `Ok(None)` means an empty POST: no bytes,
/// whitespace only, XML without a root element, or an Envelope whose Body has
/// no child.
pub fn parse_incoming(xml: &str) -> Result<Option<Envelope>> {
    parse_incoming_with(xml, true)
}

/// [`parse_incoming`] with every list read by the event reader (`lists`
/// never used): what the fast list reader must agree with, for tests and
/// differential fuzzing.
#[doc(hidden)]
pub fn parse_incoming_with_event_reader_only(xml: &str) -> Result<Option<Envelope>> {
    parse_incoming_with(xml, false)
}

fn parse_incoming_with(xml: &str, fast_lists: bool) -> Result<Option<Envelope>> {
    Ok(
        parse_envelope(xml, fast_lists, incoming_body)?.map(|raw| Envelope {
            ns: raw.ns,
            header: raw.header,
            body: raw.body,
        }),
    )
}

/// Parses what the ACS sends (the inverse of
/// [`encode`](super::encode::encode)); `Ok(None)` as for [`parse_incoming`].
pub fn parse_outgoing(xml: &str) -> Result<Option<OutgoingEnvelope>> {
    Ok(
        parse_envelope(xml, true, outgoing_body)?.map(|raw| OutgoingEnvelope {
            ns: raw.ns,
            header: raw.header,
            body: raw.body,
        }),
    )
}

fn incoming_body(c: &mut Cursor<'_>, el: &Elem) -> Result<IncomingBody> {
    if el.local == "Fault" {
        return Ok(IncomingBody::Fault(parse_fault(c, el)?));
    }
    if let Some(req) = parse_cpe_request(c, el)? {
        return Ok(IncomingBody::Request(req));
    }
    if let Some(resp) = parse_cpe_response(c, el)? {
        return Ok(IncomingBody::Response(resp));
    }
    c.skip(el)?;
    Ok(IncomingBody::UnknownMethod(el.local.to_string()))
}

fn outgoing_body(c: &mut Cursor<'_>, el: &Elem) -> Result<OutgoingBody> {
    if el.local == "Fault" {
        return Ok(OutgoingBody::Fault(parse_fault(c, el)?));
    }
    if let Some(req) = parse_acs_request(c, el)? {
        return Ok(OutgoingBody::Request(req));
    }
    if let Some(resp) = parse_acs_response(c, el)? {
        return Ok(OutgoingBody::Response(resp));
    }
    Err(DecodeError::UnknownMethod(el.local.to_string()))
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// A SOAP `Fault` (or, from sloppy stacks, a bare `cwmp:Fault` in the Body).
fn parse_fault(c: &mut Cursor<'_>, el: &Elem) -> Result<CwmpFault> {
    if el.ns != ElemNs::SoapEnv && el.ns != ElemNs::None {
        return parse_cwmp_fault(c, el);
    }
    let mut faultstring = String::new();
    let mut detail: Option<CwmpFault> = None;
    while let Some(child) = c.next_child(el)? {
        match child.name() {
            "faultstring" => faultstring = c.text(&child)?,
            "detail" => {
                while let Some(d) = c.next_child(&child)? {
                    if d.local == "Fault" && detail.is_none() {
                        detail = Some(parse_cwmp_fault(c, &d)?);
                    } else {
                        c.skip(&d)?;
                    }
                }
            }
            _ => c.skip(&child)?,
        }
    }
    Ok(detail.unwrap_or_else(|| CwmpFault::new(0, faultstring)))
}

fn parse_cwmp_fault(c: &mut Cursor<'_>, el: &Elem) -> Result<CwmpFault> {
    let mut fault = CwmpFault::new(0, "");
    while let Some(child) = c.next_child(el)? {
        match child.name() {
            "FaultCode" => fault.code = c.u32(&child)?,
            "FaultString" => fault.string = c.text(&child)?,
            "SetParameterValuesFault" => {
                let mut spv = SpvFault {
                    parameter_name: String::new(),
                    code: 0,
                    string: String::new(),
                };
                while let Some(f) = c.next_child(&child)? {
                    match f.name() {
                        "ParameterName" => spv.parameter_name = c.text_trimmed(&f)?,
                        "FaultCode" => spv.code = c.u32(&f)?,
                        "FaultString" => spv.string = c.text(&f)?,
                        _ => c.skip(&f)?,
                    }
                }
                fault.set_parameter_values_faults.push(spv);
            }
            _ => c.skip(&child)?,
        }
    }
    Ok(fault)
}

fn parse_fault_struct(c: &mut Cursor<'_>, el: &Elem) -> Result<FaultStruct> {
    let mut fault = FaultStruct::default();
    while let Some(child) = c.next_child(el)? {
        match child.name() {
            "FaultCode" => fault.fault_code = c.u32(&child)?,
            "FaultString" => fault.fault_string = c.text(&child)?,
            _ => c.skip(&child)?,
        }
    }
    Ok(fault)
}

// ---------------------------------------------------------------------------
// Shared structures
// ---------------------------------------------------------------------------

fn parse_parameter_values(c: &mut Cursor<'_>, el: &Elem) -> Result<Vec<ParameterValue>> {
    if let Some(list) = lists::values(c, el) {
        return c.skip(el).map(|()| list);
    }
    c.array(el, |c, item| {
        let mut name = String::new();
        let mut value = String::new();
        let mut xsd_type = None;
        while let Some(field) = c.next_child(item)? {
            match field.name() {
                "Name" => name = c.text_trimmed_cow(&field)?.into_owned(),
                "Value" => {
                    value = c.text_cow(&field)?.into_owned();
                    xsd_type = field.xsi_type;
                }
                _ => c.skip(&field)?,
            }
        }
        Ok(ParameterValue {
            name,
            value,
            xsd_type: xsd_type.unwrap_or(Cow::Borrowed(DEFAULT_XSD_TYPE)),
        })
    })
}

/// Reads repeated `Results` elements of DUStateChangeComplete. Each one is
/// normally a struct itself; some stacks wrap several `OpResultStruct` items
/// in one SOAP array instead, which is accepted too.
fn parse_op_results(c: &mut Cursor<'_>, el: &Elem, out: &mut Vec<AutonOpResult>) -> Result<()> {
    let mut single = AutonOpResult::default();
    let mut has_fields = false;
    while let Some(child) = c.next_child(el)? {
        if child.local == "OpResultStruct" || child.local == "AutonOpResultStruct" {
            let mut item = AutonOpResult::default();
            while let Some(field) = c.next_child(&child)? {
                op_result_field(c, &field, &mut item)?;
            }
            out.push(item);
        } else {
            has_fields = true;
            op_result_field(c, &child, &mut single)?;
        }
    }
    if has_fields || el.empty {
        out.push(single);
    }
    Ok(())
}

fn op_result_field(c: &mut Cursor<'_>, field: &Elem, r: &mut AutonOpResult) -> Result<()> {
    let res = &mut r.result;
    match field.name() {
        "UUID" => res.uuid = c.text_trimmed(field)?,
        "DeploymentUnitRef" => res.deployment_unit_ref = c.text_trimmed(field)?,
        "Version" => res.version = c.text(field)?,
        "CurrentState" => res.current_state = c.text_trimmed(field)?,
        "Resolved" => res.resolved = c.bool(field)?,
        "ExecutionUnitRefList" => res.execution_unit_ref_list = c.text_trimmed(field)?,
        "StartTime" => res.start_time = c.datetime(field)?,
        "CompleteTime" => res.complete_time = c.datetime(field)?,
        "Fault" => res.fault = parse_fault_struct(c, field)?,
        "OperationPerformed" => r.operation_performed = c.text_trimmed(field)?,
        _ => c.skip(field)?,
    }
    Ok(())
}

fn fill_unknown_times(r: &mut OpResult) {
    if r.start_time.is_empty() {
        r.start_time = UNKNOWN_TIME.to_owned();
    }
    if r.complete_time.is_empty() {
        r.complete_time = UNKNOWN_TIME.to_owned();
    }
}

// ---------------------------------------------------------------------------
// CPE -> ACS
// ---------------------------------------------------------------------------

fn parse_cpe_request(c: &mut Cursor<'_>, el: &Elem) -> Result<Option<CpeRequest>> {
    let req = match el.name() {
        "Inform" => CpeRequest::Inform(parse_inform(c, el)?),
        "TransferComplete" => {
            let mut t = TransferComplete {
                start_time: UNKNOWN_TIME.to_owned(),
                complete_time: UNKNOWN_TIME.to_owned(),
                ..TransferComplete::default()
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "CommandKey" => t.command_key = c.text(&f)?,
                    "FaultStruct" => t.fault = parse_fault_struct(c, &f)?,
                    "StartTime" => t.start_time = c.datetime(&f)?,
                    "CompleteTime" => t.complete_time = c.datetime(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            CpeRequest::TransferComplete(t)
        }
        "AutonomousTransferComplete" => {
            let mut t = AutonomousTransferComplete {
                start_time: UNKNOWN_TIME.to_owned(),
                complete_time: UNKNOWN_TIME.to_owned(),
                ..AutonomousTransferComplete::default()
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "AnnounceURL" => t.announce_url = c.text_trimmed(&f)?,
                    "TransferURL" => t.transfer_url = c.text_trimmed(&f)?,
                    "IsDownload" => t.is_download = c.bool(&f)?,
                    "FileType" => t.file_type = c.text_trimmed(&f)?,
                    "FileSize" => t.file_size = c.u32(&f)?,
                    "TargetFileName" => t.target_file_name = c.text(&f)?,
                    "FaultStruct" => t.fault = parse_fault_struct(c, &f)?,
                    "StartTime" => t.start_time = c.datetime(&f)?,
                    "CompleteTime" => t.complete_time = c.datetime(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            CpeRequest::AutonomousTransferComplete(t)
        }
        "GetRPCMethods" => {
            c.skip(el)?;
            CpeRequest::GetRpcMethods
        }
        "RequestDownload" => {
            let mut r = RequestDownload::default();
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "FileType" => r.file_type = c.text_trimmed(&f)?,
                    "FileTypeArg" => {
                        r.file_type_arg = c.array(&f, |c, item| {
                            let mut arg = ArgStruct {
                                name: String::new(),
                                value: String::new(),
                            };
                            while let Some(a) = c.next_child(item)? {
                                match a.name() {
                                    "Name" => arg.name = c.text_trimmed(&a)?,
                                    "Value" => arg.value = c.text(&a)?,
                                    _ => c.skip(&a)?,
                                }
                            }
                            Ok(arg)
                        })?;
                    }
                    _ => c.skip(&f)?,
                }
            }
            CpeRequest::RequestDownload(r)
        }
        "Kicked" => {
            let mut k = Kicked::default();
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "Command" => k.command = c.text(&f)?,
                    "Referer" => k.referer = c.text(&f)?,
                    "Arg" => k.arg = c.text(&f)?,
                    "Next" => k.next = c.text(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            CpeRequest::Kicked(k)
        }
        "DUStateChangeComplete" => {
            let mut results = Vec::new();
            let mut command_key = None;
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "Results" => parse_op_results(c, &f, &mut results)?,
                    "CommandKey" => command_key = Some(c.text(&f)?),
                    _ => c.skip(&f)?,
                }
            }
            CpeRequest::DuStateChangeComplete(DuStateChangeComplete {
                results: results
                    .into_iter()
                    .map(|mut r| {
                        fill_unknown_times(&mut r.result);
                        r.result
                    })
                    .collect(),
                command_key,
            })
        }
        "AutonomousDUStateChangeComplete" => {
            let mut results = Vec::new();
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "Results" => parse_op_results(c, &f, &mut results)?,
                    _ => c.skip(&f)?,
                }
            }
            for r in &mut results {
                fill_unknown_times(&mut r.result);
            }
            CpeRequest::AutonomousDuStateChangeComplete(AutonomousDuStateChangeComplete { results })
        }
        _ => return Ok(None),
    };
    Ok(Some(req))
}

fn parse_inform(c: &mut Cursor<'_>, el: &Elem) -> Result<Inform> {
    let mut inform = Inform {
        current_time: UNKNOWN_TIME.to_owned(),
        ..Inform::default()
    };
    let mut has_device_id = false;
    while let Some(f) = c.next_child(el)? {
        match f.name() {
            "DeviceId" => {
                has_device_id = true;
                let d = &mut inform.device_id;
                while let Some(g) = c.next_child(&f)? {
                    match g.name() {
                        "Manufacturer" => d.manufacturer = c.text_trimmed(&g)?,
                        "OUI" => d.oui = c.text_trimmed(&g)?,
                        "ProductClass" => d.product_class = c.text_trimmed(&g)?,
                        "SerialNumber" => d.serial_number = c.text_trimmed(&g)?,
                        _ => c.skip(&g)?,
                    }
                }
            }
            "Event" => {
                inform.events = c.array(&f, |c, item| {
                    let mut ev = EventStruct {
                        event_code: String::new(),
                        command_key: String::new(),
                    };
                    while let Some(g) = c.next_child(item)? {
                        match g.name() {
                            "EventCode" => ev.event_code = c.text_trimmed(&g)?,
                            "CommandKey" => ev.command_key = c.text(&g)?,
                            _ => c.skip(&g)?,
                        }
                    }
                    Ok(ev)
                })?;
            }
            "MaxEnvelopes" => inform.max_envelopes = c.u32(&f)?,
            "CurrentTime" => inform.current_time = c.datetime(&f)?,
            "RetryCount" => inform.retry_count = c.u32(&f)?,
            "ParameterList" => inform.parameter_list = parse_parameter_values(c, &f)?,
            _ => c.skip(&f)?,
        }
    }
    if !has_device_id {
        return Err(DecodeError::MissingElement {
            method: "Inform",
            element: "DeviceId",
        });
    }
    Ok(inform)
}

fn parse_transfer_response(c: &mut Cursor<'_>, el: &Elem) -> Result<(u32, String, String)> {
    let mut status = 0;
    let mut start = UNKNOWN_TIME.to_owned();
    let mut complete = UNKNOWN_TIME.to_owned();
    while let Some(f) = c.next_child(el)? {
        match f.name() {
            "Status" => status = c.u32(&f)?,
            "StartTime" => start = c.datetime(&f)?,
            "CompleteTime" => complete = c.datetime(&f)?,
            _ => c.skip(&f)?,
        }
    }
    Ok((status, start, complete))
}

/// Reads the single field `name` of a response (0 when absent).
fn parse_u32_field(c: &mut Cursor<'_>, el: &Elem, name: &str) -> Result<u32> {
    let mut value = 0;
    while let Some(f) = c.next_child(el)? {
        if f.local == name {
            value = c.u32(&f)?;
        } else {
            c.skip(&f)?;
        }
    }
    Ok(value)
}

fn parse_list_field<T>(
    c: &mut Cursor<'_>,
    el: &Elem,
    name: &str,
    mut list: impl FnMut(&mut Cursor<'_>, &Elem) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while let Some(f) = c.next_child(el)? {
        if f.local == name {
            out = list(c, &f)?;
        } else {
            c.skip(&f)?;
        }
    }
    Ok(out)
}

fn parse_cpe_response(c: &mut Cursor<'_>, el: &Elem) -> Result<Option<CpeResponse>> {
    let resp = match el.name() {
        "GetRPCMethodsResponse" => CpeResponse::GetRpcMethods {
            method_list: parse_list_field(c, el, "MethodList", |c, f| c.string_array(f))?,
        },
        "GetParameterNamesResponse" => CpeResponse::GetParameterNames {
            parameter_list: parse_list_field(c, el, "ParameterList", |c, f| {
                if let Some(list) = lists::infos(c, f) {
                    return c.skip(f).map(|()| list);
                }
                c.array(f, |c, item| {
                    let mut info = ParameterInfo {
                        name: String::new(),
                        writable: false,
                    };
                    while let Some(g) = c.next_child(item)? {
                        match g.name() {
                            "Name" => info.name = c.text_trimmed_cow(&g)?.into_owned(),
                            "Writable" => info.writable = c.bool(&g)?,
                            _ => c.skip(&g)?,
                        }
                    }
                    Ok(info)
                })
            })?,
        },
        "GetParameterValuesResponse" => CpeResponse::GetParameterValues {
            parameter_list: parse_list_field(c, el, "ParameterList", parse_parameter_values)?,
        },
        "SetParameterValuesResponse" => CpeResponse::SetParameterValues {
            status: parse_u32_field(c, el, "Status")?,
        },
        "GetParameterAttributesResponse" => CpeResponse::GetParameterAttributes {
            parameter_list: parse_list_field(c, el, "ParameterList", |c, f| {
                c.array(f, |c, item| {
                    let mut attr = ParameterAttribute {
                        name: String::new(),
                        notification: 0,
                        access_list: Vec::new(),
                    };
                    while let Some(g) = c.next_child(item)? {
                        match g.name() {
                            "Name" => attr.name = c.text_trimmed(&g)?,
                            "Notification" => attr.notification = c.u32(&g)?,
                            "AccessList" => attr.access_list = c.string_array(&g)?,
                            _ => c.skip(&g)?,
                        }
                    }
                    Ok(attr)
                })
            })?,
        },
        "AddObjectResponse" => {
            let mut instance_number = 0;
            let mut status = 0;
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "InstanceNumber" => instance_number = c.u32(&f)?,
                    "Status" => status = c.u32(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            CpeResponse::AddObject {
                instance_number,
                status,
            }
        }
        "DeleteObjectResponse" => CpeResponse::DeleteObject {
            status: parse_u32_field(c, el, "Status")?,
        },
        "DownloadResponse" => {
            let (status, start_time, complete_time) = parse_transfer_response(c, el)?;
            CpeResponse::Download {
                status,
                start_time,
                complete_time,
            }
        }
        "UploadResponse" => {
            let (status, start_time, complete_time) = parse_transfer_response(c, el)?;
            CpeResponse::Upload {
                status,
                start_time,
                complete_time,
            }
        }
        "GetQueuedTransfersResponse" => CpeResponse::GetQueuedTransfers {
            transfer_list: parse_list_field(c, el, "TransferList", |c, f| {
                c.array(f, |c, item| {
                    let mut t = QueuedTransfer {
                        command_key: String::new(),
                        state: 0,
                    };
                    while let Some(g) = c.next_child(item)? {
                        match g.name() {
                            "CommandKey" => t.command_key = c.text(&g)?,
                            "State" => t.state = c.u32(&g)?,
                            _ => c.skip(&g)?,
                        }
                    }
                    Ok(t)
                })
            })?,
        },
        "GetAllQueuedTransfersResponse" => CpeResponse::GetAllQueuedTransfers {
            transfer_list: parse_list_field(c, el, "TransferList", |c, f| {
                c.array(f, |c, item| {
                    let mut t = AllQueuedTransfer {
                        command_key: String::new(),
                        state: 0,
                        is_download: false,
                        file_type: String::new(),
                        file_size: 0,
                        target_file_name: String::new(),
                    };
                    while let Some(g) = c.next_child(item)? {
                        match g.name() {
                            "CommandKey" => t.command_key = c.text(&g)?,
                            "State" => t.state = c.u32(&g)?,
                            "IsDownload" => t.is_download = c.bool(&g)?,
                            "FileType" => t.file_type = c.text_trimmed(&g)?,
                            "FileSize" => t.file_size = c.u32(&g)?,
                            "TargetFileName" => t.target_file_name = c.text(&g)?,
                            _ => c.skip(&g)?,
                        }
                    }
                    Ok(t)
                })
            })?,
        },
        other => {
            let unit = match other {
                "SetParameterAttributesResponse" => CpeResponse::SetParameterAttributes,
                "RebootResponse" => CpeResponse::Reboot,
                "FactoryResetResponse" => CpeResponse::FactoryReset,
                "ScheduleInformResponse" => CpeResponse::ScheduleInform,
                "ScheduleDownloadResponse" => CpeResponse::ScheduleDownload,
                "CancelTransferResponse" => CpeResponse::CancelTransfer,
                "ChangeDUStateResponse" => CpeResponse::ChangeDuState,
                _ => return Ok(None),
            };
            c.skip(el)?;
            unit
        }
    };
    Ok(Some(resp))
}

// ---------------------------------------------------------------------------
// ACS -> CPE
// ---------------------------------------------------------------------------

fn parse_object_request(c: &mut Cursor<'_>, el: &Elem) -> Result<ObjectRequest> {
    let mut r = ObjectRequest {
        object_name: String::new(),
        parameter_key: String::new(),
    };
    while let Some(f) = c.next_child(el)? {
        match f.name() {
            "ObjectName" => r.object_name = c.text_trimmed(&f)?,
            "ParameterKey" => r.parameter_key = c.text(&f)?,
            _ => c.skip(&f)?,
        }
    }
    Ok(r)
}

fn parse_command_key(c: &mut Cursor<'_>, el: &Elem) -> Result<String> {
    let mut key = String::new();
    while let Some(f) = c.next_child(el)? {
        if f.local == "CommandKey" {
            key = c.text(&f)?;
        } else {
            c.skip(&f)?;
        }
    }
    Ok(key)
}

fn parse_du_operation(c: &mut Cursor<'_>, el: &Elem) -> Result<DuOperation> {
    let type_name = el
        .xsi_type
        .as_deref()
        .map(|t| t.rsplit(':').next().unwrap_or(t))
        .unwrap_or("");
    let mut fields: Vec<(String, String)> = Vec::new();
    while let Some(f) = c.next_child(el)? {
        let value = c.text(&f)?;
        fields.push((f.local.into_owned(), value));
    }
    let mut take = |name: &str| {
        fields
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| fields.swap_remove(i).1)
    };
    Ok(match type_name {
        "InstallOpStruct" => DuOperation::Install(InstallOp {
            url: take("URL").unwrap_or_default(),
            uuid: take("UUID"),
            username: take("Username"),
            password: take("Password"),
            execution_env_ref: take("ExecutionEnvRef"),
        }),
        "UpdateOpStruct" => DuOperation::Update(UpdateOp {
            uuid: take("UUID"),
            version: take("Version"),
            url: take("URL"),
            username: take("Username"),
            password: take("Password"),
        }),
        "UninstallOpStruct" => DuOperation::Uninstall(UninstallOp {
            uuid: take("UUID").unwrap_or_default(),
            version: take("Version"),
            execution_env_ref: take("ExecutionEnvRef"),
        }),
        other => {
            return Err(DecodeError::InvalidValue {
                element: "Operations".to_owned(),
                value: truncate(other),
                expected: "xsi:type InstallOpStruct, UpdateOpStruct or UninstallOpStruct",
            })
        }
    })
}

fn parse_acs_request(c: &mut Cursor<'_>, el: &Elem) -> Result<Option<AcsRequest>> {
    let req = match el.name() {
        "GetParameterNames" => {
            let mut r = GetParameterNames {
                parameter_path: String::new(),
                next_level: false,
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "ParameterPath" => r.parameter_path = c.text_trimmed(&f)?,
                    "NextLevel" => r.next_level = c.bool(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            AcsRequest::GetParameterNames(r)
        }
        "GetParameterValues" => AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: parse_list_field(c, el, "ParameterNames", |c, f| c.string_array(f))?,
        }),
        "SetParameterValues" => {
            let mut r = SetParameterValues {
                parameter_list: Vec::new(),
                parameter_key: String::new(),
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "ParameterList" => r.parameter_list = parse_parameter_values(c, &f)?,
                    "ParameterKey" => r.parameter_key = c.text(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            AcsRequest::SetParameterValues(r)
        }
        "GetParameterAttributes" => AcsRequest::GetParameterAttributes(GetParameterAttributes {
            parameter_names: parse_list_field(c, el, "ParameterNames", |c, f| c.string_array(f))?,
        }),
        "SetParameterAttributes" => AcsRequest::SetParameterAttributes(SetParameterAttributes {
            parameter_list: parse_list_field(c, el, "ParameterList", |c, f| {
                c.array(f, |c, item| {
                    let mut a = SetParameterAttribute {
                        name: String::new(),
                        notification_change: false,
                        notification: 0,
                        access_list_change: false,
                        access_list: Vec::new(),
                    };
                    while let Some(g) = c.next_child(item)? {
                        match g.name() {
                            "Name" => a.name = c.text_trimmed(&g)?,
                            "NotificationChange" => a.notification_change = c.bool(&g)?,
                            "Notification" => a.notification = c.u32(&g)?,
                            "AccessListChange" => a.access_list_change = c.bool(&g)?,
                            "AccessList" => a.access_list = c.string_array(&g)?,
                            _ => c.skip(&g)?,
                        }
                    }
                    Ok(a)
                })
            })?,
        }),
        "AddObject" => AcsRequest::AddObject(parse_object_request(c, el)?),
        "DeleteObject" => AcsRequest::DeleteObject(parse_object_request(c, el)?),
        "Reboot" => AcsRequest::Reboot(Reboot {
            command_key: parse_command_key(c, el)?,
        }),
        "CancelTransfer" => AcsRequest::CancelTransfer(CancelTransfer {
            command_key: parse_command_key(c, el)?,
        }),
        "Download" => {
            let mut d = Download {
                command_key: String::new(),
                file_type: String::new(),
                url: String::new(),
                username: String::new(),
                password: String::new(),
                file_size: 0,
                target_file_name: String::new(),
                delay_seconds: 0,
                success_url: String::new(),
                failure_url: String::new(),
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "CommandKey" => d.command_key = c.text(&f)?,
                    "FileType" => d.file_type = c.text_trimmed(&f)?,
                    "URL" => d.url = c.text_trimmed(&f)?,
                    "Username" => d.username = c.text(&f)?,
                    "Password" => d.password = c.text(&f)?,
                    "FileSize" => d.file_size = c.u32(&f)?,
                    "TargetFileName" => d.target_file_name = c.text(&f)?,
                    "DelaySeconds" => d.delay_seconds = c.u32(&f)?,
                    "SuccessURL" => d.success_url = c.text_trimmed(&f)?,
                    "FailureURL" => d.failure_url = c.text_trimmed(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            AcsRequest::Download(d)
        }
        "Upload" => {
            let mut u = Upload {
                command_key: String::new(),
                file_type: String::new(),
                url: String::new(),
                username: String::new(),
                password: String::new(),
                delay_seconds: 0,
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "CommandKey" => u.command_key = c.text(&f)?,
                    "FileType" => u.file_type = c.text_trimmed(&f)?,
                    "URL" => u.url = c.text_trimmed(&f)?,
                    "Username" => u.username = c.text(&f)?,
                    "Password" => u.password = c.text(&f)?,
                    "DelaySeconds" => u.delay_seconds = c.u32(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            AcsRequest::Upload(u)
        }
        "ScheduleInform" => {
            let mut s = ScheduleInform {
                delay_seconds: 0,
                command_key: String::new(),
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "DelaySeconds" => s.delay_seconds = c.u32(&f)?,
                    "CommandKey" => s.command_key = c.text(&f)?,
                    _ => c.skip(&f)?,
                }
            }
            AcsRequest::ScheduleInform(s)
        }
        "ScheduleDownload" => {
            let mut d = ScheduleDownload {
                command_key: String::new(),
                file_type: String::new(),
                url: String::new(),
                username: String::new(),
                password: String::new(),
                file_size: 0,
                target_file_name: String::new(),
                time_window_list: Vec::new(),
            };
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "CommandKey" => d.command_key = c.text(&f)?,
                    "FileType" => d.file_type = c.text_trimmed(&f)?,
                    "URL" => d.url = c.text_trimmed(&f)?,
                    "Username" => d.username = c.text(&f)?,
                    "Password" => d.password = c.text(&f)?,
                    "FileSize" => d.file_size = c.u32(&f)?,
                    "TargetFileName" => d.target_file_name = c.text(&f)?,
                    "TimeWindowList" => {
                        d.time_window_list = c.array(&f, |c, item| {
                            let mut tw = TimeWindow {
                                window_start: 0,
                                window_end: 0,
                                window_mode: String::new(),
                                user_message: String::new(),
                                max_retries: 0,
                            };
                            while let Some(g) = c.next_child(item)? {
                                match g.name() {
                                    "WindowStart" => tw.window_start = c.u32(&g)?,
                                    "WindowEnd" => tw.window_end = c.u32(&g)?,
                                    "WindowMode" => tw.window_mode = c.text_trimmed(&g)?,
                                    "UserMessage" => tw.user_message = c.text(&g)?,
                                    "MaxRetries" => tw.max_retries = c.i32(&g)?,
                                    _ => c.skip(&g)?,
                                }
                            }
                            Ok(tw)
                        })?;
                    }
                    _ => c.skip(&f)?,
                }
            }
            AcsRequest::ScheduleDownload(d)
        }
        "ChangeDUState" => {
            let mut operations = Vec::new();
            let mut command_key = None;
            while let Some(f) = c.next_child(el)? {
                match f.name() {
                    "Operations" => operations.push(parse_du_operation(c, &f)?),
                    "CommandKey" => command_key = Some(c.text(&f)?),
                    _ => c.skip(&f)?,
                }
            }
            AcsRequest::ChangeDuState(ChangeDuState {
                operations,
                command_key,
            })
        }
        other => {
            let unit = match other {
                "GetRPCMethods" => AcsRequest::GetRpcMethods,
                "FactoryReset" => AcsRequest::FactoryReset,
                "GetQueuedTransfers" => AcsRequest::GetQueuedTransfers,
                "GetAllQueuedTransfers" => AcsRequest::GetAllQueuedTransfers,
                _ => return Ok(None),
            };
            c.skip(el)?;
            unit
        }
    };
    Ok(Some(req))
}

fn parse_acs_response(c: &mut Cursor<'_>, el: &Elem) -> Result<Option<AcsResponse>> {
    let resp = match el.name() {
        "InformResponse" => AcsResponse::Inform {
            max_envelopes: parse_u32_field(c, el, "MaxEnvelopes")?,
        },
        "GetRPCMethodsResponse" => AcsResponse::GetRpcMethods {
            method_list: parse_list_field(c, el, "MethodList", |c, f| c.string_array(f))?,
        },
        "KickedResponse" => {
            let mut next_url = String::new();
            while let Some(f) = c.next_child(el)? {
                if f.local == "NextURL" {
                    next_url = c.text_trimmed(&f)?;
                } else {
                    c.skip(&f)?;
                }
            }
            AcsResponse::Kicked { next_url }
        }
        other => {
            let unit = match other {
                "TransferCompleteResponse" => AcsResponse::TransferComplete,
                "AutonomousTransferCompleteResponse" => AcsResponse::AutonomousTransferComplete,
                "RequestDownloadResponse" => AcsResponse::RequestDownload,
                "DUStateChangeCompleteResponse" => AcsResponse::DuStateChangeComplete,
                "AutonomousDUStateChangeCompleteResponse" => {
                    AcsResponse::AutonomousDuStateChangeComplete
                }
                _ => return Ok(None),
            };
            c.skip(el)?;
            unit
        }
    };
    Ok(Some(resp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::encode::encode_incoming;
    use crate::ids::device_id;
    use std::path::{Path, PathBuf};

    const ENV_OPEN: &str = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-0">"#;

    /// An envelope in the cwmp-1-0 namespace with `body` inside Body.
    fn envelope(header: &str, body: &str) -> String {
        format!(
            "{ENV_OPEN}<soap-env:Header>{header}</soap-env:Header><soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"
        )
    }

    fn parse(xml: &str) -> Envelope {
        parse_incoming(xml)
            .unwrap_or_else(|e| panic!("{e}\n{xml}"))
            .unwrap_or_else(|| panic!("parsed as empty: {xml}"))
    }

    fn gpv_values(xml: &str) -> Vec<ParameterValue> {
        match parse(xml).body {
            IncomingBody::Response(CpeResponse::GetParameterValues { parameter_list }) => {
                parameter_list
            }
            other => panic!("not a GPV response: {other:?}"),
        }
    }

    fn inform(env: &Envelope) -> &Inform {
        match &env.body {
            IncomingBody::Request(CpeRequest::Inform(i)) => i,
            other => panic!("not an Inform: {other:?}"),
        }
    }

    #[test]
    fn text_in_one_piece_or_several_reads_the_same() {
        // One piece of clean text is borrowed from the message; anything else (references,
        // CDATA after text, characters XML forbids, CRLF) is assembled: same results.
        let cases = [
            ("plain value", "plain value"),
            ("", ""),
            ("  spaced  ", "  spaced  "),
            ("<![CDATA[only cdata]]>", "only cdata"),
            ("<![CDATA[a]]>b", "ab"),
            ("a<![CDATA[b]]>", "ab"),
            ("&amp;", "&"),
            ("x&amp;", "x&"),
            ("&#2;x", "x"),
            ("\u{1}x", "x"),
            ("x\u{1}", "x"),
            ("l1\r\nl2", "l1\nl2"),
            ("é ü \u{FFFD}", "é ü \u{FFFD}"),
            ("\u{FFFE}x\u{FFFF}", "x"),
        ];
        for (raw, want) in cases {
            let xml = envelope(
                "",
                &format!("<cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct><Name> N </Name><Value xsi:type=\"xsd:unsignedInt\">{raw}</Value></ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse>"),
            );
            let v = &gpv_values(&xml)[0];
            assert_eq!(v.value, want, "{raw:?}");
            assert_eq!(v.name, "N");
            assert_eq!(v.xsd_type, "xsd:unsignedInt");
        }
    }

    #[test]
    fn fuzz_seeds_decode_without_panicking() {
        // The corpus the cwmp_decode fuzz target starts from, through the same calls.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/cwmp_decode");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            for ct in [
                Some("text/xml; charset=utf-8"),
                Some("text/xml; charset=iso-8859-1"),
                None,
            ] {
                if let Ok(text) = decode_body(&data, ct) {
                    let _ = parse_incoming(&text);
                    let _ = parse_outgoing(&text);
                }
            }
            n += 1;
        }
        assert!(n >= 9, "{n} seeds");
    }

    fn samples_dir() -> PathBuf {
        // The vendored copies in the repository, never a folder outside it.
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/samples")
    }

    fn sample(name: &str) -> Envelope {
        let path = samples_dir().join(name);
        let raw = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (tests/fixtures/samples)", path.display()));
        let text = decode_body(&raw, Some("text/xml")).unwrap();
        let env = parse(&text);
        // What we read must survive our own writer and reader unchanged.
        let again = encode_incoming(env.ns, &env.header, &env.body);
        assert_eq!(parse(&again), env, "{name} does not round-trip");
        env
    }

    #[test]
    fn every_sample_file_parses() {
        let mut count = 0;
        for entry in std::fs::read_dir(samples_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "xml") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let env = sample(&name);
                let i = inform(&env);
                assert!(!i.device_id.serial_number.is_empty(), "{name}");
                assert!(!i.parameter_list.is_empty(), "{name}");
                count += 1;
            }
        }
        assert!(count >= 4, "only {count} sample Informs found");
    }

    #[test]
    fn sample_cytco_with_malformed_current_time() {
        let env = sample("inform-cytco-bad-currenttime.xml");
        assert_eq!(env.ns, CwmpNs::V1_0);
        assert_eq!(env.header.id.as_deref(), Some("31645"));
        let i = inform(&env);
        assert_eq!(i.device_id.manufacturer, "Cytco");
        assert_eq!(i.device_id.oui, "00a859");
        assert_eq!(i.device_id.product_class, "BCM Serials");
        assert_eq!(
            i.device_id.serial_number,
            "00100400FV020010000000a859f6a238"
        );
        assert_eq!(i.current_time, "2019-03-05T11:54::14");
        assert_eq!(i.retry_count, 942);
        assert_eq!(i.max_envelopes, 1);
        assert_eq!(i.events.len(), 1);
        assert_eq!(i.events[0].event_code, "2 PERIODIC");
        assert_eq!(i.events[0].command_key, "");
        assert_eq!(i.parameter_list.len(), 8);
        assert_eq!(
            i.parameter("InternetGatewayDevice.DeviceInfo.SoftwareVersion"),
            Some("2.3.1-65-g79fe05b build 4388")
        );
        assert_eq!(
            i.parameter("InternetGatewayDevice.ManagementServer.ConnectionRequestURL"),
            Some("http://192.168.40.144:8088/")
        );
        assert_eq!(
            device_id(
                &i.device_id.oui,
                &i.device_id.product_class,
                &i.device_id.serial_number
            ),
            "00a859-BCM%20Serials-00100400FV020010000000a859f6a238"
        );
    }

    #[test]
    fn sample_genieacs_sim_with_wrong_array_count() {
        let env = sample("inform-genieacs-sim-huawei-bm632w.xml");
        assert_eq!(env.header.id.as_deref(), Some("19oh449m"));
        let i = inform(&env);
        assert_eq!(i.device_id.manufacturer, "Huawei Technologies Co., Ltd.");
        assert_eq!(i.device_id.oui, "202BC1");
        assert_eq!(i.device_id.product_class, "BM632w");
        assert_eq!(i.device_id.serial_number, "000000");
        assert_eq!(i.current_time, "2026-11-21T04:22:15.664Z");
        assert_eq!(i.retry_count, 0);
        // arrayType says 16, the list has 7 entries.
        assert_eq!(i.parameter_list.len(), 7);
        assert_eq!(i.events[0].event_code, "2 PERIODIC");
        assert_eq!(i.events[0].command_key, "");
        let pc = &i.parameter_list[3];
        assert_eq!(pc.name, "InternetGatewayDevice.DeviceInfo.ProvisioningCode");
        assert_eq!(pc.value, "");
        assert_eq!(pc.xsd_type, "xsd:string");
        assert_eq!(
            i.parameter("InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress"),
            Some("172.3.89.139")
        );
        assert_eq!(
            i.parameter("InternetGatewayDevice.DeviceInfo.SoftwareVersion"),
            Some("V100R001IRQC56B017")
        );
    }

    #[test]
    fn sample_zyxel_p2601_with_encoding_style() {
        let env = sample("inform-zyxel-p2601hn-f1.xml");
        assert_eq!(env.header.id.as_deref(), Some("100"));
        let i = inform(&env);
        assert_eq!(i.device_id.manufacturer, "ZyXEL");
        assert_eq!(i.device_id.oui, "EC43F6");
        assert_eq!(i.device_id.product_class, "P-2601HN-F1");
        assert_eq!(i.device_id.serial_number, "EC43F69AF408");
        assert_eq!(i.current_time, "2015-01-19T23:08:24");
        assert!(i.has_event("2 PERIODIC"));
        assert_eq!(i.parameter_list.len(), 8);
        assert!(i
            .parameter("InternetGatewayDevice.DeviceSummary")
            .unwrap()
            .ends_with("VoiceService:1.0[1](Endpoint:1, SIPEndpoint:1)"));
        assert_eq!(
            i.parameter("InternetGatewayDevice.DeviceInfo.SoftwareVersion"),
            Some("V1.00(AACB.3)")
        );
        assert_eq!(
            device_id(
                &i.device_id.oui,
                &i.device_id.product_class,
                &i.device_id.serial_number
            ),
            "EC43F6-P%2D2601HN%2DF1-EC43F69AF408"
        );
    }

    #[test]
    fn sample_zyxel_vmg8924_with_offset_time() {
        let env = sample("inform-zyxel-vmg8924-b10a.xml");
        assert_eq!(env.header.id.as_deref(), Some("844317904"));
        let i = inform(&env);
        assert_eq!(i.device_id.oui, "4C9EFF");
        assert_eq!(i.device_id.product_class, "VMG8924-B10A");
        assert_eq!(i.device_id.serial_number, "S140Y24025829");
        assert_eq!(i.current_time, "2016-01-30T13:20:27+01:00");
        assert_eq!(i.events[0].event_code, "6 CONNECTION REQUEST");
        assert_eq!(i.parameter_list.len(), 8);
        assert_eq!(
            i.parameter("InternetGatewayDevice.DeviceInfo.ProvisioningCode"),
            Some("31755,n")
        );
        assert_eq!(
            i.parameter("InternetGatewayDevice.ManagementServer.ConnectionRequestURL"),
            Some("http://[2a02:980:1400::1ff]:30005/78DF621FFD24F339452C341BEFE0E8A8")
        );
        assert_eq!(
            i.parameter("InternetGatewayDevice.WANDevice.2.WANConnectionDevice.1.WANIPConnection.2.X_5067F0_ExternalIPv6Address"),
            Some("2a02:980:1400::1ff/64")
        );
    }

    #[test]
    fn empty_posts() {
        for xml in [
            "",
            " \r\n\t ",
            "\u{FEFF}",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<?xml version=\"1.0\"?>\n<!-- nothing -->\n",
            &envelope("<cwmp:ID soap-env:mustUnderstand=\"1\">1</cwmp:ID>", ""),
            &envelope("", "  "),
        ] {
            assert_eq!(parse_incoming(xml), Ok(None), "{xml:?}");
        }
    }

    #[test]
    fn prefixes_are_resolved_by_namespace() {
        // `soap` bound to the *encoding* namespace (MikroTik), envelope under
        // `e`, cwmp under `ns1`, no Header at all.
        let xml = r#"<?xml version="1.0"?>
<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soap="http://schemas.xmlsoap.org/soap/encoding/" xmlns:ns1="urn:dslforum-org:cwmp-1-2">
 <e:Body>
  <ns1:GetParameterValuesResponse>
   <ParameterList soap:arrayType="ns1:ParameterValueStruct[1]">
    <ParameterValueStruct><Name>Device.A</Name><Value>v</Value></ParameterValueStruct>
   </ParameterList>
  </ns1:GetParameterValuesResponse>
 </e:Body>
</e:Envelope>"#;
        let env = parse(xml);
        assert_eq!(env.ns, CwmpNs::V1_2);
        assert_eq!(env.header, Header::default());
        assert_eq!(
            gpv_values(xml),
            vec![ParameterValue::string("Device.A", "v")]
        );
    }

    #[test]
    fn rpc_in_default_namespace_and_elements_in_any_order() {
        let xml = r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>
<TransferComplete xmlns="urn:dslforum-org:cwmp-1-1">
 <CompleteTime>2024-05-01T12:01:00Z</CompleteTime>
 <StartTime>2024-05-01T12:00:00Z</StartTime>
 <CommandKey>fw-1</CommandKey>
 <FaultStruct><FaultString>boom</FaultString><FaultCode> 9010 </FaultCode></FaultStruct>
</TransferComplete></Body><Header><ID xmlns="urn:dslforum-org:cwmp-1-1">7</ID></Header></Envelope>"#;
        let env = parse(xml);
        assert_eq!(env.ns, CwmpNs::V1_1);
        assert_eq!(env.header.id.as_deref(), Some("7"));
        assert_eq!(
            env.body,
            IncomingBody::Request(CpeRequest::TransferComplete(TransferComplete {
                command_key: "fw-1".into(),
                fault: FaultStruct {
                    fault_code: 9010,
                    fault_string: "boom".into()
                },
                start_time: "2024-05-01T12:00:00Z".into(),
                complete_time: "2024-05-01T12:01:00Z".into(),
            }))
        );
    }

    #[test]
    fn unofficial_namespaces_are_accepted_unknown_ones_refused() {
        for (uri, ns) in [
            ("urn:dslforum-org:cwmp-1-3", CwmpNs::V1_3),
            ("urn:dslforum-org:cwmp-1-4", CwmpNs::V1_4),
        ] {
            let xml =
                envelope("", "<cwmp:GetRPCMethods/>").replace("urn:dslforum-org:cwmp-1-0", uri);
            assert_eq!(parse(&xml).ns, ns);
        }
        let xml = envelope("", "<cwmp:GetRPCMethods/>")
            .replace("urn:dslforum-org:cwmp-1-0", "urn:dslforum-org:cwmp-2-0");
        let err = parse_incoming(&xml).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnsupportedCwmpVersion("urn:dslforum-org:cwmp-2-0".into())
        );
        assert!(err.to_string().starts_with("Unrecognized CWMP version"));
        let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetRPCMethods/></s:Body></s:Envelope>"#;
        assert_eq!(parse_incoming(xml), Err(DecodeError::MissingCwmpNamespace));
    }

    #[test]
    fn namespace_falls_back_to_header_and_envelope_declarations() {
        // RPC element unqualified: the namespace comes from cwmp:ID.
        let xml = envelope(
            "<cwmp:ID soap-env:mustUnderstand=\"1\">1</cwmp:ID>",
            "<GetRPCMethods/>",
        )
        .replace("urn:dslforum-org:cwmp-1-0", "urn:dslforum-org:cwmp-1-1");
        assert_eq!(parse(&xml).ns, CwmpNs::V1_1);
        // Nothing qualified at all: the declaration on the Envelope decides.
        let xml = envelope("", "<GetRPCMethods/>");
        assert_eq!(parse(&xml).ns, CwmpNs::V1_0);
        assert_eq!(
            parse(&xml).body,
            IncomingBody::Request(CpeRequest::GetRpcMethods)
        );
    }

    #[test]
    fn value_types_are_normalised() {
        let xml = format!(
            "{}<soap-env:Body><cwmp:GetParameterValuesResponse><ParameterList>{}</ParameterList></cwmp:GetParameterValuesResponse></soap-env:Body></soap-env:Envelope>",
            ENV_OPEN.replace('>', r#" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:enc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#),
            [
                r#"<ParameterValueStruct><Name>A</Name><Value xsi:type="xs:int">-5</Value></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>B</Name><Value i:type="xsd:boolean">1</Value></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>C</Name><Value>plain</Value></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>D</Name><Value xsi:type="unsignedInt">7</Value></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>E</Name><Value xsi:type="enc:base64">QQ==</Value></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>F</Name><Value xsi:type="undeclared:thing">x</Value></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>G</Name></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Value xsi:type="xsd:dateTime">0001-01-01T00:03:00Z</Value><Name> H </Name></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>I</Name><Value xsi:type="xsd:string" xsi:nil="true"/></ParameterValueStruct>"#,
                r#"<ParameterValueStruct><Name>J</Name><Value type="xsd:int">9</Value></ParameterValueStruct>"#,
            ]
            .concat()
        );
        let types: Vec<(String, String, String)> = gpv_values(&xml)
            .into_iter()
            .map(|p| (p.name, p.value, p.xsd_type.into_owned()))
            .collect();
        let expected = [
            ("A", "-5", "xsd:int"),
            ("B", "1", "xsd:boolean"),
            ("C", "plain", "xsd:string"),
            ("D", "7", "xsd:unsignedInt"),
            ("E", "QQ==", "soap-enc:base64"),
            ("F", "x", "undeclared:thing"),
            ("G", "", "xsd:string"),
            ("H", "0001-01-01T00:03:00Z", "xsd:dateTime"),
            ("I", "", "xsd:string"),
            ("J", "9", "xsd:string"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(types, expected);
    }

    #[test]
    fn undeclared_xsd_and_xsi_prefixes_are_tolerated() {
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soap:Body><cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct><Name>A</Name><Value xsi:type="xsd:boolean">true</Value></ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse></soap:Body></soap:Envelope>"#;
        assert_eq!(
            gpv_values(xml),
            vec![ParameterValue::new("A", "true", "xsd:boolean")]
        );
    }

    #[test]
    fn text_references_cdata_and_control_characters() {
        let value = "a&amp;b&lt;c&gt;&apos;&quot;&#x41;&#66;&nbsp;<![CDATA[<raw & stuff>]]> & bare&#2;\u{1}end";
        let xml = envelope(
            "",
            &format!("<cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct><Name>X</Name><Value>{value}</Value></ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse>"),
        );
        assert_eq!(
            gpv_values(&xml)[0].value,
            "a&b<c>'\"AB&nbsp;<raw & stuff> & bareend"
        );
    }

    #[test]
    fn values_are_kept_verbatim_apart_from_line_endings() {
        let xml = envelope(
            "",
            "<cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct><Name>X</Name><Value>  two\r\nlines  </Value></ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse>",
        );
        assert_eq!(gpv_values(&xml)[0].value, "  two\nlines  ");
    }

    #[test]
    fn booleans_in_every_spelling() {
        let entries: String = ["1", "0", "true", "false", "TRUE", " False ", ""]
            .iter()
            .enumerate()
            .map(|(i, w)| {
                format!("<ParameterInfoStruct><Name>P{i}</Name><Writable>{w}</Writable></ParameterInfoStruct>")
            })
            .collect();
        let xml = envelope(
            "",
            &format!("<cwmp:GetParameterNamesResponse><ParameterList soap-enc:arrayType=\"cwmp:ParameterInfoStruct[99]\">{entries}<ParameterInfoStruct><Name>P7</Name></ParameterInfoStruct></ParameterList></cwmp:GetParameterNamesResponse>"),
        );
        let IncomingBody::Response(CpeResponse::GetParameterNames { parameter_list }) =
            parse(&xml).body
        else {
            panic!("not GPN");
        };
        let writable: Vec<bool> = parameter_list.iter().map(|p| p.writable).collect();
        assert_eq!(
            writable,
            [true, false, true, false, true, false, false, false]
        );
        let bad = xml.replace("<Writable>1</Writable>", "<Writable>yes</Writable>");
        assert_eq!(
            parse_incoming(&bad),
            Err(DecodeError::InvalidValue {
                element: "Writable".into(),
                value: "yes".into(),
                expected: "boolean"
            })
        );
    }

    #[test]
    fn numbers_are_trimmed_and_garbage_is_reported() {
        let xml = envelope(
            "",
            "<cwmp:AddObjectResponse><InstanceNumber>\n 12 \n</InstanceNumber><Status/></cwmp:AddObjectResponse>",
        );
        assert_eq!(
            parse(&xml).body,
            IncomingBody::Response(CpeResponse::AddObject {
                instance_number: 12,
                status: 0
            })
        );
        let xml = envelope(
            "",
            "<cwmp:SetParameterValuesResponse><Status>-1</Status></cwmp:SetParameterValuesResponse>",
        );
        assert!(matches!(
            parse_incoming(&xml),
            Err(DecodeError::InvalidValue {
                expected: "unsigned integer",
                ..
            })
        ));
    }

    #[test]
    fn header_fields() {
        let xml = envelope(
            "<cwmp:ID soap-env:mustUnderstand=\"1\"> id 1 </cwmp:ID><cwmp:HoldRequests>true</cwmp:HoldRequests><cwmp:SessionTimeout soap-env:mustUnderstand=\"0\">30</cwmp:SessionTimeout><cwmp:SupportedCWMPVersions> 1.0,1.4 </cwmp:SupportedCWMPVersions><cwmp:UseCWMPVersion>1.4</cwmp:UseCWMPVersion><cwmp:NoMoreRequests>1</cwmp:NoMoreRequests><cwmp:X_Other>q</cwmp:X_Other>",
            "<cwmp:GetRPCMethods></cwmp:GetRPCMethods>",
        );
        let env = parse(&xml);
        assert_eq!(
            env.header,
            Header {
                id: Some(" id 1 ".into()),
                hold_requests: Some(true),
                session_timeout: Some(30),
                supported_cwmp_versions: Some("1.0,1.4".into()),
                use_cwmp_version: Some("1.4".into()),
                no_more_requests: Some(true),
            }
        );
        // Garbage in optional header fields is ignored, not fatal.
        let xml = envelope(
            "<cwmp:SessionTimeout>soon</cwmp:SessionTimeout><cwmp:HoldRequests>maybe</cwmp:HoldRequests>",
            "<cwmp:GetRPCMethods/>",
        );
        assert_eq!(parse(&xml).header, Header::default());
    }

    #[test]
    fn faults_from_the_cpe() {
        let xml = envelope(
            "<cwmp:ID soap-env:mustUnderstand=\"1\">9</cwmp:ID>",
            "<soap-env:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>9003</FaultCode><FaultString>Invalid arguments</FaultString><SetParameterValuesFault><ParameterName>A.B</ParameterName><FaultCode>9007</FaultCode><FaultString>Invalid parameter value</FaultString></SetParameterValuesFault><SetParameterValuesFault><ParameterName>A.C</ParameterName><FaultCode>9008</FaultCode></SetParameterValuesFault></cwmp:Fault></detail></soap-env:Fault>",
        );
        let IncomingBody::Fault(fault) = parse(&xml).body else {
            panic!("not a fault");
        };
        assert_eq!(fault.code, 9003);
        assert_eq!(fault.string, "Invalid arguments");
        assert_eq!(
            fault.set_parameter_values_faults,
            vec![
                SpvFault {
                    parameter_name: "A.B".into(),
                    code: 9007,
                    string: "Invalid parameter value".into()
                },
                SpvFault {
                    parameter_name: "A.C".into(),
                    code: 9008,
                    string: String::new()
                }
            ]
        );
        // A bare SOAP fault without CWMP detail.
        let xml = envelope(
            "",
            "<soap-env:Fault><faultcode>soap-env:Server</faultcode><faultstring>out of memory</faultstring></soap-env:Fault>",
        );
        assert_eq!(
            parse(&xml).body,
            IncomingBody::Fault(CwmpFault::new(0, "out of memory"))
        );
        // A cwmp:Fault put straight into the Body.
        let xml = envelope("", "<cwmp:Fault><FaultCode>9002</FaultCode></cwmp:Fault>");
        assert_eq!(
            parse(&xml).body,
            IncomingBody::Fault(CwmpFault::new(9002, ""))
        );
    }

    #[test]
    fn unknown_methods_are_reported_by_name() {
        let xml = envelope(
            "<cwmp:ID soap-env:mustUnderstand=\"1\">3</cwmp:ID>",
            "<cwmp:X_ACME_Hello><Arg>1</Arg></cwmp:X_ACME_Hello><cwmp:Extra/>",
        );
        let env = parse(&xml);
        assert_eq!(env.body, IncomingBody::UnknownMethod("X_ACME_Hello".into()));
        assert_eq!(env.header.id.as_deref(), Some("3"));
        assert_eq!(
            parse_outgoing(&xml),
            Err(DecodeError::UnknownMethod("X_ACME_Hello".into()))
        );
    }

    #[test]
    fn missing_times_become_unknown_time() {
        let xml = envelope(
            "",
            "<cwmp:DownloadResponse><Status>1</Status><StartTime></StartTime></cwmp:DownloadResponse>",
        );
        assert_eq!(
            parse(&xml).body,
            IncomingBody::Response(CpeResponse::Download {
                status: 1,
                start_time: UNKNOWN_TIME.into(),
                complete_time: UNKNOWN_TIME.into()
            })
        );
    }

    #[test]
    fn du_results_as_elements_or_as_an_array() {
        let fields = "<UUID>6ba7b810-9dad-11d1-80b4-00c04fd430c8</UUID><DeploymentUnitRef>D.1.</DeploymentUnitRef><Version>1</Version><CurrentState>Installed</CurrentState><Resolved>1</Resolved><ExecutionUnitRefList>E.1.</ExecutionUnitRefList><StartTime>2024-01-01T00:00:00Z</StartTime><Fault><FaultCode>0</FaultCode></Fault>";
        let repeated = envelope(
            "",
            &format!("<cwmp:DUStateChangeComplete><Results>{fields}</Results><Results>{fields}</Results><CommandKey>k</CommandKey></cwmp:DUStateChangeComplete>"),
        );
        let wrapped = envelope(
            "",
            &format!("<cwmp:DUStateChangeComplete><Results soap-enc:arrayType=\"cwmp:OpResultStruct[2]\"><OpResultStruct>{fields}</OpResultStruct><OpResultStruct>{fields}</OpResultStruct></Results><CommandKey>k</CommandKey></cwmp:DUStateChangeComplete>"),
        );
        let a = parse(&repeated).body;
        assert_eq!(a, parse(&wrapped).body);
        let IncomingBody::Request(CpeRequest::DuStateChangeComplete(d)) = a else {
            panic!("not DUStateChangeComplete");
        };
        assert_eq!(d.results.len(), 2);
        assert_eq!(d.command_key.as_deref(), Some("k"));
        assert_eq!(d.results[0].current_state, "Installed");
        assert!(d.results[0].resolved);
        assert_eq!(d.results[0].complete_time, UNKNOWN_TIME);
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(
            parse_incoming("<html><body>hi</body></html>"),
            Err(DecodeError::NotSoapEnvelope(name)) if name == "html"
        ));
        assert!(matches!(
            parse_incoming(r#"<Envelope xmlns="urn:other"><Body/></Envelope>"#),
            Err(DecodeError::NotSoapEnvelope(_))
        ));
        let no_body = format!("{ENV_OPEN}<soap-env:Header/></soap-env:Envelope>");
        assert_eq!(parse_incoming(&no_body), Err(DecodeError::MissingBody));
        let truncated = &envelope("", "<cwmp:GetRPCMethods/>")[..200];
        assert!(matches!(
            parse_incoming(truncated),
            Err(DecodeError::Malformed { .. })
        ));
        let mismatched = envelope("", "<cwmp:Inform><DeviceId></Device></cwmp:Inform>");
        assert!(matches!(
            parse_incoming(&mismatched),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            parse_incoming("hello"),
            Err(DecodeError::Malformed { .. })
        ));
        let no_device = envelope("", "<cwmp:Inform><RetryCount>1</RetryCount></cwmp:Inform>");
        assert_eq!(
            parse_incoming(&no_device),
            Err(DecodeError::MissingElement {
                method: "Inform",
                element: "DeviceId"
            })
        );
    }

    #[test]
    fn doctype_is_refused() {
        let bomb = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>{}",
            envelope("", "<cwmp:Kicked><Command>&lol2;</Command></cwmp:Kicked>")
        );
        let err = parse_incoming(&bomb).unwrap_err();
        assert_eq!(err, DecodeError::DoctypeForbidden);
        assert!(err.to_string().contains("DOCTYPE"));
    }

    #[test]
    fn nesting_depth_is_capped() {
        let deep = format!("{}x{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        let xml = envelope(
            "",
            &format!("<cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct><Name>X</Name><Value>{deep}</Value></ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse>"),
        );
        assert_eq!(parse_incoming(&xml), Err(DecodeError::TooDeep(MAX_DEPTH)));
        // Shallow junk inside a value is ignored rather than refused.
        let xml = xml.replace(&deep, "<b>junk</b>text");
        assert_eq!(gpv_values(&xml)[0].value, "text");
    }

    #[test]
    fn large_whole_tree_response_parses_in_one_pass() {
        const N: usize = 20_000;
        let mut body = String::with_capacity(N * 160);
        body.push_str("<cwmp:GetParameterValuesResponse><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[20000]\">");
        for i in 0..N {
            body.push_str(&format!(
                "<ParameterValueStruct><Name>InternetGatewayDevice.X.{i}.Value</Name><Value xsi:type=\"xsd:unsignedInt\">{i}</Value></ParameterValueStruct>\n"
            ));
        }
        body.push_str("</ParameterList></cwmp:GetParameterValuesResponse>");
        let xml = envelope("", &body);
        // Its speed is measured by the codec benchmarks, not here.
        let values = gpv_values(&xml);
        assert_eq!(values.len(), N);
        assert_eq!(values[12_345].name, "InternetGatewayDevice.X.12345.Value");
        assert_eq!(values[12_345].value, "12345");
        assert_eq!(values[12_345].xsd_type, "xsd:unsignedInt");
    }

    #[test]
    fn charset_from_content_type() {
        let raw = b"<a>caf\xe9</a>";
        assert_eq!(
            decode_body(raw, Some("text/xml; charset=\"ISO-8859-1\"")).unwrap(),
            "<a>caf\u{e9}</a>"
        );
        assert_eq!(
            decode_body(raw, Some("text/xml;CHARSET=latin1")).unwrap(),
            "<a>caf\u{e9}</a>"
        );
        assert_eq!(
            decode_body(raw, Some("text/xml; charset=klingon")),
            Err(DecodeError::UnknownCharset("klingon".into()))
        );
    }

    #[test]
    fn charset_from_xml_declaration() {
        let raw = b"<?xml version=\"1.0\" encoding='iso-8859-1'?><a>caf\xe9</a>";
        let text = decode_body(raw, Some("text/xml")).unwrap();
        assert!(text.ends_with("<a>caf\u{e9}</a>"));
        // Content-Type wins over the declaration.
        let utf8 = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><a>caf\u{e9}</a>";
        assert_eq!(
            decode_body(utf8.as_bytes(), Some("text/xml; charset=utf-8")).unwrap(),
            utf8
        );
        // A declared UTF-16 on an ASCII body is a lie: read UTF-8.
        let lie = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><a>\u{e9}</a>";
        assert_eq!(decode_body(lie.as_bytes(), None).unwrap(), lie);
        // The declaration does not stop the parser either.
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{}",
            envelope("", "<cwmp:GetRPCMethods/>")
        );
        assert_eq!(
            parse(&xml).body,
            IncomingBody::Request(CpeRequest::GetRpcMethods)
        );
    }

    #[test]
    fn boms_and_undeclared_bytes() {
        let with_bom = b"\xEF\xBB\xBF<a>\xC3\xA9</a>";
        assert_eq!(decode_body(with_bom, None).unwrap(), "<a>\u{e9}</a>");
        // A BOM wins over a wrong charset.
        assert_eq!(
            decode_body(with_bom, Some("text/xml; charset=iso-8859-1")).unwrap(),
            "<a>\u{e9}</a>"
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<a>\u{e9}</a>".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode_body(&utf16, None).unwrap(), "<a>\u{e9}</a>");
        // Undeclared and not UTF-8: read as windows-1252.
        assert_eq!(
            decode_body(b"<a>\xe9\x80</a>", None).unwrap(),
            "<a>\u{e9}\u{20ac}</a>"
        );
        // Declared UTF-8 with a bad byte: replacement character.
        assert_eq!(
            decode_body(b"<a>\xff</a>", Some("text/xml; charset=utf-8")).unwrap(),
            "<a>\u{fffd}</a>"
        );
    }

    #[test]
    fn inform_header_and_body_from_the_brief_example() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"
  xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns:cwmp="urn:dslforum-org:cwmp-1-2">
 <soap:Header>
  <cwmp:ID soap:mustUnderstand="1">1</cwmp:ID>
  <cwmp:SessionTimeout soap:mustUnderstand="0">30</cwmp:SessionTimeout>
  <cwmp:SupportedCWMPVersions soap:mustUnderstand="0">1.0,1.1,1.2,1.3,1.4</cwmp:SupportedCWMPVersions>
 </soap:Header>
 <soap:Body>
  <cwmp:Inform>
   <DeviceId><Manufacturer>ExampleCo</Manufacturer><OUI>00D09E</OUI>
    <ProductClass>ATA2</ProductClass><SerialNumber>S123456</SerialNumber></DeviceId>
   <Event soapenc:arrayType="cwmp:EventStruct[2]">
    <EventStruct><EventCode>1 BOOT</EventCode><CommandKey></CommandKey></EventStruct>
    <EventStruct><EventCode>M Reboot</EventCode><CommandKey>rb-42</CommandKey></EventStruct>
   </Event>
   <MaxEnvelopes>1</MaxEnvelopes>
   <CurrentTime>2024-05-01T12:00:00Z</CurrentTime>
   <RetryCount>0</RetryCount>
   <ParameterList soapenc:arrayType="cwmp:ParameterValueStruct[1]">
    <ParameterValueStruct><Name>Device.RootDataModelVersion</Name><Value xsi:type="xsd:string">2.17</Value></ParameterValueStruct>
   </ParameterList>
  </cwmp:Inform>
 </soap:Body>
</soap:Envelope>"#;
        let env = parse(xml);
        assert_eq!(env.ns, CwmpNs::V1_2);
        assert_eq!(env.header.session_timeout, Some(30));
        assert_eq!(
            env.header.supported_cwmp_versions.as_deref(),
            Some("1.0,1.1,1.2,1.3,1.4")
        );
        let i = inform(&env);
        assert_eq!(i.events[1].command_key, "rb-42");
        assert!(i.has_event("M Reboot"));
        assert_eq!(i.parameter("Device.RootDataModelVersion"), Some("2.17"));
    }
}
