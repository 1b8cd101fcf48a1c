//! XML for the simulator: escaping, SOAP envelope writing, a lenient namespace-aware reader
//! that turns an ACS message into a small element tree, and UTC time stamps.
//!
//! Output uses the conventional prefixes `soap-env`, `soap-enc`, `xsd`, `xsi` and `cwmp`.
//! Input is matched by local name (and, for the SOAP frame, by namespace URI), never by prefix.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use quick_xml::events::Event as XmlEvent;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// SOAP 1.1 envelope namespace.
pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.1 encoding namespace.
pub const SOAP_ENC: &str = "http://schemas.xmlsoap.org/soap/encoding/";
/// The "Unknown Time" dateTime value.
pub const UNKNOWN_TIME: &str = "0001-01-01T00:00:00Z";

/// Appends `s` escaped for element text or a double-quoted attribute value.
///
/// Characters that XML 1.0 cannot carry at all (C0 controls other than tab, LF and CR) are
/// replaced with U+FFFD; CR is written as `&#13;` so it survives end-of-line normalisation.
pub fn escape_into(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let rep: &str = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\r' => "&#13;",
            '\t' | '\n' => continue,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => "\u{fffd}",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + c.len_utf8();
    }
    out.push_str(&s[last..]);
}

/// Returns `s` escaped (see [`escape_into`]).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(&mut out, s);
    out
}

/// Optional SOAP header entries of an outgoing message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Header<'a> {
    /// `cwmp:ID` (omitted when `None`).
    pub id: Option<&'a str>,
    /// `cwmp:SessionTimeout` (Inform only, CWMP 1.3+).
    pub session_timeout: Option<u32>,
    /// `cwmp:SupportedCWMPVersions` (Inform only, CWMP 1.4).
    pub supported_versions: Option<&'a str>,
}

/// An envelope being written: the prologue and Header are written by [`Envelope::new`], the
/// caller appends the Body content to `buf`, and [`Envelope::finish`] closes everything.
pub struct Envelope {
    /// The document so far.
    pub buf: String,
}

impl Envelope {
    /// Starts an envelope in the `cwmp` namespace `ns` with an estimated body size.
    pub fn new(ns: &str, header: &Header<'_>, capacity: usize) -> Envelope {
        let mut buf = String::with_capacity(capacity + 600);
        buf.push_str(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap-env:Envelope \
             xmlns:soap-env=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:soap-enc=\"http://schemas.xmlsoap.org/soap/encoding/\" \
             xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:cwmp=\"",
        );
        escape_into(&mut buf, ns);
        buf.push_str("\">");
        if header.id.is_some()
            || header.session_timeout.is_some()
            || header.supported_versions.is_some()
        {
            buf.push_str("<soap-env:Header>");
            if let Some(id) = header.id {
                buf.push_str("<cwmp:ID soap-env:mustUnderstand=\"1\">");
                escape_into(&mut buf, id);
                buf.push_str("</cwmp:ID>");
            }
            if let Some(t) = header.session_timeout {
                let _ = write!(
                    buf,
                    "<cwmp:SessionTimeout soap-env:mustUnderstand=\"0\">{t}</cwmp:SessionTimeout>"
                );
            }
            if let Some(v) = header.supported_versions {
                buf.push_str("<cwmp:SupportedCWMPVersions soap-env:mustUnderstand=\"0\">");
                escape_into(&mut buf, v);
                buf.push_str("</cwmp:SupportedCWMPVersions>");
            }
            buf.push_str("</soap-env:Header>");
        }
        buf.push_str("<soap-env:Body>");
        Envelope { buf }
    }

    /// Opens `<cwmp:{name}>`.
    pub fn open(&mut self, name: &str) {
        self.buf.push_str("<cwmp:");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// Closes `</cwmp:{name}>`.
    pub fn close(&mut self, name: &str) {
        self.buf.push_str("</cwmp:");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// Writes `<tag>escaped text</tag>` (an unqualified child element).
    pub fn field(&mut self, tag: &str, text: &str) {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        escape_into(&mut self.buf, text);
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
    }

    /// Opens an array element with its `soap-enc:arrayType`.
    pub fn open_array(&mut self, tag: &str, item_type: &str, len: usize, with_type: bool) {
        self.buf.push('<');
        self.buf.push_str(tag);
        if with_type {
            let _ = write!(self.buf, " soap-enc:arrayType=\"{item_type}[{len}]\"");
        }
        self.buf.push('>');
    }

    /// Writes a `ParameterValueStruct`.
    pub fn pvs(&mut self, name: &str, value: &str, xsd_type: &str) {
        self.buf.push_str("<ParameterValueStruct><Name>");
        escape_into(&mut self.buf, name);
        self.buf.push_str("</Name><Value xsi:type=\"");
        escape_into(&mut self.buf, xsd_type);
        self.buf.push_str("\">");
        escape_into(&mut self.buf, value);
        self.buf.push_str("</Value></ParameterValueStruct>");
    }

    /// Closes Body and Envelope and returns the document.
    pub fn finish(mut self) -> String {
        self.buf.push_str("</soap-env:Body></soap-env:Envelope>");
        self.buf
    }
}

/// A CWMP fault as sent by the CPE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwmpFault {
    /// FaultCode (9000-9899).
    pub code: u32,
    /// FaultString.
    pub message: String,
    /// SetParameterValuesFault entries: (ParameterName, FaultCode, FaultString).
    pub spv: Vec<(String, u32, String)>,
}

impl CwmpFault {
    /// A fault with the standard text for `code`.
    pub fn new(code: u32) -> CwmpFault {
        CwmpFault {
            code,
            message: fault_text(code).to_string(),
            spv: Vec::new(),
        }
    }

    /// A fault with a specific FaultString.
    pub fn with_message(code: u32, message: impl Into<String>) -> CwmpFault {
        CwmpFault {
            code,
            message: message.into(),
            spv: Vec::new(),
        }
    }
}

/// The standard FaultString for a CPE fault code.
pub fn fault_text(code: u32) -> &'static str {
    match code {
        9000 => "Method not supported",
        9001 => "Request denied",
        9002 => "Internal error",
        9003 => "Invalid arguments",
        9004 => "Resources exceeded",
        9005 => "Invalid parameter name",
        9006 => "Invalid parameter type",
        9007 => "Invalid parameter value",
        9008 => "Attempt to set a non-writable parameter",
        9009 => "Notification request rejected",
        9010 => "Download failure",
        9011 => "Upload failure",
        9012 => "File transfer server authentication failure",
        9013 => "Unsupported protocol for file transfer",
        9015 => "File transfer failure: unable to contact file server",
        9016 => "File transfer failure: unable to access file",
        9017 => "File transfer failure: unable to complete download",
        9018 => "File transfer failure: file corrupted",
        9019 => "File transfer failure: file authentication failure",
        9020 => "File transfer failure: unable to complete download within specified time windows",
        9021 => "Cancelation of file transfer not permitted in current transfer state",
        _ => "Vendor defined fault",
    }
}

/// Whether a fault is the sender's (`Client`) or the receiver's (`Server`) fault.
pub fn fault_side(code: u32) -> &'static str {
    match code {
        9003 | 9005 | 9006 | 9007 | 9008 => "Client",
        _ => "Server",
    }
}

/// Builds a complete SOAP Fault envelope.
pub fn fault_envelope(ns: &str, id: Option<&str>, fault: &CwmpFault) -> String {
    let mut env = Envelope::new(
        ns,
        &Header {
            id,
            ..Header::default()
        },
        256 + fault.spv.len() * 160,
    );
    let b = &mut env.buf;
    b.push_str("<soap-env:Fault><faultcode>");
    b.push_str(fault_side(fault.code));
    b.push_str("</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault>");
    let _ = write!(b, "<FaultCode>{}</FaultCode><FaultString>", fault.code);
    escape_into(b, &fault.message);
    b.push_str("</FaultString>");
    for (name, code, msg) in &fault.spv {
        b.push_str("<SetParameterValuesFault><ParameterName>");
        escape_into(b, name);
        let _ = write!(
            b,
            "</ParameterName><FaultCode>{code}</FaultCode><FaultString>"
        );
        escape_into(b, msg);
        b.push_str("</FaultString></SetParameterValuesFault>");
    }
    b.push_str("</cwmp:Fault></detail></soap-env:Fault>");
    env.finish()
}

/// One element of a parsed message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elem {
    /// Namespace URI (empty when unqualified or unresolved).
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Attributes by local name (`type` for `xsi:type`), values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Concatenated character data directly inside this element.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Elem>,
}

impl Elem {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Elem> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child with this local name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// An attribute by local name.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == local)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a document into an element tree (the root element is returned).
///
/// Namespaces are resolved for element names; attributes are kept by local name. A UTF-8 BOM
/// and the XML declaration are skipped. Text is kept as written (entities resolved, no
/// trimming).
pub fn parse(xml: &str) -> Result<Elem, String> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<Elem> = Vec::with_capacity(8);
    loop {
        let pos = reader.buffer_position();
        let (res, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML error near byte {pos}: {e}"))?;
        let ns = match res {
            ResolveResult::Bound(n) => n.0.to_string(),
            _ => String::new(),
        };
        match ev {
            XmlEvent::Start(e) => {
                stack.push(start_elem(ns, &e)?);
            }
            XmlEvent::Empty(e) => {
                let el = start_elem(ns, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            XmlEvent::End(_) => {
                let el = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            XmlEvent::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            XmlEvent::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            XmlEvent::GeneralRef(r) => {
                let Some(top) = stack.last_mut() else {
                    continue;
                };
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                {
                    top.text.push(c);
                } else {
                    let name = r.xml10_content();
                    let rep = match name.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => return Err(format!("unknown entity &{other};")),
                    };
                    top.text.push_str(rep);
                }
            }
            XmlEvent::Eof => return Err("document ended before the root element closed".into()),
            _ => {}
        }
    }
}

fn start_elem(ns: String, e: &quick_xml::events::BytesStart<'_>) -> Result<Elem, String> {
    let mut el = Elem {
        ns,
        name: e.local_name().as_ref().to_string(),
        ..Elem::default()
    };
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let key = a.key.local_name().as_ref().to_string();
        if a.key.as_namespace_binding().is_some() {
            continue;
        }
        let v = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
        el.attrs.push((key, v.into_owned()));
    }
    Ok(el)
}

/// A parsed SOAP envelope.
#[derive(Debug, Clone, Default)]
pub struct SoapMessage {
    /// `cwmp:ID` header value.
    pub id: Option<String>,
    /// `cwmp:HoldRequests` header value.
    pub hold_requests: Option<bool>,
    /// `cwmp:UseCWMPVersion` header value.
    pub use_cwmp_version: Option<String>,
    /// The first element inside Body (the RPC, its response, or `Fault`).
    pub body: Option<Elem>,
    /// Deviations from the SOAP/CWMP framing rules worth reporting.
    pub notes: Vec<String>,
}

impl SoapMessage {
    /// Local name of the Body element (`"Fault"` for a SOAP fault).
    pub fn rpc_name(&self) -> Option<&str> {
        self.body.as_ref().map(|b| b.name.as_str())
    }

    /// For a SOAP fault: the CWMP FaultCode.
    pub fn fault_code(&self) -> Option<u32> {
        let b = self.body.as_ref()?;
        if b.name != "Fault" {
            return None;
        }
        b.child("detail")?
            .child("Fault")?
            .child_text("FaultCode")?
            .trim()
            .parse()
            .ok()
    }
}

/// Parses a SOAP envelope sent by the ACS.
pub fn parse_soap(xml: &str) -> Result<SoapMessage, String> {
    let root = parse(xml)?;
    if root.name != "Envelope" {
        return Err(format!("root element is {:?}, not Envelope", root.name));
    }
    let mut msg = SoapMessage::default();
    if root.ns != SOAP_ENV {
        msg.notes
            .push(format!("Envelope namespace is {:?}, not SOAP 1.1", root.ns));
    }
    if let Some(h) = root.child("Header") {
        for e in &h.children {
            match e.name.as_str() {
                "ID" => {
                    if e.attr("mustUnderstand").is_none() {
                        msg.notes
                            .push("cwmp:ID header without mustUnderstand".to_string());
                    }
                    msg.id = Some(e.text.clone());
                }
                "HoldRequests" => {
                    msg.hold_requests = super::model::parse_bool(&e.text).or_else(|| {
                        msg.notes
                            .push(format!("HoldRequests value {:?} is not a boolean", e.text));
                        None
                    });
                }
                "UseCWMPVersion" => msg.use_cwmp_version = Some(e.text.trim().to_string()),
                _ => {}
            }
        }
    }
    let body = root
        .child("Body")
        .ok_or_else(|| "envelope has no Body".to_string())?;
    let mut it = body.children.iter();
    msg.body = it.next().cloned();
    if it.next().is_some() {
        msg.notes
            .push("Body has more than one child element".to_string());
    }
    Ok(msg)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (with `.mmm` when `millis`).
pub fn now_utc(millis: bool) -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(
        d.as_secs(),
        if millis {
            Some(d.subsec_millis())
        } else {
            None
        },
    )
}

/// Formats seconds since the Unix epoch as an xsd:dateTime in UTC.
pub fn format_utc(secs: u64, millis: Option<u32>) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if let Some(ms) = millis {
        let _ = write!(s, ".{ms:03}");
    }
    s.push('Z');
    s
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a&b<c>\"d\""), "a&amp;b&lt;c&gt;&quot;d&quot;");
        assert_eq!(escape("x\u{2}y\rz\t"), "x\u{fffd}y&#13;z\t");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn time_format() {
        assert_eq!(format_utc(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400, Some(7)), "2000-02-29T00:00:00.007Z");
        assert_eq!(format_utc(1_714_564_800, None), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn parse_prefixes_and_entities() {
        let doc = "\u{feff}<?xml version=\"1.0\"?><S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\" \
                   xmlns:c=\"urn:dslforum-org:cwmp-1-0\"><S:Header><c:ID S:mustUnderstand=\"1\">a&amp;1</c:ID>\
                   <c:HoldRequests S:mustUnderstand=\"1\">1</c:HoldRequests></S:Header>\
                   <S:Body><c:SetParameterValues><ParameterList><ParameterValueStruct><Name>X.Y</Name>\
                   <Value xmlns:q=\"http://www.w3.org/2001/XMLSchema-instance\" q:type=\"xsd:int\">&lt;5&#65;<![CDATA[&]]></Value>\
                   </ParameterValueStruct></ParameterList><ParameterKey/></c:SetParameterValues></S:Body></S:Envelope>";
        let m = parse_soap(doc).unwrap();
        assert_eq!(m.id.as_deref(), Some("a&1"));
        assert_eq!(m.hold_requests, Some(true));
        let b = m.body.unwrap();
        assert_eq!(b.name, "SetParameterValues");
        assert_eq!(b.ns, "urn:dslforum-org:cwmp-1-0");
        let v = b
            .child("ParameterList")
            .unwrap()
            .child("ParameterValueStruct")
            .unwrap()
            .child("Value")
            .unwrap();
        assert_eq!(v.text, "<5A&");
        assert_eq!(v.attr("type"), Some("xsd:int"));
        assert!(m.notes.is_empty());
        assert!(parse("<a><b></a>").is_err());
    }

    #[test]
    fn fault_envelope_shape() {
        let mut f = CwmpFault::new(9003);
        f.spv.push(("A.B".into(), 9007, fault_text(9007).into()));
        let xml = fault_envelope("urn:dslforum-org:cwmp-1-0", Some("7"), &f);
        let m = parse_soap(&xml).unwrap();
        assert_eq!(m.fault_code(), Some(9003));
        assert_eq!(m.id.as_deref(), Some("7"));
    }
}
