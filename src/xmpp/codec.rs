//! The XMPP stream codec: bytes in, stream events out; stanzas out as bytes. No I/O.
//!
//! An XMPP stream is one XML document that never ends while the connection lives: a
//! `<stream:stream>` opening tag, then top-level elements (stanzas and negotiation
//! elements), then `</stream:stream>`. [`Decoder::feed`] takes bytes as they arrive and
//! returns each complete top-level element as an [`Element`] with resolved namespaces.
//!
//! What the decoder refuses, closing the stream (RFC 6120 §11.1 and our own bounds):
//! * a top-level element larger than the decoder's limit, whether complete or still
//!   arriving (so a peer cannot make ferroacs buffer without end);
//! * comments, processing instructions (other than the XML declaration before the stream
//!   header), DTDs, CDATA sections and entity references other than the five predefined
//!   ones and character references;
//! * elements nested deeper than [`MAX_DEPTH`], undeclared prefixes, text outside stanzas,
//!   malformed tags and invalid UTF-8.
//!
//! The writers escape every value they are given, so a username or password cannot break
//! out of its element.

use base64::Engine as _;

/// `jabber:client`, the default namespace of a client stream.
pub const NS_CLIENT: &str = "jabber:client";
/// The stream namespace (`stream:` prefix).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// STARTTLS negotiation.
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL negotiation.
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding.
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// TR-069 Annex K connection requests.
pub const NS_CONNREQ: &str = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0";

/// How deep elements may nest inside one top-level element.
pub const MAX_DEPTH: usize = 32;

/// An XML element with its namespace resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (without prefix).
    pub name: String,
    /// Namespace URI.
    pub ns: String,
    /// Attributes other than namespace declarations, values unescaped, names as written.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The element's own text, entities resolved.
    pub text: String,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child named `name` in namespace `ns`.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name && c.ns == ns)
    }

    /// True when this is `name` in `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }
}

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's `<stream:stream ...>`: its attributes (`from`, `id`, `version`, ...).
    StreamOpen(Vec<(String, String)>),
    /// One complete top-level element.
    Element(Element),
    /// `</stream:stream>`.
    StreamClose,
}

/// Why the decoder gave up; the stream must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("a stanza is larger than {0} bytes")]
    TooLarge(usize),
    #[error("XML that XMPP forbids: {0}")]
    Forbidden(&'static str),
    #[error("malformed XML: {0}")]
    Malformed(&'static str),
}

/// Turns the bytes of one XMPP stream into [`Event`]s.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    max: usize,
    opened: bool,
    closed: bool,
    /// The stream header's default namespace and `stream` prefix binding.
    default_ns: String,
    prefixes: Vec<(String, String)>,
}

impl Decoder {
    /// A decoder refusing top-level elements over `max_stanza` bytes.
    pub fn new(max_stanza: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            max: max_stanza.max(512),
            opened: false,
            closed: false,
            default_ns: NS_CLIENT.to_string(),
            prefixes: Vec::new(),
        }
    }

    /// A new stream starts on the same connection (after STARTTLS or SASL success): forget
    /// everything, expect a stream header.
    pub fn reset(&mut self) {
        *self = Decoder::new(self.max);
    }

    /// Appends `bytes` and returns the events now complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
        if self.closed {
            return Ok(Vec::new());
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            self.buf.drain(..start);
            if self.buf.is_empty() {
                break;
            }
            match self.next_event()? {
                Some((ev, used)) => {
                    self.buf.drain(..used);
                    let close = ev == Event::StreamClose;
                    out.push(ev);
                    if close {
                        self.closed = true;
                        self.buf.clear();
                        break;
                    }
                }
                None => {
                    if self.buf.len() > self.max {
                        return Err(DecodeError::TooLarge(self.max));
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The next event at the start of the buffer (no leading whitespace), with the number of
    /// bytes it used, or `None` when more bytes are needed.
    fn next_event(&mut self) -> Result<Option<(Event, usize)>, DecodeError> {
        let b = &self.buf;
        if b[0] != b'<' {
            return Err(DecodeError::Malformed("text outside a stanza"));
        }
        if !self.opened {
            if b.starts_with(b"<?") {
                // The XML declaration, only before the stream header.
                let Some(end) = find(b, b"?>") else {
                    return Ok(None);
                };
                if !b.starts_with(b"<?xml ") && !b.starts_with(b"<?xml?") {
                    return Err(DecodeError::Forbidden("processing instruction"));
                }
                self.buf.drain(..end + 2);
                let skip = self
                    .buf
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(self.buf.len());
                self.buf.drain(..skip);
                return self.header();
            }
            return self.header();
        }
        if b.len() < 2 {
            return Ok(None);
        }
        match b[1] {
            b'/' => {
                let Some(end) = tag_end(b)? else {
                    return Ok(None);
                };
                let name = std::str::from_utf8(&b[2..end])
                    .map_err(|_| DecodeError::Malformed("invalid UTF-8"))?
                    .trim();
                let (prefix, local) = split_name(name);
                if local == "stream" && self.resolve(prefix)? == NS_STREAMS {
                    Ok(Some((Event::StreamClose, end + 1)))
                } else {
                    Err(DecodeError::Malformed("unbalanced end tag"))
                }
            }
            b'?' => Err(DecodeError::Forbidden("processing instruction")),
            b'!' => Err(DecodeError::Forbidden("comment, CDATA or DTD")),
            _ => {
                let Some(len) = element_len(b, self.max)? else {
                    return Ok(None);
                };
                let el = self.parse_element(&self.buf[..len])?;
                Ok(Some((Event::Element(el), len)))
            }
        }
    }

    /// The stream header at the start of the buffer.
    fn header(&mut self) -> Result<Option<(Event, usize)>, DecodeError> {
        let b = &self.buf;
        if b.is_empty() {
            return Ok(None);
        }
        if b[0] != b'<' {
            return Err(DecodeError::Malformed("text before the stream header"));
        }
        if b.starts_with(b"<!") || b.starts_with(b"<?") {
            return Err(DecodeError::Forbidden(
                "comment, DTD or processing instruction",
            ));
        }
        let Some(end) = tag_end(b)? else {
            if b.len() > self.max {
                return Err(DecodeError::TooLarge(self.max));
            }
            return Ok(None);
        };
        let text =
            std::str::from_utf8(&b[1..end]).map_err(|_| DecodeError::Malformed("invalid UTF-8"))?;
        let (name, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let mut attrs = parse_attrs(rest.trim_end_matches('/'))?;
        let mut prefixes = Vec::new();
        let mut default_ns = NS_CLIENT.to_string();
        attrs.retain(|(k, v)| {
            if k == "xmlns" {
                default_ns = v.clone();
                false
            } else if let Some(p) = k.strip_prefix("xmlns:") {
                prefixes.push((p.to_string(), v.clone()));
                false
            } else {
                true
            }
        });
        let (prefix, local) = split_name(name);
        let ns = match prefix {
            None => default_ns.as_str(),
            Some(p) => prefixes
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.as_str())
                .ok_or(DecodeError::Malformed("undeclared prefix"))?,
        };
        if local != "stream" || ns != NS_STREAMS {
            return Err(DecodeError::Malformed("not an XMPP stream header"));
        }
        self.default_ns = default_ns;
        self.prefixes = prefixes;
        self.opened = true;
        Ok(Some((Event::StreamOpen(attrs), end + 1)))
    }

    fn resolve(&self, prefix: Option<&str>) -> Result<&str, DecodeError> {
        match prefix {
            None => Ok(&self.default_ns),
            Some("xml") => Ok("http://www.w3.org/XML/1998/namespace"),
            Some(p) => self
                .prefixes
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.as_str())
                .ok_or(DecodeError::Malformed("undeclared prefix")),
        }
    }

    /// Parses one complete top-level element.
    fn parse_element(&self, bytes: &[u8]) -> Result<Element, DecodeError> {
        use quick_xml::events::Event as X;
        let mut reader = quick_xml::Reader::from_reader(bytes);
        // Scopes: (default namespace, prefix bindings) per open element.
        let mut scopes: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut stack: Vec<Element> = Vec::new();
        let mut done: Option<Element> = None;
        loop {
            let ev = reader
                .read_event()
                .map_err(|_| DecodeError::Malformed("invalid XML"))?;
            let empty = matches!(ev, X::Empty(_));
            match ev {
                X::Start(s) | X::Empty(s) if done.is_none() => {
                    let (el, scope) = self.open(&s, scopes.last())?;
                    if empty {
                        match stack.last_mut() {
                            Some(parent) => parent.children.push(el),
                            None => done = Some(el),
                        }
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return Err(DecodeError::Malformed("elements nested too deep"));
                        }
                        stack.push(el);
                        scopes.push(scope);
                    }
                }
                X::End(_) => {
                    scopes.pop();
                    let el = stack.pop().ok_or(DecodeError::Malformed("unbalanced"))?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => done = Some(el),
                    }
                }
                X::Text(t) => {
                    if let Some(el) = stack.last_mut() {
                        el.text.push_str(&t);
                    }
                }
                X::GeneralRef(r) => {
                    let c = entity(&r)?;
                    if let Some(el) = stack.last_mut() {
                        el.text.push(c);
                    }
                }
                X::Eof => break,
                X::CData(_) => return Err(DecodeError::Forbidden("CDATA")),
                X::Comment(_) => return Err(DecodeError::Forbidden("comment")),
                X::PI(_) | X::Decl(_) => {
                    return Err(DecodeError::Forbidden("processing instruction"))
                }
                X::DocType(_) => return Err(DecodeError::Forbidden("DTD")),
                X::Start(_) | X::Empty(_) => {
                    return Err(DecodeError::Malformed("more than one element"))
                }
            }
        }
        done.ok_or(DecodeError::Malformed("no element"))
    }

    /// An element's name, namespace and attributes from its start tag, and its scope.
    #[allow(clippy::type_complexity)]
    fn open(
        &self,
        s: &quick_xml::events::BytesStart<'_>,
        parent: Option<&(String, Vec<(String, String)>)>,
    ) -> Result<(Element, (String, Vec<(String, String)>)), DecodeError> {
        let (mut default_ns, mut prefixes) = match parent {
            Some((d, p)) => (d.clone(), p.clone()),
            None => (self.default_ns.clone(), self.prefixes.clone()),
        };
        let mut attrs = Vec::new();
        for a in s.attributes() {
            let a = a.map_err(|_| DecodeError::Malformed("invalid attribute"))?;
            let key: &str = a.key.as_ref();
            let key = key.to_string();
            let value = unescape(&a.value)?;
            if key == "xmlns" {
                default_ns = value;
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                prefixes.retain(|(k, _)| k != p);
                prefixes.push((p.to_string(), value));
            } else {
                attrs.push((key, value));
            }
        }
        let qname = s.name();
        let name: &str = qname.as_ref();
        let name = name.to_string();
        let (prefix, local) = split_name(&name);
        let ns = match prefix {
            None => default_ns.clone(),
            Some(p) => prefixes
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.clone())
                .ok_or(DecodeError::Malformed("undeclared prefix"))?,
        };
        Ok((
            Element {
                name: local.to_string(),
                ns,
                attrs,
                children: Vec::new(),
                text: String::new(),
            },
            (default_ns, prefixes),
        ))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, name),
    }
}

/// The index of the `>` closing the tag that starts at `b[0]`, quotes respected.
fn tag_end(b: &[u8]) -> Result<Option<usize>, DecodeError> {
    let mut quote = None;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'<') => return Err(DecodeError::Malformed("'<' inside a tag")),
            (None, b'>') => return Ok(Some(i)),
            _ => {}
        }
    }
    Ok(None)
}

/// The length of the complete element at the start of `b`, or `None` while it is still
/// arriving (an error once it passed `max` bytes).
fn element_len(b: &[u8], max: usize) -> Result<Option<usize>, DecodeError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        if i > max {
            return Err(DecodeError::TooLarge(max));
        }
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let Some(end) = tag_end(&b[i..])? else {
            return if b.len() > max {
                Err(DecodeError::TooLarge(max))
            } else {
                Ok(None)
            };
        };
        let tag = &b[i..=i + end];
        match tag.get(1) {
            Some(b'/') => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(DecodeError::Malformed("unbalanced end tag"))?;
            }
            Some(b'!') => return Err(DecodeError::Forbidden("comment, CDATA or DTD")),
            Some(b'?') => return Err(DecodeError::Forbidden("processing instruction")),
            _ if tag.ends_with(b"/>") => {}
            _ => {
                depth += 1;
                if depth > MAX_DEPTH + 1 {
                    return Err(DecodeError::Malformed("elements nested too deep"));
                }
            }
        }
        i += end + 1;
        if depth == 0 {
            if i > max {
                return Err(DecodeError::TooLarge(max));
            }
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Attributes of a start tag's text after its name.
fn parse_attrs(mut s: &str) -> Result<Vec<(String, String)>, DecodeError> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let (key, rest) = s
            .split_once('=')
            .ok_or(DecodeError::Malformed("attribute without value"))?;
        let rest = rest.trim_start();
        let q = rest
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or(DecodeError::Malformed("unquoted attribute"))?;
        let body = &rest[1..];
        let end = body
            .find(q)
            .ok_or(DecodeError::Malformed("unterminated attribute"))?;
        out.push((key.trim().to_string(), unescape(&body[..end])?));
        s = &body[end + 1..];
    }
}

/// The character of a predefined entity or character reference (without `&` and `;`).
fn entity(name: &str) -> Result<char, DecodeError> {
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let n = if let Some(h) = name.strip_prefix("#x") {
                u32::from_str_radix(h, 16).ok()
            } else if let Some(d) = name.strip_prefix('#') {
                d.parse::<u32>().ok()
            } else {
                return Err(DecodeError::Forbidden("entity reference"));
            };
            n.and_then(char::from_u32)
                .filter(|c| *c >= ' ' || matches!(c, '\t' | '\n' | '\r'))
                .ok_or(DecodeError::Malformed("invalid character reference"))?
        }
    };
    Ok(c)
}

/// Resolves the references in an attribute value.
fn unescape(raw: &str) -> Result<String, DecodeError> {
    if !raw.contains('&') {
        if raw.contains('<') {
            return Err(DecodeError::Malformed("'<' in an attribute value"));
        }
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let semi = after
            .find(';')
            .ok_or(DecodeError::Malformed("unterminated reference"))?;
        out.push(entity(&after[..semi])?);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes `s` for text content and attribute values (either quote).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry are dropped.
            c if c < ' ' && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

// ---- What the elements mean ----

/// The stream features a client needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub starttls: bool,
    pub mechanisms: Vec<String>,
    pub bind: bool,
}

/// `<stream:features>` read, or `None` for another element.
pub fn features(el: &Element) -> Option<Features> {
    if !el.is("features", NS_STREAMS) {
        return None;
    }
    Some(Features {
        starttls: el.child("starttls", NS_TLS).is_some(),
        mechanisms: el
            .child("mechanisms", NS_SASL)
            .map(|m| {
                m.children
                    .iter()
                    .filter(|c| c.is("mechanism", NS_SASL))
                    .map(|c| c.text.trim().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        bind: el.child("bind", NS_BIND).is_some(),
    })
}

/// A SASL element from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sasl {
    Challenge(Vec<u8>),
    Success(Vec<u8>),
    /// The condition (`not-authorized`, ...).
    Failure(String),
}

/// A SASL element read, or `None` (also for undecodable base64, which is `Failure`).
pub fn sasl(el: &Element) -> Option<Sasl> {
    if el.ns != NS_SASL {
        return None;
    }
    let data = || {
        let t = el.text.trim();
        if t == "=" {
            return Some(Vec::new());
        }
        base64::engine::general_purpose::STANDARD.decode(t).ok()
    };
    Some(match el.name.as_str() {
        "challenge" => data().map_or(Sasl::Failure("malformed-request".into()), Sasl::Challenge),
        "success" => data().map_or(Sasl::Failure("malformed-request".into()), Sasl::Success),
        "failure" => Sasl::Failure(
            el.children
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        ),
        _ => return None,
    })
}

/// The type of an IQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

/// An `<iq>` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq<'a> {
    pub id: &'a str,
    pub kind: IqType,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub el: &'a Element,
}

/// An IQ read, or `None` for anything else (or an IQ without id or with an unknown type).
pub fn iq(el: &Element) -> Option<Iq<'_>> {
    if !el.is("iq", NS_CLIENT) {
        return None;
    }
    let kind = match el.attr("type")? {
        "get" => IqType::Get,
        "set" => IqType::Set,
        "result" => IqType::Result,
        "error" => IqType::Error,
        _ => return None,
    };
    Some(Iq {
        id: el.attr("id")?,
        kind,
        from: el.attr("from"),
        to: el.attr("to"),
        el,
    })
}

impl Iq<'_> {
    /// The defined condition of an error IQ (`not-authorized`, `service-unavailable`, ...).
    pub fn error_condition(&self) -> Option<&str> {
        let e = self.el.child("error", NS_CLIENT)?;
        e.children
            .iter()
            .find(|c| c.ns == NS_STANZAS && c.name != "text")
            .map(|c| c.name.as_str())
    }

    /// The JID of a resource-binding result.
    pub fn bound_jid(&self) -> Option<&str> {
        let j = self
            .el
            .child("bind", NS_BIND)?
            .child("jid", NS_BIND)?
            .text
            .trim();
        (!j.is_empty()).then_some(j)
    }

    /// The username and password of a TR-069 connection request.
    pub fn connection_request(&self) -> Option<(&str, &str)> {
        let c = self.el.child("connectionRequest", NS_CONNREQ)?;
        Some((
            c.child("username", NS_CONNREQ)?.text.as_str(),
            c.child("password", NS_CONNREQ)?.text.as_str(),
        ))
    }
}

/// The stream header a client sends to `domain`.
pub fn stream_open(domain: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' \
         xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>",
        escape(domain)
    )
    .into_bytes()
}

/// The end of the stream.
pub fn stream_close() -> Vec<u8> {
    b"</stream:stream>".to_vec()
}

/// `<starttls/>`.
pub fn starttls() -> Vec<u8> {
    format!("<starttls xmlns='{NS_TLS}'/>").into_bytes()
}

/// `<auth>` with the mechanism's initial response.
pub fn auth(mechanism: &str, initial: &[u8]) -> Vec<u8> {
    let data = if initial.is_empty() {
        "=".to_string()
    } else {
        base64::engine::general_purpose::STANDARD.encode(initial)
    };
    format!(
        "<auth xmlns='{NS_SASL}' mechanism='{}'>{data}</auth>",
        escape(mechanism)
    )
    .into_bytes()
}

/// `<response>` to a SASL challenge.
pub fn sasl_response(data: &[u8]) -> Vec<u8> {
    format!(
        "<response xmlns='{NS_SASL}'>{}</response>",
        base64::engine::general_purpose::STANDARD.encode(data)
    )
    .into_bytes()
}

/// The resource-binding request.
pub fn bind(id: &str, resource: &str) -> Vec<u8> {
    let r = if resource.is_empty() {
        String::new()
    } else {
        format!("<resource>{}</resource>", escape(resource))
    };
    format!(
        "<iq type='set' id='{}'><bind xmlns='{NS_BIND}'>{r}</bind></iq>",
        escape(id)
    )
    .into_bytes()
}

/// Initial presence (available).
pub fn presence() -> Vec<u8> {
    b"<presence/>".to_vec()
}

/// The TR-069 Annex K connection request to `to` (the device's ConnReqJabberID).
pub fn connection_request(id: &str, to: &str, username: &str, password: &str) -> Vec<u8> {
    format!(
        "<iq type='get' id='{}' to='{}'><connectionRequest xmlns='{NS_CONNREQ}'>\
         <username>{}</username><password>{}</password></connectionRequest></iq>",
        escape(id),
        escape(to),
        escape(username),
        escape(password)
    )
    .into_bytes()
}

/// An empty result answering IQ `id` from `to`.
pub fn iq_result(id: &str, to: &str) -> Vec<u8> {
    format!(
        "<iq type='result' id='{}' to='{}'/>",
        escape(id),
        escape(to)
    )
    .into_bytes()
}

/// An error answering IQ `id` from `to` with `condition` (`not-authorized`,
/// `service-unavailable`, ...) of error type `kind` (`auth`, `cancel`, `wait`).
pub fn iq_error(id: &str, to: &str, kind: &str, condition: &str) -> Vec<u8> {
    format!(
        "<iq type='error' id='{}' to='{}'><error type='{}'><{} xmlns='{NS_STANZAS}'/></error></iq>",
        escape(id),
        escape(to),
        escape(kind),
        escape(condition)
    )
    .into_bytes()
}

/// The bare JID (`local@domain`) of a full or bare JID.
pub fn bare_jid(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='example.net' version='1.0'>";

    fn opened() -> Decoder {
        let mut d = Decoder::new(4096);
        let ev = d.feed(HEADER.as_bytes()).unwrap();
        assert!(
            matches!(&ev[..], [Event::StreamOpen(a)] if a.iter().any(|(k, v)| k == "id" && v == "abc"))
        );
        d
    }

    fn one(d: &mut Decoder, s: &str) -> Element {
        match &d.feed(s.as_bytes()).unwrap()[..] {
            [Event::Element(e)] => e.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn features_arrive_byte_by_byte_and_are_read() {
        let mut d = Decoder::new(4096);
        let all = format!(
            "{HEADER} <stream:features><starttls xmlns='{NS_TLS}'><required/></starttls>\
             <mechanisms xmlns='{NS_SASL}'><mechanism>SCRAM-SHA-1</mechanism>\
             <mechanism>PLAIN</mechanism></mechanisms></stream:features>\n "
        );
        let mut events = Vec::new();
        for b in all.as_bytes() {
            events.extend(d.feed(&[*b]).unwrap());
        }
        assert_eq!(events.len(), 2, "{events:?}");
        let Event::Element(f) = &events[1] else {
            panic!()
        };
        let f = features(f).unwrap();
        assert!(f.starttls && !f.bind);
        assert_eq!(f.mechanisms, ["SCRAM-SHA-1", "PLAIN"]);
    }

    #[test]
    fn connection_request_round_trips_with_hostile_values() {
        let bytes = connection_request("cr-1", "cpe@example.net/res", "u<&>\"'", "p]]></x>");
        let mut d = opened();
        let el = one(&mut d, std::str::from_utf8(&bytes).unwrap());
        let q = iq(&el).unwrap();
        assert_eq!((q.id, q.kind), ("cr-1", IqType::Get));
        assert_eq!(q.to, Some("cpe@example.net/res"));
        assert_eq!(q.connection_request(), Some(("u<&>\"'", "p]]></x>")));
    }

    #[test]
    fn errors_and_results_are_interpreted() {
        let mut d = opened();
        let e = one(
            &mut d,
            &format!(
                "<iq type='error' id='7' from='cpe@x/r'><error type='auth'>\
                 <not-authorized xmlns='{NS_STANZAS}'/><text xmlns='{NS_STANZAS}'>no</text>\
                 </error></iq>"
            ),
        );
        assert_eq!(iq(&e).unwrap().error_condition(), Some("not-authorized"));
        let b = one(
            &mut d,
            &format!(
                "<iq type='result' id='b'><bind xmlns='{NS_BIND}'><jid>acs@x/ferroacs</jid></bind></iq>"
            ),
        );
        assert_eq!(iq(&b).unwrap().bound_jid(), Some("acs@x/ferroacs"));
        let s = one(
            &mut d,
            &format!("<success xmlns='{NS_SASL}'>dj1hYmM=</success>"),
        );
        assert_eq!(sasl(&s), Some(Sasl::Success(b"v=abc".to_vec())));
        let f = one(
            &mut d,
            &format!("<failure xmlns='{NS_SASL}'><not-authorized/></failure>"),
        );
        assert_eq!(sasl(&f), Some(Sasl::Failure("not-authorized".into())));
        assert_eq!(
            d.feed(b"</stream:stream>").unwrap(),
            vec![Event::StreamClose]
        );
    }

    #[test]
    fn oversized_stanzas_fail_complete_or_still_arriving() {
        let mut d = opened();
        let big = format!("<message><body>{}</body></message>", "a".repeat(5000));
        assert_eq!(d.feed(big.as_bytes()), Err(DecodeError::TooLarge(4096)));
        // One that never ends.
        let mut d = opened();
        d.feed(b"<message><body>").unwrap();
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = d.feed(&[b'a'; 100]) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(DecodeError::TooLarge(4096)));
        // A tag that never closes.
        let mut d = opened();
        assert!(d
            .feed(format!("<iq id='{}", "x".repeat(5000)).as_bytes())
            .is_err());
    }

    #[test]
    fn forbidden_xml_is_refused() {
        for bad in [
            "<!-- hi --><iq/>",
            "<?pi x?>",
            "<iq type='get' id='1'><![CDATA[x]]></iq>",
            "<iq type='get' id='1'>&xxe;</iq>",
            "<x:iq xmlns:y='z'/>",
            "hello",
            "</iq>",
            "<iq id='1'><!DOCTYPE x></iq>",
        ] {
            let mut d = opened();
            assert!(d.feed(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert!(opened().feed(deep.as_bytes()).is_err());
        let mut d = Decoder::new(4096);
        assert!(d.feed(b"<html>").is_err());
    }

    #[test]
    fn stream_restart_and_whitespace_keepalives() {
        let mut d = opened();
        assert!(d.feed(b"  \n ").unwrap().is_empty());
        d.reset();
        assert!(matches!(
            &d.feed(HEADER.as_bytes()).unwrap()[..],
            [Event::StreamOpen(_)]
        ));
        assert_eq!(bare_jid("a@b/c"), "a@b");
        assert_eq!(bare_jid("a@b"), "a@b");
    }
}
