//! The ledger of state-changing RPCs a simulated CPE executed, and its check against the
//! tasks the ACS holds: every task must have been executed exactly once.
//!
//! A CPE records each Reboot and Download it accepted (by CommandKey) and each
//! SetParameterValues, AddObject and DeleteObject it applied (by ParameterKey), and each
//! FactoryReset (with an empty key). After a run
//! where the server was killed at random moments, [`check`] compares those records with the
//! tasks the ACS reports done: an execution seen twice for one task is a duplicate (a Reboot
//! or a Download run twice), a done or pending task never executed is lost.

use std::collections::BTreeMap;

/// One state-changing RPC a CPE executed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Execution {
    /// The device's `OUI-ProductClass-Serial` id.
    pub device: String,
    /// RPC name (`Reboot`, `Download`, `SetParameterValues`, `AddObject`, `DeleteObject`).
    pub rpc: String,
    /// CommandKey (Reboot, Download) or ParameterKey (the others).
    pub key: String,
}

/// A task the ACS was asked to run, as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTask {
    pub device: String,
    pub rpc: String,
    /// The key the task's RPC carries (unique per task).
    pub key: String,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerReport {
    /// Tasks checked.
    pub tasks: usize,
    /// Executions recorded for those tasks.
    pub executions: usize,
    /// Tasks executed more than once, with the count.
    pub duplicates: Vec<(ExpectedTask, usize)>,
    /// Tasks never executed.
    pub lost: Vec<ExpectedTask>,
    /// Executions that match no task (a key the test never issued).
    pub unexpected: Vec<Execution>,
}

impl LedgerReport {
    /// Every task executed exactly once, nothing unexplained.
    pub fn is_clean(&self) -> bool {
        self.duplicates.is_empty() && self.lost.is_empty() && self.unexpected.is_empty()
    }
}

/// Compare the executions the CPEs recorded with the tasks that were issued. Executions of
/// RPCs outside `rpcs` (e.g. the ACS's own bootstrap SetParameterValues) are ignored.
pub fn check(tasks: &[ExpectedTask], executed: &[Execution], rpcs: &[&str]) -> LedgerReport {
    let mut counts: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    let mut report = LedgerReport {
        tasks: tasks.len(),
        ..LedgerReport::default()
    };
    for t in tasks {
        counts.insert((&t.device, &t.rpc, &t.key), 0);
    }
    for e in executed.iter().filter(|e| rpcs.contains(&e.rpc.as_str())) {
        match counts.get_mut(&(e.device.as_str(), e.rpc.as_str(), e.key.as_str())) {
            Some(n) => {
                *n += 1;
                report.executions += 1;
            }
            None => report.unexpected.push(e.clone()),
        }
    }
    for t in tasks {
        match counts
            .get(&(t.device.as_str(), t.rpc.as_str(), t.key.as_str()))
            .copied()
            .unwrap_or(0)
        {
            0 => report.lost.push(t.clone()),
            1 => {}
            n => report.duplicates.push((t.clone(), n)),
        }
    }
    report
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn task(device: &str, rpc: &str, key: &str) -> ExpectedTask {
        ExpectedTask {
            device: device.into(),
            rpc: rpc.into(),
            key: key.into(),
        }
    }

    fn exec(device: &str, rpc: &str, key: &str) -> Execution {
        Execution {
            device: device.into(),
            rpc: rpc.into(),
            key: key.into(),
        }
    }

    const RPCS: &[&str] = &["Reboot", "Download", "SetParameterValues", "AddObject"];

    #[test]
    fn each_task_once_is_clean() {
        let tasks = [task("d1", "Reboot", "k1"), task("d1", "Download", "k2")];
        let ran = [exec("d1", "Download", "k2"), exec("d1", "Reboot", "k1")];
        let r = check(&tasks, &ran, RPCS);
        assert!(r.is_clean(), "{r:?}");
        assert_eq!((r.tasks, r.executions), (2, 2));
    }

    #[test]
    fn a_reboot_run_twice_is_a_duplicate_and_a_missing_download_is_lost() {
        let tasks = [
            task("d1", "Reboot", "k1"),
            task("d2", "Download", "k2"),
            task("d2", "AddObject", "k3"),
        ];
        let ran = [
            exec("d1", "Reboot", "k1"),
            exec("d1", "Reboot", "k1"),
            exec("d2", "AddObject", "k3"),
        ];
        let r = check(&tasks, &ran, RPCS);
        assert!(!r.is_clean());
        assert_eq!(r.duplicates, vec![(task("d1", "Reboot", "k1"), 2)]);
        assert_eq!(r.lost, vec![task("d2", "Download", "k2")]);
        assert_eq!(r.executions, 3);
    }

    #[test]
    fn same_key_on_another_device_or_rpc_does_not_count() {
        let tasks = [task("d1", "Reboot", "k1")];
        let ran = [exec("d2", "Reboot", "k1"), exec("d1", "Download", "k1")];
        let r = check(&tasks, &ran, RPCS);
        assert_eq!(r.lost, vec![task("d1", "Reboot", "k1")]);
        assert_eq!(r.unexpected.len(), 2);
    }

    #[test]
    fn the_simulated_cpe_records_what_it_executed() {
        use crate::cpe::{Device, Root};
        let mut dev = Device::synthetic(Root::Igd, "LEDGER01", 50);
        let envelope = |ns: &str, body: &str| {
            format!(
                "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
                 xmlns:cwmp=\"{ns}\"><soap:Header><cwmp:ID soap:mustUnderstand=\"1\">1</cwmp:ID>\
                 </soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
            )
        };
        let ns = dev.cwmp_ns.clone();
        let reboot = envelope(
            &ns,
            "<cwmp:Reboot><CommandKey>rk1</CommandKey></cwmp:Reboot>",
        );
        assert!(dev.respond_to(&reboot).unwrap().fault.is_none());
        assert!(dev.respond_to(&reboot).unwrap().fault.is_none());
        // A request the CPE refuses is not an execution.
        let bad = envelope(&ns, "<cwmp:AddObject><ObjectName>Nope.</ObjectName><ParameterKey>pk</ParameterKey></cwmp:AddObject>");
        assert!(dev.respond_to(&bad).unwrap().fault.is_some());
        let id = dev.identity.device_id();
        assert_eq!(
            dev.state.executed,
            vec![exec(&id, "Reboot", "rk1"), exec(&id, "Reboot", "rk1")]
        );
        let r = check(&[task(&id, "Reboot", "rk1")], &dev.state.executed, RPCS);
        assert_eq!(r.duplicates, vec![(task(&id, "Reboot", "rk1"), 2)]);
    }

    #[test]
    fn rpcs_outside_the_checked_set_are_ignored() {
        // The ACS's own bootstrap SetParameterValues is not a task of the run.
        let tasks = [task("d1", "Reboot", "k1")];
        let ran = [
            exec("d1", "SetParameterValues", "bootstrap"),
            exec("d1", "Reboot", "k1"),
        ];
        let r = check(&tasks, &ran, &["Reboot", "Download"]);
        assert!(r.is_clean(), "{r:?}");
    }
}
