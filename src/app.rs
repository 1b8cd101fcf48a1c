//! Application assembly: [`start`], used by `ferroacs serve` and by the test harness alike,
//! so tests drive exactly what operators run. The shared state lives in [`crate::state`]
//! (re-exported here); the HTTP layer imports it from there, never from this module.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::state::CwmpState;
use crate::store::Store;

pub use crate::state::{AppState, Clock};

/// A running server.
pub struct Running {
    pub cwmp_addr: SocketAddr,
    pub api_addr: SocketAddr,
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
        crate::http::cwmp::shutdown(&self.state);
    }

    /// Block until the servers stop (after a signal).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        crate::scheduler::release(&self.state);
        crate::http::cwmp::shutdown(&self.state);
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
    let cwmp_tls = match (&config.cwmp.tls_cert, &config.cwmp.tls_key) {
        (Some(c), Some(k)) => Some(crate::http::tls::server_config(
            c,
            k,
            config.cwmp.tls_client_ca.as_deref(),
        )?),
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
    let cwmp = CwmpState::new(&config, &store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let own = [cwmp_listener.local_addr()?, api_listener.local_addr()?];
    let services = crate::domain::services::Services::new(&config, &store, &own)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        node_id,
        clock,
        cwmp,
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
                let servers = crate::http::build_servers(
                    st.clone(),
                    cwmp_listener,
                    api_listener,
                    cwmp_tls,
                    api_tls,
                )?;
                let handles: Vec<_> = servers.iter().map(|s| s.handle()).collect();
                crate::http::cwmp::spawn_background(st.clone());
                crate::http::api::spawn_background(st.clone());
                crate::http::console::spawn_background(st.clone());
                crate::scheduler::spawn(st.clone());
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
