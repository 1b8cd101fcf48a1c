//! SIP NOTIFY `Event: check-sync`: the phone analogue of a connection request. Polycom,
//! Yealink, Grandstream, Cisco, Snom and Gigaset phones fetch their configuration again
//! when they receive it (most only from their registrar or when configured to accept it
//! from anyone). Pure: the message is built from values; sending is the caller's.

/// What goes into one NOTIFY.
#[derive(Debug, Clone)]
pub struct Notify<'a> {
    /// The phone: host (address or name) and port.
    pub host: &'a str,
    pub port: u16,
    /// User part of the Request-URI (the phone's first line, or its MAC).
    pub user: &'a str,
    /// Our local address as the phone sees it (Via, From, Contact).
    pub local: std::net::SocketAddr,
    /// Random values: Via branch, From tag, Call-ID.
    pub branch: &'a str,
    pub tag: &'a str,
    pub call_id: &'a str,
    /// Ask the phone to reboot after the check (Polycom, Yealink honour `reboot=true`).
    pub reboot: bool,
}

fn host_part(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// The NOTIFY request, ready for a UDP datagram.
pub fn check_sync(n: &Notify<'_>) -> Vec<u8> {
    let host = host_part(n.host);
    let local_ip = host_part(&n.local.ip().to_string());
    let local = format!("{local_ip}:{}", n.local.port());
    let user: String = n
        .user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '*' | '#'))
        .collect();
    let user = if user.is_empty() {
        "phone".into()
    } else {
        user
    };
    format!(
        "NOTIFY sip:{user}@{host}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ferroacs@{local_ip}>;tag={tag}\r\n\
         To: <sip:{user}@{host}>\r\n\
         Call-ID: {call_id}@{local_ip}\r\n\
         CSeq: 1 NOTIFY\r\n\
         Contact: <sip:ferroacs@{local}>\r\n\
         Event: check-sync;reboot={reboot}\r\n\
         Subscription-State: terminated\r\n\
         User-Agent: ferroacs/{version}\r\n\
         Content-Length: 0\r\n\r\n",
        port = n.port,
        branch = n.branch,
        tag = n.tag,
        call_id = n.call_id,
        reboot = n.reboot,
        version = env!("CARGO_PKG_VERSION"),
    )
    .into_bytes()
}

/// The status code of a SIP response (`SIP/2.0 200 OK` → 200), if it is one.
pub fn response_status(datagram: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(datagram.get(..datagram.len().min(64))?).ok()?;
    let rest = text.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn notify_has_the_headers_phones_check() {
        let n = Notify {
            host: "192.0.2.10",
            port: 5060,
            user: "1001\r\nX: y",
            local: "192.0.2.1:40000".parse().unwrap(),
            branch: "abc",
            tag: "t1",
            call_id: "c1",
            reboot: false,
        };
        let m = String::from_utf8(check_sync(&n)).unwrap();
        assert!(
            m.starts_with("NOTIFY sip:1001Xy@192.0.2.10:5060 SIP/2.0\r\n"),
            "{m}"
        );
        assert!(m.contains("\r\nEvent: check-sync;reboot=false\r\n"));
        assert!(m.contains("\r\nCSeq: 1 NOTIFY\r\n"));
        assert!(m.contains("\r\nVia: SIP/2.0/UDP 192.0.2.1:40000;branch=z9hG4bKabc;rport\r\n"));
        assert!(m.ends_with("Content-Length: 0\r\n\r\n"));
        let v6 = Notify {
            host: "2001:db8::10",
            local: "[2001:db8::1]:5060".parse().unwrap(),
            ..n
        };
        let m = String::from_utf8(check_sync(&v6)).unwrap();
        assert!(
            m.starts_with("NOTIFY sip:1001Xy@[2001:db8::10]:5060 SIP/2.0\r\n"),
            "{m}"
        );
    }

    #[test]
    fn response_status_codes() {
        assert_eq!(response_status(b"SIP/2.0 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            response_status(b"SIP/2.0 481 Call Does Not Exist\r\n"),
            Some(481)
        );
        assert_eq!(response_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(response_status(b""), None);
    }
}
