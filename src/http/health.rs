//! `GET /healthz`: 200 when the database answers, 503 otherwise.

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
