//! The HTTP layer (actix-web only): the CPE-facing CWMP endpoint and the operator-facing
//! admin API. Handlers translate between HTTP and the domain; `error.rs` is the one place
//! that maps domain errors to status codes and JSON.

pub mod api;
pub mod console;
pub mod cwmp;
pub mod error;
pub mod fileserver;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod phones;
pub mod request_id;
pub mod tls;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware, web, App, HttpServer};

use crate::state::AppState;

/// Build (not yet run) the two servers on already-bound listeners.
pub fn build_servers(
    state: Arc<AppState>,
    cwmp_listener: TcpListener,
    api_listener: TcpListener,
    cwmp_tls: Option<rustls::ServerConfig>,
    client_cas: Option<Arc<tls::ClientCas>>,
    api_tls: Option<rustls::ServerConfig>,
) -> anyhow::Result<Vec<actix_web::dev::Server>> {
    let data = web::Data::from(state.clone());
    let cwmp_data = data.clone();
    let cfg = &state.config;
    let cwmp_limits = limits::ConnLimits::new(
        cfg.cwmp.max_connections_per_source,
        crate::config::ip_nets(&cfg.cwmp.connection_limit_exempt),
        Duration::from_secs(cfg.cwmp.body_timeout_secs),
    );
    let api_limits = limits::ConnLimits::new(
        cfg.api.max_connections_per_source,
        crate::config::ip_nets(&cfg.api.connection_limit_exempt),
        Duration::from_secs(cfg.api.body_timeout_secs),
    );
    let cwmp_tls_on = cwmp_tls.is_some();
    let cwmp = HttpServer::new(move || {
        App::new()
            .app_data(cwmp_data.clone())
            .wrap(middleware::from_fn(limits::middleware))
            .wrap(middleware::from_fn(request_id::middleware))
            .configure(|c| cwmp::configure(c, cwmp_tls_on))
    })
    .on_connect({
        let st = state.clone();
        move |conn, ext| {
            limits::on_connect(&cwmp_limits, conn, ext);
            cwmp::on_connect(&st, client_cas.as_deref(), conn, ext)
        }
    })
    .keep_alive(Duration::from_secs(
        state.config.cwmp.session_timeout_secs.max(5),
    ))
    .client_request_timeout(Duration::from_secs(cfg.cwmp.body_timeout_secs))
    .disable_signals()
    .shutdown_timeout(30);
    let cwmp = match cwmp_tls {
        Some(tls) => cwmp.listen_rustls_0_23(cwmp_listener, tls)?,
        None => cwmp.listen(cwmp_listener)?,
    };

    let api_data = data;
    let console_state = web::Data::new(console::ConsoleState::new(&state.config.console));
    let api = HttpServer::new(move || {
        let console_state = console_state.clone();
        App::new()
            .app_data(api_data.clone())
            .wrap(middleware::from_fn(limits::middleware))
            .wrap(middleware::from_fn(request_id::middleware))
            .route("/healthz", web::get().to(health::healthz))
            .route("/metrics", web::get().to(metrics::metrics))
            .configure(api::configure)
            .configure(move |c| console::configure(c, console_state))
    })
    .on_connect(move |conn, ext| limits::on_connect(&api_limits, conn, ext))
    .keep_alive(Duration::from_secs(5))
    .client_request_timeout(Duration::from_secs(cfg.api.body_timeout_secs))
    .disable_signals()
    .shutdown_timeout(30);
    let api = match api_tls {
        Some(tls) => api.listen_rustls_0_23(api_listener, tls)?,
        None => api.listen(api_listener)?,
    };
    Ok(vec![cwmp.run(), api.run()])
}
