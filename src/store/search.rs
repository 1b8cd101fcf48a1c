//! Device search: the filter tree the device list is queried with, its translation to SQL,
//! the table of searchable parameter values (`device_search`) and the last
//! connection-request outcome of each device (`device_connreq`).
//!
//! Every condition maps to an indexed lookup: identity columns have their own indexes,
//! tags use `device_tags (tag, device_id)`, parameter values use
//! `device_search (name, value, device_id)`, gateways `gateway_links (gateway_id, device_id)`. Pages are ordered by device id and continue after
//! a cursor (the last id of the previous page), so deep pages cost the same as the first.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::devices::DeviceRow;
use super::schema::{device_connreq, device_search, devices};
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::{with_backend, with_conn};

/// A device column the filter can compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Text(&'static str),
    /// A millisecond timestamp or number.
    Number(&'static str),
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Column(Column),
    Tag,
    /// A parameter, by its name relative to the root object (`DeviceInfo.SoftwareVersion`).
    Param(String),
    /// The id of a gateway the device is behind (TR-111: listed in the gateway's
    /// ManageableDevice table or named by the device's GatewayInfo; `gateway_links`).
    Gateway,
}

/// Comparison operators. `Like` takes `*` as the wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "LIKE",
        }
    }
}

/// A device filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Cond { field: Field, op: Op, value: String },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

struct SqlBuilder {
    postgres: bool,
    sql: String,
    binds: Vec<Bind>,
    /// Tag and parameter conditions (positive form) known to match many devices.
    dense: Vec<Probe>,
}

/// A tag or parameter condition in its positive form (`<>` is `NOT` of `=`): what
/// [`Store::dense_conditions`] counts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    field: Field,
    op: Op,
    value: String,
}

/// A condition matching at least this many devices is dense. A tag or parameter condition
/// is written `devices.id IN (SELECT device_id ...)` when rare: the few matching ids are
/// collected first and drive the query. Collecting is what a condition matching most of a
/// million devices cannot afford (every id read and sorted before the first page), so a dense
/// one is written `EXISTS (SELECT 1 ... WHERE device_id = devices.id ...)`: the query walks
/// devices in page order and stops when the page is full, which for a rare condition would
/// walk every device instead. PostgreSQL plans both forms alike; SQLite follows the form.
const DENSE: i64 = 500;

/// The tag and parameter conditions of `f` (positive form), each once.
fn probes(f: &Filter, out: &mut Vec<Probe>) {
    match f {
        Filter::All => {}
        Filter::And(v) | Filter::Or(v) => v.iter().for_each(|x| probes(x, out)),
        Filter::Not(x) => probes(x, out),
        Filter::Cond { field, op, value } => {
            if matches!(field, Field::Tag | Field::Param(_)) || is_last_inform(field) {
                let op = match *op {
                    Op::Ne if !is_last_inform(field) => Op::Eq,
                    Op::Like if is_last_inform(field) => Op::Eq,
                    op => op,
                };
                let p = Probe {
                    field: field.clone(),
                    op,
                    value: value.clone(),
                };
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
}

/// Whether `field` is `last_inform`, whose conditions read the narrow `device_last_inform`
/// (and, like tag and parameter conditions, are written by how many devices they match).
fn is_last_inform(field: &Field) -> bool {
    *field == Field::Column(Column::Number("last_inform"))
}

/// A `last_inform` comparison's value (not a number: matches nothing).
fn number(value: &str) -> i64 {
    value.trim().parse::<i64>().unwrap_or(i64::MIN)
}

/// `SELECT n`: how many rows match `p`, counting at most `cap`.
fn probe_sql(p: &Probe, cap: i64, postgres: bool) -> SqlBuilder {
    let mut b = SqlBuilder::new(
        postgres,
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM (SELECT 1 FROM ",
    );
    match &p.field {
        Field::Param(name) => {
            b.sql.push_str("device_search WHERE name = ");
            b.bind(Bind::Text(name.clone()));
            b.sql.push_str(&format!(" AND value {} ", p.op.sql()));
            b.value(p.op, &p.value);
        }
        f if is_last_inform(f) => {
            b.sql.push_str(&format!(
                "device_last_inform WHERE last_inform IS NOT NULL AND COALESCE(last_inform, -1) {} ",
                p.op.sql()
            ));
            b.bind(Bind::Int(number(&p.value)));
        }
        _ => {
            b.sql
                .push_str(&format!("device_tags WHERE tag {} ", p.op.sql()));
            b.value(p.op, &p.value);
        }
    }
    b.sql.push_str(" LIMIT ");
    b.bind(Bind::Int(cap));
    b.sql.push_str(") AS p");
    b
}

impl SqlBuilder {
    fn new(postgres: bool, sql: &str) -> SqlBuilder {
        SqlBuilder {
            postgres,
            sql: sql.to_string(),
            binds: Vec::new(),
            dense: Vec::new(),
        }
    }

    fn is_dense(&self, field: &Field, op: Op, value: &str) -> bool {
        self.dense
            .iter()
            .any(|p| p.op == op && p.field == *field && p.value == value)
    }

    fn bind(&mut self, b: Bind) {
        self.binds.push(b);
        if self.postgres {
            self.sql.push_str(&format!("${}", self.binds.len()));
        } else {
            self.sql.push('?');
        }
    }

    fn filter(&mut self, f: &Filter) {
        match f {
            Filter::All => self.sql.push_str("1=1"),
            Filter::And(v) | Filter::Or(v) if v.is_empty() => self.sql.push_str("1=1"),
            Filter::And(v) | Filter::Or(v) => {
                let joiner = if matches!(f, Filter::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                self.sql.push('(');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(joiner);
                    }
                    self.filter(x);
                }
                self.sql.push(')');
            }
            Filter::Not(x) => {
                self.sql.push_str("NOT (");
                self.filter(x);
                self.sql.push(')');
            }
            Filter::Cond { field, op, value } => self.cond(field, *op, value),
        }
    }

    fn value(&mut self, op: Op, value: &str) {
        if op == Op::Like {
            self.bind(Bind::Text(value.replace('*', "%")));
        } else {
            self.bind(Bind::Text(value.to_string()));
        }
    }

    fn cond(&mut self, field: &Field, op: Op, value: &str) {
        match field {
            Field::Gateway => {
                let (neg, op) = match op {
                    Op::Ne => (true, Op::Eq),
                    o => (false, o),
                };
                self.sql.push_str(if neg {
                    "devices.id NOT IN (SELECT device_id FROM gateway_links WHERE gateway_id "
                } else {
                    "devices.id IN (SELECT device_id FROM gateway_links WHERE gateway_id "
                });
                self.sql.push_str(op.sql());
                self.sql.push(' ');
                self.value(op, value);
                self.sql.push(')');
            }
            Field::Column(Column::Text(col)) => {
                self.sql.push_str(&format!("devices.{col} {} ", op.sql()));
                self.value(op, value);
            }
            Field::Column(Column::Number(col)) => {
                let n = number(value);
                let op = if op == Op::Like { Op::Eq } else { op };
                if *col == "last_inform" {
                    // Read from the narrow copy and written on its sort index's expression,
                    // the column's only index (none of `devices` names it: every Inform
                    // changes it); never-informed devices (NULL) match no comparison, as
                    // with the plain column. Rare matches are collected first, dense ones
                    // checked per device (see [`DENSE`]).
                    let dense = self.is_dense(field, op, value);
                    self.sql.push_str(if dense {
                        "EXISTS (SELECT 1 FROM device_last_inform AS li WHERE \
                         li.device_id = devices.id AND "
                    } else {
                        "devices.id IN (SELECT li.device_id FROM device_last_inform AS li WHERE "
                    });
                    self.sql.push_str(&format!(
                        "li.last_inform IS NOT NULL AND COALESCE(li.last_inform, -1) {} ",
                        op.sql()
                    ));
                    self.bind(Bind::Int(n));
                    self.sql.push(')');
                } else {
                    self.sql.push_str(&format!("devices.{col} {} ", op.sql()));
                    self.bind(Bind::Int(n));
                }
            }
            Field::Tag | Field::Param(_) => {
                let (neg, op) = match op {
                    Op::Ne => (true, Op::Eq),
                    o => (false, o),
                };
                let dense = self.is_dense(field, op, value);
                self.sql.push_str(match (neg, dense) {
                    (false, false) => "devices.id IN (SELECT device_id FROM ",
                    (true, false) => "devices.id NOT IN (SELECT device_id FROM ",
                    (false, true) => "EXISTS (SELECT 1 FROM ",
                    (true, true) => "NOT EXISTS (SELECT 1 FROM ",
                });
                let table = if let Field::Param(name) = field {
                    self.sql.push_str("device_search WHERE name = ");
                    self.bind(Bind::Text(name.clone()));
                    self.sql.push_str(" AND value ");
                    "device_search"
                } else {
                    self.sql.push_str("device_tags WHERE tag ");
                    "device_tags"
                };
                self.sql.push_str(op.sql());
                self.sql.push(' ');
                self.value(op, value);
                if dense {
                    self.sql
                        .push_str(&format!(" AND {table}.device_id = devices.id"));
                }
                self.sql.push(')');
            }
        }
    }
}

#[cfg(test)]
fn build(f: &Filter, cursor: Option<&str>, limit: i64, postgres: bool) -> SqlBuilder {
    build_ordered(f, cursor, limit, postgres, false)
}

/// The ids of at most `limit` devices matching `f`, in no particular order (for counting).
fn build_unordered(f: &Filter, limit: i64, postgres: bool, dense: Vec<Probe>) -> SqlBuilder {
    let mut b = SqlBuilder::new(postgres, "SELECT devices.id AS id FROM devices WHERE ");
    b.dense = dense;
    b.filter(f);
    b.sql.push_str(" LIMIT ");
    b.bind(Bind::Int(limit));
    b
}

/// The order of a device page: by id, or by a column with the id breaking ties. Each column
/// order has an index on (expression, id), so a page walks the index from the cursor; the
/// last-inform order's is on the narrow `device_last_inform`, joined to the device rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Id,
    /// Never-informed devices first (ascending).
    LastInform,
    SoftwareVersion,
    ProductClass,
    Serial,
}

impl Sort {
    /// The sort expression over the table named `t` (`device_last_inform` for the last-inform
    /// order, `devices` for the others).
    fn expr(self, t: &str) -> Option<String> {
        Some(match self {
            Sort::Id => return None,
            Sort::LastInform => format!("COALESCE({t}.last_inform, -1)"),
            Sort::SoftwareVersion => format!("{t}.software_version"),
            Sort::ProductClass => format!("{t}.product_class"),
            Sort::Serial => format!("{t}.serial_number"),
        })
    }

    /// What a page in this order selects from, the table alias its expression and id are
    /// read from, and how a row of that table is found by device id (for the cursor).
    fn source(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Sort::LastInform => (
                "SELECT devices.id AS id FROM devices JOIN device_last_inform AS s \
                 ON s.device_id = devices.id WHERE ",
                "s",
                "device_id",
                "device_last_inform",
            ),
            _ => (
                "SELECT devices.id AS id FROM devices WHERE ",
                "devices",
                "id",
                "devices",
            ),
        }
    }
}

#[cfg(test)]
fn build_ordered(
    f: &Filter,
    cursor: Option<&str>,
    limit: i64,
    postgres: bool,
    descending: bool,
) -> SqlBuilder {
    build_sorted(f, cursor, limit, postgres, Sort::Id, descending, Vec::new())
}

/// The ids of a page in `sort` order. The cursor is the last id of the previous page; with
/// a column order the page continues after that device's (value, id).
fn build_sorted(
    f: &Filter,
    cursor: Option<&str>,
    limit: i64,
    postgres: bool,
    sort: Sort,
    descending: bool,
    dense: Vec<Probe>,
) -> SqlBuilder {
    let (select, t, id_col, table) = sort.source();
    let mut b = SqlBuilder::new(postgres, select);
    b.dense = dense;
    b.filter(f);
    let (cmp, dir) = if descending {
        ("<", " DESC")
    } else {
        (">", "")
    };
    match (sort.expr(t), sort.expr("cur")) {
        (Some(e), Some(at_cursor)) => {
            let id = format!("{t}.{id_col}");
            if let Some(c) = cursor {
                // A row-value comparison: PostgreSQL (and SQLite for the plain columns) use
                // it as the index range, where `e < v OR (e = v AND id < c)` made
                // PostgreSQL walk the index from its end to the cursor (65 ms against 1 ms
                // for a page deep in 300,000 devices).
                b.sql.push_str(&format!(
                    " AND ({e}, {id}) {cmp} ((SELECT {at_cursor} FROM {table} AS cur WHERE cur.{id_col} = "
                ));
                b.bind(Bind::Text(c.to_string()));
                b.sql.push_str("), ");
                b.bind(Bind::Text(c.to_string()));
                b.sql.push(')');
            }
            b.sql
                .push_str(&format!(" ORDER BY {e}{dir}, {id}{dir} LIMIT "));
        }
        _ => {
            if let Some(c) = cursor {
                b.sql.push_str(&format!(" AND devices.id {cmp} "));
                b.bind(Bind::Text(c.to_string()));
            }
            b.sql.push_str(&format!(" ORDER BY devices.id{dir} LIMIT "));
        }
    }
    b.bind(Bind::Int(limit));
    b
}

/// Mark the devices matching a filter as having new work (their next session looks at
/// lines and presets again).
pub trait BumpWorkEpoch {
    /// Returns how many devices were marked.
    fn bump_work_epoch(&mut self, filter: &Filter) -> Result<usize>;
}

fn bump_sql(f: &Filter, postgres: bool) -> SqlBuilder {
    let mut b = SqlBuilder::new(
        postgres,
        "UPDATE devices SET work_epoch = work_epoch + 1 WHERE ",
    );
    b.filter(f);
    b
}

/// The built SQL `$b` as a diesel query for `$backend`, its values bound in order.
macro_rules! bound_query {
    ($backend:ty, $b:expr) => {{
        let mut q = diesel::sql_query($b.sql.clone()).into_boxed::<$backend>();
        for bind in &$b.binds {
            q = match bind {
                Bind::Text(s) => q.bind::<Text, _>(s.clone()),
                Bind::Int(n) => q.bind::<BigInt, _>(*n),
            };
        }
        q
    }};
}

impl BumpWorkEpoch for diesel::SqliteConnection {
    fn bump_work_epoch(&mut self, filter: &Filter) -> Result<usize> {
        let b = bump_sql(filter, false);
        Ok(bound_query!(diesel::sqlite::Sqlite, b).execute(self)?)
    }
}

impl BumpWorkEpoch for diesel::PgConnection {
    fn bump_work_epoch(&mut self, filter: &Filter) -> Result<usize> {
        let b = bump_sql(filter, true);
        Ok(bound_query!(diesel::pg::Pg, b).execute(self)?)
    }
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Run a built `SELECT ... AS n` and return `n`.
macro_rules! load_count {
    ($c:expr, $backend:ty, $b:expr) => {
        bound_query!($backend, $b).get_result::<CountRow>($c)?.n
    };
}

/// The tag and parameter conditions of a filter that match at least [`DENSE`] devices, each
/// found with a count that stops at [`DENSE`] rows of an index.
macro_rules! dense_conditions {
    ($c:expr, $backend:ty, $pg:expr, $filter:expr) => {{
        let mut all = Vec::new();
        probes($filter, &mut all);
        let mut dense = Vec::new();
        for p in all {
            let b = probe_sql(&p, DENSE, $pg);
            if load_count!($c, $backend, b) >= DENSE {
                dense.push(p);
            }
        }
        dense
    }};
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

macro_rules! load_ids {
    ($c:expr, $backend:ty, $b:expr) => {
        bound_query!($backend, $b).load::<IdRow>($c)?
    };
}

/// The last connection request to a device.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = device_connreq)]
pub struct ConnReqRow {
    pub device_id: String,
    pub at: i64,
    pub outcome: String,
    pub message: String,
    /// `http` or `udp` when the request was sent.
    pub transport: Option<String>,
}

impl Store {
    /// Ids of the devices matching `filter`, ordered, after `cursor`, at most `limit`.
    pub fn search_device_ids(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>> {
        self.search_device_ids_ordered(filter, cursor, limit, false)
    }

    /// Like [`Store::search_device_ids`], in ascending or descending id order (the cursor
    /// then continues below the last id).
    pub fn search_device_ids_ordered(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> Result<Vec<String>> {
        self.search_device_ids_sorted(filter, cursor, limit, Sort::Id, descending)
    }

    /// A page of device ids in `sort` order, ascending or descending.
    pub fn search_device_ids_sorted(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: i64,
        sort: Sort,
        descending: bool,
    ) -> Result<Vec<String>> {
        let rows = with_backend!(
            self,
            sqlite | c | {
                let dense = dense_conditions!(c, diesel::sqlite::Sqlite, false, filter);
                let b = build_sorted(filter, cursor, limit, false, sort, descending, dense);
                load_ids!(c, diesel::sqlite::Sqlite, b)
            },
            postgres | c | {
                let dense = dense_conditions!(c, diesel::pg::Pg, true, filter);
                let b = build_sorted(filter, cursor, limit, true, sort, descending, dense);
                load_ids!(c, diesel::pg::Pg, b)
            }
        );
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// A page of devices in `sort` order, ascending or descending.
    pub fn search_devices_ordered(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: i64,
        sort: Sort,
        descending: bool,
    ) -> Result<Vec<DeviceRow>> {
        let ids = self.search_device_ids_sorted(filter, cursor, limit, sort, descending)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<DeviceRow> = with_conn!(self, |c| {
            Ok::<_, crate::error::Error>(
                devices::table
                    .filter(devices::id.eq_any(&ids))
                    .select(DeviceRow::as_select())
                    .load(c)?,
            )
        })?;
        let mut by_id: HashMap<String, DeviceRow> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// How many devices match `filter`, counting at most `cap` (the device list shows
    /// "10000+" rather than scanning a million rows).
    pub fn count_matching_devices(&self, filter: &Filter, cap: i64) -> Result<i64> {
        // A single tag or value condition (the common query) is counted in its index alone.
        let single = match filter {
            Filter::Cond { field, op, value }
                if *op != Op::Ne && matches!(field, Field::Tag | Field::Param(_)) =>
            {
                Some(Probe {
                    field: field.clone(),
                    op: *op,
                    value: value.clone(),
                })
            }
            Filter::Cond { field, op, value } if is_last_inform(field) => Some(Probe {
                field: field.clone(),
                op: if *op == Op::Like { Op::Eq } else { *op },
                value: value.clone(),
            }),
            _ => None,
        };
        macro_rules! count {
            ($c:expr, $backend:ty, $pg:expr) => {{
                if let Some(p) = &single {
                    let b = probe_sql(p, cap, $pg);
                    return Ok(load_count!($c, $backend, b));
                }
                let dense = dense_conditions!($c, $backend, $pg, filter);
                let mut b = build_unordered(filter, cap, $pg, dense);
                b.sql = format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM ({}) AS m", b.sql);
                load_count!($c, $backend, b)
            }};
        }
        Ok(with_backend!(
            self,
            sqlite | c | { count!(c, diesel::sqlite::Sqlite, false) },
            postgres | c | { count!(c, diesel::pg::Pg, true) }
        ))
    }

    /// The devices matching `filter` (a page, ordered by id).
    pub fn search_devices(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeviceRow>> {
        let ids = self.search_device_ids(filter, cursor, limit)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_conn!(self, |c| {
            Ok(devices::table
                .filter(devices::id.eq_any(&ids))
                .order(devices::id.asc())
                .select(DeviceRow::as_select())
                .load(c)?)
        })
    }

    /// Write searchable values of a device and remember their signature. `replace` first
    /// forgets every value stored before (after a BOOTSTRAP).
    pub fn write_search_values(
        &self,
        device_id: &str,
        values: &[(String, String)],
        sig: i64,
        replace: bool,
    ) -> Result<()> {
        let w = SearchWrite {
            values,
            sig,
            replace,
        };
        with_backend!(
            self,
            sqlite | c | { c.write_txn(|c| w.write_sqlite(c, device_id)) },
            postgres | c | { c.write_txn(|c| w.write_pg(c, device_id)) }
        )
    }

    /// Searchable values of a device, by name.
    pub fn search_values_of(&self, device_id: &str) -> Result<Vec<(String, String)>> {
        use device_search::dsl as s;
        with_conn!(self, |c| {
            Ok(s::device_search
                .filter(s::device_id.eq(device_id))
                .order(s::name.asc())
                .select((s::name, s::value))
                .load(c)?)
        })
    }

    /// Record how a connection request ended.
    pub fn record_connreq(&self, row: &ConnReqRow) -> Result<()> {
        use device_connreq::dsl as r;
        with_conn!(self, |c| {
            diesel::insert_into(r::device_connreq)
                .values((
                    r::device_id.eq(&row.device_id),
                    r::at.eq(row.at),
                    r::outcome.eq(&row.outcome),
                    r::message.eq(&row.message),
                    r::transport.eq(&row.transport),
                ))
                .on_conflict(r::device_id)
                .do_update()
                .set((
                    r::at.eq(row.at),
                    r::outcome.eq(&row.outcome),
                    r::message.eq(&row.message),
                    r::transport.eq(&row.transport),
                ))
                .execute(c)?;
            Ok(())
        })
    }

    /// Last connection-request outcomes of the given devices.
    pub fn connreqs_of(&self, ids: &[String]) -> Result<HashMap<String, ConnReqRow>> {
        use device_connreq::dsl as r;
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<ConnReqRow> = with_conn!(self, |c| {
            Ok::<_, crate::error::Error>(
                r::device_connreq
                    .filter(r::device_id.eq_any(ids))
                    .select(ConnReqRow::as_select())
                    .load(c)?,
            )
        })?;
        Ok(rows.into_iter().map(|r| (r.device_id.clone(), r)).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn column_orders_continue_after_the_cursor_device() {
        let b = build_sorted(
            &Filter::All,
            Some("D-1"),
            50,
            true,
            Sort::LastInform,
            true,
            Vec::new(),
        );
        assert_eq!(
            b.sql,
            "SELECT devices.id AS id FROM devices JOIN device_last_inform AS s ON s.device_id = \
             devices.id WHERE 1=1 AND (COALESCE(s.last_inform, -1), s.device_id) < ((SELECT \
             COALESCE(cur.last_inform, -1) FROM device_last_inform AS cur WHERE cur.device_id = $1), \
             $2) ORDER BY COALESCE(s.last_inform, -1) DESC, s.device_id DESC LIMIT $3"
        );
        assert_eq!(b.binds.len(), 3);
        let b = build_sorted(
            &Filter::All,
            None,
            50,
            false,
            Sort::Serial,
            false,
            Vec::new(),
        );
        assert_eq!(
            b.sql,
            "SELECT devices.id AS id FROM devices WHERE 1=1 ORDER BY devices.serial_number, \
             devices.id LIMIT ?"
        );
        let b = build_sorted(
            &Filter::All,
            Some("D-1"),
            50,
            false,
            Sort::Id,
            false,
            Vec::new(),
        );
        assert_eq!(
            b.sql,
            "SELECT devices.id AS id FROM devices WHERE 1=1 AND devices.id > ? ORDER BY devices.id LIMIT ?"
        );
        let b = build_sorted(
            &Filter::All,
            Some("D-1"),
            50,
            false,
            Sort::SoftwareVersion,
            false,
            Vec::new(),
        );
        assert_eq!(
            b.sql,
            "SELECT devices.id AS id FROM devices WHERE 1=1 AND (devices.software_version, \
             devices.id) > ((SELECT cur.software_version FROM devices AS cur WHERE cur.id = ?), ?) \
             ORDER BY devices.software_version, devices.id LIMIT ?"
        );
    }

    #[test]
    fn gateway_conditions_look_in_the_association() {
        // `gateway = "202BC1-BM632w-GW1" AND NOT gateway LIKE "00*"`
        let gw = |op: Op, value: &str| Filter::Cond {
            field: Field::Gateway,
            op,
            value: value.into(),
        };
        let f = Filter::And(vec![
            gw(Op::Eq, "202BC1-BM632w-GW1"),
            Filter::Not(Box::new(gw(Op::Like, "00*"))),
        ]);
        let mut dense = Vec::new();
        probes(&f, &mut dense);
        assert!(dense.is_empty(), "never counted as a tag or parameter");
        let b = build_sorted(&f, None, 50, true, Sort::Id, false, Vec::new());
        for part in [
            "devices.id IN (SELECT device_id FROM gateway_links WHERE gateway_id = $1)",
            "NOT (devices.id IN (SELECT device_id FROM gateway_links WHERE gateway_id LIKE $2))",
        ] {
            assert!(b.sql.contains(part), "{part} not in {}", b.sql);
        }
        let ne = gw(Op::Ne, "GW1");
        let b = build_sorted(&ne, None, 50, false, Sort::Id, false, Vec::new());
        assert!(
            b.sql.contains(
                "devices.id NOT IN (SELECT device_id FROM gateway_links WHERE gateway_id = ?)"
            ),
            "{}",
            b.sql
        );
    }

    #[test]
    fn dense_conditions_are_tested_per_device() {
        let f = Filter::And(vec![
            Filter::Cond {
                field: Field::Param("DeviceInfo.SoftwareVersion".into()),
                op: Op::Eq,
                value: "1.2".into(),
            },
            Filter::Cond {
                field: Field::Tag,
                op: Op::Ne,
                value: "lab".into(),
            },
            Filter::Cond {
                field: Field::Tag,
                op: Op::Eq,
                value: "rare".into(),
            },
        ]);
        let mut all = Vec::new();
        probes(&f, &mut all);
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[1].op,
            Op::Eq,
            "a negation is counted in its positive form"
        );
        let b = probe_sql(&all[0], DENSE, false);
        assert_eq!(
            b.sql,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM (SELECT 1 FROM device_search WHERE \
             name = ? AND value = ? LIMIT ?) AS p"
        );
        let dense = all[..2].to_vec();
        let b = build_sorted(&f, None, 50, false, Sort::Id, false, dense);
        assert_eq!(
            b.sql,
            "SELECT devices.id AS id FROM devices WHERE (EXISTS (SELECT 1 FROM device_search \
             WHERE name = ? AND value = ? AND device_search.device_id = devices.id) AND NOT \
             EXISTS (SELECT 1 FROM device_tags WHERE tag = ? AND device_tags.device_id = \
             devices.id) AND devices.id IN (SELECT device_id FROM device_tags WHERE tag = ?)) \
             ORDER BY devices.id LIMIT ?"
        );
        let b = build_unordered(&f, 10, true, Vec::new());
        assert!(b.sql.ends_with(") LIMIT $5"), "{}", b.sql);
    }

    #[test]
    fn last_inform_conditions_read_the_narrow_copy_by_density() {
        let f = Filter::And(vec![
            Filter::Cond {
                field: Field::Column(Column::Number("last_inform")),
                op: Op::Lt,
                value: "1000".into(),
            },
            Filter::Cond {
                field: Field::Column(Column::Number("last_inform")),
                op: Op::Ne,
                value: "7".into(),
            },
        ]);
        let mut all = Vec::new();
        probes(&f, &mut all);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].op, Op::Ne, "not negated: NULL matches neither form");
        let b = probe_sql(&all[0], DENSE, true);
        assert_eq!(
            b.sql,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM (SELECT 1 FROM device_last_inform WHERE \
             last_inform IS NOT NULL AND COALESCE(last_inform, -1) < $1 LIMIT $2) AS p"
        );
        let b = build_sorted(&f, None, 50, false, Sort::Id, false, all[1..].to_vec());
        assert_eq!(
            b.sql,
            "SELECT devices.id AS id FROM devices WHERE (devices.id IN (SELECT li.device_id FROM \
             device_last_inform AS li WHERE li.last_inform IS NOT NULL AND \
             COALESCE(li.last_inform, -1) < ?) AND EXISTS (SELECT 1 FROM device_last_inform AS \
             li WHERE li.device_id = devices.id AND li.last_inform IS NOT NULL AND \
             COALESCE(li.last_inform, -1) <> ?)) ORDER BY devices.id LIMIT ?"
        );
        assert!(matches!(b.binds[0], Bind::Int(1000)) && matches!(b.binds[1], Bind::Int(7)));
    }

    #[test]
    fn builds_indexed_sql_with_placeholders() {
        let f = Filter::And(vec![
            Filter::Cond {
                field: Field::Param("DeviceInfo.SoftwareVersion".into()),
                op: Op::Eq,
                value: "1.2".into(),
            },
            Filter::Cond {
                field: Field::Tag,
                op: Op::Eq,
                value: "lab".into(),
            },
        ]);
        let b = build(&f, Some("X"), 10, true);
        assert!(b
            .sql
            .contains("device_search WHERE name = $1 AND value = $2"));
        assert!(b.sql.contains("device_tags WHERE tag = $3"));
        assert!(b
            .sql
            .ends_with("devices.id > $4 ORDER BY devices.id LIMIT $5"));
        let b = build(&f, None, 10, false);
        assert_eq!(b.sql.matches('?').count(), 4);
    }
}

/// Insert or update one searchable value (SQLite).
struct UpsertSearchValue<'a> {
    device_id: &'a str,
    name: &'a str,
    value: &'a str,
}

/// Searchable values to write for one device: the values, their signature, and whether they
/// replace every value stored before (see [`Store::write_search_values`]).
#[derive(Debug, Clone, Copy)]
pub struct SearchWrite<'a> {
    pub values: &'a [(String, String)],
    pub sig: i64,
    pub replace: bool,
}

impl SearchWrite<'_> {
    pub(super) fn write_sqlite(&self, c: &mut SqliteConnection, device_id: &str) -> Result<()> {
        self.write_values_sqlite(c, device_id)?;
        SetSearchSig {
            device_id,
            sig: self.sig,
        }
        .execute(c)?;
        Ok(())
    }

    /// The values only: the caller records the signature (e.g. in the statement that closes
    /// a session).
    pub(super) fn write_values_sqlite(
        &self,
        c: &mut SqliteConnection,
        device_id: &str,
    ) -> Result<()> {
        use device_search::dsl as s;
        if self.replace {
            diesel::delete(s::device_search.filter(s::device_id.eq(device_id))).execute(c)?;
        }
        // One prepared statement run per value: a multi-row VALUES list has a different text
        // for every row count and would be parsed again every time.
        for (name, value) in self.values {
            UpsertSearchValue {
                device_id,
                name,
                value,
            }
            .execute(c)?;
        }
        Ok(())
    }

    pub(super) fn write_pg(&self, c: &mut PgConnection, device_id: &str) -> Result<()> {
        self.write_values_pg(c, device_id)?;
        SetSearchSig {
            device_id,
            sig: self.sig,
        }
        .execute(c)?;
        Ok(())
    }

    /// The values only, as [`SearchWrite::write_values_sqlite`].
    pub(super) fn write_values_pg(&self, c: &mut PgConnection, device_id: &str) -> Result<()> {
        use device_search::dsl as s;
        if self.replace {
            diesel::delete(s::device_search.filter(s::device_id.eq(device_id))).execute(c)?;
        }
        // One statement with the values as two arrays: fixed text (prepared once per
        // connection) and one round trip whatever the number of values.
        if !self.values.is_empty() {
            UpsertSearchValues {
                device_id,
                names: self.values.iter().map(|(n, _)| n.as_str()).collect(),
                values: self.values.iter().map(|(_, v)| v.as_str()).collect(),
            }
            .execute(c)?;
        }
        Ok(())
    }
}

/// Insert or update many searchable values of one device in one statement (PostgreSQL).
struct UpsertSearchValues<'a> {
    device_id: &'a str,
    names: Vec<&'a str>,
    values: Vec<&'a str>,
}

/// Remember the signature of the values written.
struct SetSearchSig<'a> {
    device_id: &'a str,
    sig: i64,
}

/// Static identities of the statements above, for the prepared-statement caches.
struct UpsertSearchValueId;
struct UpsertSearchValuesId;
struct SetSearchSigId;

impl diesel::query_builder::QueryId for UpsertSearchValue<'_> {
    type QueryId = UpsertSearchValueId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryId for UpsertSearchValues<'_> {
    type QueryId = UpsertSearchValuesId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryId for SetSearchSig<'_> {
    type QueryId = SetSearchSigId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for UpsertSearchValue<'_> {}
impl<Conn> RunQueryDsl<Conn> for UpsertSearchValues<'_> {}
impl<Conn> RunQueryDsl<Conn> for SetSearchSig<'_> {}

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for UpsertSearchValue<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        out.push_sql("INSERT INTO device_search (device_id, name, value) VALUES (");
        out.push_bind_param::<Text, _>(self.device_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.name)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.value)?;
        out.push_sql(") ON CONFLICT (device_id, name) DO UPDATE SET value = excluded.value");
        Ok(())
    }
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for UpsertSearchValues<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::Array;
        out.push_sql("INSERT INTO device_search (device_id, name, value) SELECT ");
        out.push_bind_param::<Text, _>(self.device_id)?;
        out.push_sql(", t.n, t.v FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.names)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.values)?;
        out.push_sql(
            ") AS t(n, v) ON CONFLICT (device_id, name) DO UPDATE SET value = excluded.value",
        );
        Ok(())
    }
}

macro_rules! sig_statement {
    ($db:ty) => {
        impl diesel::query_builder::QueryFragment<$db> for SetSearchSig<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                out.push_sql("UPDATE devices SET search_sig = ");
                out.push_bind_param::<BigInt, _>(&self.sig)?;
                out.push_sql(" WHERE id = ");
                out.push_bind_param::<Text, _>(self.device_id)?;
                Ok(())
            }
        }
    };
}

sig_statement!(diesel::sqlite::Sqlite);
sig_statement!(diesel::pg::Pg);
