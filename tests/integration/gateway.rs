//! TR-111 Part 1, the device–gateway association, over real HTTP: a simulated gateway with
//! a ManageableDevice table and simulated LAN devices with GatewayInfo Inform; the
//! association shows in the API (for a viewer too), in the device search and in the
//! console; a device leaving the gateway's table leaves the association at the gateway's
//! next report; a claim the gateway does not confirm is shown as the device's word only;
//! malformed values name no gateway and break nothing.

use serde_json::Value;

use crate::api::Api;
use crate::battery;
use crate::console::{add_user, backend_name, console_config, login, PASSWORD};
use crate::cpe::{Device, Identity, Root};
use crate::cwmp::sample_device;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp};

battery!(gateway_and_lan_devices_are_associated_in_api_search_and_console,);

const GATEWAY_DUMP: &str = "data_model_202BC1-BM632w-TR111GW0001.csv";
const GW: &str = "202BC1-BM632w-TR111GW0001";
const PHONE: &str = "0004F2-VVX411-0004F2A1B2C3";
const STB: &str = "00179A-IP%2DSTB-STB%2D0012345";
const TABLE: &str = "InternetGatewayDevice.ManagementServer.ManageableDevice.";

fn lan_device(oui: &str, product_class: &str, serial: &str) -> Device {
    Device::synthetic(Root::Device2, serial, 40)
        .with_identity(Identity {
            manufacturer: "Sim".into(),
            oui: oui.into(),
            product_class: product_class.into(),
            serial_number: serial.into(),
        })
        .with_acs_credentials("cpe", "cpe-secret")
}

async fn session(app: &TestApp, dev: &mut Device) {
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
}

/// `behind_gateway` of an association as (id, source, managed), sorted.
fn behind(a: &Value) -> Vec<(String, String, bool)> {
    let mut v: Vec<(String, String, bool)> = a["behind_gateway"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["source"].as_str().unwrap().to_string(),
                l["managed"].as_bool().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn ids(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn gateway_and_lan_devices_are_associated_in_api_search_and_console(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    let api = Api::new(&app, "viewer").await;

    // The gateway: its discovery reads the table and asks for active notification on its
    // ManageableDeviceNumberOfEntries. The Host of one row is hostile markup.
    let mut gw = sample_device(GATEWAY_DUMP);
    gw.set_value(&format!("{TABLE}3.Host"), "<img src=x onerror=alert(1)>");
    let rep = gw.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(
        rep.acs_rpcs().contains(&"SetParameterAttributes"),
        "{:?}",
        rep.acs_rpcs()
    );
    let count = "InternetGatewayDevice.ManagementServer.ManageableDeviceNumberOfEntries";
    assert_eq!(gw.model[count].notification, 2, "active notification set");

    // The phone names the gateway (lower-case OUI, as some devices report it) and has no
    // connection-request URL; the STB never talks to ferroacs.
    let mut phone = lan_device("0004F2", "VVX411", "0004F2A1B2C3").with_gateway_info(
        "202bc1",
        "BM632w",
        "TR111GW0001",
    );
    session(&app, &mut phone).await;
    // A device that claims the gateway, which does not list it.
    let mut liar = lan_device("0004F2", "VVX411", "LIAR0001").with_gateway_info(
        "202BC1",
        "BM632w",
        "TR111GW0001",
    );
    // It also refuses active notification on its GatewayInfo, and keeps working.
    liar.faults
        .rpc_faults
        .push(("SetParameterAttributes".into(), 9009));
    let rep = liar.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().contains(&"SetParameterAttributes"));
    let liar_id = "0004F2-VVX411-LIAR0001";
    // Malformed GatewayInfo values: no gateway, and the session ends as any other.
    let mut odd =
        lan_device("0004F2", "VVX411", "ODD0001").with_gateway_info("\"><b>", "BM632w", "");
    session(&app, &mut odd).await;

    let a = api.get(&format!("/api/v1/devices/{GW}/gateway")).await;
    assert!(a["gateway"].is_null(), "{a}");
    assert_eq!(
        behind(&a),
        vec![
            (PHONE.to_string(), "confirmed".to_string(), true),
            (liar_id.to_string(), "device_gateway_info".to_string(), true),
            (STB.to_string(), "gateway_table".to_string(), false),
        ]
    );
    let p = api.get(&format!("/api/v1/devices/{PHONE}/gateway")).await;
    assert_eq!(p["gateway"]["id"], GW, "{p}");
    assert_eq!(p["gateway"]["source"], "confirmed");
    assert_eq!(p["gateway"]["managed"], true);
    assert!(p["gateway"]["last_seen"].as_i64().unwrap() > 0);
    let l = api.get(&format!("/api/v1/devices/{liar_id}/gateway")).await;
    assert_eq!(l["gateway"]["source"], "device_gateway_info", "{l}");
    let o = api
        .get("/api/v1/devices/0004F2-VVX411-ODD0001/gateway")
        .await;
    assert!(o["gateway"].is_null(), "{o}");
    assert!(behind(&o).is_empty());

    // The phone cannot be reached itself: the reachability view names its gateway.
    let r = api
        .get(&format!("/api/v1/devices/{PHONE}/reachability"))
        .await;
    assert!(r["routes"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["behind_gateway"]["id"], GW, "{r}");

    // The search finds the managed devices behind the gateway.
    let q = format!("gateway = \"{GW}\"");
    let page = api
        .get(&format!("/api/v1/devices?q={}", urlencode(&q)))
        .await;
    let mut want = vec![PHONE.to_string(), liar_id.to_string()];
    want.sort();
    assert_eq!(ids(&page), want, "{page}");
    let page = api
        .get(&format!(
            "/api/v1/devices?q={}",
            urlencode(&format!("NOT gateway = \"{GW}\" AND serial = ODD0001"))
        ))
        .await;
    assert_eq!(ids(&page), vec!["0004F2-VVX411-ODD0001".to_string()]);

    // The console, as a viewer: the gateway's page lists the devices behind it (links to
    // the managed ones), the device's value is shown as text, never as markup.
    add_user(&app, "vera", "viewer").await;
    let b = Browser::start(&format!("gateway-{}", backend_name(backend))).await;
    login(&b, &app, "vera", PASSWORD).await;
    b.goto(&app.api_url(&format!("/devices/{GW}"))).await;
    let list = b.wait_text("#lan-devices", PHONE).await;
    assert!(list.contains(STB), "{list}");
    assert!(list.contains("<img src=x onerror=alert(1)>"), "{list}");
    assert!(
        list.contains("reported by the device (not confirmed)"),
        "{list}"
    );
    assert!(b.find_all("#lan-devices img").await.is_empty());
    b.screenshot("gateway").await;
    b.click_css("#lan-devices a[href*='0004F2A1B2C3']").await;
    let line = b.wait_text("#behind-gateway", GW).await;
    assert!(line.contains("confirmed"), "{line}");
    b.screenshot("behind-gateway").await;
    b.click_css("#behind-gateway a[href*='TR111GW0001']").await;
    b.wait_text("#lan-devices", PHONE).await;

    // The STB leaves the gateway's LAN: the gateway announces the new count (active
    // notification), ferroacs reads the table again and the STB is gone.
    assert!(gw.remove_object(&format!("{TABLE}3.")) > 0);
    assert!(gw.local_change(count, "1"));
    let rep = gw.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(
        rep.acs_rpcs().contains(&"GetParameterValues"),
        "{:?}",
        rep.acs_rpcs()
    );
    let a = api.get(&format!("/api/v1/devices/{GW}/gateway")).await;
    let now: Vec<String> = behind(&a).into_iter().map(|(id, _, _)| id).collect();
    assert!(!now.contains(&STB.to_string()), "{a}");
    assert!(now.contains(&PHONE.to_string()), "{a}");
    let params = api
        .get(&format!(
            "/api/v1/devices/{GW}/parameters?prefix={}",
            urlencode(TABLE)
        ))
        .await;
    assert!(
        !params.to_string().contains("ManageableDevice.3."),
        "the stored tree forgot the row: {params}"
    );

    // A deleted device's own word goes with it: the liar's claim disappears.
    let op = Api::new(&app, "operator").await;
    let (status, _) = op
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/devices/{liar_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let a = api.get(&format!("/api/v1/devices/{GW}/gateway")).await;
    assert!(!a.to_string().contains(liar_id), "{a}");
    drop(b);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
