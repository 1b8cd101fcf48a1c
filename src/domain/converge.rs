//! Converging a device in its session: VoIP lines to push and presets to apply.
//!
//! [`wants`] decides, from the device row and the Inform alone, whether there is anything to
//! look at: new work (the work epoch moved: a line or preset changed), a bootstrap or boot,
//! or an event at which a preset matching the device applies (remembered in
//! `devices.preset_events`); [`read`] reads it in the Inform's hand-off to the store, and
//! [`prepare`] plans from it. A periodic session with none of these costs no query here.
//!
//! The actual planning happens in rounds, whenever the session's request queue runs dry
//! (so after discovery and tasks): [`plan_round`] looks at what is known of the device (the
//! stored tree, what this session learnt, the Inform's values) and queues:
//!
//! 1. `AddObject` for missing instances (then a `GetParameterValues` of each new instance);
//! 2. a `GetParameterValues` of preset parameters whose value is not known;
//! 3. one `SetParameterValues` for all lines to push (ParameterKey `vl-<revision>`), then a
//!    `GetParameterValues` of their status;
//! 4. one `SetParameterValues` with only the preset values that differ (ParameterKey
//!    `ps-<preset revision>`), and a `Download` when a preset's firmware version differs.
//!
//! A refused value is recorded (a fault row, and per device the value and preset revision
//! it was refused at) and not sent again until the preset changes; a line the device
//! refuses is marked `fault` until it is edited. Rounds are bounded, so a confused device
//! cannot keep a session going.

use std::collections::{BTreeMap, BTreeSet};

use crate::cwmp::{
    AcsRequest, CpeResponse, CwmpFault, Download, GetParameterValues, ObjectRequest,
    ParameterValue, SetParameterValues,
};
use crate::domain::devices::{self, DeviceFacts};
use crate::domain::params::ParamTree;
use crate::domain::presets::{self, Preset};
pub use crate::domain::presets::{Applied, DeviceState, Refused};
pub use crate::domain::session_state::{Converge, LineWork, PresetData, PresetWork, Step};
use crate::domain::session_state::{DeviceSession, Env, Origin, Planned};
use crate::domain::voip::{self, Account};
use crate::error::Result;
use crate::store::devices::DeviceRow;
use crate::store::faults::NewFault;
use crate::store::lines::{LineRow, LineUpdate};

/// Planning rounds per session at most.
const MAX_ROUNDS: u32 = 8;

impl std::fmt::Debug for LineWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWork")
            .field("id", &self.id)
            .field("line", &self.line)
            .field("revision", &self.revision)
            .field("push", &self.push)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl PresetData {
    fn to_preset(&self) -> Option<Preset> {
        Some(Preset {
            name: self.name.clone(),
            filter: presets::parse_filter(&self.filter).ok()?,
            priority: self.priority,
            events: self.events.clone(),
            spec: self.spec.clone(),
            revision: self.revision,
        })
    }
}

fn planned(step: Step, request: AcsRequest) -> Planned {
    Planned {
        origin: Origin::Converge(step),
        request,
    }
}

/// What a session needs read for convergence, decided from the device row alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    pub lines: bool,
    pub presets: bool,
}

/// Whether lines or presets need looking at this session: new work (the work epoch moved),
/// a new device, a bootstrap or boot, or an event at which one of its presets applies.
pub fn wants(
    device: &DeviceRow,
    created: bool,
    inform_events: &[crate::cwmp::EventStruct],
) -> Wants {
    let events = inform_events
        .iter()
        .filter_map(|e| presets::event_of(&e.event_code));
    let mut bootish = created;
    let mut preset_event = false;
    let device_events = presets::split_events(&device.preset_events);
    for e in events {
        bootish |= e == "bootstrap" || e == "boot";
        preset_event |= device_events.iter().any(|d| d == e);
    }
    let new_work = device.has_new_work();
    Wants {
        lines: new_work || bootish,
        presets: new_work || bootish || preset_event,
    }
}

/// The rows convergence plans from, and what was wanted of them.
#[derive(Debug)]
pub struct Read {
    wants: Wants,
    lines: Vec<LineRow>,
    presets: Vec<crate::store::presets::PresetRow>,
    state: Option<crate::store::presets::PresetState>,
}

/// Read what `wants` names (on the caller's blocking thread): e.g. in the Inform's own
/// hand-off to the store.
pub fn read(st: &crate::store::Store, device_id: &str, wants: Wants) -> Result<Read> {
    let lines = if wants.lines {
        st.device_lines(device_id)?
    } else {
        Vec::new()
    };
    let (presets, state) = if wants.presets {
        let p = st.list_presets()?;
        let state = if p.is_empty() {
            None
        } else {
            st.preset_state(device_id)?
        };
        (p, state)
    } else {
        (Vec::new(), None)
    };
    Ok(Read {
        wants,
        lines,
        presets,
        state,
    })
}

/// Plan convergence from what the Inform's hand-off read ([`wants`], [`read`]): `None` when
/// the device row called for nothing.
pub async fn prepare(
    env: &Env<'_>,
    s: &mut DeviceSession,
    device: &DeviceRow,
    inform: &crate::cwmp::Inform,
    read: Option<Read>,
) -> Result<()> {
    let Some(Read {
        wants,
        lines: rows,
        presets: preset_rows,
        state,
    }) = read
    else {
        return Ok(());
    };
    let events: Vec<String> = inform
        .events
        .iter()
        .filter_map(|e| presets::event_of(&e.event_code))
        .map(str::to_string)
        .collect();
    // Line status is read back on new work, a new device, a boot: when lines are wanted.
    let lines: Vec<LineWork> = rows
        .iter()
        .filter_map(|r| line_work(r, wants.lines))
        .collect();
    let keyring = env.store.keyring();
    let presets = (wants.presets && (!preset_rows.is_empty() || !device.preset_events.is_empty()))
        .then(|| PresetWork {
            presets: preset_rows
                .iter()
                .filter_map(|r| {
                    // Secret values are sealed at rest; the device gets them in clear.
                    let spec = match presets::open_spec(&keyring, &r.spec) {
                        Ok(spec) => spec,
                        Err(e) => {
                            tracing::warn!(preset = %r.name, error = %e, "preset skipped: its stored values cannot be read");
                            return None;
                        }
                    };
                    Some(PresetData {
                        name: r.name.clone(),
                        filter: r.filter.clone(),
                        priority: r.priority,
                        events: presets::split_events(&r.events),
                        spec,
                        revision: r.revision,
                    })
                })
                .collect(),
            events: events.clone(),
            state: DeviceState::decode(state.as_ref()),
            dirty: false,
            applicable: None,
            events_union: String::new(),
            old_events: device.preset_events.clone(),
            refreshed: BTreeSet::new(),
            failed_adds: BTreeSet::new(),
            adds: 0,
            pushed: false,
        });
    if lines.is_empty() && presets.is_none() {
        return Ok(());
    }
    // Every device column a filter can name (see `domain::devices`), by column name.
    let mut identity = BTreeMap::new();
    for (k, v) in [
        ("id", &device.id),
        ("oui", &device.oui),
        ("product_class", &device.product_class),
        ("serial_number", &device.serial_number),
        ("manufacturer", &device.manufacturer),
        ("model_name", &device.model_name),
        ("software_version", &device.software_version),
        ("hardware_version", &device.hardware_version),
        ("root_model", &device.root_model),
        ("cwmp_version", &device.cwmp_version),
        ("last_source_ip", &device.last_source_ip),
    ] {
        identity.insert(k.to_string(), v.clone());
    }
    for (k, v) in [
        ("last_inform", device.last_inform),
        ("last_boot", device.last_boot),
        ("last_bootstrap", device.last_bootstrap),
        ("created_at", Some(device.created_at)),
    ] {
        if let Some(v) = v {
            identity.insert(k.to_string(), v.to_string());
        }
    }
    s.converge = Some(Converge {
        rounds: 0,
        root_model: device.root_model.clone(),
        identity,
        lines,
        presets,
        inform_values: inform
            .parameter_list
            .iter()
            .map(|p| (p.name.clone(), p.value.clone(), p.xsd_type.to_string()))
            .collect(),
        known_tree: device.discovered_at.is_some(),
    });
    Ok(())
}

fn line_work(r: &LineRow, read_status: bool) -> Option<LineWork> {
    let account: Account = serde_json::from_str(&r.account).ok()?;
    let push = r.revision != r.applied_revision && r.status != "fault";
    let status_path = r
        .mapping
        .as_deref()
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|m| {
            m.get("status_path")
                .and_then(|p| p.as_str())
                .map(str::to_string)
        });
    if !(push || read_status && status_path.is_some()) {
        return None;
    }
    Some(LineWork {
        id: r.id,
        line: u32::try_from(r.line).unwrap_or(1),
        revision: r.revision,
        account,
        password: r.password.clone(),
        push,
        status_path,
        done: false,
        adds: 0,
    })
}

async fn view(env: &Env<'_>, s: &mut DeviceSession, c: &Converge) -> Result<ParamTree> {
    if s.known.is_none() {
        let id = s.device_id.clone();
        s.known = Some(
            env.store
                .run(move |st| crate::domain::params::read_tree(st, &id))
                .await?,
        );
    }
    let mut t = if s.discovered {
        ParamTree::new()
    } else {
        s.known.clone().unwrap_or_default()
    };
    for (n, v, ty) in &c.inform_values {
        t.set_value(n, v, ty, 0);
    }
    if let Some(blob) = &s.learnt_blob {
        if let Ok(l) = ParamTree::decode(blob) {
            t.overlay(&l);
        }
    }
    t.overlay(&s.learnt);
    for r in &s.subtrees_removed {
        t.remove_subtree(r);
    }
    Ok(t)
}

/// Plan the next round of convergence. Afterwards either requests are queued or
/// `s.converge` is `None`.
pub async fn plan_round(env: &Env<'_>, s: &mut DeviceSession) -> Result<()> {
    let Some(mut c) = s.converge.take() else {
        return Ok(());
    };
    c.rounds += 1;
    let tree = view(env, s, &c).await?;
    let root = s.root.clone();
    let rm = voip::root_model_of(&c.root_model);
    let last_round = c.rounds >= MAX_ROUNDS;

    // Lines of the device.
    let mut line_values: Vec<ParameterValue> = Vec::new();
    let mut line_set: Vec<(i64, i64, String)> = Vec::new();
    let mut adds: Vec<Planned> = Vec::new();
    let mut line_faults: Vec<(i64, String)> = Vec::new();
    let mut status_reads: Vec<(i64, String)> = Vec::new();
    for lw in c.lines.iter_mut().filter(|l| !l.done) {
        if !lw.push {
            if let Some(p) = &lw.status_path {
                status_reads.push((lw.id, p.clone()));
            }
            lw.done = true;
            continue;
        }
        let plan = match voip::plan_line(
            &tree,
            &root,
            rm,
            lw.line,
            &lw.account,
            lw.password.as_deref(),
        ) {
            Ok(p) => p,
            Err(e) => {
                line_faults.push((lw.id, e.to_string()));
                lw.done = true;
                continue;
            }
        };
        if !plan.add_objects.is_empty() {
            lw.adds += 1;
            if lw.adds > 2 || last_round {
                line_faults.push((
                    lw.id,
                    format!(
                        "the device did not create the objects line {} needs ({})",
                        lw.line,
                        plan.add_objects.join(", ")
                    ),
                ));
                lw.done = true;
                continue;
            }
            for table in plan.add_objects {
                adds.push(planned(
                    Step::AddObject { line: Some(lw.id) },
                    AcsRequest::AddObject(ObjectRequest {
                        object_name: table,
                        parameter_key: format!("vl-{}-{}", lw.id, lw.revision),
                    }),
                ));
            }
            continue;
        }
        if !plan.invalid.is_empty() {
            let why: Vec<String> = plan.invalid.iter().map(|(_, e)| e.clone()).collect();
            line_faults.push((lw.id, why.join("; ")));
            lw.done = true;
            continue;
        }
        if plan.values.is_empty() {
            line_faults.push((
                lw.id,
                format!(
                    "the device has none of the parameters line {} needs",
                    lw.line
                ),
            ));
            lw.done = true;
            continue;
        }
        for v in plan.values.iter() {
            if !line_values.iter().any(|x| x.name == v.name) {
                line_values.push(v.clone());
            }
        }
        lw.status_path = plan.status_path.clone();
        lw.done = true;
        line_set.push((lw.id, lw.revision, plan.mapping_json().to_string()));
    }
    for (id, why) in line_faults {
        line_fault(env, s, id, None, &why).await?;
    }

    // Presets.
    let mut preset_reqs: Vec<Planned> = Vec::new();
    if let Some(pw) = c.presets.as_mut() {
        if !adds.is_empty() {
            // Objects first; presets look at the result next round.
        } else {
            preset_round(
                env,
                s,
                pw,
                &tree,
                &root,
                rm,
                &c.identity,
                &c.lines,
                c.known_tree,
                last_round,
                &mut preset_reqs,
            )
            .await?;
        }
    }

    let mut queued = false;
    if !adds.is_empty() {
        s.queue.extend(adds);
        queued = true;
    } else {
        if !line_set.is_empty() {
            let key = format!("vl-{}", line_set.iter().map(|l| l.1).max().unwrap_or(0));
            s.queue.push_back(planned(
                Step::LineSet { lines: line_set },
                AcsRequest::SetParameterValues(SetParameterValues {
                    parameter_list: line_values,
                    parameter_key: key,
                }),
            ));
            queued = true;
        }
        if !status_reads.is_empty() {
            s.queue.push_back(status_request(status_reads));
            queued = true;
        }
        if !preset_reqs.is_empty() {
            s.queue.extend(preset_reqs);
            queued = true;
        }
    }
    if queued && !last_round {
        s.converge = Some(c);
        return Ok(());
    }
    if queued {
        // Last round: send what is queued, plan nothing more.
    }
    finish(env, s, c).await
}

fn status_request(lines: Vec<(i64, String)>) -> Planned {
    let names: Vec<String> = lines.iter().map(|l| l.1.clone()).collect();
    planned(
        Step::LineStatus { lines },
        AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: names,
        }),
    )
}

#[allow(clippy::too_many_arguments)]
async fn preset_round(
    env: &Env<'_>,
    s: &mut DeviceSession,
    pw: &mut PresetWork,
    tree: &ParamTree,
    root: &str,
    rm: crate::datamodel::RootModel,
    identity: &BTreeMap<String, String>,
    own_lines: &[LineWork],
    known_tree: bool,
    last_round: bool,
    out: &mut Vec<Planned>,
) -> Result<()> {
    let all: Vec<Preset> = pw
        .presets
        .iter()
        .filter_map(PresetData::to_preset)
        .collect();
    if pw.applicable.is_none() {
        let tags = if all.iter().any(|p| devices::uses_tags(&p.filter)) {
            let id = s.device_id.clone();
            env.store
                .run(move |st| st.tags_of(&[id]))
                .await?
                .into_iter()
                .map(|(_, t)| t)
                .collect()
        } else {
            Vec::new()
        };
        let facts = DeviceFacts {
            columns: identity,
            tags: &tags,
            tree,
        };
        let matched: Vec<&Preset> = all
            .iter()
            .filter(|p| devices::matches(&p.filter, &facts))
            .collect();
        let mut union: BTreeSet<String> = BTreeSet::new();
        for p in &matched {
            union.extend(p.events.iter().cloned());
        }
        pw.events_union = union.into_iter().collect::<Vec<_>>().join(",");
        let applicable: Vec<String> = matched
            .iter()
            .filter(|p| {
                p.events.iter().any(|e| pw.events.contains(e))
                    || pw.state.revisions.get(&p.name) != Some(&p.revision)
            })
            .map(|p| p.name.clone())
            .collect();
        // Forget presets that no longer exist.
        let names: BTreeSet<&str> = all.iter().map(|p| p.name.as_str()).collect();
        let before = pw.state.revisions.len();
        pw.state.revisions.retain(|n, _| names.contains(n.as_str()));
        pw.dirty |= before != pw.state.revisions.len();
        pw.applicable = Some(applicable);
    }
    let wanted: Vec<&Preset> = {
        let names = pw.applicable.clone().unwrap_or_default();
        all.iter().filter(|p| names.contains(&p.name)).collect()
    };
    if wanted.is_empty() {
        return Ok(());
    }
    let mut ordered = wanted.clone();
    presets::by_precedence(&mut ordered);
    let mut desired = presets::resolve(&wanted, root);

    // Line settings of presets, for lines the device has no account of its own on.
    let mut done_lines = BTreeSet::new();
    for p in &ordered {
        for pl in &p.spec.lines {
            if own_lines.iter().any(|l| l.line == pl.line) || !done_lines.insert(pl.line) {
                continue;
            }
            let Ok(plan) = voip::plan_line(tree, root, rm, pl.line, &pl.account, None) else {
                continue;
            };
            let tables: Vec<String> = plan
                .add_objects
                .iter()
                .filter(|t| !pw.failed_adds.contains(*t))
                .cloned()
                .collect();
            if !plan.add_objects.is_empty() {
                if !tables.is_empty() && pw.adds < 2 && !last_round {
                    pw.adds += 1;
                    for t in tables {
                        out.push(planned(
                            Step::AddObject { line: None },
                            AcsRequest::AddObject(ObjectRequest {
                                object_name: t,
                                parameter_key: format!("ps-{}", p.revision),
                            }),
                        ));
                    }
                }
                continue;
            }
            for v in plan.values {
                desired.entry(v.name.clone()).or_insert(presets::Desired {
                    value: v.value,
                    xsd_type: Some(v.xsd_type.into_owned()),
                    preset: p.name.clone(),
                    revision: p.revision,
                    priority: p.priority,
                    overrides: Vec::new(),
                });
            }
        }
    }
    if !out.is_empty() {
        return Ok(());
    }

    // Difference between desired and known.
    let now = env.now;
    let discovered = known_tree || s.discovered;
    let mut diff: Vec<(String, presets::Desired, String)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut missing: Vec<(String, presets::Desired)> = Vec::new();
    for (name, d) in &desired {
        if let Some(r) = pw.state.refused.get(name) {
            // A secret value is recorded masked: its revision tells it apart.
            if r.value == presets::kept(name, &d.value) && r.revision == d.revision {
                continue;
            }
        }
        let ty = d
            .xsd_type
            .clone()
            .unwrap_or_else(|| voip::type_for(name, root, rm, tree));
        match tree.get(name) {
            Some(e) => match &e.value {
                Some(v) if presets::same_value(v, &d.value, &ty) => {
                    let owner = pw.state.applied.get(name);
                    let value = presets::kept(name, &d.value);
                    if owner.map(|a| (&a.preset, &a.value)) != Some((&d.preset, &value)) {
                        pw.state.applied.insert(
                            name.clone(),
                            Applied {
                                preset: d.preset.clone(),
                                revision: d.revision,
                                value,
                                at: now,
                            },
                        );
                        pw.dirty = true;
                    }
                }
                Some(_) => diff.push((name.clone(), d.clone(), ty)),
                None if !pw.refreshed.contains(name) => unknown.push(name.clone()),
                None => missing.push((name.clone(), d.clone())),
            },
            None if !discovered && !pw.refreshed.contains(name) => unknown.push(name.clone()),
            None => missing.push((name.clone(), d.clone())),
        }
    }
    for (name, d) in missing {
        pw.state.refused.insert(
            name.clone(),
            Refused {
                preset: d.preset.clone(),
                revision: d.revision,
                value: presets::kept(&name, &d.value),
                code: 9005,
                reason: "the device does not have this parameter".into(),
                at: now,
            },
        );
        pw.dirty = true;
        record_fault(
            env,
            &s.device_id,
            9005,
            format!("preset {}: the device has no parameter {name}", d.preset),
            None,
        )
        .await?;
    }
    if !unknown.is_empty() && !last_round {
        pw.refreshed.extend(unknown.iter().cloned());
        out.push(planned(
            Step::PresetRefresh,
            AcsRequest::GetParameterValues(GetParameterValues {
                parameter_names: unknown,
            }),
        ));
        return Ok(());
    }
    if !diff.is_empty() && !pw.pushed {
        pw.pushed = true;
        let key = format!(
            "ps-{}",
            diff.iter().map(|d| d.1.revision).max().unwrap_or(0)
        );
        let values: Vec<(String, String, String, i64)> = diff
            .iter()
            .map(|(n, d, _)| (n.clone(), d.value.clone(), d.preset.clone(), d.revision))
            .collect();
        out.push(planned(
            Step::PresetSet { values },
            AcsRequest::SetParameterValues(SetParameterValues {
                parameter_list: diff
                    .into_iter()
                    .map(|(n, d, ty)| ParameterValue::new(n, d.value, ty))
                    .collect(),
                parameter_key: key,
            }),
        ));
    }
    // Firmware: the first preset in precedence order that names one.
    if let Some(p) = ordered.iter().find(|p| p.spec.firmware.is_some()) {
        if let Some(fw) = &p.spec.firmware {
            let current = identity
                .get("software_version")
                .cloned()
                .unwrap_or_default();
            if current != fw.version && pw.state.firmware.get(&p.name) != Some(&p.revision) {
                pw.state.firmware.insert(p.name.clone(), p.revision);
                pw.dirty = true;
                let fid = fw.file_id.clone();
                let file = env.store.run(move |st| st.get_file(&fid)).await?;
                match file {
                    Some(f) => out.push(planned(
                        Step::Firmware {
                            preset: p.name.clone(),
                        },
                        AcsRequest::Download(Download {
                            command_key: format!("ps-{}", p.revision),
                            file_type: "1 Firmware Upgrade Image".into(),
                            url: format!("{}/files/{}", env.files_base_url, f.id),
                            username: String::new(),
                            password: String::new(),
                            file_size: u32::try_from(f.size).unwrap_or(0),
                            target_file_name: f.name.clone(),
                            delay_seconds: 0,
                            success_url: String::new(),
                            failure_url: String::new(),
                        }),
                    )),
                    None => {
                        record_fault(
                            env,
                            &s.device_id,
                            9017,
                            format!(
                                "preset {}: firmware file {} does not exist; upload it or fix the preset",
                                p.name, fw.file_id
                            ),
                            None,
                        )
                        .await?
                    }
                }
            }
        }
    }
    if out.is_empty() {
        // Converged: remember the revisions.
        for p in &wanted {
            if pw.state.revisions.get(&p.name) != Some(&p.revision) {
                pw.state.revisions.insert(p.name.clone(), p.revision);
                pw.dirty = true;
            }
        }
        pw.applicable = Some(Vec::new());
    }
    Ok(())
}

async fn finish(env: &Env<'_>, s: &mut DeviceSession, c: Converge) -> Result<()> {
    // Lines still to push at the end: give up for this revision.
    for lw in c.lines.iter().filter(|l| !l.done && l.push) {
        line_fault(
            env,
            s,
            lw.id,
            None,
            "provisioning did not finish within one session",
        )
        .await?;
    }
    if let Some(pw) = c.presets {
        let id = s.device_id.clone();
        let now = env.now;
        let state = pw.dirty.then(|| pw.state.encode());
        let events = (pw.events_union != pw.old_events && pw.applicable.is_some())
            .then_some(pw.events_union);
        if state.is_some() || events.is_some() {
            env.store
                .run(move |st| {
                    if let Some(state) = state {
                        st.save_preset_state(&id, &state, now)?;
                    }
                    if let Some(ev) = events {
                        st.set_preset_events(&id, &ev)?;
                    }
                    Ok(())
                })
                .await?;
        }
    }
    s.converge = None;
    Ok(())
}

async fn record_fault(
    env: &Env<'_>,
    device_id: &str,
    code: u32,
    message: String,
    detail: Option<String>,
) -> Result<()> {
    let f = NewFault {
        device_id: device_id.to_string(),
        task_id: None,
        code: code as i32,
        message,
        detail,
        created_at: env.now,
    };
    env.store.run(move |st| st.insert_fault(&f)).await
}

async fn line_fault(
    env: &Env<'_>,
    s: &mut DeviceSession,
    id: i64,
    fault: Option<&CwmpFault>,
    why: &str,
) -> Result<()> {
    s.faults.push(format!("line {id}: {why}"));
    let now = env.now;
    let update = LineUpdate {
        status: Some("fault".into()),
        fault: Some(Some(why.to_string())),
        ..LineUpdate::default()
    };
    let f = NewFault {
        device_id: s.device_id.clone(),
        task_id: None,
        code: fault.map(|f| f.code as i32).unwrap_or(0),
        message: format!("VoIP line: {why}"),
        detail: fault.map(|f| crate::domain::tasks::fault_detail(f).to_string()),
        created_at: now,
    };
    env.store
        .run(move |st| {
            st.update_line(id, &update, now)?;
            st.insert_fault(&f)
        })
        .await
}

/// Names and codes of the per-parameter faults, without values (they may be passwords).
fn fault_summary(f: &CwmpFault) -> String {
    let mut s = format!(
        "the device refused the values: fault {} {}",
        f.code, f.string
    );
    if !f.set_parameter_values_faults.is_empty() {
        let per: Vec<String> = f
            .set_parameter_values_faults
            .iter()
            .map(|p| format!("{} ({})", p.parameter_name, p.code))
            .collect();
        s.push_str(&format!(": {}", per.join(", ")));
    }
    s
}

/// File a successful answer.
pub async fn on_ok(
    env: &Env<'_>,
    s: &mut DeviceSession,
    step: &Step,
    req: &AcsRequest,
    resp: &CpeResponse,
) -> Result<()> {
    let now = env.now;
    match (step, resp) {
        (
            Step::AddObject { .. },
            CpeResponse::AddObject {
                instance_number, ..
            },
        ) => {
            if let AcsRequest::AddObject(a) = req {
                s.queue.push_front(planned(
                    Step::Refresh,
                    AcsRequest::GetParameterValues(GetParameterValues {
                        parameter_names: vec![format!("{}{}.", a.object_name, instance_number)],
                    }),
                ));
            }
        }
        (Step::LineSet { lines }, _) => {
            let mut reads = Vec::new();
            for (id, revision, mapping) in lines.clone() {
                let update = LineUpdate {
                    applied_revision: Some(revision),
                    status: Some("applied".into()),
                    mapping: Some(Some(mapping)),
                    fault: Some(None),
                    ..LineUpdate::default()
                };
                env.store
                    .run(move |st| st.update_line(id, &update, now))
                    .await?;
                let path = s
                    .converge
                    .as_ref()
                    .and_then(|c| c.lines.iter().find(|l| l.id == id))
                    .and_then(|l| l.status_path.clone());
                if let Some(p) = path {
                    reads.push((id, p));
                }
            }
            if !reads.is_empty() {
                s.queue.push_front(status_request(reads));
            }
        }
        (Step::LineStatus { lines }, CpeResponse::GetParameterValues { parameter_list }) => {
            for (id, path) in lines.clone() {
                let raw = parameter_list
                    .iter()
                    .find(|p| p.name == path)
                    .map(|p| p.value.clone());
                let update = LineUpdate {
                    status: Some(
                        raw.as_deref()
                            .map(voip::normalize_status)
                            .unwrap_or("unknown")
                            .to_string(),
                    ),
                    device_status: Some(raw),
                    status_at: Some(Some(now)),
                    ..LineUpdate::default()
                };
                env.store
                    .run(move |st| st.update_line(id, &update, now))
                    .await?;
            }
        }
        (Step::PresetSet { values }, _) => {
            if let Some(pw) = s.converge.as_mut().and_then(|c| c.presets.as_mut()) {
                for (name, value, preset, revision) in values {
                    pw.state.applied.insert(
                        name.clone(),
                        Applied {
                            preset: preset.clone(),
                            revision: *revision,
                            value: presets::kept(name, value),
                            at: now,
                        },
                    );
                    pw.state.refused.remove(name);
                }
                pw.dirty = true;
            }
        }
        _ => {}
    }
    Ok(())
}

/// File a CWMP fault.
pub async fn on_fault(
    env: &Env<'_>,
    s: &mut DeviceSession,
    step: &Step,
    req: &AcsRequest,
    fault: &CwmpFault,
) -> Result<()> {
    let now = env.now;
    match step {
        Step::AddObject { line } => {
            let table = match req {
                AcsRequest::AddObject(a) => a.object_name.clone(),
                _ => String::new(),
            };
            match line {
                Some(id) => {
                    let why = format!(
                        "the device refused to create {table}: fault {} {}",
                        fault.code, fault.string
                    );
                    if let Some(lw) = s
                        .converge
                        .as_mut()
                        .and_then(|c| c.lines.iter_mut().find(|l| l.id == *id))
                    {
                        lw.done = true;
                    }
                    line_fault(env, s, *id, Some(fault), &why).await?;
                }
                None => {
                    if let Some(pw) = s.converge.as_mut().and_then(|c| c.presets.as_mut()) {
                        pw.failed_adds.insert(table.clone());
                    }
                    record_fault(
                        env,
                        &s.device_id,
                        fault.code,
                        format!("preset line: AddObject {table}: {}", fault.string),
                        None,
                    )
                    .await?;
                }
            }
        }
        Step::LineSet { lines } => {
            let why = fault_summary(fault);
            for (id, _, _) in lines {
                line_fault(env, s, *id, Some(fault), &why).await?;
            }
        }
        Step::LineStatus { lines } => {
            for (id, _) in lines.clone() {
                let update = LineUpdate {
                    status: Some("unknown".into()),
                    status_at: Some(Some(now)),
                    ..LineUpdate::default()
                };
                env.store
                    .run(move |st| st.update_line(id, &update, now))
                    .await?;
            }
        }
        Step::PresetSet { values } => {
            let named: BTreeMap<&str, (u32, &str)> = fault
                .set_parameter_values_faults
                .iter()
                .map(|p| (p.parameter_name.as_str(), (p.code, p.string.as_str())))
                .collect();
            let mut refused = Vec::new();
            for (name, value, preset, revision) in values {
                let hit = if named.is_empty() {
                    Some((fault.code, fault.string.as_str()))
                } else {
                    named.get(name.as_str()).copied()
                };
                if let Some((code, reason)) = hit {
                    refused.push(format!("{name} ({code})"));
                    if let Some(pw) = s.converge.as_mut().and_then(|c| c.presets.as_mut()) {
                        pw.state.refused.insert(
                            name.clone(),
                            Refused {
                                preset: preset.clone(),
                                revision: *revision,
                                value: presets::kept(name, value),
                                code,
                                reason: reason.to_string(),
                                at: now,
                            },
                        );
                        pw.dirty = true;
                    }
                }
            }
            if let Some(pw) = s.converge.as_mut().and_then(|c| c.presets.as_mut()) {
                // The values not refused go out in the next round.
                pw.pushed = false;
            }
            record_fault(
                env,
                &s.device_id,
                fault.code,
                format!("preset values refused: {}", refused.join(", ")),
                Some(crate::domain::tasks::fault_detail(fault).to_string()),
            )
            .await?;
        }
        Step::PresetRefresh | Step::Refresh => {
            record_fault(
                env,
                &s.device_id,
                fault.code,
                format!("reading values for presets or lines: {}", fault.string),
                None,
            )
            .await?;
        }
        Step::Firmware { preset } => {
            record_fault(
                env,
                &s.device_id,
                fault.code,
                format!(
                    "preset {preset}: firmware Download refused: {}",
                    fault.string
                ),
                None,
            )
            .await?;
        }
    }
    Ok(())
}
