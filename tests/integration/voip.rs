//! VoIP lines and presets against the CPE simulator: a line reaches the device in each
//! TR-104 layout and its status is read back; CSV import; presets converge many devices
//! and leave nothing to push afterwards.

use std::time::Instant;

use ferroacs::datamodel::Registry;
use ferroacs::domain::{lines, presets};

use crate::battery;
use crate::cpe::{Device, Param, Root};
use crate::cwmp::sample_device;
use crate::support::{Backend, TestApp};

pub(crate) fn dev_id(d: &Device) -> String {
    ferroacs::cwmp::device_id(
        &d.identity.oui,
        &d.identity.product_class,
        &d.identity.serial_number,
    )
}

/// What a device creates in a new row of `table_pattern` (a table under
/// `VoiceService.{i}.`, e.g. `VoiceService.{i}.VoiceProfile.{i}.Line.`), from the TR-104
/// issue 1 definitions: the objects and parameters of the row, nested tables left empty.
fn v1_template(table_pattern: &str) -> Vec<(String, Param)> {
    let reg = Registry::builtin().unwrap();
    let model = reg
        .models()
        .find(|m| m.name().starts_with("VoiceService:1"))
        .unwrap();
    let row = format!("{table_pattern}{{i}}.");
    let mut out = Vec::new();
    for obj in model.objects() {
        let path = obj.path();
        let Some(at) = path.find("VoiceService.{i}.") else {
            continue;
        };
        let rel_path = &path[at..];
        let Some(rel) = rel_path.strip_prefix(&row) else {
            continue;
        };
        if rel.contains("{i}") {
            continue;
        }
        if !rel.is_empty() {
            out.push((rel.to_string(), Param::object(false)));
        }
        for p in model.params_of(obj) {
            let ty = ferroacs::datamodel::xsd_type(p).to_string();
            let value = match ty.as_str() {
                "xsd:boolean" => "false",
                "xsd:unsignedInt" | "xsd:int" | "xsd:unsignedLong" | "xsd:long" => "0",
                _ => "",
            };
            out.push((
                format!("{rel}{}", p.name()),
                Param::leaf(value, ty, p.is_writable()),
            ));
        }
    }
    assert!(
        out.len() > 10,
        "template for {table_pattern}: {}",
        out.len()
    );
    out
}

/// A Device:2 simulator with a TR-104 issue 2 voice service: one network, VoIP profile,
/// client, line and extension.
pub(crate) fn issue2_device(serial: &str) -> Device {
    let mut d =
        Device::synthetic(Root::Device2, serial, 60).with_acs_credentials("cpe", "cpe-secret");
    let b = "Device.Services.VoiceService.1.";
    let objs: &[(&str, bool)] = &[
        ("Device.Services.", false),
        ("Device.Services.VoiceService.", false),
        ("Device.Services.VoiceService.1.", false),
        ("Device.Services.VoiceService.1.SIP.", false),
        ("Device.Services.VoiceService.1.SIP.Client.", true),
        ("Device.Services.VoiceService.1.SIP.Client.1.", true),
        ("Device.Services.VoiceService.1.SIP.Network.", true),
        ("Device.Services.VoiceService.1.SIP.Network.1.", true),
        ("Device.Services.VoiceService.1.VoIPProfile.", true),
        ("Device.Services.VoiceService.1.VoIPProfile.1.", true),
        ("Device.Services.VoiceService.1.CallControl.", false),
        ("Device.Services.VoiceService.1.CallControl.Line.", true),
        ("Device.Services.VoiceService.1.CallControl.Line.1.", true),
        (
            "Device.Services.VoiceService.1.CallControl.Extension.",
            true,
        ),
        (
            "Device.Services.VoiceService.1.CallControl.Extension.1.",
            true,
        ),
    ];
    for (o, w) in objs {
        d.model.insert(o.to_string(), Param::object(*w));
    }
    let s = "xsd:string";
    let u = "xsd:unsignedInt";
    let bo = "xsd:boolean";
    let leaves: &[(&str, &str, &str, bool)] = &[
        ("SIP.Client.1.Enable", "true", bo, true),
        ("SIP.Client.1.Status", "Up", s, false),
        ("SIP.Client.1.AuthUserName", "existing", s, true),
        ("SIP.Client.1.AuthPassword", "", s, true),
        ("SIP.Client.1.RegisterURI", "", s, true),
        (
            "SIP.Client.1.Network",
            "Device.Services.VoiceService.1.SIP.Network.1",
            s,
            true,
        ),
        ("SIP.Network.1.Enable", "true", bo, true),
        ("SIP.Network.1.RegistrarServer", "old.example.net", s, true),
        ("SIP.Network.1.RegistrarServerPort", "5060", u, true),
        ("SIP.Network.1.RegistrarServerTransport", "UDP", s, true),
        ("SIP.Network.1.ProxyServer", "", s, true),
        ("SIP.Network.1.ProxyServerPort", "5060", u, true),
        ("SIP.Network.1.ProxyServerTransport", "UDP", s, true),
        ("SIP.Network.1.OutboundProxy", "", s, true),
        ("SIP.Network.1.OutboundProxyPort", "5060", u, true),
        ("SIP.Network.1.UserAgentDomain", "", s, true),
        ("SIP.Network.1.UserAgentPort", "5060", u, true),
        ("SIP.Network.1.UserAgentTransport", "UDP", s, true),
        ("SIP.Network.1.RegisterExpires", "3600", u, true),
        (
            "SIP.Network.1.VoIPProfile",
            "Device.Services.VoiceService.1.VoIPProfile.1",
            s,
            true,
        ),
        ("VoIPProfile.1.Enable", "true", bo, true),
        ("VoIPProfile.1.DTMFMethod", "InBand", s, true),
        ("CallControl.Line.1.Enable", "true", bo, true),
        ("CallControl.Line.1.Status", "Up", s, false),
        ("CallControl.Line.1.DirectoryNumber", "100", s, true),
        (
            "CallControl.Line.1.Provider",
            "Device.Services.VoiceService.1.SIP.Client.1",
            s,
            true,
        ),
        ("CallControl.Extension.1.Enable", "true", bo, true),
        ("CallControl.Extension.1.Name", "", s, true),
    ];
    for (n, v, t, w) in leaves {
        d.model.insert(format!("{b}{n}"), Param::leaf(*v, *t, *w));
    }
    d
}

fn account_input(user: &str) -> lines::LineInput {
    serde_json::from_value(serde_json::json!({
        "sip_user": user,
        "password": format!("pw-{user}-secret"),
        "directory_number": "+4930123456",
        "display_name": "Front desk",
        "registrar": "sip.example.net",
        "registrar_port": 5070,
        "transport": "UDP",
        "user_agent_domain": "example.net",
        "dtmf_mode": "RFC2833",
    }))
    .unwrap()
}

struct Layout {
    dev: Device,
    line: i32,
    user_path: &'static str,
    password_path: &'static str,
    registrar_path: &'static str,
    status_path: &'static str,
    up_value: &'static str,
    layout: &'static str,
}

async fn line_reaches_the_device_in_every_layout(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let store = app.store();

    let mut bm = sample_device("data_model_202BC1-BM632w-8KA8WA1151100043.csv");
    bm.instance_templates.insert(
        "InternetGatewayDevice.Services.VoiceService.{i}.VoiceProfile.{i}.Line.".into(),
        v1_template("VoiceService.{i}.VoiceProfile.{i}.Line."),
    );
    let cases = vec![
        // IGD root, TR-104 issue 1, no Line instance yet: AddObject first.
        Layout {
            dev: bm,
            line: 1,
            user_path: "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthUserName",
            password_path: "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthPassword",
            registrar_path: "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.SIP.RegistrarServer",
            status_path: "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.Status",
            up_value: "Up",
            layout: "tr104_issue1",
        },
        // Device:2 root with the issue 1 layout (TP-Link): the complete tree is the vendor's.
        Layout {
            dev: sample_device("device-1C61B4-XX230v-22275A7000395-2023-04-27T154050686Z.csv"),
            line: 2,
            user_path: "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.Line.2.SIP.AuthUserName",
            password_path: "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.Line.2.SIP.AuthPassword",
            registrar_path: "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.SIP.RegistrarServer",
            status_path: "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.Line.2.Status",
            up_value: "Up",
            layout: "tr104_issue1",
        },
        // Device:2 with TR-104 issue 2: line 2 needs a new CallControl.Line and SIP.Client.
        Layout {
            dev: issue2_device("VOIP2-0001"),
            line: 2,
            user_path: "Device.Services.VoiceService.1.SIP.Client.2.AuthUserName",
            password_path: "Device.Services.VoiceService.1.SIP.Client.2.AuthPassword",
            registrar_path: "Device.Services.VoiceService.1.SIP.Network.1.RegistrarServer",
            status_path: "Device.Services.VoiceService.1.SIP.Client.2.Status",
            up_value: "Registering",
            layout: "tr104_issue2",
        },
    ];

    for mut c in cases {
        let id = dev_id(&c.dev);
        let report = c.dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
        assert!(report.ended_cleanly(), "{id} bootstrap: {report:?}");

        let user = format!("u{}", c.line);
        let view = lines::assign(
            &store,
            &id,
            c.line,
            account_input(&user),
            ferroacs::store::now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(view.status, "pending");
        assert!(view.password_set);
        let shown = serde_json::to_string(&view).unwrap();
        assert!(!shown.contains("secret"), "password leaked: {shown}");

        let report = c
            .dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(report.ended_cleanly(), "{id}: {report:?}");
        let rpcs = report.acs_rpcs();
        assert!(rpcs.contains(&"SetParameterValues"), "{id}: {rpcs:?}");
        assert_eq!(c.dev.get(c.user_path), Some(user.as_str()), "{id}");
        assert_eq!(
            c.dev.get(c.password_path),
            Some(format!("pw-{user}-secret").as_str()),
            "{id}"
        );
        assert_eq!(c.dev.get(c.registrar_path), Some("sip.example.net"), "{id}");

        let view = lines::get(&store, &id, c.line).await.unwrap();
        assert_ne!(view.status, "pending", "{id}: {view:?}");
        assert_ne!(view.status, "fault", "{id}: {view:?}");
        assert_eq!(view.applied_revision, view.revision);
        let mapping = view.mapping.clone().unwrap();
        assert_eq!(mapping["layout"], c.layout, "{id}: {mapping}");
        assert_eq!(mapping["status_path"], c.status_path, "{id}: {mapping}");
        assert!(view.status_at.is_some(), "status read back: {view:?}");

        // The device registers; the next boot reads the status back.
        c.dev.set_value(c.status_path, c.up_value);
        let report = c
            .dev
            .run_session(&app.cwmp_url(), &[("1 BOOT", "")])
            .await
            .unwrap();
        assert!(report.ended_cleanly(), "{id}: {report:?}");
        assert!(
            !report.acs_rpcs().contains(&"SetParameterValues"),
            "nothing to push again: {:?}",
            report.acs_rpcs()
        );
        let view = lines::get(&store, &id, c.line).await.unwrap();
        let want = if c.up_value == "Up" {
            "registered"
        } else {
            "registering"
        };
        assert_eq!(view.status, want, "{id}: {view:?}");
        assert_eq!(view.device_status.as_deref(), Some(c.up_value));

        // A quiet periodic session does not touch the line.
        let report = c
            .dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(
            report.acs_rpcs().is_empty(),
            "{id}: {:?}",
            report.acs_rpcs()
        );
    }
}

async fn issue2_objects_are_linked(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let store = app.store();
    let mut dev = issue2_device("VOIP2-0002");
    let id = dev_id(&dev);
    dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    lines::assign(
        &store,
        &id,
        2,
        account_input("bob"),
        ferroacs::store::now_ms(),
    )
    .await
    .unwrap();
    let report = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    let rpcs = report.acs_rpcs();
    assert!(
        rpcs.iter().filter(|r| **r == "AddObject").count() >= 2,
        "{rpcs:?}"
    );
    let b = "Device.Services.VoiceService.1.";
    assert_eq!(
        dev.get(&format!("{b}CallControl.Line.2.Provider")),
        Some("Device.Services.VoiceService.1.SIP.Client.2")
    );
    assert_eq!(
        dev.get(&format!("{b}SIP.Client.2.Network")),
        Some("Device.Services.VoiceService.1.SIP.Network.1")
    );
    assert_eq!(dev.get(&format!("{b}SIP.Client.2.Enable")), Some("true"));
    assert_eq!(
        dev.get(&format!("{b}CallControl.Line.2.DirectoryNumber")),
        Some("+4930123456")
    );
    assert_eq!(
        dev.get(&format!("{b}CallControl.Extension.2.Name")),
        Some("Front desk")
    );
    // RFC2833 is called RFC4733 in issue 2.
    assert_eq!(
        dev.get(&format!("{b}VoIPProfile.1.DTMFMethod")),
        Some("RFC4733")
    );
    // Line 1 was left alone.
    assert_eq!(
        dev.get(&format!("{b}SIP.Client.1.AuthUserName")),
        Some("existing")
    );
}

async fn refused_line_is_a_fault_not_a_retry_storm(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let store = app.store();
    let mut dev = issue2_device("VOIP2-0003");
    let id = dev_id(&dev);
    dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    // The device's registrar is read-only.
    let reg = "Device.Services.VoiceService.1.SIP.Network.1.RegistrarServer";
    dev.model.get_mut(reg).unwrap().writable = false;
    lines::assign(
        &store,
        &id,
        1,
        account_input("carol"),
        ferroacs::store::now_ms(),
    )
    .await
    .unwrap();
    let report = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    let view = lines::get(&store, &id, 1).await.unwrap();
    assert_eq!(view.status, "fault", "{view:?}");
    let fault = view.fault.unwrap();
    assert!(fault.contains(reg), "{fault}");
    assert!(!fault.contains("secret"), "{fault}");
    // Next sessions do not resend it.
    for ev in ["2 PERIODIC", "1 BOOT"] {
        let report = dev.run_session(&app.cwmp_url(), &[(ev, "")]).await.unwrap();
        assert!(
            !report.acs_rpcs().contains(&"SetParameterValues"),
            "{ev}: {:?}",
            report.acs_rpcs()
        );
    }
    // Editing the line tries again.
    lines::assign(
        &store,
        &id,
        1,
        account_input("carol2"),
        ferroacs::store::now_ms(),
    )
    .await
    .unwrap();
    dev.model.get_mut(reg).unwrap().writable = true;
    dev.run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert_eq!(
        dev.get("Device.Services.VoiceService.1.SIP.Client.1.AuthUserName"),
        Some("carol2")
    );
}

async fn line_input_is_validated(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let store = app.store();
    let mut dev = issue2_device("VOIP2-0004");
    let id = dev_id(&dev);
    dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    let bad: lines::LineInput =
        serde_json::from_value(serde_json::json!({"sip_user": "x", "registrar_port": 70000}))
            .unwrap();
    let e = lines::assign(&store, &id, 1, bad, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("registrar_port:") && e.contains("unsignedInt"),
        "{e}"
    );
    let e = lines::assign(&store, &id, 0, account_input("a"), 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("line:"), "{e}");
    let e = lines::assign(&store, "nope", 1, account_input("a"), 0)
        .await
        .unwrap_err();
    assert!(matches!(e, ferroacs::error::Error::NotFound { .. }), "{e}");
}

async fn csv_import_of_a_thousand_accounts(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let store = app.store();
    let n_devices = 500;
    let ids: Vec<String> = (0..n_devices)
        .map(|i| format!("02AC50-ATA-{i:05}"))
        .collect();
    {
        let ids = ids.clone();
        let st = store.clone();
        tokio::task::spawn_blocking(move || {
            for id in &ids {
                st.provision_device(
                    &ferroacs::store::devices::ProvisionDevice {
                        id: id.clone(),
                        oui: "02AC50".into(),
                        product_class: "ATA".into(),
                        serial_number: id[11..].to_string(),
                        ..Default::default()
                    },
                    None,
                    1,
                )
                .unwrap();
            }
        })
        .await
        .unwrap();
    }
    let mut csv = String::from(
        "device_id,line,sip_user,password,directory_number,registrar,registrar_port,transport,codecs\n",
    );
    for (i, id) in ids.iter().enumerate() {
        for line in 1..=2 {
            csv.push_str(&format!(
                "{id},{line},user{i}-{line},\"p,w{i}\",+49301{i:05}{line},sip.example.net,5060,UDP,G.711ALaw;G.729\n"
            ));
        }
    }
    // Bad rows (file lines 1002..=1006), each fully rejected.
    csv.push_str(&format!(
        "{},3,baduser,pw,123,sip.example.net,99999,UDP,\n",
        ids[0]
    )); // port
    csv.push_str(&format!("{},4,,pw,123,sip.example.net,5060,UDP,\n", ids[1])); // no user
    csv.push_str("02AC50-ATA-99999,1,ghost,pw,123,sip.example.net,5060,UDP,\n"); // no device
    csv.push_str(&format!(
        "{},5,x,pw,123,sip.example.net,5060,PIGEON,\n",
        ids[2]
    )); // transport
    csv.push_str(&format!(
        "{},1,dup,pw,123,sip.example.net,5060,UDP,\n",
        ids[3]
    )); // duplicate

    let started = Instant::now();
    let report = lines::import_csv(&store, &csv, false, ferroacs::store::now_ms())
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("[{b:?}] imported {} accounts in {took:?}", report.imported);
    assert_eq!(report.imported, 1000, "{:?}", report.errors);
    assert_eq!(report.rejected, 5, "{:?}", report.errors);
    let rows: Vec<(usize, &str)> = report
        .errors
        .iter()
        .map(|e| (e.row, e.field.as_str()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1002, "registrar_port"),
            (1003, "sip_user"),
            (1004, "device_id"),
            (1005, "transport"),
            (1006, "line")
        ]
    );
    let (count, l0, l3) = {
        let st = store.clone();
        let (a, b2) = (ids[0].clone(), ids[3].clone());
        tokio::task::spawn_blocking(move || {
            (
                st.count_lines().unwrap(),
                st.device_lines(&a).unwrap(),
                st.device_lines(&b2).unwrap(),
            )
        })
        .await
        .unwrap()
    };
    assert_eq!(count, 1000);
    // Nothing of a bad row was stored; the duplicate did not overwrite the first.
    assert_eq!(l0.iter().map(|l| l.line).collect::<Vec<_>>(), vec![1, 2]);
    let first = lines::LineView::from_row(&l3[0]);
    assert_eq!(first.account.sip_user.as_deref(), Some("user3-1"));
    assert_eq!(
        first.account.codecs,
        Some(vec!["G.711ALaw".to_string(), "G.729".to_string()])
    );
    assert_eq!(l3[0].password.as_deref(), Some("p,w3"));

    // A dry run stores nothing; a malformed header is refused as a whole.
    let before = report.imported;
    let dry = lines::import_csv(&store, &csv, true, 0).await.unwrap();
    assert_eq!((dry.imported, dry.rejected), (before, 5));
    let e = lines::import_csv(&store, "device_id,line,colour\nx,1,red\n", false, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("colour"), "{e}");
}

fn preset_input(v: serde_json::Value) -> presets::PresetInput {
    serde_json::from_value(v).unwrap()
}

async fn presets_are_validated(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let store = app.store();
    let cases = [
        (
            serde_json::json!({"name": "p", "values": [{"name": "Device.ManagementServer.PeriodicInformInterval", "value": "often"}]}),
            "Device.ManagementServer.PeriodicInformInterval",
            "unsignedInt",
        ),
        (
            serde_json::json!({"name": "p", "values": [{"name": "InternetGatewayDevice.DeviceInfo.SoftwareVersion", "value": "1"}]}),
            "InternetGatewayDevice.DeviceInfo.SoftwareVersion",
            "read-only",
        ),
        (
            serde_json::json!({"name": "p", "filter": "colour = \"red\"", "values": [{"name": "Device.X_A.B", "value": "1"}]}),
            "filter",
            "unknown field",
        ),
    ];
    for (input, field, words) in cases {
        let e = presets::put(&store, preset_input(input), 1)
            .await
            .unwrap_err();
        match e {
            ferroacs::error::Error::Invalid { field: f, message } => {
                assert_eq!(f, field);
                assert!(message.contains(words), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(presets::list(&store).await.unwrap().is_empty());
}

async fn preset_converges_a_hundred_devices(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let store = app.store();
    let locked = "Device.X_SIM_Locked";
    let (a, _) = presets::put(
        &store,
        preset_input(serde_json::json!({
            "name": "gold",
            "filter": "product_class = \"SimGW\" AND software_version LIKE \"1.*\"",
            "priority": 10,
            "events": ["bootstrap", "periodic"],
            "values": [
                {"name": "Device.ManagementServer.PeriodicInformInterval", "value": "600"},
                {"name": "Device.DeviceInfo.ProvisioningCode", "value": "gold-1"},
                {"name": locked, "value": "1"}
            ]
        })),
        ferroacs::store::now_ms(),
    )
    .await
    .unwrap();
    presets::put(
        &store,
        preset_input(serde_json::json!({
            "name": "base",
            "priority": 1,
            "events": ["boot"],
            "periodic_inform": {"enable": true, "interval": 900}
        })),
        ferroacs::store::now_ms(),
    )
    .await
    .unwrap();
    // Matches nobody.
    presets::put(
        &store,
        preset_input(serde_json::json!({
            "name": "other",
            "priority": 99,
            "filter": "product_class = \"Nope\"",
            "values": [{"name": "Device.DeviceInfo.ProvisioningCode", "value": "nope"}]
        })),
        ferroacs::store::now_ms(),
    )
    .await
    .unwrap();

    let n = 100;
    let mut devs: Vec<Device> = (0..n)
        .map(|i| {
            let mut d = Device::synthetic(Root::Device2, &format!("PS{i:04}"), 40)
                .with_acs_credentials("cpe", "cpe-secret");
            // A vendor parameter the device will not let anyone change.
            d.model
                .insert(locked.into(), Param::leaf("0", "xsd:string", false));
            d
        })
        .collect();

    let url = app.cwmp_url();
    let round = |devs: Vec<Device>, events: &'static [(&'static str, &'static str)]| {
        let url = url.clone();
        async move {
            let mut handles = Vec::new();
            let mut chunks: Vec<Vec<Device>> = (0..10).map(|_| Vec::new()).collect();
            for (i, d) in devs.into_iter().enumerate() {
                chunks[i % 10].push(d);
            }
            for chunk in chunks {
                let url = url.clone();
                handles.push(tokio::spawn(async move {
                    let mut out = Vec::new();
                    for mut d in chunk {
                        let r = d.run_session(&url, events).await.unwrap();
                        out.push((d, r));
                    }
                    out
                }));
            }
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.await.unwrap());
            }
            all
        }
    };

    let started = Instant::now();
    let results = round(std::mem::take(&mut devs), &[]).await;
    eprintln!(
        "[{b:?}] round 1 (bootstrap + convergence) of {n} devices: {:?}",
        started.elapsed()
    );
    for (d, r) in &results {
        assert!(r.ended_cleanly(), "{r:?}");
        assert_eq!(
            d.get("Device.ManagementServer.PeriodicInformInterval"),
            Some("600")
        );
        assert_eq!(d.get("Device.DeviceInfo.ProvisioningCode"), Some("gold-1"));
        assert_eq!(d.get(locked), Some("0"));
        assert!(
            d.parameter_key().starts_with("ps-"),
            "{}",
            d.parameter_key()
        );
    }
    devs = results.into_iter().map(|(d, _)| d).collect();

    // Which preset set which value; the refused value is recorded.
    let report = presets::device_report(&store, &dev_id(&devs[0]))
        .await
        .unwrap();
    let interval = &report.applied["Device.ManagementServer.PeriodicInformInterval"];
    assert_eq!(
        (interval.preset.as_str(), interval.value.as_str()),
        ("gold", "600")
    );
    assert_eq!(interval.revision, a.revision);
    assert_eq!(
        report.applied["Device.ManagementServer.PeriodicInformEnable"].preset,
        "base"
    );
    assert_eq!(report.refused[locked].code, 9008, "{:?}", report.refused);
    assert!(report.converged.contains_key("gold") && report.converged.contains_key("base"));
    assert!(!report.converged.contains_key("other"));
    assert!(report.events.contains(&"periodic".to_string()));
    let faults = {
        let st = store.clone();
        let id = dev_id(&devs[0]);
        tokio::task::spawn_blocking(move || st.list_faults(Some(&id), None, 100).unwrap())
            .await
            .unwrap()
    };
    assert_eq!(
        faults.iter().filter(|f| f.message.contains(locked)).count(),
        1,
        "{faults:?}"
    );

    // Second round: periodic sessions push nothing.
    let started = Instant::now();
    let results = round(devs, &[("2 PERIODIC", "")]).await;
    eprintln!(
        "[{b:?}] round 2 (periodic) of {n} devices: {:?}",
        started.elapsed()
    );
    for (_, r) in &results {
        assert!(r.ended_cleanly(), "{r:?}");
        assert!(r.acs_rpcs().is_empty(), "{:?}", r.acs_rpcs());
    }
    let mut devs: Vec<Device> = results.into_iter().map(|(d, _)| d).collect();

    // Changing the preset reaches the device at its next session, once.
    presets::put(
        &store,
        preset_input(serde_json::json!({
            "name": "gold",
            "filter": "product_class = \"SimGW\"",
            "priority": 10,
            "events": ["bootstrap", "periodic"],
            "values": [
                {"name": "Device.ManagementServer.PeriodicInformInterval", "value": "700"},
                {"name": "Device.DeviceInfo.ProvisioningCode", "value": "gold-1"}
            ]
        })),
        ferroacs::store::now_ms(),
    )
    .await
    .unwrap();
    let d = &mut devs[0];
    let r = d
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert_eq!(r.acs_rpcs(), vec!["SetParameterValues"]);
    assert_eq!(
        d.get("Device.ManagementServer.PeriodicInformInterval"),
        Some("700")
    );
    let r = d
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(r.acs_rpcs().is_empty(), "{:?}", r.acs_rpcs());
}

battery!(
    line_reaches_the_device_in_every_layout,
    issue2_objects_are_linked,
    refused_line_is_a_fault_not_a_retry_storm,
    line_input_is_validated,
    csv_import_of_a_thousand_accounts,
    presets_are_validated,
    preset_converges_a_hundred_devices,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_imports_lines_and_lists_them_without_passwords() {
    let app = TestApp::spawn(Backend::Sqlite, |_| {}).await;
    let mut dev = issue2_device("VOIP2-CLI");
    let id = dev_id(&dev);
    assert!(dev
        .run_session(&app.cwmp_url(), &[])
        .await
        .unwrap()
        .ended_cleanly());
    let dir = app.db.dir().unwrap();
    let file = dir.join("accounts.csv");
    std::fs::write(
        &file,
        format!(
            "device_id,line,sip_user,password,registrar\n{id},1,alice,hunter2-secret,sip.example.net\n{id},2,,x,sip.example.net\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferroacs"));
        for (k, _) in std::env::vars() {
            if k.starts_with("FERROACS_") {
                c.env_remove(k);
            }
        }
        let out = c
            .current_dir(&dir)
            .args(args)
            .env("FERROACS_DATABASE_URL", &app.db.url)
            .env("FERROACS_SECRETS_KEY", &app.db.key)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = run(&["line", "import", file.to_str().unwrap()]);
    assert!(!ok, "a rejected row makes the command fail: {out}");
    assert!(out.contains("row 3") && out.contains("sip_user"), "{out}");
    assert!(out.contains("imported 1 lines; 1 rows rejected"), "{out}");
    assert!(err.contains("1 rows rejected"), "{err}");
    let (ok, out, err) = run(&["line", "list", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("alice") && out.contains("pending"), "{out}");
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
    // The imported line reaches the device.
    dev.run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert_eq!(
        dev.get("Device.Services.VoiceService.1.SIP.Client.1.AuthUserName"),
        Some("alice")
    );
}
