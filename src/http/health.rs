//! `GET /healthz`: 200 when the database answers, 503 otherwise; the XMPP connection's state.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let started = std::time::Instant::now();
    match store.run(|s| s.ping()).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({
            "status": "ok",
            "database": store.backend_name(),
            "database_ms": started.elapsed().as_secs_f64() * 1000.0,
            // XMPP connection requests (null when not configured); an XMPP server that is
            // down makes requests fall back to the next transport, not the node unhealthy.
            "xmpp": state.services.connreq.xmpp().map(|x| {
                let s = x.status();
                serde_json::json!({"state": s.state, "since": s.since, "last_error": s.last_error})
            }),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database does not answer");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "unavailable",
                "database": store.backend_name(),
                "error": e.to_string(),
            }))
        }
    }
}
