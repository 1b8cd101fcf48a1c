//! Envelopes with their secrets blanked, for copies kept for people to read (traces).
//!
//! [`redact`] copies an envelope byte for byte except the content of
//!
//! - the `Value` of every `ParameterValueStruct` whose `Name` the caller calls secret
//!   (SetParameterValues, GetParameterValuesResponse, the Inform's ParameterList), and
//! - every `Username` and `Password` element (Download, Upload, ScheduleDownload,
//!   ChangeDUState),
//!
//! which becomes `***` (or nothing, for a `Value` typed other than `xsd:string`, so the copy
//! still validates against the CWMP schema). An empty value stays empty, so "unset" stays
//! visible. Elements are matched by local name, whatever their prefix.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// What a secret value becomes.
pub const MASK: &str = "***";

/// The `Value` of one `ParameterValueStruct`, while it is read.
#[derive(Default)]
struct Pair {
    name: String,
    in_name: bool,
    /// Byte range of the value's content and what it becomes.
    value: Option<(usize, usize, &'static str)>,
    value_start: Option<(usize, &'static str)>,
}

/// `xml` with its secrets blanked (see the module), or `None` when it is not well-formed
/// enough to tell (the caller should then keep nothing).
pub fn redact(xml: &[u8], is_secret: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut reader = Reader::from_reader(xml);
    let mut cuts: Vec<(usize, usize, &'static str)> = Vec::new();
    let mut pair: Option<Pair> = None;
    // A `Username`/`Password` element being read: where its content starts.
    let mut credential: Option<usize> = None;
    loop {
        let event = reader.read_event().ok()?;
        let after = usize::try_from(reader.buffer_position()).ok()?;
        match event {
            Event::Eof => break,
            Event::Start(e) => match e.local_name().into_inner() {
                "ParameterValueStruct" => pair = Some(Pair::default()),
                "Name" => {
                    if let Some(p) = pair.as_mut() {
                        p.in_name = true;
                    }
                }
                "Value" => {
                    if let Some(p) = pair.as_mut() {
                        p.value_start = Some((after, mask_for(&e)));
                    }
                }
                "Username" | "Password" => credential = Some(after),
                _ => {}
            },
            Event::Text(t) => {
                if let Some(p) = pair.as_mut().filter(|p| p.in_name) {
                    p.name.push_str(t.xml10_content().trim());
                }
            }
            Event::End(e) => {
                let end_tag = end_tag_start(xml, after)?;
                match e.local_name().into_inner() {
                    "Name" => {
                        if let Some(p) = pair.as_mut() {
                            p.in_name = false;
                        }
                    }
                    "Value" => {
                        if let Some(p) = pair.as_mut() {
                            if let Some((start, mask)) = p.value_start.take() {
                                p.value = Some((start, end_tag, mask));
                            }
                        }
                    }
                    "ParameterValueStruct" => {
                        if let Some(p) = pair.take() {
                            if let Some(v) = p.value.filter(|_| is_secret(&p.name)) {
                                cuts.push(v);
                            }
                        }
                    }
                    "Username" | "Password" => {
                        if let Some(start) = credential.take() {
                            cuts.push((start, end_tag, MASK));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    cuts.retain(|(start, end, _)| end > start);
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(xml.len());
    let mut at = 0;
    for (start, end, with) in cuts {
        if start < at {
            return None;
        }
        out.extend_from_slice(&xml[at..start]);
        out.extend_from_slice(with.as_bytes());
        at = end;
    }
    out.extend_from_slice(&xml[at..]);
    Some(out)
}

/// `***` for a value typed `xsd:string` (or untyped), else nothing (a masked number or
/// date would not be one).
fn mask_for(e: &BytesStart<'_>) -> &'static str {
    let ty = e
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().into_inner() == "type")
        .map(|a| a.value.into_owned());
    match ty {
        None => MASK,
        Some(t) if t.ends_with(":string") || t == "string" => MASK,
        Some(_) => "",
    }
}

/// Where the end tag that finishes just before `after` starts.
fn end_tag_start(xml: &[u8], after: usize) -> Option<usize> {
    xml.get(..after)?.windows(2).rposition(|w| w == b"</")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secret(name: &str) -> bool {
        name.ends_with("Password") || name.ends_with("KeyPassphrase")
    }

    fn run(xml: &str) -> String {
        String::from_utf8(redact(xml.as_bytes(), &secret).unwrap()).unwrap()
    }

    #[test]
    fn secret_values_are_blanked_and_the_rest_kept_byte_for_byte() {
        let xml = r#"<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
<soap:Body><cwmp:SetParameterValues><ParameterList>
<ParameterValueStruct><Name>Device.ManagementServer.ConnectionRequestPassword</Name><Value xsi:type="xsd:string">Cr-S3cret&amp;x</Value></ParameterValueStruct>
<ParameterValueStruct><Value xsi:type="xsd:string">Wpa-Key-1</Value><Name>Device.WiFi.AccessPoint.1.Security.KeyPassphrase</Name></ParameterValueStruct>
<ParameterValueStruct><Name>Device.ManagementServer.PeriodicInformInterval</Name><Value xsi:type="xsd:unsignedInt">300</Value></ParameterValueStruct>
<ParameterValueStruct><Name>Device.X.Password</Name><Value xsi:type="xsd:string"></Value></ParameterValueStruct>
<ParameterValueStruct><Name>Device.X.Password</Name><Value xsi:type="xsd:unsignedInt">7</Value></ParameterValueStruct>
<ParameterValueStruct><Name>Device.Y.Password</Name><Value/></ParameterValueStruct>
</ParameterList><ParameterKey>k1</ParameterKey></cwmp:SetParameterValues></soap:Body></soap:Envelope>"#;
        let out = run(xml);
        assert!(
            !out.contains("Cr-S3cret") && !out.contains("Wpa-Key-1"),
            "{out}"
        );
        assert!(out.contains(
            r#"<Name>Device.ManagementServer.ConnectionRequestPassword</Name><Value xsi:type="xsd:string">***</Value>"#
        ));
        assert!(out.contains(r#"<Value xsi:type="xsd:string">***</Value><Name>Device.WiFi"#));
        assert!(out.contains(r#"<Value xsi:type="xsd:unsignedInt">300</Value>"#));
        assert!(
            out.contains(r#"<Name>Device.X.Password</Name><Value xsi:type="xsd:string"></Value>"#)
        );
        assert!(out.contains(r#"<Value xsi:type="xsd:unsignedInt"></Value>"#));
        assert!(out.contains("<Value/>") && out.contains("<ParameterKey>k1</ParameterKey>"));
        // Nothing else moved.
        let plain = xml
            .replace("Cr-S3cret&amp;x", "***")
            .replace("Wpa-Key-1", "***")
            .replace(">7</Value>", "></Value>");
        assert_eq!(out, plain);
    }

    #[test]
    fn transfer_credentials_are_blanked() {
        let xml = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><c:Download xmlns:c=\"urn:dslforum-org:cwmp-1-2\"><CommandKey>k</CommandKey><URL>http://f/x</URL><Username>dl-user</Username><Password>dl-pass</Password><FileSize>0</FileSize></c:Download></s:Body></s:Envelope>";
        let out = run(xml);
        assert!(
            !out.contains("dl-user") && !out.contains("dl-pass"),
            "{out}"
        );
        assert!(out.contains("<Username>***</Username><Password>***</Password>"));
        assert!(out.contains("<URL>http://f/x</URL>"));
    }

    #[test]
    fn broken_xml_gives_nothing() {
        assert!(redact(b"<a><b></a>", &secret).is_none());
    }
}
