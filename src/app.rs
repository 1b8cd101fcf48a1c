//! Application assembly: [`start`], used by `ferroacs serve` and by the test harness alike,
//! so tests drive exactly what operators run. The shared state lives in [`crate::state`]
//! (re-exported here); the HTTP layer imports it from there, never from this module.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::domain::driver::Driver;
use crate::state::CwmpState;
use crate::store::Store;

pub use crate::state::{AppState, Clock};

/// A running server.
pub struct Running {
    pub cwmp_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The TFTP server's address when `tftp.listen` is set.
    pub tftp_addr: Option<SocketAddr>,
    /// The STUN server's address when `stun.listen` is set.
    pub stun_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    handles: Vec<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish (graceful) or not, and wait.
    pub fn stop(mut self, graceful: bool) {
        self.stop_inner(graceful);
    }

    fn stop_inner(&mut self, graceful: bool) {
        let handles = std::mem::take(&mut self.handles);
        if let Some(t) = self.thread.take() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    for h in &handles {
                        h.stop(graceful).await;
                    }
                });
            }
            let _ = t.join();
        }
        if graceful {
            crate::scheduler::release(&self.state);
        }
        self.state.driver.shutdown();
        self.flush_phone_fetches();
    }

    /// After the servers stopped: write the phone fetches still waiting.
    fn flush_phone_fetches(&self) {
        let log = &self.state.services.phones.fetch_log;
        let n = log.flush_blocking(&self.state.store);
        if n > 0 {
            tracing::info!(rows = n, "phone fetch log written at shutdown");
        }
    }

    /// Block until the servers stop (after a signal).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        crate::scheduler::release(&self.state);
        self.state.driver.shutdown();
        self.flush_phone_fetches();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_inner(false);
        }
    }
}

fn bind(key: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another process uses this port: stop it or choose another address)"
        } else if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (ports below 1024 need privileges)"
        } else {
            ""
        };
        anyhow::anyhow!("{key} {addr}: cannot listen: {e}{hint}")
    })?;
    l.set_nonblocking(true).context("set_nonblocking")?;
    Ok(l)
}

/// Install the process-wide rustls crypto provider (ring). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Start both listeners. Binds first (so a port conflict creates nothing), then opens the
/// database and runs migrations, then serves. `handle_signals`: stop gracefully on
/// SIGINT/SIGTERM (the CLI); tests stop the server themselves.
pub fn start(
    config: Config,
    clock: Option<Clock>,
    handle_signals: bool,
) -> anyhow::Result<Running> {
    install_crypto_provider();
    let config = Arc::new(config);
    let cwmp_listener = bind("cwmp.listen", config.cwmp_listen())?;
    let api_listener = bind("api.listen", config.api_listen())?;
    let tftp_socket = match &config.tftp.listen {
        Some(l) => Some(crate::tftp::bind(l)?),
        None => None,
    };
    let tftp_addr = tftp_socket.as_ref().and_then(|s| s.local_addr().ok());
    let stun_socket = match &config.stun.listen {
        Some(l) => Some(crate::stun::bind(l)?),
        None => None,
    };
    let stun_addr = stun_socket.as_ref().and_then(|s| s.local_addr().ok());
    let phone_cas: Vec<&std::path::Path> = config
        .phones
        .client_ca
        .iter()
        .map(|p| p.as_path())
        .collect();
    let client_cas =
        crate::http::tls::ClientCas::load(config.cwmp.tls_client_ca.as_deref(), &phone_cas)?
            .map(Arc::new);
    let cwmp_tls = match (&config.cwmp.tls_cert, &config.cwmp.tls_key) {
        (Some(c), Some(k)) => Some(crate::http::tls::server_config(c, k, client_cas.clone())?),
        _ => None,
    };
    let api_tls = match (&config.api.tls_cert, &config.api.tls_key) {
        (Some(c), Some(k)) => Some(crate::http::tls::server_config(c, k, None)?),
        _ => None,
    };
    let store = Store::open(&config.database).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::domain::secrets::init(&store, &config.secrets, true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock: Clock = clock.unwrap_or_else(|| Arc::new(crate::store::now_ms));
    // Stable across restarts of this process on this host and port: locks a killed process
    // left behind can be released at once instead of waiting for them to expire.
    let node_id = format!("{}:{}", hostname(), cwmp_listener.local_addr()?.port());
    match store.release_session_locks(&node_id) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            count = n,
            "released session locks left by a previous run of this node"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release stale session locks; they expire by themselves")
        }
    }
    if let Ok(false) = store.has_users() {
        tracing::info!(
            "no operator account exists: create the first one with \
             `ferroacs user add --username admin --role admin --password-stdin`, then log in \
             to the web console at http(s)://{}/",
            api_listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
    }
    let cwmp = CwmpState {
        auth: crate::http::cwmp::auth::CpeAuthenticator::new(&config, &store)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        next_conn: AtomicU64::new(1),
    };
    let mut own = vec![cwmp_listener.local_addr()?, api_listener.local_addr()?];
    own.extend(stun_addr);
    own.extend(tftp_addr);
    let services = Arc::new(
        crate::domain::services::Services::new(&config, &store, &own)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    // XMPP connection requests (TR-069 Annex K): the connection starts with the servers.
    let xmpp = xmpp_settings(&config.xmpp)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .map(crate::connreq::xmpp::XmppClient::new);
    if let Some(x) = &xmpp {
        services.connreq.set_xmpp(x.clone());
    }
    let driver = Arc::new(Driver::new(
        store.clone(),
        config.clone(),
        clock.clone(),
        node_id.clone(),
        services.clone(),
    ));
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        node_id,
        clock,
        cwmp,
        driver,
        services,
    });
    let cwmp_addr = cwmp_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let (tx, rx) = std::sync::mpsc::channel();
    let st = state.clone();
    let thread = std::thread::Builder::new()
        .name("ferroacs-http".into())
        .spawn(move || {
            let sys = actix_web::rt::System::new();
            let err_tx = tx.clone();
            let result = sys.block_on(async move {
                // STUN is known before the first session can ask for it.
                let stun = stun_socket.and_then(|sock| crate::stun::start(st.clone(), sock));
                let servers = crate::http::build_servers(
                    st.clone(),
                    cwmp_listener,
                    api_listener,
                    cwmp_tls,
                    client_cas,
                    api_tls,
                )?;
                let handles: Vec<_> = servers.iter().map(|s| s.handle()).collect();
                // The session driver's background work: session-log writer, idle-session
                // reaper. Pruning old session logs and expiring tasks is housekeeping of the
                // scheduler leader.
                let d = st.driver.clone();
                actix_web::rt::spawn(async move { d.run_log_writer().await });
                let d = st.driver.clone();
                actix_web::rt::spawn(async move { d.run_reaper().await });
                actix_web::rt::spawn(st.services.phones.fetch_log.clone().run_writer(
                    st.store.clone(),
                    Duration::from_millis(st.config.phones.fetch_log_flush_ms),
                ));
                crate::http::console::spawn_background(st.clone());
                crate::scheduler::spawn(st.clone());
                let deferred = st.clone();
                actix_web::rt::spawn(async move {
                    let clock = deferred.clock.clone();
                    deferred
                        .services
                        .connreq
                        .run_deferred(&deferred.store, move || clock())
                        .await;
                });
                if let Some(sock) = tftp_socket {
                    actix_web::rt::spawn(crate::tftp::serve(st.clone(), sock));
                }
                if let Some(stun) = stun {
                    actix_web::rt::spawn(stun);
                }
                if let Some(x) = xmpp {
                    actix_web::rt::spawn(x.run());
                }
                let _ = tx.send(Ok(handles.clone()));
                if handle_signals {
                    let hs = handles.clone();
                    actix_web::rt::spawn(async move {
                        shutdown_signal().await;
                        tracing::info!("shutting down: finishing in-flight requests");
                        for h in &hs {
                            h.stop(true).await;
                        }
                    });
                }
                // Poll both servers together: a server only starts accepting when polled.
                futures_util::future::join_all(servers).await;
                anyhow::Ok(())
            });
            if let Err(e) = result {
                let _ = err_tx.send(Err(e));
            }
        })
        .context("cannot start the HTTP thread")?;
    let handles = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return Err(e),
        Err(_) => anyhow::bail!("the HTTP servers did not start within 30 s"),
    };
    if let Some(t) = tftp_addr {
        tracing::info!(tftp = %t, "TFTP server for phones listening");
    }
    tracing::info!(
        cwmp = %cwmp_addr,
        api = %api_addr,
        database = %state.store.backend_name(),
        node = %state.node_id,
        "ferroacs {} listening",
        env!("CARGO_PKG_VERSION")
    );
    Ok(Running {
        cwmp_addr,
        api_addr,
        tftp_addr,
        stun_addr,
        state,
        handles,
        thread: Some(thread),
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

impl AppState {
    /// The context the use cases (`domain::usecases`) run in, for the API and the console.
    pub fn ctx(self: &Arc<Self>) -> crate::domain::usecases::Ctx<'_> {
        crate::domain::usecases::Ctx::new(
            &self.store,
            &self.config,
            &self.services,
            &*self.clock,
            Arc::new(ServerHooks(self.clone())),
        )
    }
}

/// What the use cases ask of a running server: drop cached CWMP credentials, send connection
/// requests in the background (bounded by `api.connection_request_concurrency`).
struct ServerHooks(Arc<AppState>);

impl crate::domain::usecases::Hooks for ServerHooks {
    fn credentials_changed(&self, username: &str) {
        self.0.cwmp.auth.invalidate(username);
    }

    fn wake(&self, devices: Vec<String>) {
        use futures_util::StreamExt;
        let st = self.0.clone();
        let concurrency = st.config.api.connection_request_concurrency.max(1);
        tokio::spawn(async move {
            futures_util::stream::iter(devices)
                .for_each_concurrent(concurrency, |d| {
                    let st = st.clone();
                    async move {
                        if let Err(e) = st.services.connreq.request(&st.store, &d, st.now()).await {
                            tracing::warn!(device = %d, error = %e, "connection request failed");
                        }
                    }
                })
                .await;
        });
    }
}

/// The client's settings from `[xmpp]`, or `None` when `xmpp.jid` is unset.
fn xmpp_settings(
    cfg: &crate::config::XmppConfig,
) -> Result<Option<crate::connreq::xmpp::XmppSettings>, String> {
    let Some(jid) = &cfg.jid else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    let files: Vec<std::path::PathBuf> = match &cfg.tls_ca_file {
        Some(f) => vec![f.clone()],
        None => vec![
            "/etc/ssl/certs/ca-certificates.crt".into(),
            "/etc/pki/tls/certs/ca-bundle.crt".into(),
        ],
    };
    for path in &files {
        use rustls_pki_types::pem::PemObject;
        match rustls_pki_types::CertificateDer::pem_file_iter(path) {
            Ok(iter) => {
                for cert in iter.flatten() {
                    let _ = roots.add(cert);
                }
                break;
            }
            Err(e) if cfg.tls_ca_file.is_some() => {
                return Err(format!(
                    "xmpp.tls_ca_file {}: cannot read certificates: {e}",
                    path.display()
                ))
            }
            Err(_) => {}
        }
    }
    let tls = crate::connreq::http::tls_config_with_roots(roots)
        .map_err(|e| format!("TLS for XMPP unavailable: {e}"))?;
    Ok(Some(crate::connreq::xmpp::XmppSettings {
        jid: jid.clone(),
        password: cfg
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        server: cfg.server.clone(),
        port: cfg.port,
        allow_plain: cfg.allow_plain,
        tls,
        request_timeout: std::time::Duration::from_millis(cfg.request_timeout_ms.max(100)),
        keepalive: std::time::Duration::from_secs(cfg.keepalive_secs),
        max_stanza_bytes: cfg.max_stanza_bytes,
    }))
}
