//! Configuration: a TOML file overridden by `FERROACS_<SECTION>_<KEY>` environment variables,
//! validated once at start and then passed around explicitly (no globals).
//!
//! Every key is described in [`KEYS`]; `ferroacs config example` prints that table as a
//! commented TOML file, and a test checks that the printed defaults are exactly what
//! [`Config::default`] holds, so the documentation cannot drift from the code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "FERROACS_";

/// A configuration problem; the message always names the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub cwmp: CwmpConfig,
    pub api: ApiConfig,
    pub files: FilesConfig,
    pub secrets: SecretsConfig,
    pub console: ConsoleConfig,
    pub log: LogConfig,
    pub scheduler: SchedulerConfig,
    pub phones: PhonesConfig,
    pub tftp: TftpConfig,
    pub stun: StunConfig,
    pub xmpp: XmppConfig,
}

/// Where the key for secrets at rest comes from (see [`crate::secrets`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    pub key_file: PathBuf,
    pub key: Option<Secret>,
    pub previous_keys: Option<Secret>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            key_file: PathBuf::from("ferroacs.key"),
            key: None,
            previous_keys: None,
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    pub pool_size: u32,
    pub busy_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// SQLite: WAL pages after which the checkpoint thread copies them back (commits do it
    /// themselves, `PRAGMA wal_autocheckpoint`, at four times as many).
    pub sqlite_wal_autocheckpoint: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &DatabaseUrl::redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("sqlite_wal_autocheckpoint", &self.sqlite_wal_autocheckpoint)
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://ferroacs.db".into(),
            pool_size: 8,
            busy_timeout_ms: 5000,
            connect_timeout_ms: 5000,
            sqlite_wal_autocheckpoint: 2_000,
        }
    }
}

/// A secret string: never shown, neither by `Debug` nor when serialized (the configuration
/// is serialized only to show it: `GET /api/v1/settings`, `ferroacs config show`), so a
/// secret key added later is masked without a list to keep in step.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
    }
}

/// How unknown devices are treated on first contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownDevices {
    Accept,
    Reject,
}

/// How ferroacs writes the xsd:boolean values it generates itself (bootstrap
/// PeriodicInformEnable, STUNEnable, ...): some CPEs accept only `1`/`0` (TP-Link TD-W9970
/// answers 9007 to `false`; GenieACS's `cwmp.booleanLiteral`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BooleanLiteral {
    /// `true` / `false`.
    Word,
    /// `1` / `0`.
    Digit,
}

impl BooleanLiteral {
    /// `on` written in this form.
    pub fn literal(self, on: bool) -> &'static str {
        match (self, on) {
            (BooleanLiteral::Word, true) => "true",
            (BooleanLiteral::Word, false) => "false",
            (BooleanLiteral::Digit, true) => "1",
            (BooleanLiteral::Digit, false) => "0",
        }
    }

    /// The form to write a parameter in: digits when this form is digits or when the
    /// device reports the parameter's value (`reported`) as a digit, whose form it then
    /// surely accepts.
    pub fn or_as_reported(self, reported: Option<&str>) -> BooleanLiteral {
        match reported.map(str::trim) {
            Some("0" | "1") => BooleanLiteral::Digit,
            _ => self,
        }
    }
}

/// Which HTTP authentication the CWMP endpoint demands from CPEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpeAuth {
    /// Digest (Basic is also accepted over TLS, or everywhere with `allow_basic`).
    Digest,
    /// No HTTP authentication (lab use only, or when TLS client certificates are required).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CwmpConfig {
    pub listen: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub auth: CpeAuth,
    pub realm: String,
    pub allow_basic: bool,
    pub default_username: Option<String>,
    pub default_password: Option<Secret>,
    pub unknown_devices: UnknownDevices,
    pub session_timeout_secs: u64,
    pub nonce_ttl_secs: u64,
    pub max_inform_bytes: usize,
    pub max_body_bytes: usize,
    pub max_sessions: usize,
    pub max_auth_failures: u32,
    pub periodic_inform_interval_secs: u32,
    pub set_connection_request_credentials: bool,
    pub issue_credentials: bool,
    pub boolean_literal: BooleanLiteral,
    pub discovery_refresh_secs: u64,
    pub gpv_batch_size: usize,
    pub session_log_retention_days: u32,
    pub hold_requests: bool,
    pub save_every_exchange: bool,
    pub body_timeout_secs: u64,
    pub max_connections_per_source: usize,
    pub connection_limit_exempt: Vec<String>,
    pub trusted_proxies: Vec<String>,
}

impl Default for CwmpConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:7547".into(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth: CpeAuth::Digest,
            realm: "ferroacs".into(),
            allow_basic: false,
            default_username: None,
            default_password: None,
            unknown_devices: UnknownDevices::Accept,
            session_timeout_secs: 30,
            nonce_ttl_secs: 300,
            max_inform_bytes: 256 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            max_sessions: 10_000,
            max_auth_failures: 20,
            periodic_inform_interval_secs: 3600,
            set_connection_request_credentials: true,
            issue_credentials: true,
            boolean_literal: BooleanLiteral::Word,
            discovery_refresh_secs: 7 * 86_400,
            gpv_batch_size: 128,
            session_log_retention_days: 30,
            hold_requests: false,
            save_every_exchange: false,
            body_timeout_secs: 30,
            max_connections_per_source: 256,
            connection_limit_exempt: vec!["127.0.0.1/32".to_string(), "::1/128".to_string()],
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub connection_request_timeout_ms: u64,
    pub connection_request_concurrency: usize,
    pub connection_request_min_interval_ms: u64,
    pub connection_request_allow_basic: bool,
    pub connection_request_allow_networks: String,
    pub connection_request_deny_networks: String,
    pub connection_request_transports: String,
    pub connection_request_confirm_timeout_ms: u64,
    pub task_transfer_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_connections_per_source: usize,
    pub connection_limit_exempt: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7557".into(),
            tls_cert: None,
            tls_key: None,
            connection_request_timeout_ms: 3000,
            connection_request_concurrency: 256,
            connection_request_min_interval_ms: 2000,
            connection_request_allow_basic: false,
            connection_request_allow_networks: String::new(),
            connection_request_deny_networks: crate::connreq::policy::DEFAULT_DENY.into(),
            connection_request_transports: "xmpp, udp, http".into(),
            connection_request_confirm_timeout_ms: 10_000,
            task_transfer_timeout_secs: 3600,
            body_timeout_secs: 30,
            max_connections_per_source: 64,
            connection_limit_exempt: vec!["127.0.0.1/32".to_string(), "::1/128".to_string()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    pub dir: PathBuf,
    pub public_url: Option<String>,
    pub max_upload_bytes: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("files"),
            public_url: None,
            max_upload_bytes: 512 * 1024 * 1024,
        }
    }
}

/// The operator web console (served on the admin listener).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub session_idle_secs: u64,
    pub session_max_secs: u64,
    pub login_max_failures: u32,
    pub login_block_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            session_idle_secs: 1800,
            session_max_secs: 43_200,
            login_max_failures: 5,
            login_block_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    pub cwmp_trace_dir: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            cwmp_trace_dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    pub enabled: bool,
    pub tick_ms: u64,
    pub lease_ttl_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_ms: 1000,
            lease_ttl_secs: 15,
        }
    }
}

/// Phones that fetch configuration files (served under `/prov/` on the CWMP listener).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhonesConfig {
    pub unknown_phones: UnknownDevices,
    pub site_token: Option<Secret>,
    pub lock_to_first_network: bool,
    pub file_password: Option<Secret>,
    pub default_sip_server: Option<String>,
    pub public_url: Option<String>,
    pub max_upload_bytes: usize,
    pub max_failed_fetches: u32,
    pub activation_code_ttl_secs: u64,
    pub activation_window_secs: u64,
    pub fetch_log_buffer: usize,
    pub fetch_log_flush_ms: u64,
    pub gigaset_provider_id: Option<String>,
    /// PEM CA bundles whose certificates identify phones on `/prov/cert/` (HTTPS on the
    /// CWMP listener), by the MAC their subject names.
    pub client_ca: Vec<PathBuf>,
}

impl Default for PhonesConfig {
    fn default() -> Self {
        Self {
            unknown_phones: UnknownDevices::Reject,
            site_token: None,
            lock_to_first_network: false,
            file_password: None,
            default_sip_server: None,
            public_url: None,
            max_upload_bytes: 1024 * 1024,
            max_failed_fetches: 20,
            activation_code_ttl_secs: 7 * 24 * 3600,
            activation_window_secs: 900,
            fetch_log_buffer: 10_000,
            fetch_log_flush_ms: 1000,
            gigaset_provider_id: None,
            client_ca: Vec::new(),
        }
    }
}

/// The TFTP server for phones (off unless `listen` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TftpConfig {
    pub listen: Option<String>,
    pub allow_networks: String,
    /// Names of file-store files TFTP serves besides the model firmware (comma separated;
    /// e.g. the other files of a Cisco firmware bundle).
    pub firmware_files: String,
    pub timeout_secs: u64,
    pub retries: u32,
    pub max_blksize: u16,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            allow_networks: DEFAULT_TFTP_ALLOW.into(),
            firmware_files: String::new(),
            timeout_secs: 2,
            retries: 5,
            max_blksize: 8192,
        }
    }
}

/// The STUN server of TR-111 (TR-069 Annex G; off unless `listen` is set) and the STUN
/// settings given to devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StunConfig {
    pub listen: Option<String>,
    pub server_address: String,
    pub server_port: u16,
    pub configure_devices: bool,
    pub min_keepalive_secs: u32,
    pub max_keepalive_secs: i32,
    pub require_integrity_on_change: bool,
    pub binding_max_age_secs: u64,
    pub udp_copies: u32,
}

impl Default for StunConfig {
    fn default() -> Self {
        Self {
            listen: None,
            server_address: String::new(),
            server_port: 0,
            configure_devices: true,
            min_keepalive_secs: 30,
            max_keepalive_secs: 60,
            require_integrity_on_change: true,
            binding_max_age_secs: 300,
            udp_copies: 3,
        }
    }
}

/// ferroacs as an XMPP client for TR-069 Annex K connection requests (off unless `jid` is
/// set): one long-lived connection per node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XmppConfig {
    pub jid: Option<String>,
    pub password: Option<Secret>,
    pub server: String,
    pub port: u16,
    pub allow_plain: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub request_timeout_ms: u64,
    pub keepalive_secs: u64,
    pub max_stanza_bytes: usize,
    pub configure_devices: bool,
}

impl Default for XmppConfig {
    fn default() -> Self {
        Self {
            jid: None,
            password: None,
            server: String::new(),
            port: 5222,
            allow_plain: false,
            tls_ca_file: None,
            request_timeout_ms: 10_000,
            keepalive_secs: 60,
            max_stanza_bytes: 65_536,
            configure_devices: true,
        }
    }
}

/// The standard STUN port, the one `stun.listen` usually names.
pub const STUN_PORT: u16 = 3478;

/// Networks the TFTP server answers by default: loopback and private ranges.
pub const DEFAULT_TFTP_ALLOW: &str =
    "127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7";

/// Documentation of one configuration key.
pub struct KeyDoc {
    pub section: &'static str,
    pub key: &'static str,
    /// Default as a TOML literal; `None` when the key is unset by default.
    pub default: Option<&'static str>,
    pub example: Option<&'static str>,
    pub secret: bool,
    pub doc: &'static str,
}

macro_rules! k {
    ($s:literal, $k:literal, $d:expr, $e:expr, $secret:literal, $doc:literal) => {
        KeyDoc {
            section: $s,
            key: $k,
            default: $d,
            example: $e,
            secret: $secret,
            doc: $doc,
        }
    };
}

/// Every configuration key, in the order `config example` prints them.
pub const KEYS: &[KeyDoc] = &[
    k!("database", "url", Some("\"sqlite://ferroacs.db\""), None, true,
       "Database URL. sqlite://PATH (embedded, created on first start; relative to the working directory)\nor postgres://USER:PASSWORD@HOST:PORT/DB for several ferroacs nodes sharing one database."),
    k!("database", "pool_size", Some("8"), None, false, "Maximum open database connections."),
    k!("database", "busy_timeout_ms", Some("5000"), None, false, "SQLite: how long a writer waits for the lock before failing."),
    k!("database", "connect_timeout_ms", Some("5000"), None, false, "How long to wait for a database connection before giving up."),
    k!("database", "sqlite_wal_autocheckpoint", Some("2000"), None, false, "SQLite: WAL pages (4 KB each) after which a background thread copies them back into the database file\n(it looks every 50 ms; a commit does it itself only at four times as many, when that thread falls behind).\nLarger: fewer, larger checkpoints (a page written by many sessions is copied once) for a WAL file up to that size\nand as much to replay after a crash; SQLite's own default is 1000."),
    k!("cwmp", "listen", Some("\"0.0.0.0:7547\""), None, false, "Address of the CPE-facing CWMP endpoint."),
    k!("cwmp", "tls_cert", None, Some("\"/etc/ferroacs/cwmp.crt\""), false, "PEM certificate chain; with tls_key the CWMP endpoint speaks HTTPS."),
    k!("cwmp", "tls_key", None, Some("\"/etc/ferroacs/cwmp.key\""), false, "PEM private key for tls_cert."),
    k!("cwmp", "tls_client_ca", None, Some("\"/etc/ferroacs/cpe-ca.pem\""), false, "PEM CA bundle; when set, CPEs must present a client certificate signed by it."),
    k!("cwmp", "auth", Some("\"digest\""), None, false, "CPE authentication: \"digest\" (HTTP Digest; Basic also accepted over TLS) or \"none\"."),
    k!("cwmp", "realm", Some("\"ferroacs\""), None, false, "HTTP authentication realm. Stored device credentials are hashed with it: changing it invalidates them."),
    k!("cwmp", "allow_basic", Some("false"), None, false, "Accept HTTP Basic credentials over plain HTTP too (they travel in clear text)."),
    k!("cwmp", "default_username", None, Some("\"cpe\""), false, "Username for devices without their own credentials; unset = any username."),
    k!("cwmp", "default_password", None, Some("\"change-me\""), true, "Password for devices without their own credentials; unset = such devices cannot authenticate."),
    k!("cwmp", "unknown_devices", Some("\"accept\""), None, false, "\"accept\" registers a device on first contact; \"reject\" only admits pre-provisioned devices."),
    k!("cwmp", "session_timeout_secs", Some("30"), None, false, "A session idle this long is abandoned."),
    k!("cwmp", "nonce_ttl_secs", Some("300"), None, false, "Lifetime of a Digest nonce; older ones are answered with stale=true."),
    k!("cwmp", "max_inform_bytes", Some("262144"), None, false, "Largest accepted request that opens a session (the Inform)."),
    k!("cwmp", "max_body_bytes", Some("33554432"), None, false, "Largest accepted request inside a session (e.g. a whole-tree GetParameterValuesResponse)."),
    k!("cwmp", "max_sessions", Some("10000"), None, false, "Open sessions above which new Informs get 503 with Retry-After."),
    k!("cwmp", "max_auth_failures", Some("20"), None, false, "Failed logins per source address per minute before it is refused for a while."),
    k!("cwmp", "periodic_inform_interval_secs", Some("3600"), None, false, "Set on every device at BOOTSTRAP (PeriodicInformEnable/Interval); 0 leaves the device's setting alone."),
    k!("cwmp", "set_connection_request_credentials", Some("true"), None, false, "At BOOTSTRAP give each device its own random ConnectionRequestUsername/Password."),
    k!("cwmp", "issue_credentials", Some("true"), None, false, "Trust on first use: a device that logs in with the shared default credentials is given its own random\nManagementServer.Password (and Username when it used a shared one) in its bootstrap settings; once\nit has logged in with them the shared ones no longer open it. false = the shared ones always do."),
    k!("cwmp", "boolean_literal", Some("\"word\""), None, false, "How ferroacs writes the xsd:boolean values it generates itself (bootstrap PeriodicInformEnable, STUNEnable):\n\"word\" (true/false) or \"digit\" (1/0, for CPEs that refuse the words with fault 9007). A device refusing a\nword there gets it again as a digit; VoIP line settings follow the form the device reports; values given\nin tasks are sent as given."),
    k!("cwmp", "discovery_refresh_secs", Some("604800"), None, false, "Re-read a device's whole parameter tree when the last read is older than this; 0 = only on first contact and BOOTSTRAP."),
    k!("cwmp", "gpv_batch_size", Some("128"), None, false, "Parameter names per GetParameterValues request during discovery (128 rows of a typical\ndevice, 150-200 bytes each, answer in about 20-26 KB, under the 32 KiB many CPEs are built for)."),
    k!("cwmp", "session_log_retention_days", Some("30"), None, false, "How long the per-device session log is kept."),
    k!("cwmp", "hold_requests", Some("false"), None, false, "When ferroacs has requests queued for a device, set HoldRequests in the InformResponse so they go\nbefore the CPE's own requests (TransferComplete, ...); the CPE sends those after ferroacs is done."),
    k!("cwmp", "save_every_exchange", Some("false"), None, false, "Save an open session to the database after every exchange, not only when its connection closes, so\nthe CPE's next request may land on any node: set it on every node behind a load balancer that\nbalances each request (HAProxy roundrobin in HTTP mode). Costs two writes per exchange."),
    k!("cwmp", "body_timeout_secs", Some("30"), None, false, "A request body must keep arriving: no byte for this long and the request gets 408 and its connection\nis closed. A session-opening request must arrive whole within this time. Also the time allowed for a\nrequest head on a new connection."),
    k!("cwmp", "max_connections_per_source", Some("256"), None, false, "Open connections per source address (IPv6: per /64) on the CWMP listener; above it requests get 503\nand the connection is closed. 0 = no limit. Loopback counts too unless listed below."),
    k!("cwmp", "connection_limit_exempt", Some("[\"127.0.0.1/32\", \"::1/128\"]"), None, false, "Networks not subject to max_connections_per_source: a reverse proxy on this host (the default), or a\ncarrier-grade NAT that many CPEs share, e.g. [\"127.0.0.1/32\", \"::1/128\", \"100.64.0.0/10\"]. [] limits loopback too."),
    k!("cwmp", "trusted_proxies", Some("[]"), None, false, "Reverse proxies in front of the CWMP listener, e.g. [\"10.0.0.5/32\"]. For a request from one of them the\nclient's address is read from X-Forwarded-For; a request on a connection that a session authenticated\ncontinues that session only when it comes from the session's client address."),
    k!("api", "listen", Some("\"127.0.0.1:7557\""), None, false, "Address of the operator-facing admin API and web UI."),
    k!("api", "tls_cert", None, Some("\"/etc/ferroacs/api.crt\""), false, "PEM certificate chain; with tls_key the admin listener speaks HTTPS."),
    k!("api", "tls_key", None, Some("\"/etc/ferroacs/api.key\""), false, "PEM private key for tls_cert."),
    k!("api", "connection_request_timeout_ms", Some("3000"), None, false, "How long a connection request to a device may take."),
    k!("api", "connection_request_concurrency", Some("256"), None, false, "Connection requests in flight at once."),
    k!("api", "connection_request_min_interval_ms", Some("2000"), None, false, "Minimum time between two connection requests to the same device."),
    k!("api", "connection_request_allow_basic", Some("false"), None, false, "Answer a device's Basic challenge (the password then travels in clear over http); Digest is always used when offered."),
    k!("api", "connection_request_allow_networks", Some("\"\""), None, false, "Networks connection requests (HTTP and UDP) may go to although connection_request_deny_networks\nrefuses them, e.g. \"10.255.0.1/32\"; comma-separated addresses or CIDR networks. The most\nspecific network of both lists decides (allow wins a tie); an address on neither is allowed.\nferroacs's own listeners are refused whatever these lists say."),
    k!("api", "connection_request_deny_networks", Some("\"0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4, 100.100.100.200/32, ::/128, ::1/128, fe80::/10, ff00::/8, fd00:ec2::254/128\""), None, false, "Networks connection requests never go to, checked on every address a device's URL resolves to\n(IPv4-mapped, NAT64, IPv4-compatible and 6to4 IPv6 forms and numeric forms such as 2130706433 included):\nby default unspecified, loopback, link-local (cloud metadata), multicast, reserved/broadcast and the\nother clouds' metadata addresses. Private ranges stay allowed."),
    k!("api", "connection_request_transports", Some("\"xmpp, udp, http\""), None, false, "Order in which connection-request transports are tried for a device that reports what each\nneeds: xmpp (TR-069 Annex K: ConnReqJabberID, with [xmpp] configured), udp (TR-111: a STUN binding or UDPConnectionRequestAddress), http (ConnectionRequestURL;\nlast whenever the device reports NATDetected). The next is tried when one fails or is not\nconfirmed by the device's Inform within connection_request_confirm_timeout_ms."),
    k!("api", "connection_request_confirm_timeout_ms", Some("10000"), None, false, "How long the Inform with \"6 CONNECTION REQUEST\" may take before a request counts as unconfirmed\nand the next transport is tried."),
    k!("api", "task_transfer_timeout_secs", Some("3600"), None, false, "How long a Download, Upload or Reboot task waits for the device to report completion before it expires."),
    k!("api", "body_timeout_secs", Some("30"), None, false, "A request body must keep arriving: no byte for this long and the request gets 408 and its connection\nis closed. Also the time allowed for a request head on a new connection."),
    k!("api", "max_connections_per_source", Some("64"), None, false, "Open connections per source address (IPv6: per /64) on the admin listener; above it requests get 503\nand the connection is closed. 0 = no limit. Loopback counts too unless listed below."),
    k!("api", "connection_limit_exempt", Some("[\"127.0.0.1/32\", \"::1/128\"]"), None, false, "Networks not subject to max_connections_per_source on the admin listener (by default a reverse proxy\non this host); [] limits loopback too."),
    k!("files", "dir", Some("\"files\""), None, false, "Where firmware, configuration files and device uploads are stored."),
    k!("files", "public_url", None, Some("\"https://acs.example.net:7547\""), false, "Base URL devices use to fetch files; unset = derived from the CWMP listener."),
    k!("files", "max_upload_bytes", Some("536870912"), None, false, "Largest file accepted from an operator or a device Upload."),
    k!("secrets", "key_file", Some("\"ferroacs.key\""), None, false, "File holding the key that encrypts connection-request and VoIP line passwords and task secrets in\nthe database (AES-256-GCM); created with mode 0600 and a random key at first start. Every node\nsharing a database needs the same key. `ferroacs secrets rotate-key` replaces it."),
    k!("secrets", "key", None, Some("\"<64 hex digits, e.g. from openssl rand -hex 32>\""), true, "The key itself instead of a key file (e.g. FERROACS_SECRETS_KEY from a secret store)."),
    k!("secrets", "previous_keys", None, Some("\"<old key>\""), true, "With secrets.key: older keys, comma-separated, still accepted for reading until\n`ferroacs secrets reencrypt` has rewritten everything under secrets.key."),
    k!("console", "session_idle_secs", Some("1800"), None, false, "A console session unused this long ends (the operator logs in again)."),
    k!("console", "session_max_secs", Some("43200"), None, false, "A console session ends this long after login, however active."),
    k!("console", "login_max_failures", Some("5"), None, false, "Failed console logins per source address within 10 minutes before it is refused for login_block_secs."),
    k!("console", "login_block_secs", Some("300"), None, false, "How long a source address that failed too many console logins is refused."),
    k!("scheduler", "enabled", Some("true"), None, false, "Take part in the election of the scheduler leader (campaign pacing, scheduled jobs); false = this node never leads."),
    k!("scheduler", "tick_ms", Some("1000"), None, false, "How often the scheduler leader paces campaigns and renews its lease."),
    k!("scheduler", "lease_ttl_secs", Some("15"), None, false, "The leader's lease lasts this long without renewal; when a leader dies another node takes over\nwithin this time plus one tick."),
    k!("phones", "unknown_phones", Some("\"reject\""), None, false, "A phone ferroacs does not know fetching through the site URL (phones.site_token) or TFTP: \"reject\" (404)\nor \"accept\" (registered with the vendor its file name or User-Agent tells; lines are added afterwards)."),
    k!("phones", "site_token", None, Some("\"<random, e.g. from openssl rand -hex 16>\""), true, "Path segment of the provisioning URL shared by every phone of a site (/prov/<site_token>/); unset = only\neach phone's own URL (/prov/<phone token>/, `ferroacs phone url MAC`) works over HTTP."),
    k!("phones", "lock_to_first_network", Some("false"), None, false, "Serve a phone's files only to the network (IPv4 /24, IPv6 /64) of its first fetch."),
    k!("phones", "file_password", None, Some("\"change-me\""), true, "Password encrypting Grandstream files of phones without their own (OpenSSL Salted__ AES-256-CBC);\nunset = such files are served in clear."),
    k!("phones", "default_sip_server", None, Some("\"sip.example.net:5060\""), false, "Where unknown Cisco phones register (XMLDefault.cnf.xml); unset = that file is not found."),
    k!("phones", "public_url", None, Some("\"https://prov.example.net:7547\""), false, "Base URL printed by `ferroacs phone url` (the CWMP listener as phones reach it); unset = files.public_url,\nelse the CWMP listener's address."),
    k!("phones", "max_upload_bytes", Some("1048576"), None, false, "Largest file a phone may upload (Polycom overrides and logs); larger gets 413."),
    k!("phones", "max_failed_fetches", Some("20"), None, false, "Failed fetches (unknown token, file of another phone, wrong network) per source address per minute\nbefore it gets 429 for the rest of the minute."),
    k!("phones", "activation_code_ttl_secs", Some("604800"), None, false, "How long a new activation code (POST /api/v1/phones/{mac}/activation_code) can be used for the first time."),
    k!("phones", "activation_window_secs", Some("900"), None, false, "After its first use, how long an activation code keeps working for the address that used it\n(the phone fetching its remaining files); afterwards it is refused like a wrong code."),
    k!("phones", "fetch_log_buffer", Some("10000"), None, false, "Fetches held in memory until the fetch log is written; when the database falls this far behind,\nfurther entries are dropped (counted in ferroacs_phone_fetch_log_dropped_total) and files are still served."),
    k!("phones", "fetch_log_flush_ms", Some("1000"), None, false, "How often waiting fetches are written to the fetch log (sooner when 500 are waiting; all of them\nat a clean shutdown, and before the API or console shows a phone)."),
    k!("phones", "client_ca", Some("[]"), Some("[\"/etc/ferroacs/polycom-ca.pem\", \"/etc/ferroacs/yealink-ca.pem\"]"), false, "PEM CA bundles of phones' factory certificates (needs cwmp.tls_cert): a phone presenting a certificate signed\nby one of them fetches /prov/cert/<file> as the phone whose MAC its subject names. Trusted for phones only:\nnever as a CPE's certificate (cwmp.tls_client_ca), and CPE certificates never open phone files."),
    k!("phones", "gigaset_provider_id", None, Some("\"ferroacs\""), false, "Provider id of Gigaset activation codes (<provider id>#<code>[#<Digest password>], at most 32 characters):\n1 to 12 letters and digits; unset = Gigaset codes are not issued or accepted (the 12-digit codes still work)."),
    k!("tftp", "listen", None, Some("\"0.0.0.0:69\""), false, "UDP address of the TFTP server for phones (RFC 1350 with blksize/tsize/timeout options); unset = off."),
    k!("tftp", "allow_networks", Some("\"127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7\""), None, false, "Source networks the TFTP server answers (TFTP has no authentication: files are found by MAC)."),
    k!("tftp", "firmware_files", Some("\"\""), None, false, "Names of file-store files TFTP serves besides each phone model's firmware (comma separated,\ne.g. the .sbn files of a Cisco firmware bundle); any other file of the store is refused."),
    k!("tftp", "timeout_secs", Some("2"), None, false, "Retransmission timeout when the client asks for none."),
    k!("tftp", "retries", Some("5"), None, false, "Retransmissions of a block before the transfer is abandoned."),
    k!("tftp", "max_blksize", Some("8192"), None, false, "Largest block size granted to a client asking for more (RFC 2348; 512 to 65464)."),
    k!("stun", "listen", None, Some("\"0.0.0.0:3478\""), false, "UDP address of the STUN server for devices behind NAT (TR-111 / TR-069 Annex G; RFC 3489 and 5389;\nthe standard port is 3478); unset = off. UDP connection requests leave from this socket."),
    k!("stun", "server_address", Some("\"\""), Some("\"acs.example.net\""), false, "STUNServerAddress given to devices; empty = not set (devices then use the host of their ACS URL)."),
    k!("stun", "server_port", Some("0"), None, false, "STUNServerPort given to devices; 0 = the port of stun.listen."),
    k!("stun", "configure_devices", Some("true"), None, false, "When the STUN server is on, give devices that have ManagementServer.STUN* parameters STUNEnable,\nthe server, their own STUNUsername/STUNPassword and the keep-alive periods (after their discovery)."),
    k!("stun", "min_keepalive_secs", Some("30"), None, false, "STUNMinimumKeepAlivePeriod given to devices."),
    k!("stun", "max_keepalive_secs", Some("60"), None, false, "STUNMaximumKeepAlivePeriod given to devices (below the NAT's UDP timeout)."),
    k!("stun", "require_integrity_on_change", Some("true"), None, false, "Answer a Binding Request carrying BINDING-CHANGE without valid USERNAME and MESSAGE-INTEGRITY\nwith 401, so the device repeats it authenticated."),
    k!("stun", "binding_max_age_secs", Some("300"), None, false, "A device's STUN binding not confirmed by a Binding Request for this long is no longer used for\nUDP connection requests."),
    k!("stun", "udp_copies", Some("3"), None, false, "Copies of each UDP connection request (UDP may lose one), 100 ms apart."),
    k!("xmpp", "jid", None, Some("\"acs@xmpp.example.net/ferroacs\""), false, "ferroacs's own XMPP account for connection requests (TR-069 Annex K), local@domain[/resource];\nunset = no XMPP. Each node logs in once and keeps the connection (give nodes distinct resources)."),
    k!("xmpp", "password", None, Some("\"change-me\""), true, "The password of xmpp.jid (SASL SCRAM-SHA-1/-256; PLAIN only inside TLS)."),
    k!("xmpp", "server", Some("\"\""), Some("\"xmpp.example.net\""), false, "Host name or address of the XMPP server; empty = the domain of xmpp.jid."),
    k!("xmpp", "port", Some("5222"), None, false, "TCP port of the XMPP server (client connections, STARTTLS)."),
    k!("xmpp", "allow_plain", Some("false"), None, false, "Log in without TLS when the server offers no STARTTLS (loopback tests only; PLAIN is never used\nwithout TLS). Off: a server without STARTTLS is refused."),
    k!("xmpp", "tls_ca_file", None, Some("\"/etc/ferroacs/xmpp-ca.pem\""), false, "PEM certificates trusted for the XMPP server's TLS certificate; unset = the system's authorities."),
    k!("xmpp", "request_timeout_ms", Some("10000"), None, false, "How long a connection request IQ waits for the device's answer before it counts as unreachable."),
    k!("xmpp", "keepalive_secs", Some("60"), None, false, "A whitespace keep-alive goes out after this long without traffic (0 = none)."),
    k!("xmpp", "max_stanza_bytes", Some("65536"), None, false, "Largest element the XMPP server may send; a larger one closes the stream (and reconnects)."),
    k!("xmpp", "configure_devices", Some("true"), None, false, "After their discovery, add ferroacs's bare JID to ManagementServer.ConnReqAllowedJabberIDs of devices\nthat have it and XMPP connection objects (existing entries are kept)."),
    k!("log", "format", Some("\"text\""), None, false, "\"text\" (readable) or \"json\" (one object per line)."),
    k!("log", "level", Some("\"info\""), None, false, "Filter in tracing's EnvFilter syntax, e.g. \"info,ferroacs=debug\"."),
    k!("log", "cwmp_trace_dir", None, Some("\"/var/tmp/ferroacs-trace\""), false, "Write every SOAP envelope received and sent to files in this directory (troubleshooting; grows without bound)."),
];

/// The commented example configuration printed by `ferroacs config example`.
pub fn example() -> String {
    let mut out = String::from(
        "# ferroacs configuration. Every key is optional; the values shown are the defaults.\n\
         # Each key can be overridden by the environment: [cwmp] listen -> FERROACS_CWMP_LISTEN.\n",
    );
    let mut section = "";
    for k in KEYS {
        if k.section != section {
            section = k.section;
            out.push_str(&format!("\n[{section}]\n"));
        }
        for line in k.doc.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        match (k.default, k.example) {
            (Some(d), _) => out.push_str(&format!("#{} = {}\n", k.key, d)),
            (None, Some(e)) => out.push_str(&format!("# (unset) example:\n#{} = {}\n", k.key, e)),
            (None, None) => out.push_str(&format!("#{} =\n", k.key)),
        }
        out.push('\n');
    }
    out
}

/// Where a setting came from, for error messages.
impl Config {
    /// Load the configuration: `explicit` file if given (must exist), else `./ferroacs.toml`
    /// when present, else defaults; then environment overrides; then validation.
    pub fn load(
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (path, text) = match explicit {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                (p.display().to_string(), text)
            }
            None => {
                let p = Path::new("ferroacs.toml");
                match std::fs::read_to_string(p) {
                    Ok(t) => (p.display().to_string(), t),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        ("(defaults)".to_string(), String::new())
                    }
                    Err(source) => {
                        return Err(ConfigError::Read {
                            path: p.display().to_string(),
                            source,
                        })
                    }
                }
            }
        };
        Self::from_toml_and_env(&path, &text, env)
    }

    /// Parse TOML text, apply `FERROACS_*` overrides from `env`, validate.
    pub fn from_toml_and_env(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // Deserialize the file alone first: toml's errors then name the key and position.
        toml::from_str::<Config>(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e
                .to_string()
                .replace('\n', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: origin.to_string(),
                    message: e.message().to_string()
                        + &e.span()
                            .map(|s| format!(" (at byte {})", s.start))
                            .unwrap_or_default(),
                })?;
        let mut env_keys = Vec::new();
        for (var, value) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Variables read by the test harness or by other tooling, not configuration.
            if rest.starts_with("TEST_") || rest == "CONFIG" {
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            let doc = KEYS.iter().find(|k| {
                lower.len() > k.section.len()
                    && lower.starts_with(k.section)
                    && lower.as_bytes()[k.section.len()] == b'_'
                    && lower[k.section.len() + 1..] == *k.key
            });
            let Some(doc) = doc else {
                return Err(ConfigError::Env {
                    var,
                    message: "unknown setting (run `ferroacs config example` for the list)".into(),
                });
            };
            let parsed = parse_env_value(&value, doc).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
            let section = table
                .entry(doc.section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match section {
                toml::Value::Table(t) => {
                    t.insert(doc.key.to_string(), parsed);
                }
                _ => {
                    return Err(invalid(doc.section, "must be a table ([section])"));
                }
            }
            env_keys.push((doc.section, doc.key, var));
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                // Name the environment variable when the bad value came from one.
                let msg = e.message().to_string();
                for (s, k, var) in &env_keys {
                    if msg.contains(&format!("`{k}`")) || msg.contains(&format!("{s}.{k}")) {
                        return ConfigError::Env {
                            var: var.clone(),
                            message: msg.clone(),
                        };
                    }
                }
                ConfigError::Parse {
                    path: origin.to_string(),
                    message: msg,
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check values that the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        DatabaseUrl::parse(&self.database.url)?;
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        if self.scheduler.lease_ttl_secs < 2 {
            return Err(invalid("scheduler.lease_ttl_secs", "must be at least 2"));
        }
        if self.scheduler.tick_ms == 0 {
            return Err(invalid("scheduler.tick_ms", "must be at least 1"));
        }
        parse_listen("cwmp.listen", &self.cwmp.listen)?;
        if let Some(l) = &self.tftp.listen {
            parse_listen("tftp.listen", l)?;
        }
        if let Some(l) = &self.stun.listen {
            parse_listen("stun.listen", l)?;
        }
        if self.stun.min_keepalive_secs == 0
            || (self.stun.max_keepalive_secs >= 0
                && i64::from(self.stun.max_keepalive_secs)
                    < i64::from(self.stun.min_keepalive_secs))
        {
            return Err(invalid(
                "stun.max_keepalive_secs",
                "min_keepalive_secs must be at least 1 and max_keepalive_secs at least min_keepalive_secs (or -1)",
            ));
        }
        if let Some(jid) = &self.xmpp.jid {
            if crate::xmpp::login::split_jid(jid).is_none() {
                return Err(invalid(
                    "xmpp.jid",
                    "must be local@domain or local@domain/resource",
                ));
            }
            if self.xmpp.password.is_none() {
                return Err(invalid("xmpp.password", "is required when xmpp.jid is set"));
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.xmpp.max_stanza_bytes) {
            return Err(invalid(
                "xmpp.max_stanza_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if !(1..=10).contains(&self.stun.udp_copies) {
            return Err(invalid("stun.udp_copies", "must be between 1 and 10"));
        }
        crate::connreq::parse_transports(&self.api.connection_request_transports)
            .map_err(|e| invalid("api.connection_request_transports", e))?;
        crate::connreq::policy::parse_networks(&self.tftp.allow_networks)
            .map_err(|e| invalid("tftp.allow_networks", e))?;
        if !(512..=65464).contains(&self.tftp.max_blksize) {
            return Err(invalid("tftp.max_blksize", "must be between 512 and 65464"));
        }
        if self.tftp.timeout_secs == 0 || self.tftp.timeout_secs > 255 {
            return Err(invalid("tftp.timeout_secs", "must be between 1 and 255"));
        }
        if self.phones.activation_code_ttl_secs == 0 || self.phones.activation_window_secs == 0 {
            return Err(invalid(
                "phones.activation_window_secs",
                "activation code lifetimes must be at least 1 second",
            ));
        }
        if let Some(p) = &self.phones.gigaset_provider_id {
            if p.is_empty() || p.len() > 12 || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(invalid(
                    "phones.gigaset_provider_id",
                    "1 to 12 letters and digits (it starts a Gigaset activation code)",
                ));
            }
        }
        if self.phones.fetch_log_buffer == 0 || self.phones.fetch_log_flush_ms == 0 {
            return Err(invalid(
                "phones.fetch_log_buffer",
                "phones.fetch_log_buffer and phones.fetch_log_flush_ms must be at least 1",
            ));
        }
        if let Some(t) = &self.phones.site_token {
            let t = t.expose();
            if t.len() < 16
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "phones.site_token",
                    "must be at least 16 letters, digits, - or _ (e.g. from openssl rand -hex 16)",
                ));
            }
        }
        if self.console.session_idle_secs == 0 || self.console.session_max_secs == 0 {
            return Err(invalid(
                "console.session_idle_secs",
                "console session lifetimes must be at least 1 second",
            ));
        }
        if self.console.login_max_failures == 0 {
            return Err(invalid("console.login_max_failures", "must be at least 1"));
        }
        parse_listen("api.listen", &self.api.listen)?;
        check_tls_pair("cwmp", &self.cwmp.tls_cert, &self.cwmp.tls_key)?;
        check_tls_pair("api", &self.api.tls_cert, &self.api.tls_key)?;
        if self.cwmp.tls_client_ca.is_some() && self.cwmp.tls_cert.is_none() {
            return Err(invalid(
                "cwmp.tls_client_ca",
                "client certificates need TLS: set cwmp.tls_cert and cwmp.tls_key too",
            ));
        }
        if let Some(p) = &self.cwmp.tls_client_ca {
            check_readable("cwmp.tls_client_ca", p)?;
        }
        if !self.phones.client_ca.is_empty() && self.cwmp.tls_cert.is_none() {
            return Err(invalid(
                "phones.client_ca",
                "phone client certificates need TLS: set cwmp.tls_cert and cwmp.tls_key too",
            ));
        }
        for p in &self.phones.client_ca {
            check_readable("phones.client_ca", p)?;
        }
        if self.cwmp.realm.is_empty() || self.cwmp.realm.contains('"') {
            return Err(invalid(
                "cwmp.realm",
                "must be non-empty and contain no '\"'",
            ));
        }
        if self.cwmp.session_timeout_secs == 0 {
            return Err(invalid("cwmp.session_timeout_secs", "must be at least 1"));
        }
        if self.cwmp.nonce_ttl_secs < 10 {
            return Err(invalid("cwmp.nonce_ttl_secs", "must be at least 10"));
        }
        if self.cwmp.max_inform_bytes < 32 * 1024 {
            return Err(invalid(
                "cwmp.max_inform_bytes",
                "must be at least 32768 (TR-069 requires CPEs' 32 KiB envelopes to be accepted)",
            ));
        }
        if self.cwmp.max_body_bytes < self.cwmp.max_inform_bytes {
            return Err(invalid(
                "cwmp.max_body_bytes",
                "must not be smaller than cwmp.max_inform_bytes",
            ));
        }
        if self.cwmp.max_sessions == 0 {
            return Err(invalid("cwmp.max_sessions", "must be at least 1"));
        }
        if !(1..=1024).contains(&self.cwmp.gpv_batch_size) {
            return Err(invalid("cwmp.gpv_batch_size", "must be between 1 and 1024"));
        }
        for (section, timeout, exempt) in [
            (
                "cwmp",
                self.cwmp.body_timeout_secs,
                &self.cwmp.connection_limit_exempt,
            ),
            (
                "api",
                self.api.body_timeout_secs,
                &self.api.connection_limit_exempt,
            ),
        ] {
            if timeout == 0 {
                return Err(invalid(
                    &format!("{section}.body_timeout_secs"),
                    "must be at least 1",
                ));
            }
            for n in exempt {
                IpNet::parse(n)
                    .map_err(|m| invalid(&format!("{section}.connection_limit_exempt"), m))?;
            }
        }
        for n in &self.cwmp.trusted_proxies {
            IpNet::parse(n).map_err(|m| invalid("cwmp.trusted_proxies", m))?;
        }
        crate::connreq::policy::parse_networks(&self.api.connection_request_allow_networks)
            .map_err(|e| invalid("api.connection_request_allow_networks", e))?;
        crate::connreq::policy::parse_networks(&self.api.connection_request_deny_networks)
            .map_err(|e| invalid("api.connection_request_deny_networks", e))?;
        if self.api.connection_request_concurrency == 0 {
            return Err(invalid(
                "api.connection_request_concurrency",
                "must be at least 1",
            ));
        }
        if let Some(u) = &self.files.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(
                    "files.public_url",
                    "must start with http:// or https://",
                ));
            }
        }
        if !matches!(
            self.log.level.as_str().split(',').next().unwrap_or(""),
            "" | "trace" | "debug" | "info" | "warn" | "error" | "off"
        ) && !self.log.level.contains('=')
        {
            return Err(invalid(
                "log.level",
                "expected trace, debug, info, warn, error or off (optionally with target=level filters)",
            ));
        }
        Ok(())
    }

    pub fn cwmp_listen(&self) -> SocketAddr {
        // Validated in `validate`.
        parse_listen("cwmp.listen", &self.cwmp.listen)
            .unwrap_or_else(|_| ([0, 0, 0, 0], 7547).into())
    }

    pub fn api_listen(&self) -> SocketAddr {
        parse_listen("api.listen", &self.api.listen)
            .unwrap_or_else(|_| ([127, 0, 0, 1], 7557).into())
    }

    /// The configuration as TOML with every secret replaced by `"********"` (every
    /// [`Secret`] serializes so) and the database URL's password masked.
    pub fn redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.database.url = DatabaseUrl::redact(&c.database.url);
        toml::to_string_pretty(&c).unwrap_or_default()
    }
}

fn parse_env_value(value: &str, doc: &KeyDoc) -> Result<toml::Value, String> {
    // Strings stay strings; numbers and booleans are parsed by TOML rules when the
    // default says the key is not a string.
    let default = doc.default.or(doc.example).unwrap_or("\"\"");
    if default.starts_with('"') {
        return Ok(toml::Value::String(value.to_string()));
    }
    let parsed = format!("v = {}", value.trim())
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("v").cloned());
    if default.starts_with('[') {
        // A list: comma-separated strings.
        return Ok(toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_string()))
                .collect(),
        ));
    }
    let want_bool = default == "true" || default == "false";
    match parsed {
        Some(v @ toml::Value::Boolean(_)) if want_bool => Ok(v),
        Some(v @ toml::Value::Integer(_)) if !want_bool => Ok(v),
        _ => Err(format!(
            "`{value}` is not {} (default {default})",
            if want_bool {
                "true or false"
            } else {
                "a whole number"
            }
        )),
    }
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let bad =
            || format!("`{s}` is not a network such as 10.0.0.0/8, 2001:db8::/32 or 127.0.0.1");
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: std::net::IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parse a list of networks already checked by [`Config::validate`] (bad ones are skipped).
pub fn ip_nets(list: &[String]) -> Vec<IpNet> {
    list.iter().filter_map(|n| IpNet::parse(n).ok()).collect()
}

fn parse_listen(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse::<SocketAddr>().map_err(|_| {
        invalid(
            key,
            format!("`{s}` is not an IP:port address such as 0.0.0.0:7547"),
        )
    })
}

fn check_tls_pair(
    section: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    match (cert, key) {
        (Some(c), Some(k)) => {
            check_readable(&format!("{section}.tls_cert"), c)?;
            check_readable(&format!("{section}.tls_key"), k)
        }
        (Some(_), None) => Err(invalid(
            &format!("{section}.tls_key"),
            "missing: tls_cert needs tls_key",
        )),
        (None, Some(_)) => Err(invalid(
            &format!("{section}.tls_cert"),
            "missing: tls_key needs tls_cert",
        )),
        (None, None) => Ok(()),
    }
}

fn check_readable(key: &str, p: &Path) -> Result<(), ConfigError> {
    std::fs::metadata(p)
        .map(|_| ())
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", p.display())))
}

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, ConfigError> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            if rest.is_empty() {
                return Err(invalid(
                    "database.url",
                    "sqlite:// needs a file path, e.g. sqlite://ferroacs.db",
                ));
            }
            if rest == ":memory:" {
                return Err(invalid(
                    "database.url",
                    "in-memory SQLite cannot be shared by the connection pool; use a file path",
                ));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let after = url.split_once("://").map(|(_, r)| r).unwrap_or("");
            let host_part = after.rsplit_once('@').map(|(_, h)| h).unwrap_or(after);
            let host = host_part.split(['/', '?']).next().unwrap_or("");
            if host.is_empty() && !url.contains("host=") {
                return Err(invalid(
                    "database.url",
                    format!(
                        "`{}` has no host; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                        Self::redact(url)
                    ),
                ));
            }
            if let Some((_, port)) = host.rsplit_once(':') {
                if !host.ends_with(']') && port.parse::<u16>().is_err() {
                    return Err(invalid(
                        "database.url",
                        format!("`{}` has an invalid port `{port}`", Self::redact(url)),
                    ));
                }
            }
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        Err(invalid(
            "database.url",
            format!(
                "`{}` is not supported; use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                Self::redact(url)
            ),
        ))
    }

    /// The URL with any password replaced, safe for logs and output.
    pub fn redact(url: &str) -> String {
        if let Some((scheme, rest)) = url.split_once("://") {
            if let Some((userinfo, host)) = rest.rsplit_once('@') {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    return format!("{scheme}://{user}:********@{host}");
                }
            }
        }
        url.to_string()
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres(_))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(
            "test.toml",
            text,
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn defaults_validate() {
        let c = load("", &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.cwmp_listen().port(), 7547);
        assert_eq!(c.api_listen().to_string(), "127.0.0.1:7557");
    }

    #[test]
    fn example_uncommented_equals_defaults() {
        // Uncomment every `#key = value` line of the example: the result must load and equal
        // the defaults (keys unset by default are shown as examples and left commented).
        let ex = example();
        let mut text = String::new();
        let mut skip_next = false;
        for line in ex.lines() {
            if line.starts_with("# (unset)") {
                skip_next = true;
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                if !rest.starts_with(' ') && rest.contains(" = ") && !skip_next {
                    text.push_str(rest);
                    text.push('\n');
                }
                skip_next = false;
                continue;
            }
            text.push_str(line);
            text.push('\n');
        }
        let c = load(&text, &[]).unwrap();
        assert_eq!(c, Config::default());
        // And every key of the struct is documented.
        let documented = KEYS.len();
        let serialized: toml::Table = toml::to_string(&Config::default())
            .unwrap()
            .parse()
            .unwrap();
        let mut keys = 0;
        for (_, v) in serialized {
            keys += v.as_table().map(|t| t.len()).unwrap_or(0);
        }
        // Keys unset by default (None) are not serialized; count them from KEYS.
        let unset = KEYS.iter().filter(|k| k.default.is_none()).count();
        assert_eq!(keys + unset, documented);
    }

    #[test]
    fn networks_parse_and_match() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.1.2".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one = IpNet::parse("127.0.0.2").unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "::/129"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
        let e = load("[cwmp]\nconnection_limit_exempt = [\"10/8\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cwmp.connection_limit_exempt"), "{e}");
        let c = load(
            "",
            &[("FERROACS_API_CONNECTION_LIMIT_EXEMPT", "127.0.0.0/8, ::1")],
        )
        .unwrap();
        assert_eq!(c.api.connection_limit_exempt, vec!["127.0.0.0/8", "::1"]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = load("[cwmp]\nlisten_port = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let e = load("[nosuch]\n", &[]).unwrap_err().to_string();
        assert!(e.contains("nosuch"), "{e}");
        let e = load("", &[("FERROACS_CWMP_LISTN", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("FERROACS_CWMP_LISTN"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "[cwmp]\nlisten = \"0.0.0.0:1\"\n",
            &[
                ("FERROACS_CWMP_LISTEN", "127.0.0.1:9"),
                ("FERROACS_DATABASE_URL", "postgres://a:b@h:5432/d"),
                ("FERROACS_CWMP_SESSION_TIMEOUT_SECS", "12"),
                ("FERROACS_CWMP_DEFAULT_PASSWORD", "123"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(c.cwmp.listen, "127.0.0.1:9");
        assert_eq!(c.cwmp.session_timeout_secs, 12);
        assert_eq!(
            c.cwmp.default_password.as_ref().map(|s| s.expose()),
            Some("123")
        );
        assert!(!format!("{c:?}").contains("123\""));
        assert!(DatabaseUrl::parse(&c.database.url).unwrap().is_postgres());
        let e = load("", &[("FERROACS_CWMP_SESSION_TIMEOUT_SECS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("FERROACS_CWMP_SESSION_TIMEOUT_SECS"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            (
                "[database]\nurl = \"postgres://u:p@:bad/x\"\n",
                "database.url",
            ),
            ("[cwmp]\nlisten = \"nowhere\"\n", "cwmp.listen"),
            ("[cwmp]\ntls_cert = \"/nonexistent.pem\"\n", "cwmp.tls_key"),
            (
                "[api]\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"\n",
                "api.tls_cert",
            ),
            ("[cwmp]\nmax_inform_bytes = 100\n", "cwmp.max_inform_bytes"),
        ] {
            let e = load(text, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let c = load(
            "[database]\nurl = \"postgres://acs:hunter2@db:5432/acs\"\n[cwmp]\ndefault_password = \"sesame\"\n[secrets]\nkey = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n",
            &[],
        )
        .unwrap();
        let out = c.redacted_toml();
        assert!(!out.contains("hunter2") && !out.contains("sesame"), "{out}");
        // Every secret key of the configuration, whichever section it is in.
        let all = load(
            "[cwmp]\ndefault_password = \"pw-cwmp\"\n[secrets]\nkey = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\nprevious_keys = \"ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\"\n[xmpp]\njid = \"acs@example.net\"\npassword = \"pw-xmpp\"\n[phones]\nsite_token = \"pw-site-token-0123456789\"\nfile_password = \"pw-file\"\n",
            &[],
        )
        .unwrap();
        let shown = all.redacted_toml();
        for secret in ["pw-", "00112233", "ffeeddcc"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
            assert!(!format!("{all:?}").contains(secret), "{secret} in Debug");
        }
        assert_eq!(shown.matches("\"********\"").count(), 6, "{shown}");
        assert!(
            !out.contains("00112233") && !format!("{c:?}").contains("00112233"),
            "{out}"
        );
        assert!(out.contains("acs:********@db:5432/acs"), "{out}");
        assert!(!format!("{:?}", DatabaseUrl::redact("postgres://a:zz@h/d")).contains("zz"));
    }
}
