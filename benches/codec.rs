//! Codec micro-benchmarks: parse an Inform, parse a GetParameterValuesResponse of 1,000
//! parameters, serialize a SetParameterValues; and the discovery path of a 300-parameter
//! device: its whole-tree GetParameterNamesResponse, one GetParameterValuesResponse of 128
//! (the default `cwmp.gpv_batch_size`), and the stored tree built from the parsed responses
//! and encoded (front-coded, deflated) as at the end of the session. Inputs are written by
//! the CPE simulator, so they look like what devices send.
//!
//! Run with `cargo bench --bench codec`.

#![allow(clippy::unwrap_used)]

use ferroacs_cpe_sim::cpe;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferroacs::cwmp::{
    encode_request, parse_incoming, AcsRequest, CpeResponse, CwmpNs, GetParameterNames,
    GetParameterValues, Header, IncomingBody, ParameterValue, SetParameterValues,
};
use ferroacs::domain::params::ParamTree;

fn inform_xml() -> String {
    let mut dev = cpe::Device::synthetic(cpe::Root::Igd, "BENCH0001", 300);
    dev.state.bootstrapped = true;
    let events = dev.inform_events(&[("2 PERIODIC", "")]);
    dev.inform_envelope(&events, "cpe-1")
}

/// What a device of `params` parameters answers to a whole-tree GetParameterNames, and to
/// GetParameterValues of its leaves in batches of `batch`.
fn discovery_xml(params: usize, batch: usize) -> (String, Vec<String>) {
    let mut dev = cpe::Device::synthetic(cpe::Root::Igd, "BENCH0003", params);
    let req = encode_request(
        CwmpNs::V1_0,
        &Header::with_id("acs-3"),
        &AcsRequest::GetParameterNames(GetParameterNames {
            parameter_path: "InternetGatewayDevice.".into(),
            next_level: false,
        }),
    );
    let gpn = dev.respond_to(&req).unwrap().xml;
    let leaves: Vec<String> = dev
        .model
        .iter()
        .filter(|(_, p)| !p.is_object)
        .map(|(k, _)| k.clone())
        .collect();
    let gpvs = leaves
        .chunks(batch)
        .map(|names| {
            let req = encode_request(
                CwmpNs::V1_0,
                &Header::with_id("acs-4"),
                &AcsRequest::GetParameterValues(GetParameterValues {
                    parameter_names: names.to_vec(),
                }),
            );
            dev.respond_to(&req).unwrap().xml
        })
        .collect();
    (gpn, gpvs)
}

/// The discovery path at the server: parse the responses, learn them into a tree (names and
/// values moved out of the parsed responses), encode the tree for storage.
fn discover(gpn: &str, gpvs: &[String]) -> Vec<u8> {
    let mut tree = ParamTree::new();
    let at = 1_700_000_000_000;
    if let Some(IncomingBody::Response(CpeResponse::GetParameterNames { parameter_list })) =
        parse_incoming(gpn).unwrap().map(|e| e.body)
    {
        for p in parameter_list {
            tree.set_info_owned(p.name, p.writable, at);
        }
    }
    for gpv in gpvs {
        if let Some(IncomingBody::Response(CpeResponse::GetParameterValues { parameter_list })) =
            parse_incoming(gpv).unwrap().map(|e| e.body)
        {
            for p in parameter_list {
                tree.set_value_owned(p.name, p.value, &p.xsd_type, at);
            }
        }
    }
    tree.encode(true)
}

fn gpv_response_xml(n: usize) -> String {
    let mut dev = cpe::Device::synthetic(cpe::Root::Igd, "BENCH0002", n + 200);
    let names: Vec<String> = dev
        .model
        .iter()
        .filter(|(_, p)| !p.is_object)
        .map(|(k, _)| k.clone())
        .take(n)
        .collect();
    assert_eq!(names.len(), n, "synthetic model too small");
    let req = encode_request(
        CwmpNs::V1_0,
        &Header::with_id("acs-1"),
        &AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: names,
        }),
    );
    let reply = dev.respond_to(&req).unwrap();
    assert!(reply.fault.is_none(), "GetParameterValues faulted");
    reply.xml
}

fn spv(n: usize) -> AcsRequest {
    AcsRequest::SetParameterValues(SetParameterValues {
        parameter_list: (0..n)
            .map(|i| {
                ParameterValue::string(
                    format!("InternetGatewayDevice.LANDevice.1.WLANConfiguration.{i}.SSID"),
                    format!("bench-ssid-{i} <&>"),
                )
            })
            .collect(),
        parameter_key: "bench-key".into(),
    })
}

fn codec(c: &mut Criterion) {
    let inform = inform_xml();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(inform.len() as u64));
    g.bench_function("parse_inform", |b| {
        b.iter(|| parse_incoming(black_box(&inform)).unwrap())
    });
    let gpv = gpv_response_xml(1000);
    g.throughput(Throughput::Bytes(gpv.len() as u64));
    g.bench_function("parse_gpv_response_1000", |b| {
        b.iter(|| parse_incoming(black_box(&gpv)).unwrap())
    });
    let (gpn, gpvs) = discovery_xml(300, 128);
    g.throughput(Throughput::Bytes(gpn.len() as u64));
    g.bench_function("parse_gpn_response_300", |b| {
        b.iter(|| parse_incoming(black_box(&gpn)).unwrap())
    });
    g.throughput(Throughput::Bytes(gpvs[0].len() as u64));
    g.bench_function("parse_gpv_response_128", |b| {
        b.iter(|| parse_incoming(black_box(&gpvs[0])).unwrap())
    });
    g.throughput(Throughput::Elements(300));
    g.bench_function("discovery_tree_300", |b| {
        b.iter(|| discover(black_box(&gpn), black_box(&gpvs)))
    });
    for n in [5, 100] {
        let req = spv(n);
        let header = Header::with_id("acs-2");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("serialize_spv_{n}"), |b| {
            b.iter(|| encode_request(CwmpNs::V1_0, &header, black_box(&req)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
