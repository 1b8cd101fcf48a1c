//! The long lists CPEs send (a GetParameterValuesResponse's or an Inform's
//! `ParameterValueStruct`s, a GetParameterNamesResponse's
//! `ParameterInfoStruct`s) read straight from the message when they have the
//! form nearly every CPE writes: unprefixed elements one after the other,
//! whitespace between them, text that needs no rewriting.
//!
//! [`values`] and [`infos`] read that form only. At the first thing outside
//! it they give up and consume nothing, and the event reader reads the list
//! as it always has: a comment, CDATA or processing instruction, a reference
//! (`&amp;`, `&#10;`), a carriage return or a character XML forbids in a
//! text, an attribute other than one `xsi:type`, another element, order or
//! spelling (`<Name />`, `</Name >`), text between elements, an element limit
//! passed. What they accept, they read as the event reader would: the same
//! names, values, types and element counts (the tests parse every input both
//! ways). The end tag of the list itself is left to the event reader, which
//! checks it.

use std::borrow::Cow;

use quick_xml::name::QName;

use super::{is_clean, is_xsi_type, normalize_xsi_type, Cursor, Elem, MAX_DEPTH};
use crate::types::{ParameterInfo, ParameterValue, DEFAULT_XSD_TYPE};

/// Elements each item adds to the message's count: the struct and its two
/// fields.
const ELEMENTS_PER_ITEM: usize = 3;

/// A position in the message and what may be read there.
struct Scan<'i> {
    s: &'i str,
    pos: usize,
}

impl<'i> Scan<'i> {
    fn rest(&self) -> &'i str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// Skips whitespace between elements (the event reader drops it).
    fn ws(&mut self) {
        let bytes = self.s.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn lit(&mut self, t: &str) -> Option<()> {
        self.rest().starts_with(t).then(|| self.pos += t.len())
    }

    /// Character data up to the next `<`, when the event reader would hand it
    /// over unchanged: no reference, no carriage return (line ends are
    /// normalised), no character XML forbids (dropped).
    fn text(&mut self) -> Option<&'i str> {
        let rest = self.rest();
        let end = rest.find('<')?;
        let t = rest.get(..end)?;
        // One pass for the usual text (printable, no reference, no carriage return, no
        // byte that may start U+FFFE/U+FFFF); anything else gets the exact checks.
        let plain = t
            .bytes()
            .all(|b| (b >= 0x20 && b != b'&' && b != 0xEF) || b == b'\t' || b == b'\n');
        if !plain && (t.bytes().any(|b| b == b'&' || b == b'\r') || !is_clean(t)) {
            return None;
        }
        self.pos += end;
        Some(t)
    }

    /// `<tag>text</tag>`, or `<tag/>` (empty text).
    fn field(&mut self, tag: &str) -> Option<&'i str> {
        self.lit("<")?;
        self.lit(tag)?;
        if self.lit("/>").is_some() {
            return Some("");
        }
        self.lit(">")?;
        let t = self.text()?;
        self.lit("</")?;
        self.lit(tag)?;
        self.lit(">")?;
        Some(t)
    }

    /// `<Value>text</Value>` or `<Value/>`, either with one `xsi:type`
    /// attribute: the attribute's value (as written) and the text.
    fn value(&mut self) -> Option<(Option<&'i str>, &'i str)> {
        self.lit("<Value")?;
        let mut ty = None;
        if self.rest().starts_with([' ', '\t', '\n']) {
            self.ws();
            if !self.rest().starts_with(['>', '/']) {
                self.lit("xsi:type")?;
                self.ws();
                self.lit("=")?;
                self.ws();
                let quote = self
                    .rest()
                    .chars()
                    .next()
                    .filter(|q| matches!(q, '"' | '\''))?;
                self.pos += 1;
                let rest = self.rest();
                let end = rest.find(quote)?;
                let v = rest.get(..end)?;
                // Attribute values are normalised by the event reader; these
                // characters come through it unchanged.
                if !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'))
                {
                    return None;
                }
                self.pos += end + 1;
                ty = Some(v);
                self.ws();
            }
        }
        if self.lit("/>").is_some() {
            return Some((ty, ""));
        }
        self.lit(">")?;
        let t = self.text()?;
        self.lit("</Value>")?;
        Some((ty, t))
    }

    /// At the end of the list: its end tag (checked by the event reader).
    fn at_end(&mut self) -> bool {
        self.ws();
        self.rest().starts_with("</")
    }
}

/// The items of `list`, each read by `item` from its start tag to its end
/// tag, and the bytes they take up to the list's end tag: `None` when the
/// list cannot be read here or `item` refuses one. The list can be read
/// right after its start tag (not empty), deep enough under [`MAX_DEPTH`] for
/// the items, and after the message's CWMP namespace was seen (an item element
/// is never the first to carry it).
fn scan<'i, T>(
    c: &Cursor<'i>,
    list: &Elem,
    mut item: impl FnMut(&mut Scan<'i>) -> Option<T>,
) -> Option<(Vec<T>, usize)> {
    if !c.fast_lists || list.empty || c.depth + 2 > MAX_DEPTH || c.first_cwmp_uri.is_none() {
        return None;
    }
    let from = c.offset()?;
    let mut sc = Scan {
        s: c.xml,
        pos: from,
    };
    let mut out = Vec::new();
    while !sc.at_end() {
        out.push(item(&mut sc)?);
    }
    Some((out, sc.pos - from))
}

/// Moves the event reader past what [`scan`] read: the items, or `None`
/// (nothing moved) when they would pass the element limit.
fn take<T>(c: &mut Cursor<'_>, (items, bytes): (Vec<T>, usize)) -> Option<Vec<T>> {
    c.advance(bytes, items.len().saturating_mul(ELEMENTS_PER_ITEM))
        .then_some(items)
}

/// The `ParameterValueStruct` items of `list`, or `None` (nothing read).
pub(super) fn values(c: &mut Cursor<'_>, list: &Elem) -> Option<Vec<ParameterValue>> {
    let resolver = c.reader.resolver();
    // Whether `xsi:type` names that attribute in this scope (nothing inside
    // the list declares a prefix), and the types met so far, normalised.
    let mut xsi = None;
    let mut types: Vec<(&str, Option<Cow<'static, str>>)> = Vec::new();
    let read = scan(c, list, |sc| {
        sc.lit("<ParameterValueStruct>")?;
        sc.ws();
        let name = sc.field("Name")?;
        sc.ws();
        let (ty, value) = sc.value()?;
        sc.ws();
        sc.lit("</ParameterValueStruct>")?;
        let xsd_type = match ty {
            Some(raw) if *xsi.get_or_insert_with(|| is_xsi_type(resolver, QName("xsi:type"))) => {
                match types.iter().find(|(r, _)| *r == raw) {
                    Some((_, t)) => t.clone(),
                    None => {
                        let t = normalize_xsi_type(resolver, raw);
                        types.push((raw, t.clone()));
                        t
                    }
                }
            }
            _ => None,
        };
        Some(ParameterValue {
            name: name.trim().to_owned(),
            value: value.to_owned(),
            xsd_type: xsd_type.unwrap_or(Cow::Borrowed(DEFAULT_XSD_TYPE)),
        })
    })?;
    take(c, read)
}

/// The `ParameterInfoStruct` items of `list`, or `None` (nothing read).
pub(super) fn infos(c: &mut Cursor<'_>, list: &Elem) -> Option<Vec<ParameterInfo>> {
    let read = scan(c, list, |sc| {
        sc.lit("<ParameterInfoStruct>")?;
        sc.ws();
        let name = sc.field("Name")?;
        sc.ws();
        let writable = sc.field("Writable")?.trim();
        sc.ws();
        sc.lit("</ParameterInfoStruct>")?;
        let writable =
            if writable.is_empty() || writable == "0" || writable.eq_ignore_ascii_case("false") {
                false
            } else if writable == "1" || writable.eq_ignore_ascii_case("true") {
                true
            } else {
                // The event reader reports it.
                return None;
            };
        Some(ParameterInfo {
            name: name.trim().to_owned(),
            writable,
        })
    })?;
    take(c, read)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quick_xml::events::Event;

    use super::*;
    use crate::decode::{parse_incoming, parse_incoming_with_event_reader_only, parse_outgoing};

    const ENV_OPEN: &str = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-0">"#;

    fn envelope(body: &str) -> String {
        format!(
            "{ENV_OPEN}<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">7</cwmp:ID></soap-env:Header><soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"
        )
    }

    fn gpv(items: &str) -> String {
        envelope(&format!(
            "<cwmp:GetParameterValuesResponse><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[2]\">{items}</ParameterList></cwmp:GetParameterValuesResponse>"
        ))
    }

    fn gpn(items: &str) -> String {
        envelope(&format!(
            "<cwmp:GetParameterNamesResponse><ParameterList soap-enc:arrayType=\"cwmp:ParameterInfoStruct[2]\">{items}</ParameterList></cwmp:GetParameterNamesResponse>"
        ))
    }

    /// Parses `xml` both ways and requires the same outcome (values, types,
    /// errors and their positions); returns it.
    fn agreed(xml: &str) -> crate::decode::Result<Option<crate::types::Envelope>> {
        let fast = parse_incoming(xml);
        let events = parse_incoming_with_event_reader_only(xml);
        assert_eq!(fast, events, "the two readers disagree on {xml}");
        fast
    }

    /// What [`values`] or [`infos`] make of the first `ParameterList` of
    /// `xml`, reached as the envelope reader reaches it: `Some` when they read
    /// it, as `Debug` text.
    fn fast_read(xml: &str) -> Option<String> {
        let mut c = Cursor::new(xml);
        loop {
            match c.read() {
                Ok(Event::Start(e)) => {
                    c.enter().unwrap();
                    let el = c.elem(&e, false);
                    if el.local == "ParameterList" {
                        return if xml.contains("ParameterInfoStruct") {
                            infos(&mut c, &el).map(|v| format!("{v:?}"))
                        } else {
                            values(&mut c, &el).map(|v| format!("{v:?}"))
                        };
                    }
                }
                Ok(Event::Eof) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    fn values_of(xml: &str) -> Vec<ParameterValue> {
        match agreed(xml).unwrap().unwrap().body {
            crate::types::IncomingBody::Response(
                crate::types::CpeResponse::GetParameterValues { parameter_list },
            ) => parameter_list,
            other => panic!("not a GetParameterValuesResponse: {other:?}"),
        }
    }

    #[test]
    fn the_usual_form_is_read_directly_and_as_the_event_reader_reads_it() {
        let items = "\n  <ParameterValueStruct>\n    <Name> IGD.A </Name>\n    <Value xsi:type=\"xsd:unsignedInt\">42</Value>\n  </ParameterValueStruct>\n\
             <ParameterValueStruct><Name>IGD.B</Name><Value xsi:type='xsd:string'> spaced  value </Value></ParameterValueStruct>\
             <ParameterValueStruct><Name>IGD.C</Name><Value xsi:type=\"xsd:boolean\"/></ParameterValueStruct>\
             <ParameterValueStruct><Name>IGD.D</Name><Value>no type</Value></ParameterValueStruct>\
             <ParameterValueStruct><Name>IGD.E</Name><Value xsi:type=\"\"></Value></ParameterValueStruct>\
             <ParameterValueStruct><Name>IGD.F</Name><Value xsi:type=\"unsignedInt\">7</Value></ParameterValueStruct>\
             <ParameterValueStruct><Name>IGD.G</Name><Value xsi:type=\"soap-enc:base64\">AAE=</Value></ParameterValueStruct>\
             <ParameterValueStruct><Name>IGD.H</Name><Value xsi:type=\"vendor:thing\">x &gt; y</Value></ParameterValueStruct>\
             <ParameterValueStruct><Name>IGD.I</Name><Value xsi:type=\"xsd:string\">é ünïcode > ok</Value></ParameterValueStruct>\n";
        // Without the reference in H, the directly read form.
        let direct = gpv(&items.replace("x &gt; y", "x y"));
        assert!(
            fast_read(&direct).is_some(),
            "the usual form was not read directly"
        );
        let v = values_of(&direct);
        let got: Vec<(&str, &str, &str)> = v
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str(), &*p.xsd_type))
            .collect();
        assert_eq!(
            got,
            [
                ("IGD.A", "42", "xsd:unsignedInt"),
                ("IGD.B", " spaced  value ", "xsd:string"),
                ("IGD.C", "", "xsd:boolean"),
                ("IGD.D", "no type", "xsd:string"),
                ("IGD.E", "", "xsd:string"),
                ("IGD.F", "7", "xsd:unsignedInt"),
                ("IGD.G", "AAE=", "soap-enc:base64"),
                ("IGD.H", "x y", "vendor:thing"),
                ("IGD.I", "é ünïcode > ok", "xsd:string"),
            ]
        );
        // With it, the event reader reads the list, to the same values.
        let with_ref = gpv(items);
        assert!(fast_read(&with_ref).is_none());
        assert_eq!(values_of(&with_ref)[7].value, "x > y");
    }

    #[test]
    fn names_and_writability_are_read_directly_and_as_the_event_reader_reads_them() {
        let items = "<ParameterInfoStruct><Name>IGD.</Name><Writable>0</Writable></ParameterInfoStruct>\n\
             <ParameterInfoStruct><Name>IGD.A</Name><Writable>1</Writable></ParameterInfoStruct>\
             <ParameterInfoStruct><Name> IGD.B </Name><Writable> TRUE </Writable></ParameterInfoStruct>\
             <ParameterInfoStruct><Name>IGD.C</Name><Writable>false</Writable></ParameterInfoStruct>\
             <ParameterInfoStruct><Name>IGD.D</Name><Writable/></ParameterInfoStruct>";
        let xml = gpn(items);
        assert_eq!(
            fast_read(&xml).as_deref(),
            Some(
                "[ParameterInfo { name: \"IGD.\", writable: false }, \
                 ParameterInfo { name: \"IGD.A\", writable: true }, \
                 ParameterInfo { name: \"IGD.B\", writable: true }, \
                 ParameterInfo { name: \"IGD.C\", writable: false }, \
                 ParameterInfo { name: \"IGD.D\", writable: false }]"
            )
        );
        agreed(&xml).unwrap();
        // A writability the event reader refuses is refused the same way.
        let bad = gpn(
            "<ParameterInfoStruct><Name>IGD.A</Name><Writable>yes</Writable></ParameterInfoStruct>",
        );
        assert!(fast_read(&bad).is_none());
        assert!(agreed(&bad).is_err());
    }

    #[test]
    fn anything_outside_the_usual_form_goes_to_the_event_reader_with_the_same_result() {
        let usual = "<ParameterValueStruct><Name>IGD.A</Name><Value xsi:type=\"xsd:string\">v</Value></ParameterValueStruct>";
        let unusual = [
            // references, CDATA, comments, processing instructions
            usual.replace(">v<", ">a &amp; b<"),
            usual.replace(">v<", ">&#65;&#2;<"),
            usual.replace(">v<", "><![CDATA[<x>]]><"),
            usual.replace(">v<", "><!-- c -->v<"),
            format!("<!-- before -->{usual}"),
            format!("{usual}<?pi x?>"),
            // line ends and forbidden characters in a value
            usual.replace(">v<", ">a\r\nb\rc<"),
            usual.replace(">v<", ">a\u{1}b<"),
            // other spellings, prefixes, orders, attributes, elements
            usual.replace("<Name>", "<Name >"),
            usual.replace("</Name>", "</Name >"),
            usual
                .replace("<Name>", "<cwmp:Name>")
                .replace("</Name>", "</cwmp:Name>"),
            usual.replace(
                "<Value xsi:type=\"xsd:string\">",
                "<Value xsi:type=\"xsd:string\" xmlns:xsd=\"urn:other\">",
            ),
            usual.replace(
                "xsi:type=\"xsd:string\"",
                "xsi:type=\"xsd:string\" id=\"1\"",
            ),
            usual.replace("xsi:type=\"xsd:string\"", "xsi:type=\" xsd:string \""),
            usual.replace("xsi:type=\"xsd:string\"", "i:type=\"xsd:string\""),
            usual.replace(
                "<Name>IGD.A</Name><Value xsi:type=\"xsd:string\">v</Value>",
                "<Value xsi:type=\"xsd:string\">v</Value><Name>IGD.A</Name>",
            ),
            usual.replace("<Name>IGD.A</Name>", "<Name>IGD.A</Name><Extra>1</Extra>"),
            usual.replace("<Value xsi:type=\"xsd:string\">v</Value>", ""),
            usual.replace(">v<", "><b>v</b><"),
            usual.replace("ParameterValueStruct", "Item"),
            format!("text{usual}"),
            format!("{usual}<ParameterValueStruct>"),
        ];
        for items in &unusual {
            let xml = gpv(&format!("{usual}{items}"));
            assert!(fast_read(&xml).is_none(), "read directly: {items}");
            let _ = agreed(&xml);
        }
        // Text the direct reader may take or leave: either way, the same outcome.
        for items in [
            usual.replace(">v<", ">a]]>b<"),
            usual.replace(">v<", ">a\u{FFFE}b<"),
            usual.replace(">v<", ">a\u{0}b<"),
            usual.replace(">v<", "> \t\n <"),
            usual.replace("IGD.A", "\u{85}IGD.A\u{2028}\u{A0}"),
            usual.replace("xsd:string", "xsd:"),
            usual.replace("xsd:string", ":string"),
            usual.replace("xsd:string", "a:b:c"),
        ] {
            let _ = agreed(&gpv(&items));
        }
        // The values come out the same either way, e.g. a CR LF in a value.
        assert_eq!(values_of(&gpv(&unusual[6]))[0].value, "a\nb\nc");
    }

    #[test]
    fn a_prefix_bound_elsewhere_is_resolved_as_the_event_reader_resolves_it() {
        for (decl, ty, want) in [
            // `xsi` bound to another namespace: the attribute is not xsi:type.
            (
                " xmlns:xsi=\"urn:not-xsi\"",
                "xsd:unsignedInt",
                "xsd:string",
            ),
            // A vendor's namespace: the type is kept as written.
            (" xmlns:v=\"urn:vendor\"", "v:unsignedInt", "v:unsignedInt"),
            // An old XML Schema namespace under another prefix.
            (
                " xmlns:s=\"http://www.w3.org/1999/XMLSchema\"",
                "s:int",
                "xsd:int",
            ),
            // An undeclared prefix: kept as written.
            ("", "undeclared:int", "undeclared:int"),
        ] {
            let xml = envelope(&format!(
                "<cwmp:GetParameterValuesResponse><ParameterList{decl}><ParameterValueStruct><Name>IGD.A</Name><Value xsi:type=\"{ty}\">1</Value></ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse>"
            ));
            assert!(fast_read(&xml).is_some(), "{decl}");
            assert_eq!(values_of(&xml)[0].xsd_type, want, "{decl} {ty}");
        }
    }

    #[test]
    fn malformed_lists_fail_as_before() {
        let usual =
            "<ParameterValueStruct><Name>IGD.A</Name><Value>v</Value></ParameterValueStruct>";
        let cases = [
            // the list's end tag is not its own
            gpv(usual).replace("</ParameterList>", "</ParameterLis>"),
            // the message ends inside the list, or right after it
            gpv(usual)
                .split("</ParameterList>")
                .next()
                .unwrap()
                .to_string(),
            gpv(usual)
                .split("</cwmp:GetParameterValuesResponse>")
                .next()
                .unwrap()
                .to_string(),
            // an empty list, in both spellings
            gpv("  "),
            gpv(usual).replace(&format!(">{usual}</ParameterList>"), "/>"),
        ];
        for xml in &cases {
            let _ = agreed(xml);
        }
        assert!(agreed(&cases[0]).is_err());
        assert!(agreed(&cases[1]).is_err());
        assert!(values_of(&cases[3]).is_empty());
        // An error after a list read directly points where the event reader
        // points.
        let after = gpv(usual).replace("</soap-env:Body>", "</soap-env:Bod>");
        assert!(fast_read(&after).is_some());
        let err = agreed(&after).unwrap_err();
        assert!(
            matches!(err, crate::decode::DecodeError::Malformed { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_element_limit_counts_the_items_read_directly() {
        let xml =
            gpv("<ParameterValueStruct><Name>IGD.A</Name><Value>v</Value></ParameterValueStruct>");
        let at_list = |elements: usize| {
            let mut c = Cursor::new(&xml);
            loop {
                if let Ok(Event::Start(e)) = c.read() {
                    c.enter().unwrap();
                    let el = c.elem(&e, false);
                    if el.local == "ParameterList" {
                        c.elements = elements;
                        return (c, el);
                    }
                }
            }
        };
        // Room for the item's three elements: read, and counted.
        let (mut c, el) = at_list(crate::decode::MAX_ELEMENTS - 3);
        assert_eq!(values(&mut c, &el).map(|v| v.len()), Some(1));
        assert_eq!(c.elements, crate::decode::MAX_ELEMENTS);
        // No room: nothing read or moved, and the event reader refuses the message.
        let (mut c, el) = at_list(crate::decode::MAX_ELEMENTS - 2);
        let before = c.offset();
        assert!(values(&mut c, &el).is_none());
        assert_eq!(
            (c.offset(), c.elements),
            (before, crate::decode::MAX_ELEMENTS - 2)
        );
        let err = crate::decode::parse_parameter_values(&mut c, &el).unwrap_err();
        assert!(
            matches!(err, crate::decode::DecodeError::TooManyElements(_)),
            "{err}"
        );
    }

    #[test]
    fn real_messages_and_every_response_read_the_same_both_ways() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut n = 0;
        for dir in ["tests/fixtures/samples", "fuzz/seeds/cwmp_decode"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let data = std::fs::read(entry.unwrap().path()).unwrap();
                if let Ok(text) = crate::decode::decode_body(&data, None) {
                    let _ = agreed(&text);
                    n += 1;
                }
            }
        }
        assert!(n >= 20, "{n} messages");
        let header = crate::types::Header::with_id("9");
        for resp in crate::testdata::cpe_responses() {
            let body = crate::types::IncomingBody::Response(resp);
            let xml = crate::encode::encode_incoming(crate::types::CwmpNs::V1_2, &header, &body);
            assert_eq!(agreed(&xml).unwrap().unwrap().body, body);
        }
        for req in crate::testdata::cpe_requests() {
            let body = crate::types::IncomingBody::Request(req);
            let xml = crate::encode::encode_incoming(crate::types::CwmpNs::V1_2, &header, &body);
            assert_eq!(agreed(&xml).unwrap().unwrap().body, body);
        }
        // What the ACS sends reads its SetParameterValues list the same way.
        let spv = format!(
            "{ENV_OPEN}<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">1</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:SetParameterValues><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[1]\"><ParameterValueStruct><Name>IGD.A</Name><Value xsi:type=\"xsd:string\">v</Value></ParameterValueStruct></ParameterList><ParameterKey>k</ParameterKey></cwmp:SetParameterValues></soap-env:Body></soap-env:Envelope>"
        );
        assert!(fast_read(&spv).is_some());
        let out = parse_outgoing(&spv).unwrap().unwrap();
        assert!(format!("{out:?}").contains("IGD.A"), "{out:?}");
    }
}
