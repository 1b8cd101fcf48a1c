//! Device search: the filter tree the device list is queried with, its translation to SQL,
//! the table of searchable parameter values (`device_search`) and the last
//! connection-request outcome of each device (`device_connreq`).
//!
//! Every condition maps to an indexed lookup: identity columns have their own indexes,
//! tags use `device_tags (tag, device_id)`, parameter values use
//! `device_search (name, value, device_id)`. Pages are ordered by device id and continue after
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
}

impl SqlBuilder {
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
            Field::Column(Column::Text(col)) => {
                self.sql.push_str(&format!("devices.{col} {} ", op.sql()));
                self.value(op, value);
            }
            Field::Column(Column::Number(col)) => {
                let n = value.trim().parse::<i64>().unwrap_or(i64::MIN);
                let op = if op == Op::Like { Op::Eq } else { op };
                self.sql.push_str(&format!("devices.{col} {} ", op.sql()));
                self.bind(Bind::Int(n));
            }
            Field::Tag => {
                let (neg, op) = match op {
                    Op::Ne => (true, Op::Eq),
                    o => (false, o),
                };
                self.sql.push_str(if neg {
                    "devices.id NOT IN"
                } else {
                    "devices.id IN"
                });
                self.sql.push_str(&format!(
                    " (SELECT device_id FROM device_tags WHERE tag {} ",
                    op.sql()
                ));
                self.value(op, value);
                self.sql.push(')');
            }
            Field::Param(name) => {
                let (neg, op) = match op {
                    Op::Ne => (true, Op::Eq),
                    o => (false, o),
                };
                self.sql.push_str(if neg {
                    "devices.id NOT IN"
                } else {
                    "devices.id IN"
                });
                self.sql
                    .push_str(" (SELECT device_id FROM device_search WHERE name = ");
                self.bind(Bind::Text(name.clone()));
                self.sql.push_str(&format!(" AND value {} ", op.sql()));
                self.value(op, value);
                self.sql.push(')');
            }
        }
    }
}

fn build(f: &Filter, cursor: Option<&str>, limit: i64, postgres: bool) -> SqlBuilder {
    build_ordered(f, cursor, limit, postgres, false)
}

fn build_ordered(
    f: &Filter,
    cursor: Option<&str>,
    limit: i64,
    postgres: bool,
    descending: bool,
) -> SqlBuilder {
    let mut b = SqlBuilder {
        postgres,
        sql: String::from("SELECT devices.id AS id FROM devices WHERE "),
        binds: Vec::new(),
    };
    b.filter(f);
    if let Some(c) = cursor {
        b.sql.push_str(if descending {
            " AND devices.id < "
        } else {
            " AND devices.id > "
        });
        b.bind(Bind::Text(c.to_string()));
    }
    b.sql.push_str(if descending {
        " ORDER BY devices.id DESC LIMIT "
    } else {
        " ORDER BY devices.id LIMIT "
    });
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
    let mut b = SqlBuilder {
        postgres,
        sql: String::from("UPDATE devices SET work_epoch = work_epoch + 1 WHERE "),
        binds: Vec::new(),
    };
    b.filter(f);
    b
}

macro_rules! execute_built {
    ($c:expr, $backend:ty, $b:expr) => {{
        let mut q = diesel::sql_query($b.sql.clone()).into_boxed::<$backend>();
        for bind in &$b.binds {
            q = match bind {
                Bind::Text(s) => q.bind::<Text, _>(s.clone()),
                Bind::Int(n) => q.bind::<BigInt, _>(*n),
            };
        }
        q.execute($c)?
    }};
}

impl BumpWorkEpoch for diesel::SqliteConnection {
    fn bump_work_epoch(&mut self, filter: &Filter) -> Result<usize> {
        let b = bump_sql(filter, false);
        Ok(execute_built!(self, diesel::sqlite::Sqlite, b))
    }
}

impl BumpWorkEpoch for diesel::PgConnection {
    fn bump_work_epoch(&mut self, filter: &Filter) -> Result<usize> {
        let b = bump_sql(filter, true);
        Ok(execute_built!(self, diesel::pg::Pg, b))
    }
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

macro_rules! load_ids {
    ($c:expr, $backend:ty, $b:expr) => {{
        let mut q = diesel::sql_query($b.sql.clone()).into_boxed::<$backend>();
        for bind in &$b.binds {
            q = match bind {
                Bind::Text(s) => q.bind::<Text, _>(s.clone()),
                Bind::Int(n) => q.bind::<BigInt, _>(*n),
            };
        }
        q.load::<IdRow>($c)?
    }};
}

/// The last connection request to a device.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = device_connreq)]
pub struct ConnReqRow {
    pub device_id: String,
    pub at: i64,
    pub outcome: String,
    pub message: String,
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
        let rows = with_backend!(
            self,
            sqlite | c | {
                let b = build_ordered(filter, cursor, limit, false, descending);
                load_ids!(c, diesel::sqlite::Sqlite, b)
            },
            postgres | c | {
                let b = build_ordered(filter, cursor, limit, true, descending);
                load_ids!(c, diesel::pg::Pg, b)
            }
        );
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// A page of devices in id order, ascending or descending.
    pub fn search_devices_ordered(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: i64,
        descending: bool,
    ) -> Result<Vec<DeviceRow>> {
        let ids = self.search_device_ids_ordered(filter, cursor, limit, descending)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows: Vec<DeviceRow> = with_conn!(self, |c| {
            Ok::<_, crate::error::Error>(
                devices::table
                    .filter(devices::id.eq_any(&ids))
                    .select(DeviceRow::as_select())
                    .load(c)?,
            )
        })?;
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        if descending {
            rows.reverse();
        }
        Ok(rows)
    }

    /// How many devices match `filter`, counting at most `cap` (the device list shows
    /// "10000+" rather than scanning a million rows).
    pub fn count_matching_devices(&self, filter: &Filter, cap: i64) -> Result<i64> {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        macro_rules! count {
            ($c:expr, $backend:ty, $pg:expr) => {{
                let mut b = build(filter, None, cap, $pg);
                b.sql = format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM ({}) AS m", b.sql);
                let mut q = diesel::sql_query(b.sql.clone()).into_boxed::<$backend>();
                for bind in &b.binds {
                    q = match bind {
                        Bind::Text(s) => q.bind::<Text, _>(s.clone()),
                        Bind::Int(n) => q.bind::<BigInt, _>(*n),
                    };
                }
                q.get_result::<N>($c)?.n
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
        use device_search::dsl as s;
        let set_sig = SetSearchSig { device_id, sig };
        with_backend!(
            self,
            sqlite | c | {
                c.write_txn(|c| {
                    if replace {
                        diesel::delete(s::device_search.filter(s::device_id.eq(device_id)))
                            .execute(c)?;
                    }
                    // One prepared statement run per value: a multi-row VALUES list has a
                    // different text for every row count and would be parsed again every time.
                    for (name, value) in values {
                        UpsertSearchValue {
                            device_id,
                            name,
                            value,
                        }
                        .execute(c)?;
                    }
                    set_sig.execute(c)?;
                    Ok(())
                })
            },
            postgres | c | {
                c.write_txn(|c| {
                    if replace {
                        diesel::delete(s::device_search.filter(s::device_id.eq(device_id)))
                            .execute(c)?;
                    }
                    // One statement with the values as two arrays: fixed text (prepared once per
                    // connection) and one round trip whatever the number of values.
                    if !values.is_empty() {
                        UpsertSearchValues {
                            device_id,
                            names: values.iter().map(|(n, _)| n.as_str()).collect(),
                            values: values.iter().map(|(_, v)| v.as_str()).collect(),
                        }
                        .execute(c)?;
                    }
                    set_sig.execute(c)?;
                    Ok(())
                })
            }
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
                ))
                .on_conflict(r::device_id)
                .do_update()
                .set((
                    r::at.eq(row.at),
                    r::outcome.eq(&row.outcome),
                    r::message.eq(&row.message),
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
mod tests {
    use super::*;

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
