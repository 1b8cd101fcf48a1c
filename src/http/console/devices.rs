//! The device list: search with the device query language (a syntax error is shown under
//! the box at its position), a column chooser, id order either way, cursor pages, a capped
//! total count, and bulk actions on the selection or on every device the query matches,
//! with per-device progress polled every 2 s.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::session::{urlencode, Ctx, Operator, Viewer};
use super::view::{ago, TaskView};
use super::{render, ConsoleError, Layout};
use crate::domain::devices::Sort;
use crate::domain::params::ParamTree;
use crate::domain::tasks::{SetValue, TaskSpec};
use crate::domain::usecases::{self, devices::TagOutcome, tasks::TaskOptions};
use crate::error::Error;
use crate::state::AppState;
use crate::store::devices::DeviceRow;

/// Counting stops here: the list says "10000+" instead of scanning every device.
const COUNT_CAP: i64 = 10_000;
/// Most devices one bulk action addresses (as the API).
const MAX_BULK: usize = 100_000;
/// Most devices whose progress a bulk action shows one by one.
const MAX_PROGRESS: usize = 500;
/// Most devices a bulk connection request or delete handles in one request.
const MAX_DIRECT: i64 = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/devices", web::get().to(list))
        .route("/devices/searches", web::post().to(save_search))
        .route(
            "/devices/searches/{id}/delete",
            web::post().to(delete_search),
        )
        .route("/devices/bulk", web::post().to(bulk))
        .route("/devices/bulk/progress", web::get().to(progress));
}

/// A column of the device list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Oui,
    Manufacturer,
    Serial,
    ProductClass,
    Model,
    Software,
    Hardware,
    LastInform,
    Ip,
    Tags,
    ConnReq,
}

const COLS: &[(Col, &str, &str)] = &[
    (Col::Oui, "oui", "OUI"),
    (Col::Manufacturer, "manufacturer", "Manufacturer"),
    (Col::Serial, "serial", "Serial number"),
    (Col::ProductClass, "product_class", "Product class"),
    (Col::Model, "model", "Model"),
    (Col::Software, "software_version", "Software version"),
    (Col::Hardware, "hardware_version", "Hardware version"),
    (Col::LastInform, "last_inform", "Last inform"),
    (Col::Ip, "ip", "IP address"),
    (Col::Tags, "tags", "Tags"),
    (Col::ConnReq, "connreq", "Last connection request"),
];

const DEFAULT_COLS: &[Col] = &[
    Col::ProductClass,
    Col::Software,
    Col::LastInform,
    Col::Ip,
    Col::Tags,
];

/// The orders the list offers: the query-string key, the label, the store's order, and the
/// column whose header sorts by it.
const SORTS: &[(&str, &str, Sort, Option<Col>)] = &[
    ("id", "device id", Sort::Id, None),
    (
        "last_inform",
        "last inform",
        Sort::LastInform,
        Some(Col::LastInform),
    ),
    (
        "software_version",
        "software version",
        Sort::SoftwareVersion,
        Some(Col::Software),
    ),
    (
        "product_class",
        "product class",
        Sort::ProductClass,
        Some(Col::ProductClass),
    ),
    ("serial", "serial number", Sort::Serial, Some(Col::Serial)),
];

fn sort_key(sort: Sort) -> &'static str {
    SORTS
        .iter()
        .find(|(_, _, s, _)| *s == sort)
        .map(|(k, _, _, _)| *k)
        .unwrap_or("id")
}

/// A column header: sortable ones link to their order (again: the other direction).
pub struct Header {
    pub label: String,
    pub href: Option<String>,
    /// `ascending`, `descending` or `none` (for `aria-sort`).
    pub aria_sort: &'static str,
    /// A visible arrow for the current order (not colour alone).
    pub mark: &'static str,
}

pub struct Saved {
    pub id: i64,
    pub name: String,
    pub href: String,
}

pub struct ColChoice {
    pub key: &'static str,
    pub label: &'static str,
    pub on: bool,
}

pub struct Row {
    pub id: String,
    pub href: String,
    pub cells: Vec<String>,
    pub status: &'static str,
    pub status_label: &'static str,
}

#[derive(askama::Template)]
#[template(path = "console/devices.html")]
struct DevicesPage {
    ctx: Layout,
    q: String,
    error: Option<String>,
    error_at: Option<usize>,
    error_marker: String,
    columns: Vec<ColChoice>,
    param_text: String,
    id_header: Header,
    headers: Vec<Header>,
    sort_label: &'static str,
    saved: Vec<Saved>,
    current_query: String,
    rows: Vec<Row>,
    total: String,
    next: Option<String>,
    first: Option<String>,
    order_desc: bool,
    order_toggle: String,
    files: Vec<(String, String)>,
}

struct ListParams {
    q: String,
    cols: Vec<Col>,
    params: Vec<String>,
    desc: bool,
    sort: Sort,
    cursor: Option<String>,
    limit: i64,
}

fn list_params(pairs: &[(String, String)]) -> ListParams {
    let mut p = ListParams {
        q: String::new(),
        cols: Vec::new(),
        params: Vec::new(),
        desc: false,
        sort: Sort::Id,
        cursor: None,
        limit: 50,
    };
    let mut chose = false;
    for (k, v) in pairs {
        match k.as_str() {
            "q" => p.q = v.clone(),
            "col" => {
                chose = true;
                if let Some((c, _, _)) = COLS.iter().find(|(_, key, _)| key == v) {
                    if !p.cols.contains(c) {
                        p.cols.push(*c);
                    }
                }
            }
            "params" => {
                p.params = v
                    .split([',', '\n', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.len() <= 256)
                    .take(8)
                    .map(str::to_string)
                    .collect();
            }
            "order" => p.desc = v == "desc",
            "sort" => {
                if let Some((_, _, s, _)) = SORTS.iter().find(|(k, _, _, _)| k == v) {
                    p.sort = *s;
                }
            }
            "cursor" if !v.is_empty() => p.cursor = Some(v.clone()),
            "limit" => p.limit = v.parse::<i64>().unwrap_or(50).clamp(10, 500),
            _ => {}
        }
    }
    if !chose {
        p.cols = DEFAULT_COLS.to_vec();
    }
    p
}

/// The query string of the list with another cursor/order.
fn list_url(p: &ListParams, cursor: Option<&str>, desc: bool) -> String {
    let mut parts = vec![format!("q={}", urlencode(&p.q))];
    for c in &p.cols {
        if let Some((_, key, _)) = COLS.iter().find(|(x, _, _)| x == c) {
            parts.push(format!("col={key}"));
        }
    }
    if !p.params.is_empty() {
        parts.push(format!("params={}", urlencode(&p.params.join(","))));
    }
    if p.sort != Sort::Id {
        parts.push(format!("sort={}", sort_key(p.sort)));
    }
    if desc {
        parts.push("order=desc".into());
    }
    if p.limit != 50 {
        parts.push(format!("limit={}", p.limit));
    }
    if let Some(c) = cursor {
        parts.push(format!("cursor={}", urlencode(c)));
    }
    format!("/devices?{}", parts.join("&"))
}

/// The list in another order, from its first page.
fn sort_url(p: &ListParams, sort: Sort, desc: bool) -> String {
    let q = ListParams {
        q: p.q.clone(),
        cols: p.cols.clone(),
        params: p.params.clone(),
        desc,
        sort,
        cursor: None,
        limit: p.limit,
    };
    list_url(&q, None, desc)
}

/// The header of a sortable column (or of the id).
fn header(p: &ListParams, label: &str, sort: Option<Sort>) -> Header {
    let Some(sort) = sort else {
        return Header {
            label: label.to_string(),
            href: None,
            aria_sort: "none",
            mark: "",
        };
    };
    let current = p.sort == sort;
    Header {
        label: label.to_string(),
        href: Some(sort_url(p, sort, current && !p.desc)),
        aria_sort: match (current, p.desc) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        },
        mark: match (current, p.desc) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        },
    }
}

/// A device's link.
pub fn device_href(id: &str) -> String {
    format!("/devices/{}", urlencode(id))
}

/// Online / overdue / never informed, as a word (and a class for colour).
pub fn liveness(d: &DeviceRow, now: i64, interval_ms: i64) -> (&'static str, &'static str) {
    match d.last_inform {
        None => ("never", "never informed"),
        Some(t) if now - t <= interval_ms + 60_000 => ("online", "on time"),
        Some(_) => ("overdue", "overdue"),
    }
}

pub fn interval_ms(state: &AppState) -> i64 {
    match state.config.cwmp.periodic_inform_interval_secs {
        0 => 3_600_000,
        s => i64::from(s) * 1000,
    }
}

fn param_value(tree: &ParamTree, name: &str) -> String {
    let rel = crate::domain::devices::relative_name(name);
    let found = tree.get(name).or_else(|| {
        ["InternetGatewayDevice.", "Device."]
            .iter()
            .find_map(|root| tree.get(&format!("{root}{rel}")))
    });
    match found {
        Some(e) if crate::domain::params::is_secret(name) && e.value.is_some() => "••••".into(),
        Some(e) => e.value.clone().unwrap_or_default(),
        None => String::new(),
    }
}

async fn list(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ConsoleError> {
    let p = list_params(&query);
    let now = state.now();
    let parsed = crate::domain::devices::parse_query_at(&p.q);
    let (filter, error, error_at) = match parsed {
        Ok(f) => (Some(f), None, None),
        Err((e, at)) => {
            let msg = match e {
                Error::Invalid { message, .. } => message,
                other => other.to_string(),
            };
            (None, Some(msg), Some(at))
        }
    };
    let mut rows_out = Vec::new();
    let mut total = String::new();
    let mut next = None;
    let files = state
        .store
        .run(|s| s.list_files(None, 200))
        .await?
        .into_iter()
        .filter(|f| f.device_id.is_none())
        .map(|f| (f.id, format!("{} ({}, {})", f.name, f.file_type, f.version)))
        .collect();
    if let Some(filter) = filter {
        let (f1, cur, limit, desc, sort) =
            (filter.clone(), p.cursor.clone(), p.limit, p.desc, p.sort);
        let (rows, count) = state
            .store
            .run(move |s| {
                let rows = s.search_devices_ordered(&f1, cur.as_deref(), limit, sort, desc)?;
                let count = s.count_matching_devices(&f1, COUNT_CAP + 1)?;
                Ok((rows, count))
            })
            .await?;
        total = if count > COUNT_CAP {
            format!("{COUNT_CAP}+")
        } else {
            count.to_string()
        };
        if rows.len() as i64 == p.limit {
            next = rows.last().map(|r| list_url(&p, Some(&r.id), p.desc));
        }
        let ids: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
        let (tags, crs) = state
            .store
            .run(move |s| Ok((s.tags_of(&ids)?, s.connreqs_of(&ids)?)))
            .await?;
        let mut by_dev: HashMap<String, Vec<String>> = HashMap::new();
        for (d, t) in tags {
            by_dev.entry(d).or_default().push(t);
        }
        let iv = interval_ms(&state);
        for d in &rows {
            let tree = if p.params.is_empty() {
                None
            } else {
                d.inform_params
                    .as_deref()
                    .and_then(|b| ParamTree::decode(b).ok())
            };
            let mut cells = Vec::new();
            for c in &p.cols {
                cells.push(match c {
                    Col::Oui => d.oui.clone(),
                    Col::Manufacturer => d.manufacturer.clone(),
                    Col::Serial => d.serial_number.clone(),
                    Col::ProductClass => d.product_class.clone(),
                    Col::Model => d.model_name.clone(),
                    Col::Software => d.software_version.clone(),
                    Col::Hardware => d.hardware_version.clone(),
                    Col::LastInform => ago(now, d.last_inform),
                    Col::Ip => d.last_source_ip.clone(),
                    Col::Tags => by_dev.get(&d.id).map(|t| t.join(", ")).unwrap_or_default(),
                    Col::ConnReq => crs
                        .get(&d.id)
                        .map(|c| format!("{} ({})", c.outcome, ago(now, Some(c.at))))
                        .unwrap_or_default(),
                });
            }
            for name in &p.params {
                cells.push(
                    tree.as_ref()
                        .map(|t| param_value(t, name))
                        .unwrap_or_default(),
                );
            }
            let (status, status_label) = liveness(d, now, iv);
            rows_out.push(Row {
                id: d.id.clone(),
                href: device_href(&d.id),
                cells,
                status,
                status_label,
            });
        }
    }
    let mut headers: Vec<Header> = p
        .cols
        .iter()
        .filter_map(|c| {
            let sort = SORTS
                .iter()
                .find(|(_, _, _, col)| *col == Some(*c))
                .map(|(_, _, s, _)| *s);
            COLS.iter()
                .find(|(x, _, _)| x == c)
                .map(|(_, _, l)| header(&p, l, sort))
        })
        .collect();
    headers.extend(p.params.iter().map(|n| header(&p, n, None)));
    let saved = usecases::searches::list(&state.ctx(), &ctx.as_actor())
        .await?
        .into_iter()
        .map(|r| Saved {
            id: r.id,
            href: format!("/devices?{}", r.query),
            name: r.name,
        })
        .collect();
    let current_query = list_url(&p, None, p.desc)
        .trim_start_matches("/devices?")
        .to_string();
    let error_marker = error_at
        .map(|at| format!("{}^", " ".repeat(at)))
        .unwrap_or_default();
    let page = DevicesPage {
        ctx: ctx.layout("devices"),
        q: p.q.clone(),
        error,
        error_at: error_at.map(|a| a + 1),
        error_marker,
        columns: COLS
            .iter()
            .map(|(c, key, label)| ColChoice {
                key,
                label,
                on: p.cols.contains(c),
            })
            .collect(),
        param_text: p.params.join(", "),
        id_header: header(&p, "Device", Some(Sort::Id)),
        headers,
        sort_label: SORTS
            .iter()
            .find(|(_, _, s, _)| *s == p.sort)
            .map(|(_, l, _, _)| *l)
            .unwrap_or("device id"),
        saved,
        current_query,
        rows: rows_out,
        total,
        first: p.cursor.as_ref().map(|_| list_url(&p, None, p.desc)),
        next,
        order_desc: p.desc,
        order_toggle: sort_url(&p, p.sort, !p.desc),
        files,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct BulkForm {
    action: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    confirmed: Option<String>,
    #[serde(default)]
    connection_request: Option<String>,
    #[serde(default)]
    param_name: String,
    #[serde(default)]
    param_value: String,
    #[serde(default)]
    file_id: String,
    #[serde(default)]
    tag: String,
}

#[derive(askama::Template)]
#[template(path = "console/bulk_confirm.html")]
struct BulkConfirm {
    ctx: Layout,
    action: String,
    label: &'static str,
    count: String,
    fields: Vec<(String, String)>,
}

#[derive(askama::Template)]
#[template(path = "console/bulk_progress.html")]
pub struct BulkProgress {
    pub title: String,
    pub tasks: Vec<TaskView>,
    pub more: usize,
    pub ids: String,
    pub done: usize,
    pub open: bool,
    pub direct: Vec<(String, String, &'static str)>,
}

fn action_label(action: &str) -> Option<&'static str> {
    Some(match action {
        "reboot" => "Reboot",
        "factory_reset" => "Factory reset",
        "connection_request" => "Connection request",
        "set" => "Set parameter value",
        "push" => "Push file",
        "delete" => "Delete",
        "tag" => "Add tag",
        "untag" => "Remove tag",
        _ => return None,
    })
}

async fn bulk(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let pairs: Vec<(String, String)> = ctx.form()?;
    let f: BulkForm = ctx.form()?;
    let ids: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.clone())
        .take(MAX_BULK)
        .collect();
    let Some(label) = action_label(&f.action) else {
        return Err(Error::invalid("action", format!("unknown bulk action {:?}", f.action)).into());
    };
    let filter = if f.scope == "query" {
        crate::domain::devices::parse_query(&f.q)?
    } else {
        if ids.is_empty() {
            return Err(Error::invalid(
                "ids",
                "select devices first, or choose \"every device the query matches\"",
            )
            .into());
        }
        crate::domain::devices::any_of_ids(&ids)
    };
    let count = if f.scope == "query" {
        let fl = filter.clone();
        state
            .store
            .run(move |s| s.count_matching_devices(&fl, MAX_BULK as i64))
            .await?
    } else {
        ids.len() as i64
    };
    // Destructive actions are confirmed first, naming how many devices they touch.
    if matches!(f.action.as_str(), "factory_reset" | "delete") && f.confirmed.is_none() {
        let fields = pairs
            .iter()
            .filter(|(k, _)| k != "_csrf" && k != "action")
            .cloned()
            .collect();
        return render(
            StatusCode::OK,
            &BulkConfirm {
                ctx: ctx.layout("devices"),
                action: f.action.clone(),
                label,
                count: count.to_string(),
                fields,
            },
        );
    }
    let now = state.now();
    let actor = ctx.as_actor();
    let uc = state.ctx();
    let spec = match f.action.as_str() {
        "reboot" => Some(TaskSpec::Reboot {}),
        "factory_reset" => Some(TaskSpec::FactoryReset {}),
        "set" => {
            if f.param_name.trim().is_empty() {
                return Err(Error::invalid("param_name", "give the parameter's full name").into());
            }
            Some(TaskSpec::SetParameterValues {
                values: vec![SetValue {
                    name: f.param_name.trim().to_string(),
                    value: f.param_value.clone(),
                    xsd_type: None,
                }],
            })
        }
        "push" => {
            let fid = f.file_id.clone();
            let file = state
                .store
                .run(move |s| s.get_file(&fid))
                .await?
                .ok_or_else(|| Error::invalid("file_id", "choose a stored file"))?;
            Some(TaskSpec::Download {
                file_id: Some(file.id),
                url: None,
                file_type: file.file_type,
                username: None,
                password: None,
                file_size: None,
                target_file_name: None,
                delay_seconds: 0,
            })
        }
        _ => None,
    };
    if let Some(spec) = spec {
        let opts = TaskOptions {
            connection_request: f.connection_request.is_some(),
            ..TaskOptions::default()
        };
        let rows = usecases::tasks::create_bulk_matching(&uc, &actor, &filter, &spec, &opts)
            .await?
            .tasks;
        let tasks: Vec<TaskView> = rows
            .iter()
            .take(MAX_PROGRESS)
            .map(|t| TaskView::new(t, now))
            .collect();
        let ids = tasks
            .iter()
            .map(|t| t.id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        return render(
            StatusCode::OK,
            &BulkProgress {
                title: format!("{label}: {} task(s) queued", rows.len()),
                more: rows.len().saturating_sub(MAX_PROGRESS),
                done: 0,
                open: !tasks.is_empty(),
                tasks,
                ids,
                direct: Vec::new(),
            },
        );
    }
    if matches!(f.action.as_str(), "tag" | "untag") {
        usecases::devices::check_tag(f.tag.trim())?;
    }
    // Direct actions: connection requests, deletes and tags, at most MAX_DIRECT devices.
    let fl = filter.clone();
    let devices = state
        .store
        .run(move |s| s.search_device_ids(&fl, None, MAX_DIRECT))
        .await?;
    let mut direct = Vec::new();
    match f.action.as_str() {
        "connection_request" => {
            let concurrency = state.config.api.connection_request_concurrency.clamp(1, 64);
            let (uc, actor) = (&uc, &actor);
            direct = futures_util::stream::iter(devices)
                .map(|d| async move {
                    match usecases::devices::connection_request(uc, actor, &d).await {
                        Ok(r) => {
                            let class = if r.outcome == "ok" { "ok" } else { "bad" };
                            (d, format!("{}: {}", r.outcome, r.message), class)
                        }
                        Err(e) => (d, e.to_string(), "bad"),
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        }
        "delete" => {
            for d in devices {
                let outcome = match usecases::devices::delete(&uc, &actor, &d).await {
                    Ok(()) => ("deleted".to_string(), "ok"),
                    Err(Error::NotFound { .. }) => ("already gone".to_string(), "ok"),
                    Err(e) => (e.to_string(), "bad"),
                };
                direct.push((d, outcome.0, outcome.1));
            }
        }
        "tag" | "untag" => {
            let add = f.action == "tag";
            let done = usecases::devices::set_tag(&uc, &actor, &devices, &f.tag, add).await?;
            for (d, o) in done {
                let word = match (o, add) {
                    (TagOutcome::Changed, true) => "tagged",
                    (TagOutcome::Changed, false) => "untagged",
                    (TagOutcome::Unchanged, true) => "had the tag already",
                    (TagOutcome::Unchanged, false) => "did not have the tag",
                    (TagOutcome::NoDevice, _) => "already gone",
                };
                direct.push((d, format!("{word}: {}", f.tag.trim()), "ok"));
            }
        }
        _ => {}
    }
    direct.sort();
    render(
        StatusCode::OK,
        &BulkProgress {
            title: format!("{label}: {} device(s)", direct.len()),
            tasks: Vec::new(),
            more: 0,
            ids: String::new(),
            done: direct.len(),
            open: false,
            direct,
        },
    )
}

#[derive(Deserialize)]
struct SaveForm {
    name: String,
    query: String,
}

/// Save the current search (its query string) for the logged-in user, then show it.
async fn save_search(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: SaveForm = ctx.form()?;
    usecases::searches::save(&state.ctx(), &ctx.as_actor(), &f.name, &f.query).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/devices?{}", f.query),
        ))
        .finish())
}

async fn delete_search(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ConsoleError> {
    usecases::searches::delete(&state.ctx(), &ctx.as_actor(), id.into_inner()).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, "/devices"))
        .finish())
}

#[derive(Deserialize)]
struct ProgressQuery {
    ids: String,
    title: Option<String>,
}

async fn progress(
    _ctx: Ctx<Viewer>,
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ProgressQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let _ = req;
    let ids: Vec<i64> = q
        .ids
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .take(MAX_PROGRESS)
        .collect();
    let now = state.now();
    let i2 = ids.clone();
    let rows = state.store.run(move |s| s.task_statuses(&i2)).await?;
    let tasks: Vec<TaskView> = rows.iter().map(|t| TaskView::new(t, now)).collect();
    let done = tasks.iter().filter(|t| !t.open).count();
    let open = tasks.iter().any(|t| t.open);
    render(
        StatusCode::OK,
        &BulkProgress {
            title: q.title.clone().unwrap_or_else(|| "Progress".into()),
            more: 0,
            done,
            open,
            ids: q.ids.clone(),
            tasks,
            direct: Vec::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_keep_choices_across_pages() {
        let pairs = vec![
            ("q".to_string(), "tag = lab".to_string()),
            ("col".into(), "serial".into()),
            ("col".into(), "nosuch".into()),
            ("params".into(), "Device.X, DeviceInfo.Y".into()),
            ("order".into(), "desc".into()),
        ];
        let p = list_params(&pairs);
        assert_eq!(p.cols, vec![Col::Serial]);
        assert_eq!(p.params, vec!["Device.X", "DeviceInfo.Y"]);
        assert!(p.desc);
        let url = list_url(&p, Some("a b"), true);
        assert_eq!(
            url,
            "/devices?q=tag%20%3D%20lab&col=serial&params=Device%2EX%2CDeviceInfo%2EY&order=desc&cursor=a%20b"
        );
        assert_eq!(list_params(&[]).cols, DEFAULT_COLS);
    }
}
