//! TR-111 Part 1: the device–gateway association. One row per (gateway, LAN device) pair,
//! with when the gateway's ManageableDevice table last listed the device and when the
//! device's GatewayInfo last named the gateway; a row neither side reports any more is
//! deleted.

use diesel::prelude::*;

use super::Store;
use crate::error::Result;
use crate::with_conn;

diesel::table! {
    gateway_links (gateway_id, device_id) {
        gateway_id -> Text,
        device_id -> Text,
        listed_at -> Nullable<BigInt>,
        claimed_at -> Nullable<BigInt>,
        host -> Text,
    }
}

/// One (gateway, LAN device) pair.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = gateway_links)]
pub struct GatewayLinkRow {
    pub gateway_id: String,
    pub device_id: String,
    pub listed_at: Option<i64>,
    pub claimed_at: Option<i64>,
    pub host: String,
}

impl Store {
    /// The gateway `gateway_id` reported its whole ManageableDevice table at `now`:
    /// `devices` (device id, Host) are listed, every other device it listed before is not
    /// any more.
    pub fn set_gateway_table(
        &self,
        gateway_id: &str,
        devices: &[(String, String)],
        now: i64,
    ) -> Result<()> {
        use gateway_links::dsl as g;
        let ids: Vec<&str> = devices.iter().map(|(d, _)| d.as_str()).collect();
        with_conn!(self, |c| {
            c.transaction(|c| {
                diesel::update(
                    g::gateway_links
                        .filter(g::gateway_id.eq(gateway_id))
                        .filter(g::device_id.ne_all(&ids))
                        .filter(g::listed_at.is_not_null()),
                )
                .set(g::listed_at.eq(None::<i64>))
                .execute(c)?;
                for (d, host) in devices {
                    let n = diesel::update(
                        g::gateway_links
                            .filter(g::gateway_id.eq(gateway_id))
                            .filter(g::device_id.eq(d)),
                    )
                    .set((g::listed_at.eq(Some(now)), g::host.eq(host)))
                    .execute(c)?;
                    if n == 0 {
                        diesel::insert_into(g::gateway_links)
                            .values((
                                g::gateway_id.eq(gateway_id),
                                g::device_id.eq(d),
                                g::listed_at.eq(Some(now)),
                                g::host.eq(host),
                            ))
                            .execute(c)?;
                    }
                }
                diesel::delete(
                    g::gateway_links
                        .filter(g::gateway_id.eq(gateway_id))
                        .filter(g::listed_at.is_null())
                        .filter(g::claimed_at.is_null()),
                )
                .execute(c)?;
                Ok(())
            })
        })
    }

    /// The device `device_id` named `gateway` (or no gateway) in its GatewayInfo at `now`;
    /// a gateway it named before is not named any more.
    pub fn set_gateway_claim(
        &self,
        device_id: &str,
        gateway: Option<&str>,
        now: i64,
    ) -> Result<()> {
        use gateway_links::dsl as g;
        let gw = gateway.unwrap_or("");
        with_conn!(self, |c| {
            c.transaction(|c| {
                diesel::update(
                    g::gateway_links
                        .filter(g::device_id.eq(device_id))
                        .filter(g::gateway_id.ne(gw))
                        .filter(g::claimed_at.is_not_null()),
                )
                .set(g::claimed_at.eq(None::<i64>))
                .execute(c)?;
                if let Some(gw) = gateway {
                    let n = diesel::update(
                        g::gateway_links
                            .filter(g::gateway_id.eq(gw))
                            .filter(g::device_id.eq(device_id)),
                    )
                    .set(g::claimed_at.eq(Some(now)))
                    .execute(c)?;
                    if n == 0 {
                        diesel::insert_into(g::gateway_links)
                            .values((
                                g::gateway_id.eq(gw),
                                g::device_id.eq(device_id),
                                g::claimed_at.eq(Some(now)),
                            ))
                            .execute(c)?;
                    }
                }
                diesel::delete(
                    g::gateway_links
                        .filter(g::device_id.eq(device_id))
                        .filter(g::listed_at.is_null())
                        .filter(g::claimed_at.is_null()),
                )
                .execute(c)?;
                Ok(())
            })
        })
    }

    /// The device `id` was deleted: forget its own reports (its ManageableDevice table, its
    /// GatewayInfo); pairs only it reported go.
    pub fn forget_gateway_reports(&self, id: &str) -> Result<()> {
        use gateway_links::dsl as g;
        with_conn!(self, |c| {
            c.transaction(|c| {
                diesel::update(g::gateway_links.filter(g::gateway_id.eq(id)))
                    .set(g::listed_at.eq(None::<i64>))
                    .execute(c)?;
                diesel::update(g::gateway_links.filter(g::device_id.eq(id)))
                    .set(g::claimed_at.eq(None::<i64>))
                    .execute(c)?;
                diesel::delete(
                    g::gateway_links
                        .filter(g::gateway_id.eq(id).or(g::device_id.eq(id)))
                        .filter(g::listed_at.is_null())
                        .filter(g::claimed_at.is_null()),
                )
                .execute(c)?;
                Ok(())
            })
        })
    }

    /// Every pair `id` is part of, as gateway or as LAN device, with the ids among both
    /// sides that are devices ferroacs manages.
    pub fn gateway_links_of(&self, id: &str) -> Result<(Vec<GatewayLinkRow>, Vec<String>)> {
        use crate::store::schema::devices::dsl as d;
        use gateway_links::dsl as g;
        with_conn!(self, |c| {
            let rows: Vec<GatewayLinkRow> = g::gateway_links
                .filter(g::gateway_id.eq(id).or(g::device_id.eq(id)))
                .order((g::gateway_id, g::device_id))
                .limit(10_000)
                .select(GatewayLinkRow::as_select())
                .load(c)?;
            let mut ids: Vec<&str> = rows
                .iter()
                .flat_map(|r| [r.gateway_id.as_str(), r.device_id.as_str()])
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let managed: Vec<String> = if ids.is_empty() {
                Vec::new()
            } else {
                d::devices
                    .filter(d::id.eq_any(&ids))
                    .select(d::id)
                    .load(c)?
            };
            Ok((rows, managed))
        })
    }
}
